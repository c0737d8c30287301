// bench-args.test.ts: `npm run bench` option parsing (bench/run.ts), the
// scale section's summary (bench/scale.ts) and the limits section's options,
// table and targets (bench/limits.ts), without running anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseArgs, scaleText, wantConntrack, wantLimits, wantNeighbour, wantScale, bestTcp, table } from '../../bench/run';
import { conntrackText, parseConntrackArgs } from '../../bench/conntrack';
import { checkScaleOptions, cpuSplit, Round, summarize } from '../../bench/scale';
import { judge, LIMIT_CASES, Burst, LimitScale, LIMITS_SCALE_TARGET, parseLimitsArgs, peerLimitArgs, RateRow, ratesTable, ScaleConfig, scaleLines, scaleRatios } from '../../bench/limits';
import { limitsTargetLines } from '../../bench/targets';
import { median } from '../../bench/lib';
import { parsePeerLimits } from '../../src/config/traffic-limits';
import type { Option } from '../../src/config/types';

test('defaults: all kinds, scale with 1000 peers for 3 s (1 s quick)', () => {
  const o = parseArgs([]);
  assert.deepEqual(o.only, ['veth', 'uwsgi', 'moat']);
  assert.equal(o.scalePeers, 1000);
  assert.equal(o.scaleSeconds, 3);
  assert.equal(wantScale(o), true);
  assert.equal(parseArgs(['--quick']).scaleSeconds, 1);
  assert.equal(o.scaleRounds, 5);
  assert.equal(parseArgs(['--quick']).scaleRounds, 1);
  assert.equal(parseArgs(['--quick', '--scale-rounds', '2']).scaleRounds, 2);
  for (const bad of [['--scale-rounds', '0'], ['--scale-rounds', '6'], ['--scale-rounds', '1.5']]) assert.throws(() => parseArgs(bad), /--scale-rounds/);
});

test('--busy-poll: µs for both moat ends, 0..1000, absent by default', () => {
  assert.equal(parseArgs([]).busyPollUs, undefined);
  assert.equal(parseArgs(['--busy-poll', '0']).busyPollUs, 0);
  assert.equal(parseArgs(['--busy-poll', '250']).busyPollUs, 250);
  for (const bad of [['--busy-poll', '1001'], ['--busy-poll', '-1'], ['--busy-poll', 'x'], ['--busy-poll']]) {
    assert.throws(() => parseArgs(bad), /--busy-poll/, bad.join(' '));
  }
});

test('--scale-peers and --scale-seconds, in any order with --quick', () => {
  const o = parseArgs(['--scale-seconds', '2.5', '--quick', '--scale-peers', '200']);
  assert.equal(o.quick, true);
  assert.equal(o.scalePeers, 200);
  assert.equal(o.scaleSeconds, 2.5);
  assert.equal(parseArgs(['--scale-peers', '1']).scalePeers, 1);
  assert.equal(parseArgs(['--scale-peers', '20000', '--scale-seconds', '30']).scaleSeconds, 30);
});

test('--scale-* bounds like scale.ts', () => {
  for (const bad of [['--scale-peers', '0'], ['--scale-peers', '20001'], ['--scale-peers', '1.5'], ['--scale-peers', 'x'], ['--scale-peers']]) {
    assert.throws(() => parseArgs(bad), /--scale-peers/, bad.join(' '));
  }
  for (const bad of [['--scale-seconds', '0'], ['--scale-seconds', '-1'], ['--scale-seconds', '31'], ['--scale-seconds', 'x'], ['--scale-seconds']]) {
    assert.throws(() => parseArgs(bad), /--scale-seconds/, bad.join(' '));
  }
  assert.throws(() => checkScaleOptions({ peers: 10, seconds: 1, rounds: 6 }), /rounds/);
  assert.doesNotThrow(() => checkScaleOptions({ peers: 10, seconds: 1, rounds: 5 }));
});

