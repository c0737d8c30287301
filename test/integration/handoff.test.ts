// handoff.test.ts: one hop (docs/one-hop.md, native/handoff.h). A moat
// device hands its tun to a router that offers to take it; the router then
// reads and writes the vassal's tun itself and judges every packet as it
// judges frames. Real tun devices in network namespaces, real pings and TCP.
//   gw ns:   the native router (offload and handoff on), tun .1/24
//   ns A:    a device with handoff on (.2): its tun goes to the router
//   ns B:    a device with handoff off (.3): framed as before, same router
// A tenant floods through its handed-over tun while its neighbour pings.
// Hostile peers hand over a pipe, /dev/null, a plain tun, two fds, no fd,
// or hand over unoffered: each is closed as a protocol error, no fd stays.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Device } from '../../src/device/device';
import { deviceConfigFor } from '../../src/config/router-config';
import type { NativeRule } from '../../src/native';
import { ipToInt, PROTO_ICMP } from '../helpers/packets';
import { linkStats, sh, requireRoot, uniqueName, waitFor } from '../helpers/netns';
import { RouterLab } from '../helpers/native-router';
import { tcpTransfer } from '../helpers/transfer';
import { fdCount, settle } from '../helpers/footprint';
import { buildInLab } from '../helpers/frame-flood';

const L = new RouterLab();
const ROUTER = { offload: true, handoff: true };
let nsA = '', nsB = '';
let devA: Device, devB: Device;
let tunA = '';

function vassal(n: number, tag: string, handoff: boolean): { ns: string; dev: Device; name: string } {
  const ns = L.lab.netns(tag);
  const name = uniqueName(tag);
  const dev = new Device(deviceConfigFor(name, L.sockPath, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload: true, handoff }),
    { netns: `/run/netns/${ns}` });
  dev.start();
  L.lab.onCleanup(() => dev.stop());
  sh('ip', ['-n', ns, 'addr', 'add', `${L.host(n)}/24`, 'dev', name]);
  sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
  return { ns, dev, name };
}

const peer = (n: number) => L.router.stats().peers.find((p) => p.addr === ipToInt(L.host(n)));

function ping(ns: string, dst: string, count: number, extra: string[] = []): number {
  try {
    const out = sh('ping', ['-n', '-q', '-c', String(count), '-i', '0.01', '-W', '1', ...extra, dst], { ns });
    return Number(/(\d+) received/.exec(out)?.[1] ?? 0);
  } catch (e) {
    return Number(/(\d+) received/.exec(String((e as { stdout?: string }).stdout ?? ''))?.[1] ?? 0);
  }
}

function rule(action: 0 | 1, src: string, dst: string, proto = -1): NativeRule {
  return { action, src: ipToInt(src), srcBits: 32, dst: ipToInt(dst), dstBits: 32, proto, sport: [], dport: [], icmpType: -1 };
}

before(async () => {
  requireRoot();
  L.start('ho', ROUTER);
  ({ ns: nsA, dev: devA, name: tunA } = vassal(2, 'hoa', true));
  ({ ns: nsB, dev: devB } = vassal(3, 'hob', false));
  for (const ns of [nsA, nsB]) assert.ok(ping(ns, L.gw, 1) === 1 || ping(ns, L.gw, 1) === 1, `first ping from ${ns}`);
  await waitFor(() => peer(2)?.handoff === true && devA.stats().handoff, 5000, 'vassal A handed its tun over');
});

after(async () => {
  await L.cleanup();
});

