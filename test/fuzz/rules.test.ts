// rules.test.ts: fast-check fuzz of the rule language (src/rules/). Arbitrary
// text must never throw anything but RuleError, every RuleError must say
// where (file:line:column for a rule file, file:line and the option for a
// firewall option), and whatever parses must compile to a rule the native
// classifier accepts (fields in range, ports normalised).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { parseFileLine, parseOptionRule } from '../../src/rules/parse';
import { compileRule } from '../../src/rules/compile';
import { loadRuleFile, loadRuleSet } from '../../src/rules/load';
import { RuleError } from '../../src/rules/types';
import type { NativeRule } from '../../src/native';
import { onlyThrows, params, textOf } from './fuzz-helpers';

const TOKENS = [
  'in', 'out', 'allow', 'deny', 'dney', 'proto', 'sport', 'dport', 'icmp-type', 'tcp', 'udp', 'icmp', 'any',
  '0.0.0.0', '0.0.0.0/0', '10.0.0.0/8', '10.0.0.1', '192.168.0.0/24', '192.168.0.1/24', '255.255.255.255/32',
  '1.2.3', '1.2.3.4.5', '256.0.0.1', '010.0.0.1', '/33', '/', '/-1', '80', '1-1024', '1024-1', '0,65535', '65536', '22,80-90',
  ',', '-', ' ', ' ', '  ', '\t', '#', '# comment', '255', '256', '8', '0x10', '1e3', '٣',
];
const octet = fc.oneof(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 300 }), fc.constantFrom(0, 10, 192, 255)).map(String);
const address = fc.tuple(fc.array(octet, { minLength: 4, maxLength: 4 }), fc.option(fc.integer({ min: 0, max: 34 }), { freq: 2 }))
  .map(([o, bits]) => o.join('.') + (bits === null ? '' : `/${bits}`));
const port = fc.oneof(fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 70000 }), fc.constantFrom(0, 22, 80, 65535));
const portList = fc.array(fc.oneof(port.map(String), fc.tuple(port, port).map(([a, b]) => `${a}-${b}`)), { minLength: 1, maxLength: 4 }).map((a) => a.join(','));
const match = fc.oneof(
  fc.constantFrom('tcp', 'udp', 'icmp', '6', '17', '1', '0', '255', '256').map((p) => ['proto', p]),
  portList.map((l) => ['sport', l]),
  portList.map((l) => ['dport', l]),
  fc.integer({ min: 0, max: 300 }).map((t) => ['icmp-type', String(t)]),
);
/** A rule as the grammar writes it (values in and out of range), or bare. */
const ruleWords = fc.tuple(fc.constantFrom('allow', 'deny'), fc.oneof(
  fc.constant([] as string[]),
  fc.tuple(address, address, fc.array(match, { maxLength: 4 })).map(([a, b, ms]) => [a, b, ...ms.flat()]),
)).map(([act, rest]) => [act, ...rest]);
/** ...then maybe damaged: a word dropped, repeated, swapped or replaced by junk. */
const damaged = fc.tuple(ruleWords, fc.array(fc.tuple(fc.nat(3), fc.nat(20), fc.constantFrom(...TOKENS)), { maxLength: 2 })).map(([words, edits]) => {
  const w = [...words];
  for (const [kind, at, junk] of edits) {
    const i = at % (w.length + 1);
    if (kind === 0) w.splice(i, 1);
    else if (kind === 1 && i < w.length) w.splice(i, 0, w[i]);
    else if (kind === 2 && i + 1 < w.length) [w[i], w[i + 1]] = [w[i + 1], w[i]];
    else w.splice(i, 0, junk);
  }
  return w;
});
const spacing = fc.constantFrom(' ', '  ', '\t', ' \t ');
const optionText = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(damaged, spacing, fc.constantFrom('', ' # note', '#')).map(([w, sp, c]) => w.join(sp) + c) },
  { weight: 2, arbitrary: textOf(TOKENS, 14) },
);
const line = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(fc.constantFrom('in', 'out', 'in', 'out', 'IN', ''), damaged, spacing, fc.constantFrom('', ' # note', '#x')).map(([c, w, sp, cm]) => [c, ...w].join(sp) + cm) },
  { weight: 2, arbitrary: textOf(TOKENS, 14) },
);
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-fuzz-rules-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function checkNative(r: NativeRule, input: unknown): void {
  const ctx = JSON.stringify(input);
  assert.ok(r.action === 0 || r.action === 1, ctx);
  for (const [a, bits] of [[r.src, r.srcBits], [r.dst, r.dstBits]] as const) {
    assert.ok(Number.isInteger(a) && a >= 0 && a <= 0xffffffff, ctx);
    assert.ok(Number.isInteger(bits) && bits >= 0 && bits <= 32, ctx);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    assert.equal((a & ~mask) >>> 0, 0, `host bits left in the native rule: ${ctx}`);
    if (a === 0) assert.equal(bits, 0, ctx);
  }
  assert.ok(Number.isInteger(r.proto) && r.proto >= -1 && r.proto <= 255, ctx);
  assert.ok(Number.isInteger(r.icmpType) && r.icmpType >= -1 && r.icmpType <= 255, ctx);
  if (r.icmpType >= 0) assert.equal(r.proto, 1, ctx);
  for (const ranges of [r.sport, r.dport]) {
    if (ranges.length) assert.ok(r.proto === 6 || r.proto === 17, ctx);
    let prev = -2;
    for (const [lo, hi] of ranges) {
      assert.ok(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && lo <= hi && hi <= 65535, ctx);
      assert.ok(lo > prev + 1, `ranges not normalised: ${ctx}`);
      prev = hi;
    }
  }
}

