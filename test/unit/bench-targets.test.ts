// bench-targets.test.ts: the throughput targets printed under `npm run bench`
// (bench/targets.ts), from made-up figures: met, not met, not measured.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { neighbourTargetLines, sectionTargetsText, targetLines } from '../../bench/targets';
import { neighbourText, pingStats, type NeighbourSection } from '../../bench/neighbour';
import { tcpBoundText, type KindResult, type ScaleSection } from '../../bench/run';
import { rulesRatios, rulesText, type RulesSection } from '../../bench/rules-cost';

function kind(flood: number, paced: number, tcp: number, p50: number): KindResult {
  const dir = {
    flood: { rate: null, sent: 1, txPps: flood, received: 1, rxPps: flood, loss: 0, aliveAfter: true },
    paced: { maxPps: paced, steps: [], lostVassal: 0 },
    tcp: { mbps: tcp },
    rtt: { sent: 100, received: 100, p50, p99: p50 * 2 },
  };
  return { status: 'ok', dirs: { v2g: dir, g2v: dir } } as unknown as KindResult;
}

function rules(kept: number): RulesSection {
  const pps = { '0 rules': [400_000, 380_000], last: [400_000 * kept, 300_000 * kept], none: [399_000, 360_000] };
  return { rules: 10000, seconds: 2, rounds: 2, pps, ...rulesRatios(pps) };
}

const scale = (ratio: number): ScaleSection => ({ status: 'ok', peers: 1000, seconds: 3, rounds: [], ratio, target: 0.9, lines: [] });