test('a handed-over tun: pings and TCP cross one hop, the device no longer carries them', async () => {
  const a0 = devA.stats();
  const p0 = peer(2)!;
  assert.equal(ping(nsA, L.gw, 50), 50, 'vassal -> gateway pings');
  assert.equal(ping(L.ns, L.host(2), 50), 50, 'gateway -> vassal pings');
  assert.equal(ping(nsA, L.gw, 5, ['-s', '3000']), 5, 'pings of 3,000 bytes (fragments) both ways');
  await tcpTransfer(L.lab, nsA, L.ns, L.gw, 8 * 1024 * 1024);
  await tcpTransfer(L.lab, L.ns, nsA, L.host(2), 8 * 1024 * 1024);
  const a1 = devA.stats();
  const p1 = peer(2)!;
  // Nothing went through the device: its counters stand still.
  assert.equal(a1.toRouterPackets, a0.toRouterPackets, 'device sent no frames');
  assert.equal(a1.fromRouterPackets, a0.fromRouterPackets, 'device got no frames');
  assert.equal(a1.handoffs, 1);
  // The router counted what it read from and wrote to the tun.
  assert.ok(p1.rx - p0.rx >= 105, `router read ${p1.rx - p0.rx} packets from the vassal's tun`);
  assert.ok(p1.tx - p0.tx >= 105, `router wrote ${p1.tx - p0.tx} packets to it`);
  assert.ok(p1.ipBytesOut - p0.ipBytesOut >= 8 * 1024 * 1024, 'the transfer counted out');
  assert.ok(p1.ipBytesIn - p0.ipBytesIn >= 8 * 1024 * 1024, 'and in');
  assert.ok(p1.gsoRx > 0, 'TSO super-packets read from the vassal');
  assert.equal(p1.drops.tun_write, 0);
  console.log(`# handed-over peer: rx ${p1.rx - p0.rx}, tx ${p1.tx - p0.tx}, gso_rx ${p1.gsoRx}, gso_tx ${p1.gsoTx}`);
});

// Receives COUNT datagrams on PORT (or stops after 5 s) and prints how many
// arrived whole: each carries its sequence number and a fill derived from it.
const UDP_RECEIVER = `
const s = require('node:dgram').createSocket('udp4');
const [port, count] = process.argv.slice(1).map(Number);
const seen = new Set(); let bad = 0;
s.on('message', (m) => {
  const seq = m.readUInt32BE(0);
  for (let i = 4; i < m.length; i++) if (m[i] !== ((seq + i) & 0xff)) { bad++; return; }
  seen.add(seq);
  if (seen.size === count) done();
});
const done = () => { console.log(JSON.stringify({ got: seen.size, bad })); process.exit(0); };
s.bind(port, () => { s.setRecvBufferSize(8 << 20); console.log('ready'); setTimeout(done, 5000); });`;

// Sends COUNT datagrams of SIZE bytes to DST:PORT in bursts of 64.
const UDP_BURSTS = `
const s = require('node:dgram').createSocket('udp4');
const [dst, port, count, size] = process.argv.slice(1);
(async () => {
  for (let seq = 0; seq < Number(count); seq++) {
    const m = Buffer.alloc(Number(size));
    m.writeUInt32BE(seq, 0);
    for (let i = 4; i < m.length; i++) m[i] = (seq + i) & 0xff;
    s.send(m, Number(port), dst);
    if (seq % 64 === 63) await new Promise((r) => setTimeout(r, 2));
  }
  setTimeout(() => s.close(), 100);
})();`;

test('datagrams read from a handed-over tun leave in runs (one write each), every one whole and in place', async () => {
  const COUNT = 4000, port = 30000 + Math.floor(Math.random() * 20000);
  const recv = L.lab.spawn(process.execPath, ['-e', UDP_RECEIVER, String(port), String(COUNT)], { ns: L.ns });
  const recvExit = new Promise((r) => recv.once('exit', r));
  let out = '';
  recv.stdout!.on('data', (d) => { out += d; });
  await waitFor(() => out.includes('ready'), 5000, 'receiver ready');
  const writes0 = linkStats(L.ns, L.tun).rx.packets;
  const p0 = peer(2)!;
  const send = L.lab.spawn(process.execPath, ['-e', UDP_BURSTS, L.gw, String(port), String(COUNT), '100'], { ns: nsA });
  await Promise.all([new Promise((r) => send.once('exit', r)), recvExit]);
  const { got, bad } = JSON.parse(out.split('\n').find((l) => l.startsWith('{'))!);
  const writes = linkStats(L.ns, L.tun).rx.packets - writes0;
  const p1 = peer(2)!;
  console.log(`# ${COUNT} datagrams of 100 bytes: ${got} arrived whole, ${bad} damaged; ${writes} writes to the gateway's tun; router counted ${p1.ipPacketsOut - p0.ipPacketsOut} packets out`);
  assert.equal(bad, 0, 'no datagram damaged');
  assert.equal(got, COUNT, 'every datagram arrived');
  assert.ok(p1.ipPacketsOut - p0.ipPacketsOut >= COUNT, 'accounting counts each datagram');
  // How long the runs are depends on how far the router falls behind the sender: some form.
  assert.ok(writes < COUNT, `runs: ${writes} writes for ${COUNT} datagrams`);
});