test('a rule file line: only RuleError, with file:line:column; what parses compiles to a valid native rule', () => {
  let runs = 0;
  let rules = 0;
  fc.assert(fc.property(line, fc.integer({ min: 1, max: 100000 }), (text, n) => {
    let parsed: ReturnType<typeof parseFileLine> | undefined;
    const err = onlyThrows(() => { parsed = parseFileLine(text, { file: 'fz/a.rules', line: n }); }, RuleError, new RegExp(`^fz/a\\.rules:${n}:\\d+: \\S`), text);
    if (err) {
      const col = Number(/^fz\/a\.rules:\d+:(\d+):/.exec(err.message)![1]);
      assert.ok(col >= 1 && col <= text.length + 1, `column ${col} outside the line (${text.length} chars): ${JSON.stringify(text)}`);
      return;
    }
    runs++;
    if (parsed!.rule) { rules++; checkNative(compileRule(parsed!.rule, `fz/a.rules:${n}`).native, text); }
  }), params());
  // The generator must reach the parser's success path, not only its errors.
  assert.ok(rules >= runs * 0.05 && rules > 0, `only ${rules} of ${runs} lines parsed to a rule`);
  console.log(`# rule lines: ${rules} parsed to rules`);
});

test('a firewall option value: only RuleError, naming file:line and the option', () => {
  let parsedCount = 0;
  fc.assert(fc.property(optionText, fc.constantFrom('in', 'out') as fc.Arbitrary<'in' | 'out'>, fc.integer({ min: 1, max: 500 }), fc.nat(1000), (text, chain, index, n) => {
    const where = n === 0 ? '<flags>' : `fz/v.ini:${n}`;
    let parsed: ReturnType<typeof parseOptionRule> | undefined;
    const esc = where.replace(/[.*+?^${}()|[\]\\<>]/g, '\\$&');
    const err = onlyThrows(() => { parsed = parseOptionRule(text, chain, { file: n === 0 ? '<flags>' : 'fz/v.ini', line: n }, index); },
      RuleError, new RegExp(`^${esc}: tuntap-router-firewall-${chain} \\(option:${index}\\): \\S`), text);
    if (err) return;
    for (const w of parsed!.warnings) assert.ok(w.startsWith(`${where}: `), w);
    parsedCount++;
    checkNative(compileRule(parsed!.rule!, `option:${index}`).native, text);
  }), params());
  assert.ok(parsedCount > 0, 'no option value parsed');
  console.log(`# option values: ${parsedCount} parsed`);
});

test('a rule file: the error names the first bad line, and that line alone fails the same way', () => {
  let k = 0;
  fc.assert(fc.property(fc.array(fc.oneof(line, fc.constantFrom('in allow', 'out deny 10.0.0.0/8 0.0.0.0', 'in deny 0.0.0.0/0 10.1.0.0/16 proto tcp dport 22,80', '')), { maxLength: 12 }),
    fc.constantFrom('\n', '\r\n'), (lines, eol) => {
      const file = path.join(tmp, `f${k++}.rules`);
      fs.writeFileSync(file, lines.join(eol));
      const esc = file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
      const err = onlyThrows(() => loadRuleFile(file, []), RuleError, new RegExp(`^${esc}:\\d+:\\d+: `), lines);
      fs.unlinkSync(file);
      if (!err) return;
      const n = Number(new RegExp(`^${esc}:(\\d+):`).exec(err.message)![1]);
      const all = lines.join(eol).split(/\r?\n/);
      assert.ok(n >= 1 && n <= all.length, `line ${n} of ${all.length}`);
      for (let i = 0; i < n - 1; i++) parseFileLine(all[i], { file, line: i + 1 });  // earlier lines are fine
      assert.throws(() => parseFileLine(all[n - 1], { file, line: n }), (e: unknown) => e instanceof RuleError && e.message === err.message);
    }), params(500));
});

test('a rule set from options: only RuleError; shadow checking never throws', () => {
  const opt = fc.record({ chain: fc.constantFrom('in', 'out') as fc.Arbitrary<'in' | 'out'>, text: optionText, line: fc.integer({ min: 1, max: 99 }) });
  fc.assert(fc.property(fc.array(opt, { maxLength: 10 }), (opts) => {
    const rules = opts.map((o, i) => ({ chain: o.chain, text: o.text, index: i + 1, source: { file: 'fz/v.ini', line: o.line } }));
    let set: ReturnType<typeof loadRuleSet> | undefined;
    const err = onlyThrows(() => { set = loadRuleSet(rules, []); }, RuleError, /^fz\/v\.ini:\d+: tuntap-router-firewall-(in|out) \(option:\d+\): /, opts);
    if (err) return;
    assert.equal(set!.in.length + set!.out.length, rules.length);
    for (const r of [...set!.in, ...set!.out]) checkNative(r.native, opts);
  }), params(800));
});