test('no scale section with --skip-scale or without moat', () => {
  const skipped = parseArgs(['--skip-scale']);
  assert.ok(skipped.skip.has('scale'));
  assert.equal(wantScale(skipped), false);
  assert.equal(wantScale(parseArgs(['--only', 'veth,uwsgi'])), false);
  assert.equal(wantScale(parseArgs(['--only', 'moat', '--skip-flood', '--skip-paced', '--skip-tcp', '--skip-rtt'])), true);
});

test('the other options still parse and still reject', () => {
  const o = parseArgs(['--only', 'moat', '--skip-tcp', '--mtu', '9000', '--offload', 'off']);
  assert.deepEqual(o.only, ['moat']);
  assert.ok(o.skip.has('tcp'));
  assert.equal(o.mtu, 9000);
  assert.equal(o.offload, false);
  assert.throws(() => parseArgs(['--only', 'nope']), /unknown scenario/);
  assert.throws(() => parseArgs(['--skip-everything']), /unknown option/);
  assert.throws(() => parseArgs(['--mtu', '100']), /--mtu/);
});

const round = (peers: number, pps: number, rssBeforeKiB: number, rssIdleKiB: number): Round =>
  ({ peers, received: pps * 3, pps, peersHit: peers, sent: pps * 4, offeredPps: pps * 1.3, rssBeforeKiB, rssIdleKiB });

test('summary: ratio of best N-peer to best 1-peer pps per kind of peer, RSS per idle peer, lines', () => {
  const rounds = [round(1, 400000, 50000, 50000), round(1000, 300000, 50000, 52000), round(1, 500000, 52000, 52000), round(1000, 350000, 52000, 53000)];
  const s = summarize({ peers: 1000, seconds: 3, rounds: 2 }, rounds);
  assert.equal(s.ratio, 350000 / 500000);
  assert.ok(Number.isNaN(s.ratioOneHop), 'no one-hop rounds: no ratio');
  assert.deepEqual(s.rssPerIdlePeerKiB, [2, 1]);
  assert.equal(s.lines[0], 'peers  kind     received pps  offered pps  peers reached  CPU µs per received packet: router  receivers  rest');
  assert.equal(s.lines[2], ' 1000  framed        300,000      390,000           1000                                 n/a        n/a   n/a');
  const withCpu = summarize({ peers: 1000, seconds: 3, rounds: 1 }, [{ ...rounds[0], cpu: { router: 2.456, receivers: 0.5, rest: 2.1 } }]);
  assert.match(withCpu.lines[1], /  2\.46       0\.50  2\.10$/);
  assert.equal(s.lines[5], '1000 peers / 1 peer (best of each): framed 0.70, one hop n/a (target >= 0.90)');
  assert.match(s.lines[6], /^router RSS per idle framed peer: 2\.0, 1\.0 KiB/);
  const one = summarize({ peers: 1000, seconds: 3, rounds: 1 }, rounds.slice(0, 2));
  assert.equal(one.lines[3], '1000 peers / 1 peer: framed 0.75, one hop n/a (target >= 0.90)');
  // One-hop rounds count against their own 1-peer round, not the framed one's.
  const both = summarize({ peers: 1000, seconds: 3, rounds: 1 }, [...rounds.slice(0, 2),
    { ...round(1, 600000, 53000, 53000), kind: 'one hop' }, { ...round(1000, 570000, 53000, 54000), kind: 'one hop' }]);
  assert.equal(both.ratio, 0.75);
  assert.equal(both.ratioOneHop, 0.95);
  assert.equal(both.lines[4], ' 1000  one hop       570,000      741,000           1000                                 n/a        n/a   n/a');
  assert.deepEqual(both.rssPerIdlePeerKiB, [2]);
  // The baseline without moat: its own ratio, printed beside moat's; no router column.
  const kernel = summarize({ peers: 1000, seconds: 3, rounds: 1 }, [...rounds.slice(0, 2),
    { ...round(1, 800000, NaN, NaN), kind: 'kernel', cpu: { router: 0, receivers: 0.4, rest: 1.5 } }, { ...round(1000, 600000, NaN, NaN), kind: 'kernel' }]);
  assert.equal(kernel.ratio, 0.75);
  assert.equal(kernel.ratioKernel, 0.75);
  assert.match(kernel.lines[3], /^ {4}1  kernel        800,000  .* {34}-       0\.40  1\.50$/);
  assert.equal(kernel.lines[5], "1000 peers / 1 peer: framed 0.75, one hop n/a (target >= 0.90); without moat (the kernel's path to 1000 UDP sockets, the same generator) 0.75");
  assert.deepEqual(kernel.rssPerIdlePeerKiB, [2]);
});