// Floods DST:PORT with 64-byte datagrams for SECONDS (bursts of 256, then a turn of the event loop).
const UDP_FLOOD = `
const s = require('node:dgram').createSocket('udp4');
const [dst, port, seconds] = process.argv.slice(1);
const end = Date.now() + Number(seconds) * 1000, m = Buffer.alloc(64);
const burst = () => {
  for (let i = 0; i < 256; i++) s.send(m, Number(port), dst);
  if (Date.now() < end) setImmediate(burst); else setTimeout(() => s.close(), 100);
};
burst();`;

test('a tenant flooding through its handed-over tun: its neighbour\'s pings all come back', async () => {
  const rx0 = peer(2)!.rx;
  const flood = L.lab.spawn(process.execPath, ['-e', UDP_FLOOD, L.gw, '9', '4'], { ns: nsA });
  const floodExit = new Promise((r) => flood.once('exit', r));
  await new Promise((r) => setTimeout(r, 500));
  const answered = ping(nsB, L.gw, 100);
  await floodExit;
  const flooded = peer(2)!.rx - rx0;
  console.log(`# neighbour under a handed-over flood: ${answered}/100 pings answered; the router read ${flooded} packets from the flooding tun`);
  assert.ok(flooded > 20000, `the flood reached the router (${flooded} packets)`);
  assert.equal(answered, 100, 'every neighbour ping answered');
});

test('a device without handoff keeps framing beside it, on the same router', async () => {
  const b0 = devB.stats();
  assert.equal(ping(nsB, L.gw, 20), 20);
  assert.equal(peer(3)!.handoff, false);
  assert.equal(devB.stats().handoff, false);
  assert.ok(devB.stats().toRouterPackets - b0.toRouterPackets >= 20, 'its packets went as frames');
  // Vassal to vassal (the gateway's kernel forwards): one hop out of A, two into B.
  sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], { ns: L.ns });
  assert.equal(ping(nsA, L.host(3), 20), 20, 'A -> B');
});

test('handed-over packets are judged as frames: spoofed sources refused, the firewall applies', async () => {
  const spoof0 = peer(2)!.drops.spoof;
  sh('ip', ['-n', nsA, 'addr', 'add', `${L.host(77)}/24`, 'dev', tunA]);
  try {
    assert.equal(ping(nsA, L.gw, 3, ['-I', L.host(77)]), 0, 'a second source address gets nothing through');
    await waitFor(() => peer(2)!.drops.spoof >= spoof0 + 3, 2000, 'spoof drops counted');
  } finally {
    sh('ip', ['-n', nsA, 'addr', 'del', `${L.host(77)}/24`, 'dev', tunA]);
  }
  L.router.setRules([], [rule(1, L.host(2), L.gw, PROTO_ICMP)]);
  try {
    assert.equal(ping(nsA, L.gw, 3), 0, 'out chain denies the vassal');
    assert.ok(peer(2)!.drops.firewall_out >= 3);
    assert.equal(ping(nsB, L.gw, 3), 3, 'the other vassal is not affected');
  } finally {
    L.router.setRules([], []);
  }
  L.router.setRules([rule(1, L.gw, L.host(2), PROTO_ICMP)], []);
  try {
    assert.equal(ping(L.ns, L.host(2), 3), 0, 'in chain denies toward the vassal');
    assert.ok(peer(2)!.drops.firewall_in >= 3);
  } finally {
    L.router.setRules([], []);
  }
  assert.equal(ping(nsA, L.gw, 3), 3, 'allowed again');
});

