// VassalAccounting: per-vassal totals from per-peer cumulative counters,
// across reconnects, late names, counter resets, stale snapshots and router
// restarts; intervals that add up to the totals; rates over the window.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { addUsage, ENDED_TTL_MS, IntervalRecord, MAX_ENDED, PeerCounters, RATE_WINDOW_MS, Usage, VassalAccounting, zeroUsage } from '../../src/emperor/accounting';
import { FakeRouter, norm, sum } from './accounting-helpers';

const T0 = Date.UTC(2025, 0, 1);
const traffic = (n: number, drop?: [string, number]) => ({ bytesIn: 100 * n, bytesOut: 10 * n, packetsIn: n, packetsOut: 2 * n, drop });

const usageOf = (p: PeerCounters): Usage => ({ bytesIn: p.ipBytesIn, bytesOut: p.ipBytesOut, packetsIn: p.ipPacketsIn, packetsOut: p.ipPacketsOut, drops: { ...p.drops } });

function intervalSum(records: IntervalRecord[][], name: string): Usage {
  return sum(records.flat().filter((r) => r.vassal === name).map((r) => r.usage));
}

test('deltas across reconnects: a new peer id with the same name adds to the same vassal', () => {
  const r = new FakeRouter();
  const acc = new VassalAccounting(T0);
  const a1 = r.connect('a');
  r.traffic(a1, traffic(3, ['rate_limit', 2]));
  acc.observe(r.snapshot(), r.nameOf, T0 + 1000);
  r.traffic(a1, traffic(4));
  acc.observe(r.snapshot(), r.nameOf, T0 + 2000);
  r.traffic(a1, traffic(5, ['rate_limit', 1]));                // after the last snapshot: only the final counters have it
  const d = r.down(a1);
  acc.peerDown(a1, d.final, d.name, T0 + 2500);
  const a2 = r.connect('a');                                    // the vassal reconnects (or restarted)
  r.traffic(a2, traffic(7, ['no_route', 1]));
  acc.observe(r.snapshot(), r.nameOf, T0 + 3000);
  assert.deepEqual(norm(acc.totals('a')), norm(r.truth.get('a')));
  assert.deepEqual(acc.totals('a'), {
    bytesIn: 1900, bytesOut: 190, packetsIn: 19, packetsOut: 38, drops: { rate_limit: 3, no_route: 1 },
  });
  assert.deepEqual(acc.names(), ['a']);
});

test('a stale snapshot arriving after the peer-down does not count the peer again', () => {
  const r = new FakeRouter();
  const acc = new VassalAccounting(T0);
  const a = r.connect('a'), b = r.connect('b');
  r.traffic(a, traffic(10)); r.traffic(b, traffic(1));
  acc.observe(r.snapshot(), r.nameOf, T0 + 1000);
  r.traffic(a, traffic(5)); r.traffic(b, traffic(1));
  const stale = r.snapshot();                                   // taken before the peer went down ...
  r.traffic(a, traffic(2));
  const d = r.down(a);
  acc.peerDown(a, d.final, d.name, T0 + 1500);
  acc.observe(stale, r.nameOf, T0 + 2000);                      // ... delivered after it
  acc.observe(stale, () => 'a', T0 + 2100);                     // even if its name were still known
  assert.deepEqual(norm(acc.totals('a')), norm(r.truth.get('a')));
  assert.equal(acc.totals('a')!.packetsIn, 17);
  assert.deepEqual(norm(acc.totals('b')), norm(r.truth.get('b')));
  acc.peerDown(a, d.final, d.name, T0 + 2200);                  // a repeated peer-down counts nothing
  assert.equal(acc.totals('a')!.packetsIn, 17);
});

