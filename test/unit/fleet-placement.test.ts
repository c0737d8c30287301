// fleet-placement.test.ts: which vassals a host claims and gives up
// (src/fleet/placement.ts), from made-up snapshots of the fleet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placementPlan, Wanted } from '../../src/fleet/placement';
import type { FleetSnapshot, PlacementRecord } from '../../src/fleet/types';

function snap(hosts: string[], placements: Record<string, string> = {}, addresses: Record<string, string> = {}): FleetSnapshot {
  return {
    revision: '1', vassals: new Map(), rules: new Map(),
    hosts: new Map(hosts.map((h) => [h, { since: '', lease: '1' }])),
    placements: new Map(Object.entries(placements).map(([v, h]) => [v, { host: h } as PlacementRecord])),
    addresses: new Map(Object.entries(addresses)),
  };
}
const want = (o: Record<string, Wanted>) => new Map(Object.entries(o));
const claims = (me: string, s: FleetSnapshot, w: Map<string, Wanted>, since = new Map<string, number>(), now = 0) =>
  placementPlan(me, s, w, since, now, 3000).claim.map((c) => c.name);

test('unplaced vassals spread over the live hosts by count; each host claims only its share', () => {
  const s = snap(['h1', 'h2', 'h3'], { old: 'h1' });
  const w = want({ old: {}, a: {}, b: {}, c: {}, d: {} });
  // counts h1 1, h2 0, h3 0: a -> h2, b -> h3, c -> h1 (ties: first name), d -> h2
  assert.deepEqual(claims('h1', s, w), ['c']);
  assert.deepEqual(claims('h2', s, w), ['a', 'd']);
  assert.deepEqual(claims('h3', s, w), ['b']);
});

test('a pinned vassal is claimed only by its host, and given up by a host that holds it against its pin', () => {
  const s = snap(['h1', 'h2'], { p: 'h1' });
  const w = want({ p: { pin: 'h2' }, q: { pin: 'h1' }, r: { pin: 'gone' } });
  const h1 = placementPlan('h1', s, w, new Map(), 0, 3000);
  assert.deepEqual(h1.release, ['p']);
  assert.deepEqual(h1.claim.map((c) => c.name), ['q']);
  assert.deepEqual(claims('h2', s, w), [], 'p is still placed (on h1) until h1 gives it up; r waits for its host');
  assert.deepEqual(claims('h2', snap(['h1', 'h2']), w), ['p']);
});

test('a vassal whose key is gone is given up; mine lists what this host keeps', () => {
  const plan = placementPlan('h1', snap(['h1'], { kept: 'h1', removed: 'h1', other: 'h2' }), want({ kept: {} }), new Map(), 0, 3000);
  assert.deepEqual(plan.release, ['removed']);
  assert.deepEqual(plan.mine, ['kept']);
});

test('any host claims a vassal left unplaced longer than the grace (the chosen host may be stuck)', () => {
  const s = snap(['h1', 'h2']);
  const w = want({ v: {} });
  assert.deepEqual(claims('h2', s, w, new Map([['v', 0]]), 1000), [], 'h1 is chosen; h2 waits');
  assert.deepEqual(claims('h2', s, w, new Map([['v', 0]]), 3500), ['v'], 'after the grace h2 claims it too (the transaction picks one)');
});

test('a claim carries the named address, else the one the fleet holds for the vassal (learned elsewhere)', () => {
  const s = snap(['h1'], {}, { '10.0.0.9': 'l.ini' });
  const plan = placementPlan('h1', s, want({ 'n.ini': { address: '10.0.0.5' }, 'l.ini': {} }), new Map(), 0, 3000);
  assert.deepEqual(plan.claim, [{ name: 'l.ini', address: '10.0.0.9' }, { name: 'n.ini', address: '10.0.0.5' }]);
});

test('no live host: nothing is claimed', () => {
  assert.deepEqual(claims('h1', snap([]), want({ v: {} })), []);
});