test('hostile peers: anything but a moat tun, or a handoff not offered, closes the peer and keeps no fd', async () => {
  const bin = buildInLab(L.lab, 'handoff-peer');
  await settle();
  const fd0 = fdCount();
  for (const kind of ['pipe', 'devnull', 'tunplain', 'two', 'none', 'early']) {
    const errors0 = L.events.filter((e) => e.type === 'protocol_error' && e.reason === 'handoff').length;
    const child = L.lab.spawn(bin, [L.sockPath, kind], { ns: L.ns });
    let out = '', err = '';
    child.stdout!.on('data', (d) => { out += d; });
    child.stderr!.on('data', (d) => { err += d; });
    const code = await new Promise<number | null>((r) => child.once('exit', r));
    assert.equal(code, 0, `${kind}: ${err}`);
    assert.equal(out.trim(), 'closed', `${kind}: the router closed the peer`);
    await waitFor(() => L.events.filter((e) => e.type === 'protocol_error' && e.reason === 'handoff').length === errors0 + 1, 2000, `${kind}: protocol_error handoff`);
  }
  const reasons = L.events.filter((e) => e.type === 'protocol_error' && e.reason === 'handoff').map((e) => (e as { message?: string }).message);
  console.log(`# refused handoffs: ${reasons.join(' | ')}`);
  assert.ok(reasons.some((m) => m?.includes('not a tun')), 'pipe and /dev/null: not a tun');
  assert.ok(reasons.some((m) => m?.includes('IFF_VNET_HDR')), 'a plain tun: not a moat device\'s');
  assert.ok(reasons.some((m) => m?.includes('without an fd')), 'no fd');
  assert.ok(reasons.some((m) => m?.includes('without the router\'s offer')), 'unoffered');
  await settle();
  assert.ok(fdCount() <= fd0 + 1, `fds ${fdCount()} against ${fd0} before: nothing received was kept`);
  assert.equal(ping(nsA, L.gw, 5), 5, 'the handed-over vassal still answered');
});

// Datagrams from the gateway to each of many handed-over vassals, in turns:
// the router writes a wakeup's packets for all their tuns in one io_uring
// submission (TunBatch::write_submit). 100 rounds over 40 vassals, 40 at a time.
const SPREAD = `
const s = require('node:dgram').createSocket('udp4');
const [base, count, rounds, port] = process.argv.slice(1);
const [a, b, c, d] = base.split('.').map(Number);
const m = Buffer.alloc(32); m.writeUInt32LE(1, 0);
let r = 0;
const round = () => {
  if (r++ === Number(rounds)) return s.close();
  let left = Number(count);
  for (let i = 0; i < Number(count); i++) s.send(m, Number(port), a + '.' + b + '.' + c + '.' + (d + i), () => { if (--left === 0) setTimeout(round, 3); });
};
round();
`;

