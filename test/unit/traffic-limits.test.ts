// Traffic limits as config files write them (src/config/traffic-limits.ts):
// tc's rate units, bursts, `max`, the emperor's defaults under a vassal's
// own values, and tuntap-router-peer-limit lines; bad values name file:line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ipv4ToInt } from '../../src/addr';
import { parseIni } from '../../src/config/ini';
import { routerConfig } from '../../src/config/router-config';
import { ConfigError } from '../../src/config/types';
import {
  describeTraffic, emperorTrafficLimits, parseBurst, parsePeerLimits, parsePps, parseRate, peerLimit, vassalTrafficLimits,
} from '../../src/config/traffic-limits';
import { emperorConfig } from '../../src/emperor/config';

test('rates are read as tc writes them: bits, kbit/mbit/gbit, kibit, bps = bytes; max or 0 = none', () => {
  assert.equal(parseRate('10mbit'), 10_000_000);
  assert.equal(parseRate('512kbit'), 512_000);
  assert.equal(parseRate('1gbit'), 1e9);
  assert.equal(parseRate('1.5Mbit'), 1_500_000);
  assert.equal(parseRate('2kibit'), 2048);
  assert.equal(parseRate('125kbps'), 1_000_000);
  assert.equal(parseRate('64000'), 64000);
  assert.equal(parseRate('max'), 0);
  assert.equal(parseRate('0'), 0);
  assert.throws(() => parseRate('10 megabits'), /not a rate.*10mbit/);
  assert.throws(() => parseRate('10'), /below the smallest rate.*did you mean 10mbit/);
  assert.throws(() => parseRate('2tbit'), /above 1tbit/);
  assert.equal(parsePps('1000'), 1000);
  assert.throws(() => parsePps('1e3'), /whole number/);
  assert.equal(parseBurst('64K'), 65536);
  assert.equal(parseBurst('1m'), 1 << 20);
  assert.equal(parseBurst('1500'), 1500);
  assert.throws(() => parseBurst('2T'), /not a size/);
});

test('a vassal file\'s limits replace the emperor\'s defaults one by one; max lifts one', () => {
  const e = emperorConfig(parseIni('[uwsgi]\nemperor = /x\nemperor-vassal-rate-out = 10mbit\nemperor-vassal-pps-in = 1000\n', 'e.ini'));
  assert.deepEqual(e.vassalTraffic, { rateOut: 10_000_000, ppsIn: 1000 });
  const v = vassalTrafficLimits(parseIni('[uwsgi]\nvassal-rate-in = 5mbit\nvassal-pps-in = max\nvassal-burst = 32K\n', 'v.ini'), e.vassalTraffic);
  assert.deepEqual(v, { rateOut: 10_000_000, rateIn: 5_000_000, burst: 32768 });
  assert.deepEqual(peerLimit(ipv4ToInt('10.0.0.2'), v), {
    addr: ipv4ToInt('10.0.0.2'),
    out: { bitsPerSec: 10_000_000, packetsPerSec: 0, burstBytes: 32768, burstPackets: 0 },
    in: { bitsPerSec: 5_000_000, packetsPerSec: 0, burstBytes: 32768, burstPackets: 0 },
  });
  assert.equal(describeTraffic(v), 'out 10mbit, in 5mbit');
  assert.deepEqual(emperorTrafficLimits([]), {});
  assert.throws(() => vassalTrafficLimits(parseIni('[uwsgi]\n\nvassal-rate-out = fast\n', 'v.ini')),
    (err: unknown) => err instanceof ConfigError && /v\.ini:3/.test(err.message) && /vassal-rate-out/.test(err.message));
});

test('tuntap-router-peer-limit: per address and default, in and out lines merge; errors name the line', () => {
  const cfg = routerConfig(parseIni([
    '[uwsgi]', 'tuntap-router = moat0 /tmp/r.sock',
    'tuntap-router-peer-limit = default out rate 10mbit',
    'tuntap-router-peer-limit = 10.0.0.2 in rate 1mbit pps 100 burst 16K pps-burst 5',
    'tuntap-router-peer-limit = 10.0.0.2 out pps 2000',
    'tuntap-router-peer-limit = 10.0.0.3 out rate max',
  ].join('\n') + '\n', 'r.ini'));
  assert.deepEqual(cfg.peerLimits, [
    { addr: 0, out: { bitsPerSec: 10_000_000, packetsPerSec: 0, burstBytes: 0, burstPackets: 0 } },
    { addr: ipv4ToInt('10.0.0.2'), in: { bitsPerSec: 1_000_000, packetsPerSec: 100, burstBytes: 16384, burstPackets: 5 },
      out: { bitsPerSec: 0, packetsPerSec: 2000, burstBytes: 0, burstPackets: 0 } },
    { addr: ipv4ToInt('10.0.0.3') },   // unlimited: lifts the default for this peer
  ]);
  const bad = (line: string, re: RegExp) => assert.throws(
    () => parsePeerLimits(parseIni(`[uwsgi]\ntuntap-router-peer-limit = ${line}\n`, 'r.ini')),
    (err: unknown) => err instanceof ConfigError && /r\.ini:2/.test(err.message) && re.test(err.message), line);
  bad('10.0.0.2 up rate 1mbit', /direction is in/);
  bad('10.0.0.256 in rate 1mbit', /not an IPv4 address/);
  bad('default in', /expected <address\|default>/);
  bad('default in burst 4K', /names no limit/);
  bad('default in rate 1mbit rate 2mbit', /given twice/);
  bad('default in speed 1mbit', /'speed' is not/);
  bad('default in rate 1zbit', /rate: '1zbit' is not a rate/);
});
