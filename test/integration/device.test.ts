// device.test.ts: our Device against a scripted router (a node unix socket
// server speaking uwsgi framing): reassembly of frames cut anywhere, drops of
// what is not a packet, a protocol error followed by a reconnect, the dirFd
// path, and the native constructor's own type checks.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { deviceConfigFor } from '../../src/config/router-config';

import type { DeviceConfig } from '../../src/config/types';
import { Device, deviceOptions } from '../../src/device/device';
import { addon } from '../../src/native';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { FakeRouter as BaseRouter } from '../helpers/fake-router';
import { encodeFrame, frameHeader, icmpEcho, parseIpv4, PROTO_ICMP } from '../helpers/packets';

const GW = '192.168.0.1';
const VASSAL = '192.168.0.2';

/** The fake router, reading the vassal's echo replies. */
class FakeRouter extends BaseRouter {
  /** Sequence numbers of the echo replies (id) the vassal's kernel sent back through the device. */
  echoReplies(id: number): number[] {
    return this.packets.filter((p) => p[0] >> 4 === 4).map(parseIpv4)
      .filter((ip) => ip.proto === PROTO_ICMP && ip.payload[0] === 0 && ip.payload.readUInt16BE(4) === id && ip.src === VASSAL)
      .map((ip) => ip.payload.readUInt16BE(6));
  }
}

function baseConfig(device: string, socket: string): DeviceConfig {
  return deviceConfigFor(device, socket, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false });
}

async function setup(t: test.TestContext) {
  requireRoot();
  const lab = new Lab();
  const devices: Device[] = [];
  const routers: FakeRouter[] = [];
  t.after(async () => {
    for (const d of devices) d.stop();
    for (const r of routers) await r.close().catch(() => undefined);
    await lab.cleanup();
  });
  const ns = lab.netns('mdt');
  const dir = fs.mkdtempSync('/tmp/moat-devt-');
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return { lab, ns, dir, devices, routers };
}

test('frames cut anywhere are reassembled; non-packets are dropped and counted; replies come back', async (t) => {
  const { ns, dir, devices, routers } = await setup(t);
  // No IPv6 from the vassal's own kernel: the ipv6 drop below is the router's frame alone.
  sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns });
  const router = new FakeRouter(path.join(dir, 'r.sock'));
  routers.push(router);
  await router.listen();
  const name = uniqueName('mdf');
  const dev = new Device(baseConfig(name, router.socketPath), { netns: `/run/netns/${ns}` });
  devices.push(dev);
  dev.start();
  sh('ip', ['-n', ns, 'addr', 'add', '192.168.0.2/24', 'dev', name]);
  await waitFor(() => router.conns.length === 1 && dev.stats().connected, 3000, 'connection');
  const c = router.conns[0];

  // Three echo requests, a rule block (mod2 = 1), a mod2 = 0 frame that is not
  // IPv4, then a fourth request: all in one stream, written a few bytes at a time.
  const stream = Buffer.concat([
    encodeFrame(icmpEcho(GW, VASSAL, 0x4d54, 1)),
    encodeFrame(icmpEcho(GW, VASSAL, 0x4d54, 2)),
    encodeFrame(Buffer.from('allow 0.0.0.0 0.0.0.0'), 1),
    encodeFrame(icmpEcho(GW, VASSAL, 0x4d54, 3)),
    encodeFrame(Buffer.from([0x60, 0, 0, 0, 0, 0, 0, 0])),
    encodeFrame(icmpEcho(GW, VASSAL, 0x4d54, 4)),
  ]);
  for (let off = 0; off < stream.length; off += 7) {
    c.write(stream.subarray(off, off + 7));
    await new Promise((r) => setTimeout(r, 2));
  }
  await waitFor(() => router.echoReplies(0x4d54).length === 4, 3000, 'four echo replies');
  assert.deepEqual(router.echoReplies(0x4d54).sort(), [1, 2, 3, 4]);
  assert.ok(router.frames.every((f) => f.mod2 === 0 && (f.payload[0] >> 4) === 4), 'only IPv4 packets, mod2 = 0, go to the router');
  const s = dev.stats();
  assert.equal(s.fromRouterPackets, 4);
  assert.equal(s.drops.bad_modifier, 1);
  assert.equal(s.drops.ipv6, 1);
  assert.ok(s.toRouterPackets >= 4);
  assert.equal(s.reconnects, 0);
});