test('CPU split: µs per received packet of router, receivers and the rest of the busy time', () => {
  const a = { router: 1e9, receivers: 5e8, busy: 1e10 };
  const b = { router: 1e9 + 2.5e9, receivers: 5e8 + 0.5e9, busy: 1e10 + 6e9 };
  assert.deepEqual(cpuSplit(a, b, 1e6), { router: 2.5, receivers: 0.5, rest: 3 });
  assert.equal(cpuSplit(a, { ...b, router: NaN }, 1e6), undefined);   // the router was gone
  assert.equal(cpuSplit(a, b, 0), undefined);
});

test('scale section text: heading, lines, status when not ok', () => {
  const base = { peers: 1000, seconds: 1, rounds: [], target: 0.7, lines: ['a', 'b'] };
  const ok = scaleText({ ...base, status: 'ok' });
  assert.equal(ok, "scale (moat router, 64 B UDP flood spread round-robin over the peers' addresses, 1 s per round):\na\nb");
  const err = scaleText({ ...base, status: 'error', reason: 'peers exited: boom\nmore' });
  assert.match(err, /\nscale: error: peers exited: boom$/);
});

// ---- the limits section (bench/limits.ts) ----

test('limits section: on by default with moat, --skip-limits, --limits-only, not with --only veth', () => {
  const o = parseArgs([]);
  assert.equal(o.limitsOnly, false);
  assert.equal(wantLimits(o), true);
  assert.equal(wantLimits(parseArgs(['--skip-limits'])), false);
  assert.equal(wantLimits(parseArgs(['--only', 'veth,uwsgi'])), false);
  const only = parseArgs(['--limits-only', '--quick']);
  assert.equal(only.limitsOnly, true);
  assert.equal(only.quick, true);
  assert.equal(wantLimits(only), true);
  assert.equal(wantScale(only), false, '--limits-only runs no scale section');
  assert.throws(() => parseArgs(['--limits-only', '--skip-limits']), /nothing left/);
  assert.throws(() => parseArgs(['--limits']), /unknown option/);
});

test('limits.ts alone: defaults (quick and full), options, bounds', () => {
  assert.deepEqual(parseLimitsArgs([]), { quick: false, rates: true, scale: true, peers: 1000, rateSeconds: 4, scaleSeconds: 2, rounds: 8 });
  assert.deepEqual(parseLimitsArgs(['--quick']), { quick: true, rates: true, scale: true, peers: 1000, rateSeconds: 2, scaleSeconds: 1, rounds: 5 });
  const o = parseLimitsArgs(['--skip-rates', '--peers', '200', '--seconds', '2.5', '--rounds', '5', '--quick']);
  assert.equal(o.rates, false);
  assert.equal(o.scale, true);
  assert.equal(o.peers, 200);
  assert.equal(o.scaleSeconds, 2.5);
  assert.equal(o.rounds, 5);
  assert.equal(parseLimitsArgs(['--skip-scale']).scale, false);
  assert.throws(() => parseLimitsArgs(['--skip-rates', '--skip-scale']), /nothing left/);
  for (const bad of [['--peers', '0'], ['--peers', '20001'], ['--peers', '1.5'], ['--peers']]) assert.throws(() => parseLimitsArgs(bad), /--peers/, bad.join(' '));
  for (const bad of [['--seconds', '0'], ['--seconds', '11'], ['--seconds']]) assert.throws(() => parseLimitsArgs(bad), /--seconds/, bad.join(' '));
  for (const bad of [['--rounds', '0'], ['--rounds', '21'], ['--rounds', 'x']]) assert.throws(() => parseLimitsArgs(bad), /--rounds/, bad.join(' '));
  assert.equal(parseLimitsArgs(['--rounds', '20']).rounds, 20);
  assert.throws(() => parseLimitsArgs(['--skip-limits']), /unknown option/);
});

