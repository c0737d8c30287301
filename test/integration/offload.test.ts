// offload.test.ts: virtio-net offloads between a moat router and moat
// devices (docs/offload.md), on real tun devices in network namespaces.
//   gw ns:   the native router (offload on), tun GW .1/24
//   ns A:    a device with offload on (.2): negotiates, TSO super-packets
//   ns B:    a device with offload off (.3): plain frames, the router splits
// A 30 MB TCP transfer each way must arrive byte-exact (sha256 on both ends);
// a raw peer's malformed offload frames are dropped and counted, the peers stay.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { NativeRouter, PeerStats } from '../../src/native';
import { Device } from '../../src/device/device';
import { intToIp, ipToInt } from '../helpers/packets';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';
import { tcpTransfer } from '../helpers/transfer';
import client from 'prom-client';
import { registerRouterMetrics } from '../../src/metrics';
import { icmpEcho, udpPacket, MOD_HELLO, MOD_VNET, offloadHello, parseIpv4, PROTO_ICMP, vnetPayload } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { deviceConfigFor } from '../../src/config/router-config';

const lab = new Lab();
const BYTES = 30 * 1024 * 1024;
let gwNs = '', nsA = '', nsB = '';
let router: NativeRouter;
let devA: Device, devB: Device;
let sock = '';
let gwTun = '', tunA = '';
let net24 = '';
const ip = (n: number) => net24 + n;

function peerOf(addr: string): PeerStats | undefined {
  return router.stats().peers.find((p) => p.addr === ipToInt(addr));
}

async function transfer(fromNs: string, toNs: string, toAddr: string, bytes = BYTES): Promise<void> {
  await tcpTransfer(lab, fromNs, toNs, toAddr, bytes);
}

before(async () => {
  requireRoot();
  gwNs = lab.netns('mog');
  nsA = lab.netns('moa');
  nsB = lab.netns('mob');
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  ({ router, tun: gwTun, sock } = startNativeRouter(lab, gwNs, 'mo', { offload: true }));
  const tun = gwTun;
  sh('ip', ['-n', gwNs, 'addr', 'add', `${ip(1)}/24`, 'dev', tun]);
  sh('ip', ['-n', gwNs, 'link', 'set', tun, 'up']);

  const device = (ns: string, n: number, offload: boolean) => {
    const name = uniqueName('mod');
    const d = new Device(deviceConfigFor(name, sock, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload }),
      { netns: `/run/netns/${ns}` });
    // Addressed before connecting: the hello goes out at once.
    d.start();
    lab.onCleanup(() => d.stop());
    if (offload) tunA = name;
    sh('ip', ['-n', ns, 'addr', 'add', `${ip(n)}/24`, 'dev', name]);
    sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
    return d;
  };
  devA = device(nsA, 2, true);
  devB = device(nsB, 3, false);
  // Both learned by the router (A after its first packet; the hello teaches nothing).
  for (const [ns, n] of [[nsA, 2], [nsB, 3]] as const) {
    sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '2', ip(1)]);
    await waitFor(() => peerOf(ip(n)) !== undefined, 5000, `peer ${ip(n)} learned`);
  }
});

after(async () => { await lab.cleanup(); });

test('a moat device with offload on negotiates; one with offload off stays plain', async () => {
  await waitFor(() => devA.stats().offload, 5000, 'device A negotiated');
  assert.equal(peerOf(ip(2))!.offload, true, 'the router marks A offload');
  assert.equal(devB.stats().offload, false);
  assert.equal(peerOf(ip(3))!.offload, false, 'B stays plain');
});

test('TCP vassal -> gateway host over offload: byte-exact, carried as TSO super-packets', async () => {
  const before = peerOf(ip(2))!;
  await transfer(nsA, gwNs, ip(1));
  const after = peerOf(ip(2))!;
  assert.ok(after.gsoRx > before.gsoRx, `the router got super-packets from A (${before.gsoRx} -> ${after.gsoRx})`);
  assert.ok(devA.stats().gsoTx > 0);
  assert.equal(after.drops.bad_vnet ?? 0, 0);
});

test('TCP gateway host -> vassal over offload: byte-exact, carried as TSO super-packets', async () => {
  const before = peerOf(ip(2))!;
  await transfer(gwNs, nsA, ip(2));
  const after = peerOf(ip(2))!;
  assert.ok(after.gsoTx > before.gsoTx, `the router sent super-packets to A (${before.gsoTx} -> ${after.gsoTx})`);
  assert.ok(devA.stats().gsoRx > 0);
});