test('a name learned late: the counters accrued meanwhile are counted once', () => {
  const r = new FakeRouter();
  const acc = new VassalAccounting(T0);
  const a = r.connect('a', false);
  r.traffic(a, traffic(4));
  acc.observe(r.snapshot(), r.nameOf, T0 + 1000);
  assert.equal(acc.totals('a'), undefined);
  assert.deepEqual(acc.names(), []);
  r.traffic(a, traffic(6));
  r.learnName(a);
  acc.observe(r.snapshot(), r.nameOf, T0 + 2000);
  acc.observe(r.snapshot(), r.nameOf, T0 + 3000);
  assert.equal(acc.totals('a')!.packetsIn, 10);
  // Never named until its peer-down: the name given there takes all of it.
  const b = r.connect('b', false);
  r.traffic(b, traffic(3));
  acc.observe(r.snapshot(), r.nameOf, T0 + 4000);
  const fin = r.down(b);
  acc.peerDown(b, fin.final, 'b', T0 + 4500);
  assert.equal(acc.totals('b')!.packetsIn, 3);
  // No name anywhere: counted as unattributed, under no vassal.
  const c = r.connect('c', false);
  r.traffic(c, traffic(2));
  const fc2 = r.down(c);
  acc.peerDown(c, fc2.final, undefined, T0 + 5000);
  assert.equal(acc.totals('c'), undefined);
  assert.equal(acc.unattributed().packetsIn, 2);
});

test('a name no longer known keeps the name the peer was counted under; peer-down without a name uses it too', () => {
  const acc = new VassalAccounting(T0);
  const p = (n: number) => ({ id: 1, ipPacketsIn: n, ipPacketsOut: 0, ipBytesIn: n * 10, ipBytesOut: 0, drops: {} });
  acc.observe([p(1)], () => 'a', T0 + 1000);
  acc.observe([p(3)], () => undefined, T0 + 2000);
  acc.peerDown(1, p(6), undefined, T0 + 2500);
  assert.equal(acc.totals('a')!.packetsIn, 6);
  assert.equal(acc.unattributed().packetsIn, 0);
});

test('counters that go backwards for a known id are a new peer starting at 0', () => {
  const acc = new VassalAccounting(T0);
  const p = (n: number, drops: Record<string, number> = {}) => ({ id: 7, ipPacketsIn: n, ipPacketsOut: n, ipBytesIn: n, ipBytesOut: n, drops });
  acc.observe([p(100, { x: 5 })], () => 'a', T0 + 1000);
  acc.observe([p(20)], () => 'a', T0 + 2000);                   // reset (drops went backwards too)
  acc.observe([p(30, { x: 1 })], () => 'a', T0 + 3000);
  acc.observe([p(40, { x: 0 })], () => 'a', T0 + 4000);         // only a drop counter went back: a reset
  assert.deepEqual(acc.totals('a'), { bytesIn: 170, bytesOut: 170, packetsIn: 170, packetsOut: 170, drops: { x: 6 } });
  acc.peerDown(7, p(5), 'a', T0 + 5000);                        // final below the last seen: counted whole
  assert.equal(acc.totals('a')!.packetsIn, 175);
});

test('peer-down without final counters: the growth since the last snapshot is lost, nothing counts twice', () => {
  const r = new FakeRouter();
  const acc = new VassalAccounting(T0);
  const a = r.connect('a');
  r.traffic(a, traffic(3));
  acc.observe(r.snapshot(), r.nameOf, T0 + 1000);
  const stale = r.snapshot();
  r.traffic(a, traffic(4));
  r.down(a);
  acc.peerDown(a, undefined, undefined, T0 + 1500);
  acc.observe(stale, () => 'a', T0 + 2000);
  assert.equal(acc.totals('a')!.packetsIn, 3);
});

test('router restart: ids are reused by the new run and counted from 0; totals stay', () => {
  const r = new FakeRouter();
  const acc = new VassalAccounting(T0);
  const a = r.connect('a');
  const b = r.connect('b');
  r.traffic(a, traffic(50)); r.traffic(b, traffic(5));
  acc.observe(r.snapshot(), r.nameOf, T0 + 1000);
  const d = r.down(b);                                          // id 2 ended in the old run
  acc.peerDown(b, d.final, d.name, T0 + 1100);
  r.restart();                                                  // the router process dies: no more events from it
  acc.routerRestarted();
  const b2 = r.connect('b'), a2 = r.connect('a');               // ids 1 and 2 again, other vassals
  assert.deepEqual([b2, a2], [1, 2]);
  r.traffic(b2, traffic(2)); r.traffic(a2, traffic(1));
  acc.observe(r.snapshot(), r.nameOf, T0 + 2000);
  assert.deepEqual(norm(acc.totals('a')), norm(r.truth.get('a')));
  assert.deepEqual(norm(acc.totals('b')), norm(r.truth.get('b')));
});