test('limits: the router options name the address both ways; five limits, tc units', () => {
  assert.deepEqual(peerLimitArgs('192.168.0.2', 'rate 10mbit'), [
    '--tuntap-router-peer-limit', '192.168.0.2 in rate 10mbit', '--tuntap-router-peer-limit', '192.168.0.2 out rate 10mbit']);
  assert.deepEqual(LIMIT_CASES.map((c) => [c.spec, c.value]), [['rate 1mbit', 1e6], ['rate 10mbit', 10e6], ['rate 100mbit', 100e6], ['pps 1000', 1000], ['pps 10000', 10000]]);
  // Every case's words are what the router's config parser takes, and mean the same value.
  for (const c of LIMIT_CASES) {
    const [l] = parsePeerLimits([{ key: 'tuntap-router-peer-limit', value: `192.168.0.2 in ${c.spec}`, source: { file: 'x', line: 1 } } as Option]);
    assert.equal(c.unit === 'bit/s' ? l.in?.bitsPerSec : l.in?.packetsPerSec, c.value, c.spec);
  }
});

test('limits: a received rate is within 10% of its limit, either side', () => {
  const row = (received: number): RateRow => ({ limit: '10 Mbit/s', unit: 'bit/s', value: 10e6, traffic: 'TCP', dir: 'g2v', received });
  assert.equal(judge(row(9.0e6)).within, true);
  assert.equal(judge(row(11.0e6)).within, true);
  assert.equal(judge(row(8.99e6)).within, false);
  assert.equal(judge(row(11.01e6)).within, false);
  assert.equal(judge(row(10.5e6)).ratio, 1.05);
  assert.equal(judge({ ...row(0), received: undefined, error: 'x' }).within, undefined);
});

// A 1 s flood: delivered = pps; routerCpuMs: cpuUs per packet.
const burst = (config: ScaleConfig, pps: number, cpuUs = NaN): Burst =>
  ({ config, delivered: pps, pps, offeredPps: pps * 2, peersHit: 1000, routerCpuMs: (cpuUs * pps) / 1000 });