// A vassal's runtime that goes first leaves the router the last reference to
// its tun, and closing that unregisters the device: ~36 ms here, waiting for
// RCU. bench/gen/tun-peers.c hands over 40 tuns and closes its own copies;
// when it exits, the router closes all 40 (fd_closer.h: on a thread of its
// own). Closed on the loop, the neighbour's longest round trip was 850 ms.
test('forty handed-over vassals: datagrams spread over them all arrive; when they go at once the neighbour\'s pings do not stall', async () => {
  const bin = buildInLab(L.lab, 'tun-peers');
  const ns = L.lab.netns('hot');
  sh('sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'], { ns });
  const peers = L.lab.spawn(bin, ['--socket', L.sockPath, '--count', '40', '--base', L.host(100), '--gw', L.gw, '--port', '9999', '--tag', '1', '--duration', '20', '--idle', '1'], { ns });
  let err = '', out = '';
  peers.stderr!.on('data', (d) => { err += d; });
  peers.stdout!.on('data', (d) => { out += d; });
  const exited = new Promise((r) => peers.once('exit', r));
  await waitFor(() => err.includes('"ready"') || err.includes('error'), 20000, 'forty tuns handed over');
  assert.ok(err.includes('"ready"'), err);
  await waitFor(() => L.router.stats().peers.filter((p) => p.handoff).length >= 41, 5000, 'the router holds the forty tuns');
  const tx0 = L.router.stats().peers.filter((p) => p.handoff && p.addr !== ipToInt(L.host(2))).reduce((t, p) => t + p.tx, 0);
  const sender = L.lab.spawn(process.execPath, ['-e', SPREAD, L.host(100), '40', '100', '9999'], { ns: L.ns });
  await new Promise((r) => sender.once('exit', r));
  const tx = L.router.stats().peers.filter((p) => p.handoff && p.addr !== ipToInt(L.host(2))).reduce((t, p) => t + p.tx, 0) - tx0;
  // The neighbour pings every 10 ms through the helper's exit (1 s after the
  // last datagram) and the forty closes.
  const pinger = L.lab.spawn('ping', ['-n', '-q', '-c', '250', '-i', '0.01', '-W', '1', L.gw], { ns: nsB });
  let pings = '';
  pinger.stdout!.on('data', (d) => { pings += d; });
  const pinged = new Promise((r) => pinger.once('exit', r));
  await exited;
  const got = JSON.parse(out.trim().split('\n').pop() ?? '{}') as { received?: number; peers_hit?: number };
  console.log(`# 4,000 datagrams spread over 40 handed-over vassals: the router wrote ${tx}, they received ${got.received} (${got.peers_hit} vassals)`);
  assert.equal(got.peers_hit, 40, 'every vassal got its datagrams');
  assert.equal(got.received, 4000, 'every datagram arrived, once');
  assert.equal(tx, 4000, 'the router counted each write');
  await waitFor(() => L.router.stats().peers.filter((p) => p.handoff).length === 1, 5000, 'the forty peers closed');
  await pinged;
  const rtt = /= [\d.]+\/[\d.]+\/([\d.]+)\//.exec(pings);
  const received = Number(/(\d+) received/.exec(pings)?.[1] ?? 0);
  console.log(`# neighbour while forty handed-over vassals went: ${received}/250 answered, max ${rtt?.[1]} ms`);
  assert.equal(received, 250, pings);
  assert.ok(Number(rtt?.[1]) < 200, `the neighbour's longest round trip ${rtt?.[1]} ms (40 tuns closed on the loop: 850 ms)`);
  assert.equal(ping(nsA, L.gw, 5), 5, 'the handed-over vassal still answered');
});

test('the router going away: the vassal keeps its tun and hands it to the next router', async () => {
  L.router.stop();
  await waitFor(() => !devA.stats().connected, 3000, 'device A saw the router go');
  // The router's copy is closed; the device's keeps the vassal's interface and address.
  assert.match(sh('ip', ['-n', nsA, '-br', 'addr', 'show', 'dev', tunA]), new RegExp(L.host(2).replace(/\./g, '\\.')));
  const next = L.extraRouter(L.options(ROUTER));
  sh('ip', ['-n', L.ns, 'addr', 'add', `${L.gw}/24`, 'dev', L.tun]);
  await waitFor(() => devA.stats().connected, 5000, 'device A reconnected');
  // Its first packet on the new connection starts the hello, then the handoff.
  ping(nsA, L.gw, 1);
  await waitFor(() => devA.stats().handoffs === 2 && next.stats().peers.some((p) => p.addr === ipToInt(L.host(2)) && p.handoff), 5000, 'handed over again');
  assert.equal(ping(nsA, L.gw, 20), 20, 'one hop again');
  assert.equal(ping(L.ns, L.host(2), 20), 20);
});