test('metrics show the offload peer, its frames and the splits', async () => {
  const reg = registerRouterMetrics(new client.Registry(), { stats: () => router.stats(), ruleOrigins: () => ({ in: [], out: [] }), reloads: () => ({ ok: 0, error: 0 }) });
  const m = await reg.metrics();
  assert.match(m, /^moat_peers_offload 1$/m);
  assert.match(m, new RegExp(`moat_peer_offload_frames_total\\{peer="${ip(2).replace(/\./g, '\\.')}",direction="rx",kind="gso"\\} [1-9]`));
  assert.match(m, /^# TYPE moat_gso_split_total counter$/m);
  assert.match(m, /^# TYPE moat_uso_coalesced_total counter$/m);
});

test('TCP gateway host -> plain device: byte-exact, super-packets split by the router', async () => {
  const before = router.stats();
  await transfer(gwNs, nsB, ip(3));
  const after = router.stats();
  assert.ok(after.gsoSplit > before.gsoSplit, 'the router split super-packets for the plain peer');
  assert.ok(after.gsoSegments > after.gsoSplit);
  const b = peerOf(ip(3))!;
  assert.equal(b.vnetTx, 0, 'no offload frame to the plain peer');
  await transfer(nsB, gwNs, ip(1), 5 * 1024 * 1024);
});

test('offload frames that are malformed, unnegotiated or not ours are dropped and counted; the peers stay', async () => {
  const conns: FramePeer[] = [];
  const connect = async () => {
    const p = await FramePeer.connect(sock);
    conns.push(p);
    return p;
  };
  lab.onCleanup(() => { for (const c of conns) c.close(); });
  const raw = ip(9);
  const rogue = ip(10);
  // A: a raw peer that negotiates, then sends garbage headers.
  const a = await connect();
  a.send(offloadHello(raw, 1, 65535, 'moat-offlaod'), MOD_HELLO); // wrong magic
  a.send(icmpEcho(raw, ip(1), 91, 1));                   // learn .9
  await waitFor(() => peerOf(raw) !== undefined, 5000, 'raw peer learned');
  await waitFor(() => (peerOf(raw)!.drops.bad_hello ?? 0) === 1, 3000, 'bad magic counted');
  a.send(vnetPayload(icmpEcho(raw, ip(1), 91, 2)), MOD_VNET); // before negotiating
  await waitFor(() => (peerOf(raw)!.drops.not_negotiated ?? 0) === 1, 3000, 'unnegotiated vnet counted');
  a.send(offloadHello(raw), MOD_HELLO);
  await waitFor(() => a.frames.some((f) => f.mod2 === MOD_HELLO), 3000, 'the router answers the hello');
  assert.equal(peerOf(raw)!.offload, true);
  const echo = icmpEcho(raw, ip(1), 91, 3);
  const bad = [
    vnetPayload(echo, { gsoType: 1, gsoSize: 100, flags: 1, csumStart: 20, csumOffset: 16 }), // TCPV4 on ICMP
    vnetPayload(echo, { flags: 1, csumStart: 20, csumOffset: 60000 }),                       // csum beyond the packet
    vnetPayload(echo, { gsoType: 4 }),                                                        // TCPV6
    vnetPayload(echo, { flags: 0x80 }),                                                       // unknown flag
    vnetPayload(Buffer.concat([echo, Buffer.alloc(3)])),                                      // total length != rest
    Buffer.alloc(5),                                                                           // shorter than a header
    vnetPayload(udpPacket(raw, ip(1), 5000, 5001, Buffer.alloc(1000)),
      { gsoType: 5, gsoSize: 1, flags: 1, csumStart: 20, csumOffset: 6 }),                    // 1,000 segments of 1 byte
  ];
  for (const p of bad) a.send(p, MOD_VNET);
  await waitFor(() => (peerOf(raw)!.drops.bad_vnet ?? 0) === 6, 3000, 'six bad_vnet drops');
  await waitFor(() => (peerOf(raw)!.drops.bad_length ?? 0) === 1, 3000, 'one bad_length drop');
  // A spoofed source inside a well-formed vnet frame: refused as for plain frames.
  a.send(vnetPayload(icmpEcho(rogue, ip(1), 91, 4)), MOD_VNET);
  await waitFor(() => (peerOf(raw)!.drops.spoof ?? 0) === 1, 3000, 'spoof counted');
  // Still routed: a good vnet echo is answered (as a vnet frame).
  a.send(vnetPayload(icmpEcho(raw, ip(1), 91, 5)), MOD_VNET);
  await waitFor(() => a.frames.some((f) => f.mod2 === MOD_VNET && f.payload.length > 30 &&
    parseIpv4(f.payload.subarray(10)).proto === PROTO_ICMP && f.payload[30] === 0), 3000, 'the echo reply as a vnet frame');
  assert.equal(a.closed, false, 'the raw peer stays');
  // The other peers are unharmed.
  await transfer(nsA, gwNs, ip(1), 2 * 1024 * 1024);
  sh('ip', ['netns', 'exec', nsB, 'ping', '-n', '-c', '1', '-W', '2', ip(1)]);
  assert.equal(intToIp(peerOf(ip(2))!.addr), ip(2));
});

test('the tun devices cap gso_max_size and gso_max_segs so a super-packet fits one frame', () => {
  assert.match(sh('ip', ['-d', '-n', gwNs, 'link', 'show', gwTun]), /gso_max_size 65000 gso_max_segs 128 /);
  assert.match(sh('ip', ['-d', '-n', nsA, 'link', 'show', tunA]), /gso_max_size 65000 gso_max_segs 128 /);
});

test('segments above the frame limit (MTU 9000, limit 8188): ICMP fragmentation-needed, TCP still completes both ways', async () => {
  sh('ip', ['-n', gwNs, 'link', 'set', gwTun, 'mtu', '9000']);
  sh('ip', ['-n', nsA, 'link', 'set', tunA, 'mtu', '9000']);
  const before = router.stats();
  const devBefore = devA.stats().drops.too_big ?? 0;
  await transfer(gwNs, nsA, ip(2), 8 * 1024 * 1024);
  const after = router.stats();
  assert.ok(after.fragNeeded > before.fragNeeded, 'the router answered segments above 8188 with ICMP');
  assert.match(sh('ip', ['-n', gwNs, 'route', 'get', ip(2)]), /mtu 8188/, 'the gateway learned the path MTU');
  // Forget the learned MTU: the gateway then offers an MSS of 8960 again.
  sh('ip', ['-n', gwNs, 'route', 'flush', 'cache']);
  await transfer(nsA, gwNs, ip(1), 8 * 1024 * 1024);
  assert.ok((devA.stats().drops.too_big ?? 0) > devBefore, 'the device answered its own too-big segments');
  assert.match(sh('ip', ['-n', nsA, 'route', 'get', ip(1)]), /mtu 8188/);
});