test('an oversize frame header is a protocol error: the device closes and reconnects, keeping its tun', async (t) => {
  const { ns, dir, devices, routers } = await setup(t);
  const router = new FakeRouter(path.join(dir, 'r.sock'));
  routers.push(router);
  await router.listen();
  const name = uniqueName('mdo');
  const dev = new Device({ ...baseConfig(name, router.socketPath), maxFrame: 1500, queueBytes: 4096 }, { netns: `/run/netns/${ns}` });
  devices.push(dev);
  const events: string[] = [];
  dev.on('connected', () => events.push('connected'));
  dev.on('disconnected', (r) => events.push(`disconnected: ${r}`));
  dev.start();
  await waitFor(() => router.conns.length === 1, 3000, 'connection');
  router.conns[0].write(frameHeader(1501));
  await waitFor(() => router.conns.length === 2 && dev.stats().connected && events.length === 3, 3000, 'reconnection');
  assert.deepEqual(events, ['connected', 'disconnected: protocol error: frame of 1501 bytes above the limit of 1500', 'connected']);
  assert.equal(dev.stats().reconnects, 1);
  sh('ip', ['-n', ns, 'link', 'show', 'dev', name]);

  // And the new connection works.
  sh('ip', ['-n', ns, 'addr', 'add', '192.168.0.2/24', 'dev', name]);
  router.conns[1].write(encodeFrame(icmpEcho(GW, VASSAL, 0x4f4b, 9)));
  await waitFor(() => router.echoReplies(0x4f4b).length === 1, 3000, 'echo reply on the new connection');
});

test('dirFd: the socket is reached through a directory fd when its path is hidden', async (t) => {
  const { ns, dir, devices, routers } = await setup(t);
  const router = new FakeRouter(path.join(dir, 'x.sock'));
  routers.push(router);
  await router.listen();
  const dirFd = fs.openSync(dir, 'r');
  t.after(() => fs.closeSync(dirFd));
  const dev = new Device(baseConfig(uniqueName('mdd'), '/no/such/dir/x.sock'), { netns: `/run/netns/${ns}`, dirFd });
  assert.equal(dev.options.socketPath, '/no/such/dir/x.sock');
  devices.push(dev);
  dev.start();
  await waitFor(() => dev.stats().connected && router.conns.length === 1, 3000, 'connection through the dir fd');
});

test('start reports setup errors synchronously; a missing router is retried with backoff', async (t) => {
  const { ns, dir, devices } = await setup(t);
  const name = uniqueName('mdb');
  const sock = path.join(dir, 'absent.sock');
  const a = new Device(baseConfig(name, sock), { netns: `/run/netns/${ns}` });
  devices.push(a);
  const failed: Array<{ attempt: number; retryMs: number; error: string }> = [];
  a.on('connect_failed', (f) => failed.push(f));
  a.start();
  const b = new Device(baseConfig(name, sock), { netns: `/run/netns/${ns}` });
  devices.push(b);
  assert.throws(() => b.start(), new RegExp(`TUNSETIFF ${name}: Device or resource busy`));
  assert.throws(() => new Device(baseConfig(uniqueName('mdc'), sock), { netns: '/run/netns/no-such-ns-here' }).start(), /open \/run\/netns\/no-such-ns-here: No such file/);
  await waitFor(() => failed.length >= 5, 3000, 'five failed attempts');
  assert.deepEqual(failed.slice(0, 5).map((f) => f.attempt), [1, 2, 3, 4, 5]);
  assert.deepEqual(failed.slice(0, 5).map((f) => f.retryMs), [20, 40, 80, 160, 200]);
  assert.match(failed[0].error, /No such file or directory/);
  assert.equal(a.stats().connected, false);
  a.stop();
  a.stop();  // idempotent
  assert.throws(() => sh('ip', ['-n', ns, 'link', 'show', 'dev', name]), 'tun device removed on stop');
});

test('the native constructor checks types (TypeError), for callers that skip the wrapper (its checks: test/unit/device.test.ts)', () => {
  const sock = '/tmp/x.sock';
  assert.throws(() => new (addon().Device)({ ...deviceOptions(baseConfig('uwsgi0', sock)), busyPollUs: 5000 }), /busyPollUs/);
  const D = addon().Device;
  assert.throws(() => new D({} as never), TypeError);
  assert.throws(() => new D({ ...deviceOptions(baseConfig('uwsgi0', sock)), maxFrame: 1.5 }), TypeError);
  assert.throws(() => new D({ ...deviceOptions(baseConfig('uwsgi0', sock)), name: 'x'.repeat(16) }), TypeError);
});