test('limits at scale: best-of ratio, median of the rounds\' ratios, CPU per packet, lines, target met / NOT met', () => {
  const bursts = [burst('unlimited', 300000, 2.0), burst('limited', 290000, 2.1), burst('unlimited', 320000, 2.2), burst('limited', 256000, 2.3),
    burst('unlimited', 200000, 2.4), burst('limited', 190000, 2.5)];
  const r = scaleRatios(bursts);
  assert.equal(r.ratio, 290000 / 320000);
  assert.equal(r.pairRatio, 0.95, 'rounds: 0.967, 0.8, 0.95');
  assert.ok(Math.abs(r.cpuPerPacketUs!.unlimited - 2.2) < 1e-9 && Math.abs(r.cpuPerPacketUs!.limited - 2.3) < 1e-9);
  assert.ok(Math.abs(r.cpuRatio! - 2.2 / 2.3) < 1e-9);
  assert.ok(Number.isNaN(scaleRatios([burst('unlimited', 1), burst('limited', 1)]).cpuRatio), 'no CPU figures: no CPU ratio');
  assert.ok(Number.isNaN(scaleRatios([burst('unlimited', 1)]).ratio), 'no limited flood: no ratio');
  const s: LimitScale = { status: 'ok', peers: 1000, seconds: 1, bursts: bursts.slice(0, 4), ...scaleRatios(bursts.slice(0, 4)), rateLimitDrops: 0, target: LIMITS_SCALE_TARGET };
  const lines = scaleLines(s);
  assert.equal(lines[1], 'round  config     delivered pps  offered pps  peers reached  router CPU µs/pkt');
  assert.equal(lines[2], '    1  unlimited        300,000      600,000           1000              2.000');
  assert.equal(lines[5], '    2  limited          256,000      512,000           1000              2.300');
  assert.equal(lines[6], 'limited / unlimited pps: 0.906 best of each (target >= 0.95); 0.883 median of the rounds\' own ratios');
  assert.equal(lines[7], 'router CPU per delivered packet (median): unlimited 2.100 µs, limited 2.200 µs; unlimited / limited 0.955');
  assert.equal(lines[8], 'limited router\'s rate_limit drops: 0 (0: the limits cost bookkeeping only)');
  const t = limitsTargetLines({ quick: false, rateSeconds: 4, scale: s });
  assert.deepEqual(t, ['limits rates: not measured',
    'limits at scale: 1000 peers each limited / unlimited pps, best of each: 0.906 (>= 0.95): NOT met (median of the rounds\' own ratios 0.883)']);
  const met = limitsTargetLines({ quick: false, rateSeconds: 4, scale: { ...s, ratio: 0.96 } });
  assert.match(met[1], /best of each: 0\.960 \(>= 0\.95\): met /);
  const failed = limitsTargetLines({ quick: false, rateSeconds: 4, scale: { ...s, ratio: undefined, status: 'error', reason: 'peers exited' } });
  assert.equal(failed[1], 'limits at scale: not measured');
  assert.match(scaleLines({ ...s, status: 'error', reason: 'peers exited: boom\nmore' }).at(-1)!, /^limits at scale: error: peers exited: boom$/);
});

test('limits rates: the table and the target name what is off', () => {
  const rows: RateRow[] = [
    judge({ limit: '1 Mbit/s', unit: 'bit/s', value: 1e6, traffic: 'UDP', dir: 'g2v', bytes: 1000, offered: 2e6, received: 1.03e6, rateLimitDrops: 236 }),
    judge({ limit: '10 Mbit/s', unit: 'bit/s', value: 10e6, traffic: 'TCP', dir: 'v2g', received: 8.5e6, rateLimitDrops: 19 }),
    judge({ limit: '1,000 pps', unit: 'pps', value: 1000, traffic: 'UDP', dir: 'v2g', bytes: 64, offered: 2000, received: 1005 }),
  ];
  const lines = ratesTable(rows, 4);
  assert.match(lines[1], /^limit\s+kind\s+direction\s+offered\s+received\s+recv\/limit\s+within ±10%\s+rate_limit drops$/);
  assert.match(lines[3], /^1 Mbit\/s\s+UDP 1000 B\s+in \(gateway->vassal\)\s+2\.000 Mbit\/s\s+1\.030 Mbit\/s\s+1\.030\s+yes\s+236$/);
  assert.match(lines[4], /^10 Mbit\/s\s+TCP\s+out \(vassal->gateway\)\s+iperf3\s+8\.500 Mbit\/s\s+0\.850\s+NO\s+19$/);
  assert.match(lines[5], /^1,000 pps\s+UDP 64 B\s+out \(vassal->gateway\)\s+2,000 pps\s+1,005 pps\s+1\.005\s+yes\s+-$/);
  const t = limitsTargetLines({ quick: false, rateSeconds: 4, rates: rows });
  assert.equal(t[0], 'limits: 2 of 3 received rates within 10% of the limit: NOT met (off: 10 Mbit/s TCP out 0.85)');
  assert.equal(t[1], 'limits at scale: not measured');
  assert.match(limitsTargetLines({ quick: false, rateSeconds: 4, rates: rows.filter((r) => r.within) })[0], /2 of 2 .*: met$/);
});

