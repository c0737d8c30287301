// The option table against what native code still declares: the vassal
// runtime's device lines (moat-vassal --device-options) and the addon's
// optionBounds (native/option_bounds.h). Native code keeps only hard limits
// and no defaults; every row's default and bounds must lie inside them, and
// every line or field native code takes must have its row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { OPTIONS, OptionSpec } from '../../src/config/schema';
import { DEFAULT_RUNTIME } from '../../src/vassal/vassal';
import { addon } from '../../src/native';

/** A row's bounds in the unit native code takes (tuntap-router-hold is ms in the table, holdUs natively). */
function nativeRange(s: OptionSpec): [number, number, number] {
  const k = s.unit === 'ms' && s.native?.endsWith('Us') ? 1000 : 1;
  return [s.min! * k, s.max! * k, (s.default as number) * k];
}

test('the runtime takes a line for every row that names one, with bounds the row fits in', () => {
  const listed = new Map<string, [number, number] | 'bool'>();
  for (const line of execFileSync(DEFAULT_RUNTIME, ['--device-options'], { encoding: 'utf8' }).trim().split('\n')) {
    const [k, lo, hi] = line.split(' ');
    listed.set(k, lo === 'on|off' ? 'bool' : [Number(lo), Number(hi)]);
  }
  const rows = OPTIONS.filter((s) => s.runtime);
  assert.deepEqual([...listed.keys()].sort(), rows.map((s) => s.runtime!).sort(), 'runtime lines and table rows name the same options');
  for (const s of rows) {
    const l = listed.get(s.runtime!)!;
    if (s.kind === 'bool') { assert.equal(l, 'bool', s.name); continue; }
    const [min, max, def] = nativeRange(s);
    assert.ok(l !== 'bool' && l[0] <= min && max <= l[1] && l[0] <= def && def <= l[1], `${s.name} ${min}..${max} (default ${def}) inside the runtime's ${JSON.stringify(l)}`);
  }
});

test('the addon takes every native field a row names, with bounds the row fits in, and declares no field without a row', () => {
  const bounds = addon().optionBounds as Readonly<Record<string, readonly [number, number]>>;
  const rows = OPTIONS.filter((s) => s.native && s.kind !== 'bool');
  for (const s of rows) {
    const b = bounds[s.native!];
    assert.ok(b, `${s.name}: the addon declares no bound for ${s.native}`);
    const [min, max, def] = nativeRange(s);
    assert.ok(b[0] <= min && max <= b[1] && b[0] <= def && def <= b[1], `${s.name} ${min}..${max} (default ${def}) inside the addon's ${s.native} ${b.join('..')}`);
  }
  // socketMode is an octal string in the table (tuntap-router-socket-mode), checked by its pattern.
  const named = new Set([...rows.map((s) => s.native!), 'socketMode']);
  assert.deepEqual(Object.keys(bounds).filter((k) => !named.has(k)), [], 'every native bound has its row');
});
