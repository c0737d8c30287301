// fuzz-helpers.ts: text generators for the parser fuzz tests, and the check
// that a thrown error is one of the documented classes with its place.
import assert from 'node:assert/strict';
import fc from 'fast-check';

/** Runs per property: FUZZ_RUNS (default 1500); FUZZ_SEED replays a failure. */
export function params(runs = Number(process.env.FUZZ_RUNS ?? 1500)): fc.Parameters<unknown> {
  const seed = process.env.FUZZ_SEED;
  return { numRuns: runs, ...(seed ? { seed: Number(seed) } : {}), endOnFailure: false, interruptAfterTimeLimit: 60_000 };
}

/** Text made of the format's own tokens mixed with arbitrary characters
 *  (any code point, control characters and lone surrogates included). */
export function textOf(tokens: string[], maxLength = 40): fc.Arbitrary<string> {
  const piece = fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom(...tokens) },
    { weight: 2, arbitrary: fc.string({ maxLength: 6 }) },
    { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 4 }) },
    { weight: 1, arbitrary: fc.constantFrom('\n', '\r\n', '\t', ' ', '\0', '\u00a0', '\ufeff', '\u2028') },
    { weight: 1, arbitrary: fc.integer({ min: -1, max: 70000 }).map(String) },
  );
  return fc.array(piece, { maxLength }).map((a) => a.join(''));
}

/** Calls fn; if it throws, the error must be an instance of cls and its
 *  message must match place. Returns the error, or undefined. */
export function onlyThrows<E extends Error>(fn: () => unknown, cls: new (...a: never[]) => E, place: RegExp, input: unknown): E | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (!(e instanceof cls)) {
      assert.fail(`expected only ${cls.name}, got ${(e as Error)?.constructor?.name}: ${(e as Error)?.stack ?? String(e)}\ninput: ${JSON.stringify(input)}`);
    }
    assert.match(e.message, place, `message lacks its place; input: ${JSON.stringify(input)}`);
    return e;
  }
}
