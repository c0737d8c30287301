// device.test.ts: the vassal device's TypeScript side over the fake addon (no
// root, no tun): the checks at the edge with their precise errors, the
// options the native Device gets, its events as the Device's events, and
// start/stop. The native side is test/integration/device.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { DeviceConfig } from '../../src/config/types';
import { deviceConfigFor } from '../../src/config/router-config';
import { checkDeviceName, connectPath, Device, deviceOptions } from '../../src/device/device';
import { installFakeAddon } from '../helpers/fake-addon';

function baseConfig(device: string, socket: string): DeviceConfig {
  // Built from the table's defaults, then the name and path under test put in unchecked.
  return deviceConfigFor('uwsgi0', '/tmp/x.sock', { device, socket, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false });
}

test('checks at the edge: names, socket paths, numbers', () => {
  const sock = '/tmp/x.sock';
  assert.throws(() => deviceOptions(baseConfig('a-name-too-long-', sock)), /must be 1-15 bytes/);
  assert.throws(() => deviceOptions(baseConfig('', sock)), RangeError);
  assert.throws(() => deviceOptions(baseConfig('a/b', sock)), /may not/);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', '/tmp/' + 'x'.repeat(110))), /is 115 bytes; a unix socket path holds at most 107/);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', '')), TypeError);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', 'a\0b')), /NUL/);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', sock), { dirFd: -2 }), RangeError);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', '/x/' + 'y'.repeat(95)), { dirFd: 3 }), /\/proc\/self\/fd\/3\/y+" is 111 bytes/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), maxFrame: 70000 }), /maxFrame must be in 576..65535/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), maxFrame: 1.5 }), /maxFrame must be an integer/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), queueBytes: 100 }), /queueBytes must be in 8192..1073741824/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), reconnectMaxMs: 10 }), /reconnectMaxMs must be in 20../);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), busyPollUs: 1001 }), /busyPollUs must be in 0..1000/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), sndbuf: -1 }), /sndbuf must be in 0..67108864/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), offload: 'yes' as unknown as boolean }), /offload must be a boolean/);
  assert.throws(() => checkDeviceName('a b'), /may not be "\." or "\.\." nor contain/);
  assert.equal(checkDeviceName('uwsgi0'), 'uwsgi0');
});

test('the native options: every value passed through, extras (netns, dirFd) applied', () => {
  assert.deepEqual(deviceOptions(baseConfig('uwsgi0', 'rel/x.sock'), { dirFd: 7, netns: '/run/netns/v' }), {
    name: 'uwsgi0', netns: '/run/netns/v', socketPath: 'rel/x.sock', dirFd: 7, maxFrame: 8188, queueBytes: 262144,
    reconnectMinMs: 20, reconnectMaxMs: 200, offload: false, handoff: true, busyPollUs: 100, sndbuf: 4194304,
  });
  const o = deviceOptions({ ...baseConfig('uwsgi0', '/s'), busyPollUs: 0, sndbuf: 0, offload: true, netns: '/run/netns/cfg' });
  assert.deepEqual([o.busyPollUs, o.sndbuf, o.offload, o.netns, o.dirFd], [0, 0, true, '/run/netns/cfg', -1]);
});

test('connectPath: the socket itself, or its file name under the kept directory fd', () => {
  assert.equal(connectPath('/run/moat/tuntap.sock', -1), '/run/moat/tuntap.sock');
  assert.equal(connectPath('/run/moat/tuntap.sock', 5), '/proc/self/fd/5/tuntap.sock');
  assert.equal(connectPath('tuntap.sock', 5), '/proc/self/fd/5/tuntap.sock');
  assert.throws(() => connectPath('/run/moat/', 5), /has no file name/);
});

test('start builds one native Device with the checked options; start twice is refused; stop releases it', () => {
  const fake = installFakeAddon();
  const d = new Device(baseConfig('uwsgi0', '/tmp/r.sock'), { netns: '/run/netns/v1' });
  assert.throws(() => d.stats(), /never started/);
  assert.equal(fake.devices.length, 0, 'nothing native before start');
  d.start();
  assert.equal(fake.devices.length, 1);
  const n = fake.devices[0];
  assert.deepEqual(n.options, d.options);
  assert.equal(n.options.netns, '/run/netns/v1');
  assert.equal(d.running, true);
  assert.throws(() => d.start(), /device uwsgi0 already started/);
  assert.equal(fake.devices.length, 1);
  n.snapshot = { ...n.snapshot, connected: true, toRouterPackets: 12 };
  assert.equal(d.stats().toRouterPackets, 12);
  d.stop();
  assert.equal(d.running, false);
  assert.equal(n.running, false);
  assert.equal(n.calls.filter((c) => c === 'start').length, 1);
  assert.equal(d.stats().toRouterPackets, 12, 'the last run\'s counters stay readable');
});

test('a setup error is thrown by start, and a later start may try again', () => {
  const fake = installFakeAddon();
  const d = new Device(baseConfig('uwsgi0', '/tmp/r.sock'));
  fake.failNextStart(new Error('TUNSETIFF uwsgi0: Device or resource busy'));
  assert.throws(() => d.start(), /Device or resource busy/);
  assert.equal(d.running, false);
  d.start();
  assert.equal(d.running, true);
  assert.equal(fake.devices.length, 2);
  d.stop();
});

test('native events become the Device\'s events', () => {
  const fake = installFakeAddon();
  const d = new Device(baseConfig('uwsgi0', '/tmp/r.sock'));
  const seen: unknown[] = [];
  d.on('connected', () => seen.push('connected'));
  d.on('disconnected', (reason) => seen.push(['disconnected', reason]));
  d.on('connect_failed', (info) => seen.push(['connect_failed', info]));
  d.on('error', (err) => seen.push(['error', err.message]));
  d.start();
  fake.devices[0].emit(
    { type: 'connect_failed', attempt: 3, error: 'ECONNREFUSED', retryMs: 400 },
    { type: 'connected' },
    { type: 'disconnected', reason: 'router closed the connection' },
    { type: 'error', message: 'tun read: EBADF' },
  );
  assert.deepEqual(seen, [
    ['connect_failed', { attempt: 3, error: 'ECONNREFUSED', retryMs: 400 }],
    'connected',
    ['disconnected', 'router closed the connection'],
    ['error', 'device uwsgi0: tun read: EBADF'],
  ]);
  d.stop();
});
