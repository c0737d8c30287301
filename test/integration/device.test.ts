// device.test.ts: our Device against a scripted router (a node unix socket
// server speaking uwsgi framing): reassembly of frames cut anywhere, drops of
// what is not a packet, a protocol error followed by a reconnect, the dirFd
// path, and the checks at the edge.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import test from 'node:test';
import { deviceConfigFor } from '../../src/config/router-config';

import type { DeviceConfig } from '../../src/config/types';
import { Device, deviceOptions } from '../../src/device/device';
import { addon } from '../../src/native';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { FakeRouter as BaseRouter } from '../helpers/fake-router';

const GW = [192, 168, 0, 1];
const VASSAL = [192, 168, 0, 2];

function checksum(b: Buffer): number {
  let sum = 0;
  for (let i = 0; i + 1 < b.length; i += 2) sum += b.readUInt16BE(i);
  if (b.length % 2) sum += b[b.length - 1] << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** An IPv4 ICMP echo request src -> dst. */
function echoRequest(src: number[], dst: number[], id: number, seq: number): Buffer {
  const icmp = Buffer.alloc(8 + 16, 0x61);
  icmp.writeUInt8(8, 0); icmp.writeUInt8(0, 1); icmp.writeUInt16BE(0, 2);
  icmp.writeUInt16BE(id, 4); icmp.writeUInt16BE(seq, 6);
  icmp.writeUInt16BE(checksum(icmp), 2);
  const ip = Buffer.alloc(20);
  ip.writeUInt8(0x45, 0); ip.writeUInt16BE(20 + icmp.length, 2); ip.writeUInt8(64, 8); ip.writeUInt8(1, 9);
  Buffer.from(src).copy(ip, 12); Buffer.from(dst).copy(ip, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([ip, icmp]);
}

function frame(payload: Buffer, mod2 = 0, size = payload.length): Buffer {
  const h = Buffer.from([0, size & 0xff, size >> 8, mod2]);
  return Buffer.concat([h, payload]);
}

/** The fake router, reading the vassal's echo replies. */
class FakeRouter extends BaseRouter {
  /** Echo replies the vassal's kernel sent back through the device. */
  echoReplies(id: number): number[] {
    return this.frames.filter((f) => f.mod2 === 0 && f.payload.length >= 28 && f.payload[9] === 1 &&
      f.payload[20] === 0 && f.payload.readUInt16BE(24) === id && f.payload.subarray(12, 16).equals(Buffer.from(VASSAL)))
      .map((f) => f.payload.readUInt16BE(26));
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
    frame(echoRequest(GW, VASSAL, 0x4d54, 1)),
    frame(echoRequest(GW, VASSAL, 0x4d54, 2)),
    frame(Buffer.from('allow 0.0.0.0 0.0.0.0'), 1),
    frame(echoRequest(GW, VASSAL, 0x4d54, 3)),
    frame(Buffer.from([0x60, 0, 0, 0, 0, 0, 0, 0])),
    frame(echoRequest(GW, VASSAL, 0x4d54, 4)),
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
  router.conns[0].write(Buffer.from([0, 0xdd, 0x05, 0]));   // announces 1501 bytes
  await waitFor(() => router.conns.length === 2 && dev.stats().connected && events.length === 3, 3000, 'reconnection');
  assert.deepEqual(events, ['connected', 'disconnected: protocol error: frame of 1501 bytes above the limit of 1500', 'connected']);
  assert.equal(dev.stats().reconnects, 1);
  sh('ip', ['-n', ns, 'link', 'show', 'dev', name]);

  // And the new connection works.
  sh('ip', ['-n', ns, 'addr', 'add', '192.168.0.2/24', 'dev', name]);
  router.conns[1].write(frame(echoRequest(GW, VASSAL, 0x4f4b, 9)));
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

test('checks at the edge', () => {
  const sock = '/tmp/x.sock';
  assert.throws(() => deviceOptions(baseConfig('a-name-too-long-', sock)), /must be 1-15 bytes/);
  assert.throws(() => deviceOptions(baseConfig('', sock)), RangeError);
  assert.throws(() => deviceOptions(baseConfig('a/b', sock)), /may not/);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', '/tmp/' + 'x'.repeat(110))), /is 115 bytes; a unix socket path holds at most 107/);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', '')), TypeError);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', sock), { dirFd: -2 }), RangeError);
  assert.throws(() => deviceOptions(baseConfig('uwsgi0', '/x/' + 'y'.repeat(95)), { dirFd: 3 }), /\/proc\/self\/fd\/3\/y+" is 111 bytes/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), maxFrame: 70000 }), /maxFrame must be in 1..65535/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), queueBytes: 100 }), /queueBytes must be in 8192..1073741824/);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), reconnectMaxMs: 10 }), /reconnectMaxMs must be in 20../);
  assert.deepEqual(deviceOptions(baseConfig('uwsgi0', 'rel/x.sock'), { dirFd: 7, netns: '/run/netns/v' }), {
    name: 'uwsgi0', netns: '/run/netns/v', socketPath: 'rel/x.sock', dirFd: 7, maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false, busyPollUs: 100,
  });
  assert.equal(deviceOptions({ ...baseConfig('uwsgi0', sock), busyPollUs: 0 }).busyPollUs, 0);
  assert.throws(() => deviceOptions({ ...baseConfig('uwsgi0', sock), busyPollUs: 1001 }), /busyPollUs must be in 0..1000/);
  assert.throws(() => new (addon().Device)({ ...deviceOptions(baseConfig('uwsgi0', sock)), busyPollUs: 5000 }), /busyPollUs/);
  // The native constructor checks types too (TypeError), for callers that skip the wrapper.
  const D = addon().Device;
  assert.throws(() => new D({} as never), TypeError);
  assert.throws(() => new D({ ...deviceOptions(baseConfig('uwsgi0', sock)), maxFrame: 1.5 }), TypeError);
  assert.throws(() => new D({ ...deviceOptions(baseConfig('uwsgi0', sock)), name: 'x'.repeat(16) }), TypeError);
});