test('the ended set is bounded: by count (oldest first) and by age', () => {
  const acc = new VassalAccounting(T0);
  const p = (id: number) => ({ id, ipPacketsIn: 1, ipPacketsOut: 1, ipBytesIn: 1, ipBytesOut: 1, drops: {} });
  const n = MAX_ENDED + 1000;
  for (let id = 1; id <= n; id++) {
    acc.observe([p(id)], () => 'a', T0);
    acc.peerDown(id, p(id), 'a', T0 + 1);
  }
  const ended = (acc as unknown as { ended: Map<number, number> }).ended;
  assert.equal(ended.size, MAX_ENDED);
  assert.equal((acc as unknown as { seen: Map<number, unknown> }).seen.size, 0);
  assert.equal(acc.totals('a')!.packetsIn, n);
  acc.observe([p(n), p(n - 5)], () => 'a', T0 + 2);             // recent ended ids: still remembered
  assert.equal(acc.totals('a')!.packetsIn, n);
  acc.observe([], () => 'a', T0 + 1 + ENDED_TTL_MS + 1);        // a minute later: all forgotten
  assert.equal(ended.size, 0);
});

test('intervals: one record per known vassal (zero usage included), consecutive, summing to the totals', () => {
  const r = new FakeRouter();
  const acc = new VassalAccounting(T0);
  acc.restore(new Map([['old', { bytesIn: 5, bytesOut: 6, packetsIn: 1, packetsOut: 1, drops: { x: 1 } }]]));
  const a = r.connect('a');
  const taken: IntervalRecord[][] = [];
  r.traffic(a, traffic(1));
  acc.observe(r.snapshot(), r.nameOf, T0 + 1000);
  taken.push(acc.takeInterval(T0 + 60_000));
  assert.deepEqual(taken[0].map((x) => [x.vassal, x.start, x.end]), [['old', T0, T0 + 60_000], ['a', T0, T0 + 60_000]]);
  assert.deepEqual(taken[0][0].usage, zeroUsage());
  assert.deepEqual(taken[0][0].total, { bytesIn: 5, bytesOut: 6, packetsIn: 1, packetsOut: 1, drops: { x: 1 } });
  r.traffic(a, traffic(2, ['rate_limit', 3]));
  acc.observe(r.snapshot(), r.nameOf, T0 + 61_000);
  const b = r.connect('b');
  r.traffic(b, traffic(9));
  acc.observe(r.snapshot(), r.nameOf, T0 + 62_000);
  taken.push(acc.takeInterval(T0 + 120_000));
  assert.deepEqual(taken[1].map((x) => [x.vassal, x.start, x.end]),
    [['old', T0 + 60_000, T0 + 120_000], ['a', T0 + 60_000, T0 + 120_000], ['b', T0 + 60_000, T0 + 120_000]]);
  taken.push(acc.takeInterval(T0 + 180_000));                   // nothing happened: zero records for all three
  assert.equal(taken[2].length, 3);
  assert.ok(taken[2].every((x) => x.usage.packetsIn === 0));
  for (const name of ['a', 'b']) {
    assert.deepEqual(norm(intervalSum(taken, name)), norm(acc.totals(name)));
    assert.deepEqual(norm(acc.totals(name)), norm(r.truth.get(name)));
  }
  // The last record's total is the vassal's totals then.
  assert.deepEqual(taken[2].find((x) => x.vassal === 'a')!.total, acc.totals('a'));
});

test('restore replaces totals; deltas add to them; a failed write goes back into the interval', () => {
  const acc = new VassalAccounting(T0);
  acc.restore(new Map([['a', { bytesIn: 1000, bytesOut: 0, packetsIn: 10, packetsOut: 0, drops: {} }]]));
  acc.observe([{ id: 1, ipPacketsIn: 1, ipPacketsOut: 0, ipBytesIn: 100, ipBytesOut: 0, drops: {} }], () => 'a', T0 + 1000);
  assert.equal(acc.totals('a')!.bytesIn, 1100);
  const first = acc.takeInterval(T0 + 60_000);
  assert.equal(first[0].usage.bytesIn, 100);
  acc.returnInterval(first);                                    // the log write failed
  acc.observe([{ id: 1, ipPacketsIn: 2, ipPacketsOut: 0, ipBytesIn: 300, ipBytesOut: 0, drops: {} }], () => 'a', T0 + 61_000);
  const second = acc.takeInterval(T0 + 120_000);
  assert.deepEqual([second[0].start, second[0].end, second[0].usage.bytesIn, second[0].total.bytesIn], [T0, T0 + 120_000, 300, 1300]);
});

