// bench-args.test.ts: `npm run bench` option parsing (bench/run.ts) and the
// scale section's summary (bench/scale.ts), without running anything.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { parseArgs, scaleText, wantScale } from '../../bench/run';
import { checkScaleOptions, Round, summarize } from '../../bench/scale';

test('defaults: all kinds, scale with 1000 peers for 3 s (1 s quick)', () => {
  const o = parseArgs([]);
  assert.deepEqual(o.only, ['veth', 'uwsgi', 'moat']);
  assert.equal(o.scalePeers, 1000);
  assert.equal(o.scaleSeconds, 3);
  assert.equal(wantScale(o), true);
  assert.equal(parseArgs(['--quick']).scaleSeconds, 1);
  assert.equal(o.scaleRounds, 3);
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

test('summary: ratio of best N-peer to best 1-peer pps, RSS per idle peer, lines', () => {
  const rounds = [round(1, 400000, 50000, 50000), round(1000, 300000, 50000, 52000), round(1, 500000, 52000, 52000), round(1000, 350000, 52000, 53000)];
  const s = summarize({ peers: 1000, seconds: 3, rounds: 2 }, rounds);
  assert.equal(s.ratio, 350000 / 500000);
  assert.deepEqual(s.rssPerIdlePeerKiB, [2, 1]);
  assert.equal(s.lines[0], 'peers  received pps  offered pps  peers reached');
  assert.equal(s.lines[2], ' 1000       300,000      390,000           1000');
  assert.equal(s.lines[5], '1000 peers / 1 peer (best of each): 0.70 (target >= 0.70)');
  assert.match(s.lines[6], /^router RSS per idle peer: 2\.0, 1\.0 KiB/);
  const one = summarize({ peers: 1000, seconds: 3, rounds: 1 }, rounds.slice(0, 2));
  assert.equal(one.lines[3], '1000 peers / 1 peer: 0.75 (target >= 0.70)');
});

test('scale section text: heading, lines, status when not ok', () => {
  const base = { peers: 1000, seconds: 1, rounds: [], target: 0.7, lines: ['a', 'b'] };
  const ok = scaleText({ ...base, status: 'ok' });
  assert.equal(ok, "scale (moat router, 64 B UDP flood spread round-robin over the peers' addresses, 1 s per round):\na\nb");
  const err = scaleText({ ...base, status: 'error', reason: 'peers exited: boom\nmore' });
  assert.match(err, /\nscale: error: peers exited: boom$/);
});