test('conntrack section: on with moat, --skip-conntrack leaves it out, --conntrack-only runs it alone', () => {
  assert.equal(wantConntrack(parseArgs([])), true);
  assert.equal(wantConntrack(parseArgs(['--only', 'veth,uwsgi'])), false);
  assert.equal(wantConntrack(parseArgs(['--skip-conntrack'])), false);
  const only = parseArgs(['--conntrack-only']);
  assert.equal(only.conntrackOnly, true);
  assert.equal(wantConntrack(only), true);
  assert.equal(wantScale(only), false);
  assert.equal(wantLimits(only), false);
  assert.equal(wantConntrack(parseArgs(['--limits-only'])), false);
  assert.throws(() => parseArgs(['--conntrack-only', '--skip-conntrack']), /nothing left/);
  assert.throws(() => parseArgs(['--conntrack-only', '--limits-only']), /pick one/);
});

test('conntrack bench options: 100,000 flows from 4 peers, 5 rounds of 2 s (2 of 1 s quick), bounds named', () => {
  assert.deepEqual(parseConntrackArgs([]), { quick: false, flows: 100000, peers: 4, seconds: 2, rounds: 5 });
  assert.deepEqual(parseConntrackArgs(['--quick']), { quick: true, flows: 100000, peers: 4, seconds: 1, rounds: 2 });
  assert.deepEqual(parseConntrackArgs(['--flows', '5000', '--peers', '1', '--seconds', '0.5', '--rounds', '3']),
    { quick: false, flows: 5000, peers: 1, seconds: 0.5, rounds: 3 });
  for (const [bad, re] of [[['--flows', '0'], /--flows/], [['--flows', '1.5'], /--flows/], [['--peers', '65'], /--peers/],
    [['--seconds', '0'], /--seconds/], [['--rounds', '11'], /--rounds/], [['--rounds'], /--rounds/], [['--x'], /unknown option/],
    [['--flows', '100000', '--peers', '1'], /share of the table/]] as Array<[string[], RegExp]>) {
    assert.throws(() => parseConntrackArgs(bad), re, bad.join(' '));
  }
});