test('forget drops a vassal: no more records, its totals gone', () => {
  const acc = new VassalAccounting(T0);
  acc.observe([{ id: 1, ipPacketsIn: 1, ipPacketsOut: 0, ipBytesIn: 100, ipBytesOut: 0, drops: {} }], () => 'a', T0 + 1000);
  acc.observe([{ id: 2, ipPacketsIn: 1, ipPacketsOut: 0, ipBytesIn: 100, ipBytesOut: 0, drops: {} }], () => 'b', T0 + 1000);
  acc.takeInterval(T0 + 60_000);
  acc.forget('a');
  assert.deepEqual(acc.names(), ['b']);
  assert.equal(acc.totals('a'), undefined);
  assert.deepEqual(acc.takeInterval(T0 + 120_000).map((x) => x.vassal), ['b']);
});

test('rates: growth over the last RATE_WINDOW_MS of observations; zero when observations stop', () => {
  const acc = new VassalAccounting(T0);
  // 125 000 bytes/s in (1 Mbit/s), 100 packets/s in, 10 packets/s out, 3 drops/s.
  for (let s = 0; s <= 20; s++) {
    const p = { id: 1, ipPacketsIn: 100 * s, ipPacketsOut: 10 * s, ipBytesIn: 125_000 * s, ipBytesOut: 1000 * s, drops: { rate_limit: 3 * s } };
    acc.observe([p], () => 'a', T0 + s * 1000);
  }
  const rt = acc.rates('a', T0 + 20_000);
  assert.deepEqual(rt, { bitsPerSecIn: 1_000_000, bitsPerSecOut: 8000, packetsPerSecIn: 100, packetsPerSecOut: 10, dropsPerSec: 3 });
  const samples = (acc as unknown as { samples: Map<string, unknown[]> }).samples.get('a')!;
  assert.equal(samples.length, RATE_WINDOW_MS / 1000 + 1);      // the window holds 5 s of 1 s snapshots
  assert.deepEqual(acc.rates('a', T0 + 20_000 + RATE_WINDOW_MS + 1), { bitsPerSecIn: 0, bitsPerSecOut: 0, packetsPerSecIn: 0, packetsPerSecOut: 0, dropsPerSec: 0 });
  assert.equal(acc.rates('nobody').bitsPerSecIn, 0);
  // A burst: only the window's growth shows.
  acc.observe([{ id: 1, ipPacketsIn: 2000, ipPacketsOut: 200, ipBytesIn: 2_500_000, ipBytesOut: 20_000, drops: { rate_limit: 60 } }], () => 'a', T0 + 40_000);
  acc.observe([{ id: 1, ipPacketsIn: 2000, ipPacketsOut: 200, ipBytesIn: 2_600_000, ipBytesOut: 20_000, drops: { rate_limit: 60 } }], () => 'a', T0 + 42_000);
  assert.equal(acc.rates('a', T0 + 42_000).bitsPerSecIn, 400_000);
});

