// config-helpers.ts: temp files for the config tests (removed in after()).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';
import { ConfigError } from '../../src/config/types';

export class TempDir {
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-config-'));
  write(name: string, text: string): string {
    const p = path.join(this.dir, name);
    fs.writeFileSync(p, text);
    return p;
  }
  remove(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Asserts fn throws a ConfigError whose message matches re (and line, if given). */
export function throwsConfig(fn: () => unknown, re: RegExp, line?: number): ConfigError {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
  assert.match(err.message, re);
  if (line !== undefined) assert.equal(err.source?.line, line, err.message);
  return err;
}

export const kv = (list: Array<{ key: string; value: string }>): string[][] => list.map((o) => [o.key, o.value]);
export const kvl = (list: Array<{ key: string; value: string; source: { line?: number } }>): Array<[string, string, number | undefined]> =>
  list.map((o) => [o.key, o.value, o.source.line]);
