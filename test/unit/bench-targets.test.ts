// bench-targets.test.ts: the throughput targets printed under `npm run bench`
// (bench/targets.ts), from made-up figures: met, not met, not measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { targetLines } from '../../bench/targets';
import type { KindResult, ScaleSection } from '../../bench/run';

function kind(flood: number, paced: number, tcp: number, p50: number): KindResult {
  const dir = {
    flood: { rate: null, sent: 1, txPps: flood, received: 1, rxPps: flood, loss: 0, aliveAfter: true },
    paced: { maxPps: paced, steps: [], lostVassal: 0 },
    tcp: { mbps: tcp },
    rtt: { sent: 100, received: 100, p50, p99: p50 * 2 },
  };
  return { status: 'ok', dirs: { v2g: dir, g2v: dir } } as unknown as KindResult;
}

const scale = (ratio: number): ScaleSection => ({ status: 'ok', peers: 1000, seconds: 3, rounds: [], ratio, target: 0.7, lines: [] });

test('every target met: flood against uWSGI\'s best sustained rate (paced or flooded), TCP, added RTT, scale', () => {
  // uWSGI: flood 50k, paced 70k -> best sustained 70k; moat 220k = 3.14x.
  const lines = targetLines({ veth: kind(300_000, 300_000, 20_000, 0.05), uwsgi: kind(50_000, 70_000, 800, 0.25), moat: kind(220_000, 200_000, 9_000, 0.2) }, scale(0.75));
  assert.equal(lines.length, 7);
  assert.ok(lines.every((l) => !/NOT met|not measured/.test(l)), lines.join('\n'));
  assert.match(lines[0], /3\.14x uWSGI's best sustained 70,000/);
  assert.match(lines[2], /moat adds 0\.150 ms over veth, uWSGI 0\.200 ms/);
});

test('each target that is missed says NOT met', () => {
  const lines = targetLines({ veth: kind(300_000, 300_000, 20_000, 0.05), uwsgi: kind(80_000, 70_000, 800, 0.2), moat: kind(190_000, 200_000, 3_000, 0.2) }, scale(0.69));
  assert.match(lines[0], /\(>= 3\): NOT met; 0\.63 of veth \(>= 0\.65\): NOT met/);
  assert.match(lines[1], /3\.75x uWSGI \(>= 5\): NOT met; 0\.15 of veth \(>= 0\.40\): NOT met/);
  assert.match(lines[2], /\(moat below\): NOT met/);
  assert.match(lines[6], /0\.69 \(>= 0\.70\): NOT met/);
});

test('a kind that was not measured is said so, not counted as met', () => {
  const lines = targetLines({ moat: kind(220_000, 200_000, 9_000, 0.2) });
  assert.deepEqual(lines, [
    '64 B flood vassal->gateway: not measured for all three', 'TCP vassal->gateway: not measured for all three', 'ping vassal->gateway: not measured for all three',
    '64 B flood gateway->vassal: not measured for all three', 'TCP gateway->vassal: not measured for all three', 'ping gateway->vassal: not measured for all three',
    'scale: not measured',
  ]);
});

test('with a limits section, its targets follow the throughput targets', () => {
  const rates = [{ limit: '1,000 pps', unit: 'pps' as const, value: 1000, traffic: 'UDP' as const, dir: 'g2v' as const, received: 1004, ratio: 1.004, within: true }];
  const limits = { quick: true, rateSeconds: 2, rates, scale: { status: 'ok' as const, peers: 1000, seconds: 1, bursts: [], ratio: 0.97, pairRatio: 0.96, target: 0.95 } };
  const lines = targetLines({ moat: kind(220_000, 200_000, 9_000, 0.2) }, scale(0.75), limits);
  assert.deepEqual(lines.slice(7), ['limits: 1 of 1 received rates within 10% of the limit: met', 'limits at scale: 1000 peers each limited / unlimited pps, best of each: 0.970 (>= 0.95): met (median of the rounds\' own ratios 0.960)']);
  assert.equal(targetLines({ moat: kind(220_000, 200_000, 9_000, 0.2) }, scale(0.75)).length, 7, 'no limits section: no limits lines');
});