test('every target met: flood against uWSGI\'s best sustained rate (paced or flooded) and veth, TCP, added RTT, p99, scale', () => {
  // uWSGI: flood 50k, paced 70k -> best sustained 70k; moat 250k = 3.57x, 0.83 of veth.
  const lines = targetLines({ veth: kind(300_000, 300_000, 20_000, 0.05), uwsgi: kind(50_000, 70_000, 800, 0.25), moat: kind(250_000, 200_000, 15_000, 0.14) }, scale(0.95), undefined, undefined, rules(0.97));
  assert.equal(lines.length, 10);
  assert.ok(lines.every((l) => !/NOT met|not measured/.test(l)), lines.join('\n'));
  assert.match(lines[0], /3\.57x uWSGI's best sustained 70,000 \(>= 3\): met; 0\.83 of veth \(issue 19: >= 0\.8\): met/);
  assert.match(lines[2], /moat adds 0\.090 ms over veth, uWSGI 0\.200 ms \(issue 19: moat at most half\): met/);
  assert.match(lines[3], /ping p99 vassal->gateway: moat 0\.280 ms, uWSGI 0\.500.*: met/);
});

test('TCP beside a bare tun relay: the relay\'s share of veth and moat\'s share of the relay, each direction', () => {
  const r = { veth: kind(300_000, 300_000, 20_000, 0.05), uwsgi: kind(50_000, 70_000, 800, 0.25), moat: kind(250_000, 200_000, 13_000, 0.14) };
  const lines = targetLines(r, scale(0.95), undefined, undefined, rules(0.97), { v2g: { mbps: 12_000 }, g2v: { mbps: 14_000, runs: [14_000, 11_000] } });
  assert.match(lines[1], /0\.65 of veth \(issue 19: >= 0\.7\): NOT met \(a bare tun relay in the same turns: 0\.60 of veth; moat 1\.08 of the relay\)$/);
  assert.match(lines[5], /0\.65 of veth .*: NOT met \(a bare tun relay in the same turns: 0\.70 of veth; moat 0\.93 of the relay\)$/);
  assert.doesNotMatch(targetLines(r, scale(0.95))[1], /relay/, 'no relay measured: nothing said of it');
  const text = tcpBoundText({ v2g: { mbps: 12_000, runs: [11_500, 12_000, NaN] } }, r.moat);
  assert.match(text, /vassal->gateway 11,500, 12,000, failed; moat 1\.08 of it$/);
  assert.doesNotMatch(text, /gateway->vassal/, 'a direction without a relay stream is left out');
});

test('each target that is missed says NOT met', () => {
  const lines = targetLines({ veth: kind(300_000, 300_000, 20_000, 0.05), uwsgi: kind(80_000, 70_000, 800, 0.2), moat: kind(190_000, 200_000, 3_000, 0.25) }, scale(0.69), undefined, undefined, rules(0.9));
  assert.match(lines[0], /\(>= 3\): NOT met; 0\.63 of veth \(issue 19: >= 0\.8\): NOT met/);
  assert.match(lines[1], /3\.75x uWSGI \(>= 5\): NOT met; 0\.15 of veth \(issue 19: >= 0\.7\): NOT met/);
  assert.match(lines[2], /\(issue 19: moat at most half\): NOT met/);
  assert.match(lines[3], /moat 0\.500 ms, uWSGI 0\.400.*\(issue 19: moat at most uWSGI's\): NOT met/);
  assert.match(lines[8], /0\.69 \(>= 0\.90\): NOT met/);
  assert.equal(lines[9], '10,000 rules: 90.0% of the 0-rule rate (issue 19: >= 95%): NOT met');
});

test('the scale target for each kind of peer: one hop (moat\'s vassals) and framed', () => {
  const lines = targetLines({}, { ...scale(0.87), ratioOneHop: 0.96 });
  assert.deepEqual(lines.slice(6, 8), [
    '1000 peers / 1 peer, one hop (moat\'s vassals): 0.96 (>= 0.90): met',
    '1000 peers / 1 peer, framed (uWSGI\'s vassals, framed devices): 0.87 (>= 0.90): NOT met',
  ]);
});

test('the baseline without moat is printed under the scale targets, as a figure, not a target', () => {
  const lines = targetLines({}, { ...scale(0.87), ratioOneHop: 0.96, ratioKernel: 0.81 });
  assert.equal(lines[8], "  beside it, without moat (the kernel's path to 1000 UDP sockets, same generator): 0.81");
  assert.ok(!/met/.test(lines[8]));
});

test('a kind that was not measured is said so, not counted as met', () => {
  const lines = targetLines({ moat: kind(220_000, 200_000, 9_000, 0.2) });
  assert.deepEqual(lines, [
    '64 B flood vassal->gateway: not measured for all three', 'TCP vassal->gateway: not measured for all three', 'ping vassal->gateway: not measured for all three',
    '64 B flood gateway->vassal: not measured for all three', 'TCP gateway->vassal: not measured for all three', 'ping gateway->vassal: not measured for all three',
    'scale: not measured', 'rules: not measured',
  ]);
});

test('with a limits section, its targets follow the throughput targets', () => {
  const rates = [{ limit: '1,000 pps', unit: 'pps' as const, value: 1000, traffic: 'UDP' as const, dir: 'g2v' as const, received: 1004, ratio: 1.004, within: true }];
  const limits = { quick: true, rateSeconds: 2, rates, scale: { status: 'ok' as const, peers: 1000, seconds: 1, bursts: [], ratio: 0.97, pairRatio: 0.96, target: 0.95 } };
  const lines = targetLines({ moat: kind(220_000, 200_000, 9_000, 0.2) }, scale(0.75), limits);
  assert.deepEqual(lines.slice(8), ['limits: 1 of 1 received rates within 10% of the limit: met', 'limits at scale: 1000 peers each limited / unlimited pps, best of each: 0.970 (>= 0.95): met (median of the rounds\' own ratios 0.960)']);
  assert.equal(targetLines({ moat: kind(220_000, 200_000, 9_000, 0.2) }, scale(0.75)).length, 8, 'no limits section: no limits lines');
});

function neighbour(moatP99: number, uwsgiP99: number): NeighbourSection {
  const kind = (p99: number) => ({
    status: 'ok' as const, restarts: 0,
    quiet: { sent: 100, received: 100, p50: 0.2, p90: 0.3, p99: 0.5, max: 0.6 },
    loaded: { sent: 100, received: 100, p50: 0.5, p90: 1, p99, max: p99 + 1 },
    floods: [{ from: '192.168.0.2', txPps: 600_000, rxPps: 100_000, loss: 0.8, failed: 0 }, { from: '192.168.0.3', txPps: 600_000, rxPps: 90_000, loss: 0.85, failed: 0 }],
  });
  return { rounds: 4, block: 100, rate: null, size: 64, direction: 'v2g' as const, cgroups: true, kinds: { uwsgi: kind(uwsgiP99), moat: kind(moatP99) }, loadavgBefore: [1, 1, 1], loadavgAfter: [2, 2, 2], seconds: 34 };
}

test('interactive neighbour: moat\'s p99 under two floods against 2 ms and against uWSGI\'s', () => {
  assert.deepEqual(neighbourTargetLines(neighbour(1.5, 3)), [
    'interactive neighbour\'s ping p99 under two floods: moat 1.500 ms (<= 2 ms): met; uWSGI 3.000 ms (moat at most): met (p50 moat 0.500 ms, uWSGI 0.500 ms)']);
  assert.match(neighbourTargetLines(neighbour(2.5, 2))[0], /moat 2\.500 ms \(<= 2 ms\): NOT met; uWSGI 2\.000 ms \(moat at most\): NOT met/);
  const noUwsgi = neighbour(1, 1);
  delete noUwsgi.kinds.uwsgi;
  assert.match(neighbourTargetLines(noUwsgi)[0], /: met; uWSGI not measured/);
  const failed = neighbour(1, 1);
  failed.kinds.moat = { status: 'error', reason: 'setup: boom', floods: [], restarts: 0 };
  assert.deepEqual(neighbourTargetLines(failed), ['interactive neighbour: moat error: setup: boom']);
  assert.equal(targetLines({}, undefined, undefined, neighbour(1, 1)).length, 9, 'a full run prints it after the scale and rules lines');
  assert.match(sectionTargetsText(undefined, neighbour(1, 1)), /^targets \(one run\):\n  interactive neighbour/);
  const g2v = { ...neighbour(1, 1), direction: 'g2v' as const };
  assert.match(neighbourTargetLines(g2v)[0], /^interactive neighbour's ping p99 under two floods from the gateway to other vassals: moat 1\.000 ms/);
  assert.match(neighbourText(g2v), /pings the gateway every 10 ms while the gateway floods 192\.168\.0\.2 and \.3 with 64 B UDP/);
});

test('interactive neighbour: lost pings count as infinitely late; the table prints them as lost', () => {
  const p = pingStats(100, Array.from({ length: 98 }, (_, i) => 0.1 + i / 1000));
  assert.equal(p.received, 98);
  assert.equal(p.p50.toFixed(3), '0.149');
  assert.equal(p.p99, Infinity);
  assert.equal(p.max, Infinity);
  const s = neighbour(1, 1);
  s.kinds.moat!.loaded = p;
  const t = neighbourText(s);
  assert.match(t, /ping p99 ms, 2 floods +1\.000 +lost/);
  assert.match(t, /pings answered, 2 floods +100 +98 +0\.98/);
  assert.match(t, /flood 1 rx pps +100,000 +100,000 +1\.00/);
});

test('rules section: the worse of last and none over the 0-rule rate, best of each; the rounds\' own ratios', () => {
  const r = rulesRatios({ '0 rules': [400_000, 500_000], last: [390_000, 480_000], none: [500_000, 470_000] });
  assert.equal(r.ratio, 480_000 / 500_000);
  assert.deepEqual(r.roundRatios, [390_000 / 400_000, 470_000 / 500_000]);
  assert.match(sectionTargetsText(undefined, undefined, rules(0.99)), /^targets \(one run\):\n  10,000 rules: 9\d\.\d% of the 0-rule rate \(issue 19: >= 95%\): met$/);
});

test('rules section: the router\'s CPU per packet, least of rounds per variant, and what the rules add (the worse of last and none)', () => {
  const pps = { '0 rules': [400_000, 500_000, 450_000], last: [390_000, 480_000, 440_000], none: [500_000, 470_000, 460_000] };
  const routerUs = { '0 rules': [1.5, 1.2, 9.0], last: [1.3, 1.26, NaN], none: [1.3, 1.1, 1.02] };
  const text = rulesText({ rules: 10000, seconds: 2, rounds: 3, pps, ...rulesRatios(pps), routerUs });
  assert.match(text, /router CPU per received packet \(all its threads, least of rounds\): 0 rules 1\.200 µs, last 1\.260 µs, none 1\.020 µs; the rules add 5\.0% \(worse of last\/none\)$/);
  assert.doesNotMatch(rulesText({ rules: 10000, seconds: 2, rounds: 3, pps, ...rulesRatios(pps) }), /router CPU/, 'older results without the figures print none');
});