// The router model is driven by random steps; the emperor side observes
// snapshots (delivered possibly after the peer-downs that followed them) and
// takes intervals. Before each take every peer is named and a snapshot is
// observed, so what the intervals hold is exactly the truth so far.
type Step =
  | { k: 'connect'; vassal: number; named: boolean }
  | { k: 'traffic'; peer: number; n: number; drop: number }
  | { k: 'learn'; peer: number }
  | { k: 'snapshot' }      // the router takes a snapshot (sent, not delivered yet)
  | { k: 'deliver' }       // the pending snapshot arrives
  | { k: 'down'; peer: number; withName: boolean }
  | { k: 'take' }
  | { k: 'restart' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  fc.record({ k: fc.constant('connect' as const), vassal: fc.nat(3), named: fc.boolean() }),
  fc.record({ k: fc.constant('traffic' as const), peer: fc.nat(7), n: fc.nat(1000), drop: fc.nat(3) }),
  fc.record({ k: fc.constant('traffic' as const), peer: fc.nat(7), n: fc.nat(1000), drop: fc.nat(3) }),
  fc.record({ k: fc.constant('learn' as const), peer: fc.nat(7) }),
  fc.record({ k: fc.constant('snapshot' as const) }),
  fc.record({ k: fc.constant('deliver' as const) }),
  fc.record({ k: fc.constant('down' as const), peer: fc.nat(7), withName: fc.boolean() }),
  fc.record({ k: fc.constant('take' as const) }),
  fc.record({ k: fc.constant('restart' as const) }),
);

test('property: any sequence keeps sum(intervals) == totals == truth', () => {
  fc.assert(fc.property(fc.array(stepArb, { minLength: 10, maxLength: 120, size: 'max' }), (steps) => {
    const r = new FakeRouter();
    const acc = new VassalAccounting(T0);
    let now = T0;
    let pending: ReturnType<FakeRouter['snapshot']> | undefined;
    const taken: IntervalRecord[][] = [];
    const pick = (i: number) => { const ids = r.liveIds(); return ids.length ? ids[i % ids.length] : undefined; };
    const seenNamed = new Set<number>();                        // peers the accounting has seen with a name
    const lost = new Map<string, Usage>();                      // traffic of peers that went down unattributed
    const observe = (snap: ReturnType<FakeRouter['snapshot']>) => {
      for (const p of snap) if (r.nameOf(p.id) !== undefined) seenNamed.add(p.id);
      acc.observe(snap, r.nameOf, now);
    };
    const take = () => {
      r.nameAll();
      now += 1000;
      observe(r.snapshot());
      pending = undefined;                                      // older than what was just observed: never delivered
      taken.push(acc.takeInterval((now += 1)));
    };
    for (const s of steps) {
      now += 100;
      switch (s.k) {
        case 'connect': r.connect(`v${s.vassal}`, s.named); break;
        case 'traffic': { const id = pick(s.peer); if (id) r.traffic(id, traffic(s.n, s.drop ? [`reason${s.drop}`, s.drop] : undefined)); break; }
        case 'learn': { const id = pick(s.peer); if (id) r.learnName(id); break; }
        case 'snapshot': pending = r.snapshot(); break;
        case 'deliver': if (pending) observe(pending); pending = undefined; break;
        case 'down': {
          const id = pick(s.peer);
          if (!id) break;
          const trueName = r.peers.get(id)!.name;
          const d = r.down(id);
          // Without a name at peer-down, a peer never seen under a name is
          // unattributed: the truth minus it is what the vassal gets.
          if (!s.withName && !seenNamed.has(id)) addUsage(lost.get(trueName) ?? lost.set(trueName, zeroUsage()).get(trueName)!, usageOf(d.final));
          acc.peerDown(id, d.final, s.withName ? trueName : undefined, now);
          break;
        }
        case 'take': take(); break;
        case 'restart': {
          // A router restart loses the growth since the last snapshot; take
          // an interval first so the truth stays comparable.
          take();
          r.restart();
          acc.routerRestarted();
          seenNamed.clear();
          break;
        }
      }
    }
    take();
    for (const name of new Set([...r.truth.keys(), ...acc.names()])) {
      const fromIntervals = norm(intervalSum(taken, name));
      assert.deepEqual(fromIntervals, norm(acc.totals(name)), name);
      const expected = norm(r.truth.get(name));
      const l = lost.get(name);
      if (l) expected.bytesIn -= l.bytesIn, expected.bytesOut -= l.bytesOut, expected.packetsIn -= l.packetsIn, expected.packetsOut -= l.packetsOut;
      if (l) for (const [k, v] of Object.entries(l.drops)) { expected.drops[k] -= v; if (expected.drops[k] === 0) delete expected.drops[k]; }
      assert.deepEqual(norm(acc.totals(name)), expected, name);
    }
    assert.deepEqual(norm(acc.unattributed()), norm(sum([...lost.values()])));
    return true;
  }), { numRuns: 300 });
});
