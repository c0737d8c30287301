// pmtu.test.ts: a packet too big for the peer it goes to is answered the way
// a router answers it, so no path-MTU black hole appears. The gateway's tun
// has MTU 9000, the peer's frame limit is uWSGI's 8188 (the default):
//   - DF clear (ping -M dont): the router fragments; the peer gets fragments
//     of at most 8188 bytes that add up to the packet;
//   - DF set (ping -M do): ICMP fragmentation-needed with mtu 8188 goes back
//     to the sender; the kernel learns the path MTU (ip route get shows it),
//     the sender sees "message too long", and a packet that fits passes.
// The device does the same toward its router (its tun has MTU 9000 here).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import crypto from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { NativeRouter } from '../../src/native';
import { Device } from '../../src/device/device';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';
import { FakeRouter } from '../helpers/fake-router';
import { tempDir } from '../helpers/moat';
import { parseIpv4 } from '../helpers/packets';
import { deviceConfigFor } from '../../src/config/router-config';

const lab = new Lab();
let ns = '';
let router: NativeRouter;
let peer: FramePeer;
let net24 = '';
const gw = () => net24 + '1';
const vassal = () => net24 + '2';

function ping(args: string[]): { code: number | null; out: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '1', ...args, vassal()], { encoding: 'utf8', timeout: 10000 });
  return { code: r.status, out: (r.stdout ?? '') + (r.stderr ?? '') };
}

before(async () => {
  requireRoot();
  ns = lab.netns('mpm');
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  const started = startNativeRouter(lab, ns, 'mp');
  router = started.router;
  const { tun, sock } = started;
  sh('ip', ['-n', ns, 'addr', 'add', `${gw()}/24`, 'dev', tun]);
  sh('ip', ['-n', ns, 'link', 'set', tun, 'mtu', '9000', 'up']);
  peer = await FramePeer.connect(sock);
  lab.onCleanup(() => peer.close());
  // The router learns the peer's address from its first packet.
  assert.ok(await peer.ping(vassal(), gw(), 5000), 'echo reply to the peer');
});

after(async () => { await lab.cleanup(); });

test('DF clear: a packet above the peer limit arrives as fragments of at most 8188 bytes', async () => {
  peer.clear();
  ping(['-M', 'dont', '-s', '8500']);  // 8528 bytes; the peer never answers
  await waitFor(() => peer.packets.length >= 2, 5000, 'two fragments');
  const frags = peer.packets.map((p) => ({ len: p.length, off: (p.readUInt16BE(6) & 0x1fff) * 8, mf: (p[6] & 0x20) !== 0, ok: parseIpv4(p).headerOk }));
  assert.ok(frags.every((f) => f.len <= 8188 && f.ok), JSON.stringify(frags));
  assert.equal(frags[0].off, 0);
  assert.ok(frags[0].mf, 'first fragment has MF');
  const last = frags[frags.length - 1];
  assert.ok(!last.mf, 'last fragment has no MF');
  assert.equal(last.off + last.len - 20, 8508, 'the fragments carry all 8508 bytes after the header');
  assert.ok(router.stats().fragmented >= 1);
});

test('DF set: ICMP fragmentation-needed (mtu 8188) reaches the sender, the path MTU is learned, a smaller packet passes', async () => {
  peer.clear();
  const before = router.stats();
  const first = ping(['-M', 'do', '-s', '8500']);
  assert.notEqual(first.code, 0, 'the too-big ping is not answered');
  await waitFor(() => router.stats().fragNeeded > before.fragNeeded, 3000, 'an ICMP answer counted');
  assert.equal(peer.packets.length, 0, 'nothing too big reached the peer');
  assert.ok(router.stats().drops.too_big > before.drops.too_big, 'the packet is counted as too_big');
  const route = sh('ip', ['-n', ns, 'route', 'get', vassal()]);
  assert.match(route, /mtu 8188/, route);
  const again = ping(['-M', 'do', '-s', '8500']);
  assert.match(again.out, /8188/, `the sender is told the mtu: ${again.out}`);
  ping(['-M', 'do', '-s', '8000']);  // 8028 bytes: fits
  await waitFor(() => peer.packets.some((p) => p.length === 8028), 3000, 'the smaller packet at the peer');
});

test('the device does the same for its router: fragments (DF clear), ICMP fragmentation-needed (DF set)', async () => {
  const vns = lab.netns('mpv');
  // A scripted router: collects the device's frames.
  const scripted = new FakeRouter(path.join(tempDir(lab), 'r.sock'));
  await scripted.listen();
  lab.onCleanup(() => { void scripted.close(); });
  const sockPath = scripted.socketPath;
  const name = uniqueName('mpd');
  const dev = new Device(deviceConfigFor(name, sockPath, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false }),
    { netns: `/run/netns/${vns}` });
  dev.start();
  lab.onCleanup(() => dev.stop());
  await waitFor(() => scripted.conns.length === 1 && dev.stats().connected, 5000, 'device connected');
  sh('ip', ['-n', vns, 'addr', 'add', '192.168.0.2/24', 'dev', name]);
  sh('ip', ['-n', vns, 'link', 'set', name, 'mtu', '9000', 'up']);
  const vping = (args: string[]) => spawnSync('ip', ['netns', 'exec', vns, 'ping', '-n', '-c', '1', '-W', '1', ...args, '192.168.0.1'],
    { encoding: 'utf8', timeout: 10000 });

  vping(['-M', 'dont', '-s', '8500']);
  await waitFor(() => scripted.packets.filter((p) => p[9] === 1).length >= 2, 5000, 'fragments at the router');
  const frags = scripted.packets.filter((p) => p[9] === 1);
  assert.ok(frags.every((p) => p.length <= 8188 && parseIpv4(p).headerOk), 'fragments fit and are well formed');
  assert.equal(frags.reduce((n, p) => n + p.length - 20, 0), 8508, 'together they carry the whole packet');

  scripted.frames.length = 0;
  const before = dev.stats().drops.too_big;
  const r = vping(['-M', 'do', '-s', '8500']);
  assert.notEqual(r.status, 0);
  assert.ok(dev.stats().drops.too_big > before, 'counted as too_big');
  const route = sh('ip', ['-n', vns, 'route', 'get', '192.168.0.1']);
  assert.match(route, /mtu 8188/, route);
  assert.equal(scripted.packets.filter((p) => p.length > 8188).length, 0);
  vping(['-M', 'do', '-s', '8000']);
  await waitFor(() => scripted.packets.some((p) => p.length === 8028), 3000, 'the smaller packet at the router');
});