test('conntrack text: the ratio against the 0.9 bar and the memory per entry', () => {
  const s = {
    options: parseConntrackArgs([]), pps: { stateful: [95, 90], stateless: [100, 100] }, best: { stateful: 95, stateless: 100 }, ratio: 0.95, roundRatios: [0.95, 0.9], medianRoundRatio: 0.9,
    nsPerPacket: { stateful: [700, 720], stateless: [650, 660] }, medianNsPerPacket: { stateful: 700, stateless: 650 },
    entries: 100000, slots: 524288, slotBytes: 32, rssGrowthBytes: 16 * 1048576, bytesPerEntry: 167.77, refused: 0,
  };
  const t = conntrackText(s);
  assert.match(t, /stateless 650 ns, stateful 700 ns \(rounds 650, 660 and 700, 720\): stateless \/ stateful 0\.929/);
  assert.match(t, /ratio 0\.950 \(best \/ best; the rounds' own ratios 0\.95, 0\.90, median 0\.90\); the bar is 0\.9: met/);
  assert.match(t, /168 bytes per entry/);
  assert.match(conntrackText({ ...s, ratio: 0.85 }), /NOT met/);
});

test('neighbour section: on with moat, --skip-neighbour leaves it out, --neighbour-only runs it alone, --neighbour-rate bounded', () => {
  assert.equal(wantNeighbour(parseArgs([])), true);
  assert.equal(wantNeighbour(parseArgs(['--only', 'veth,uwsgi'])), false);
  assert.equal(wantNeighbour(parseArgs(['--skip-neighbour'])), false);
  assert.equal(wantNeighbour(parseArgs(['--limits-only'])), false);
  const only = parseArgs(['--neighbour-only']);
  assert.equal(only.neighbourOnly, true);
  assert.equal(wantNeighbour(only), true);
  assert.equal(wantScale(only), false);
  assert.equal(wantLimits(only), false);
  assert.equal(wantConntrack(only), false);
  assert.equal(parseArgs([]).neighbourRate, undefined);
  assert.equal(parseArgs(['--neighbour-only', '--neighbour-rate', '50000']).neighbourRate, 50000);
  for (const bad of [['--neighbour-rate', '999'], ['--neighbour-rate', '1.5'], ['--neighbour-rate', 'x'], ['--neighbour-rate']]) {
    assert.throws(() => parseArgs(bad), /--neighbour-rate/, bad.join(' '));
  }
  assert.throws(() => parseArgs(['--neighbour-only', '--skip-neighbour']), /nothing left/);
  assert.throws(() => parseArgs(['--neighbour-only', '--limits-only']), /pick one/);
});

test('--neighbour-cgroups on|off (default on) and --moat-device runtime|cli (default runtime)', () => {
  assert.equal(parseArgs([]).neighbourCgroups, true);
  assert.equal(parseArgs(['--neighbour-cgroups', 'off']).neighbourCgroups, false);
  assert.equal(parseArgs(['--neighbour-cgroups', 'on']).neighbourCgroups, true);
  assert.equal(parseArgs([]).moatDevice, 'runtime');
  assert.equal(parseArgs(['--moat-device', 'cli']).moatDevice, 'cli');
  for (const bad of [['--neighbour-cgroups', 'yes'], ['--neighbour-cgroups'], ['--moat-device', 'node'], ['--moat-device']]) {
    assert.throws(() => parseArgs(bad), /--neighbour-cgroups|--moat-device/, bad.join(' '));
  }
});

test('--rtt-pings: 2000 by default (50 quick), a multiple of the block of 25 up to 4000', () => {
  assert.equal(parseArgs([]).rttPings, 2000);
  assert.equal(parseArgs(['--quick']).rttPings, 50);
  assert.equal(parseArgs(['--rtt-pings', '200']).rttPings, 200);
  for (const bad of [['--rtt-pings', '30'], ['--rtt-pings', '0'], ['--rtt-pings', '4025'], ['--rtt-pings']]) {
    assert.throws(() => parseArgs(bad), /--rtt-pings/, bad.join(' '));
  }
});

test('a kind\'s TCP figure is its best run in turns; every run is kept, a failed one as NaN', () => {
  const t = bestTcp([{ mbps: 11_000 }, { mbps: NaN, error: 'iperf3 failed' }, { mbps: 12_500, retransmits: 3 }]);
  assert.equal(t.mbps, 12_500);
  assert.equal(t.retransmits, 3);
  assert.equal(t.error, undefined);
  assert.deepEqual(t.runs, [11_000, NaN, 12_500]);
  const none = bestTcp([{ mbps: NaN, error: 'refused' }]);
  assert.ok(Number.isNaN(none.mbps));
  assert.equal(none.error, 'refused');
});

test('the table names the TCP runs behind each kind\'s figure', () => {
  const dirs = { v2g: { tcp: { mbps: 17_000, runs: [16_000, 17_000, NaN] } }, g2v: {} };
  const out = table({ veth: { status: 'ok', dirs } });
  assert.match(out, /tcp Mbit\/s is the best of runs in turns with the other kinds: veth vassal->gateway 16,000, 17,000, failed/);
});

test('median (conntrack, rules sweep, fleet): a measured value, the lower middle one for an even count; the input left unsorted', () => {
  const xs = [4, 1, 3, 2];
  assert.equal(median(xs), 2);
  assert.deepEqual(xs, [4, 1, 3, 2]);
  assert.equal(median([0.95, 0.78, 1.3, 0.78, 0.91]), 0.91);
  assert.ok(Number.isNaN(median([])));
});
