// router-accounting.test.ts: the per-peer counters a host bills from (issue
// 16): ipPacketsIn/Out and ipBytesIn/Out count IPv4 packets as the wire
// carries them (a super-packet: its segments, each with its headers), once
// per packet where it really goes (out: written to the tun; in: accepted for
// the peer); the peer_down event carries the peer's last counters (what it
// sent just before closing included); packets a closing peer leaves in its
// shaper are its own rate_limit drops. Raw router (offloads on) in a gateway
// namespace, frame peers in this process, a UDP receiver on the gateway so
// nothing the peers send is answered.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { PeerStats, RouterEvent } from '../../src/native';
import { encodeFrame, ipToInt, MOD_HELLO, MOD_VNET, offloadHello, udpPacket, vnetPayload, type Frame } from '../helpers/packets';
import { requireRoot, sh, sleep, waitFor } from '../helpers/netns';
import { RouterLab } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';

const L = new RouterLab();
const PORT = 7000;
const GSO_UDP_L4 = 5;
/** The vnet header of a UDP super-packet (IPv4 + UDP headers, 28 bytes) of
 *  1,000-byte datagrams, its UDP checksum left to finish (NEEDS_CSUM). */
const USO_1000 = { flags: 1, gsoType: GSO_UDP_L4, hdrLen: 28, gsoSize: 1000, csumStart: 20, csumOffset: 6 };

// Binds a UDP socket on the gateway (datagrams to it are taken, no ICMP answer).
const RECEIVER = `
const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 4 << 20 });
s.on('message', () => {});
s.bind(Number(process.argv[2]), process.argv[1], () => process.stdout.write('ready\\n'));`;

before(async () => {
  requireRoot();
  L.start('ra', { offload: true, maxFrame: 8188 });
  sh('ip', ['-n', L.ns, 'link', 'set', L.tun, 'up']);
  const rx = L.lab.spawn(process.execPath, ['-e', RECEIVER, L.gw, String(PORT)], { ns: L.ns });
  await new Promise<void>((resolve, reject) => {
    rx.stdout!.once('data', () => resolve());
    rx.once('exit', (c) => reject(new Error(`receiver exited ${c}`)));
  });
});

after(async () => {
  await L.cleanup();
});

/** The wire's view of one frame the peer got: IPv4 packets and bytes (a
 *  kModVnet super-packet: its segments, each with its IPv4 + L4 headers). */
function wireOf(f: Frame): { packets: number; bytes: number } {
  if (f.mod2 === 0) return { packets: 1, bytes: f.payload.length };
  assert.equal(f.mod2, MOD_VNET, 'a packet frame');
  const gsoType = f.payload[1] & 0x7f, gsoSize = f.payload.readUInt16LE(4);
  const pkt = f.payload.subarray(10);
  if (gsoType === 0) return { packets: 1, bytes: pkt.length };
  const ihl = (pkt[0] & 15) * 4;
  const hdr = ihl + (gsoType === GSO_UDP_L4 ? 8 : (pkt[ihl + 12] >> 4) * 4);
  const segs = Math.ceil((pkt.length - hdr) / gsoSize);
  return { packets: segs, bytes: pkt.length + (segs - 1) * hdr };
}

function sumWire(frames: Frame[]): { packets: number; bytes: number } {
  return frames.filter((f) => f.mod2 === 0 || f.mod2 === MOD_VNET).map(wireOf)
    .reduce((a, w) => ({ packets: a.packets + w.packets, bytes: a.bytes + w.bytes }), { packets: 0, bytes: 0 });
}

const ip = (s: PeerStats) => ({ ipPacketsIn: s.ipPacketsIn, ipPacketsOut: s.ipPacketsOut, ipBytesIn: s.ipBytesIn, ipBytesOut: s.ipBytesOut });

/** A frame peer holding addr (learned from a datagram to the receiver). */
async function peerAt(addr: string): Promise<FramePeer> {
  const peer = await FramePeer.connect(L.sockPath);
  L.lab.onCleanup(() => peer.close());
  peer.send(udpPacket(addr, L.gw, 4000, PORT, 'hello'));
  // Learned, and the datagram written to the tun (the address is taken before the write).
  await waitFor(() => L.router.stats().peers.some((p) => p.addr === ipToInt(addr) && p.ipPacketsOut === 1), 3000, `${addr} learned`);
  return peer;
}

function downOf(id: number): Extract<RouterEvent, { type: 'peer_down' }> | undefined {
  return L.events.find((e): e is Extract<RouterEvent, { type: 'peer_down' }> => e.type === 'peer_down' && e.id === id);
}

/** Ends the peer's side after what it wrote (a FIN behind the data, no reset). */
function endPeer(peer: FramePeer): void {
  peer.sock.end();
}

test('a plain peer: the ip counters are exactly what it sent and got; peer_down carries the last of them', async () => {
  const addr = L.host(2);
  const peer = await peerAt(addr);
  const s0 = L.peerStats(addr);
  assert.deepEqual(ip(s0), { ipPacketsIn: 0, ipPacketsOut: 1, ipBytesIn: 0, ipBytesOut: 28 + 5 }, 'the learning datagram');
  // Out: 60 datagrams of known, varied sizes.
  const sizes = Array.from({ length: 60 }, (_, i) => 28 + ((i * 97) % 1400));
  for (const [i, n] of sizes.entries()) peer.send(udpPacket(addr, L.gw, 4000 + i, PORT, Buffer.alloc(n - 28, i)));
  // In: 40 datagrams of 328 bytes from the gateway.
  peer.clear();
  assert.equal(await L.udpFromGateway(addr, 5000, 40, 300), 0);
  await waitFor(() => sumWire(peer.frames).packets === 40, 3000, 'the 40 datagrams at the peer');
  await waitFor(() => L.peerStats(addr).ipPacketsOut === 61, 3000, 'the 60 datagrams written to the tun');
  await sleep(100);
  const s1 = L.peerStats(addr);
  const got = sumWire(peer.frames);
  assert.deepEqual(ip(s1), {
    ipPacketsIn: 40, ipBytesIn: 40 * 328,
    ipPacketsOut: 61, ipBytesOut: 33 + sizes.reduce((a, b) => a + b, 0),
  });
  assert.deepEqual(got, { packets: 40, bytes: 40 * 328 }, 'what the peer got, as the wire carried it');
  assert.equal(s1.dropped, 0);
  // 25 more just before closing: in peer_down's stats, not lost.
  for (let i = 0; i < 25; i++) peer.send(udpPacket(addr, L.gw, 4100, PORT, Buffer.alloc(472)));
  endPeer(peer);
  await waitFor(() => downOf(s1.id) !== undefined, 3000, 'peer_down');
  const last = downOf(s1.id)!.stats;
  assert.deepEqual(Object.keys(last).sort(), Object.keys(s1).sort(), 'peer_down.stats has the shape of a stats() row');
  assert.deepEqual(ip(last), { ...ip(s1), ipPacketsOut: s1.ipPacketsOut + 25, ipBytesOut: s1.ipBytesOut + 25 * 500 });
  assert.equal(last.rx, s1.rx + 25);
  assert.equal(last.rxBytes, s1.rxBytes + 25 * 504);
  assert.equal(last.tx, s1.tx);
  assert.equal(last.addr, ipToInt(addr));
  assert.ok(!L.router.stats().peers.some((p) => p.id === s1.id), 'gone from stats()');
});

test('an offload peer: a super-packet counts its segments with their headers; merged runs toward it count each datagram', async () => {
  const addr = L.host(3);
  const peer = await peerAt(addr);
  peer.send(offloadHello(addr), MOD_HELLO);
  await waitFor(() => peer.frames.some((f) => f.mod2 === MOD_HELLO), 3000, 'the hello answered');
  await waitFor(() => L.peerStats(addr).offload, 3000, 'offload negotiated');
  const s0 = L.peerStats(addr);
  // Out: a USO super-packet of 3,000 bytes of payload in 1,000-byte
  // segments (3 datagrams of 1,028 bytes), and one plain vnet frame.
  const big = udpPacket(addr, L.gw, 4200, PORT, Buffer.alloc(3000, 7));
  peer.send(vnetPayload(big, USO_1000), MOD_VNET);
  peer.send(vnetPayload(udpPacket(addr, L.gw, 4201, PORT, Buffer.alloc(200))), MOD_VNET);
  await waitFor(() => L.peerStats(addr).vnetRx - s0.vnetRx === 2, 3000, 'both written to the tun');
  let s1 = L.peerStats(addr);
  assert.equal(s1.gsoRx - s0.gsoRx, 1);
  assert.equal(s1.ipPacketsOut - s0.ipPacketsOut, 3 + 1, 'a super-packet of 3 segments and a plain packet');
  assert.equal(s1.ipBytesOut - s0.ipBytesOut, 3 * 1028 + 228, 'each segment with its 28 bytes of headers');
  // In: 200 datagrams in a burst; the router merges runs of them for an
  // offload peer (USO), and counts every datagram.
  peer.clear();
  assert.equal(await L.udpFromGateway(addr, 5001, 200, 500), 0);
  await waitFor(() => sumWire(peer.frames).packets === 200, 3000, 'the 200 datagrams at the peer');
  await sleep(100);
  s1 = L.peerStats(addr);
  assert.equal(s1.ipPacketsIn - s0.ipPacketsIn, 200);
  assert.equal(s1.ipBytesIn - s0.ipBytesIn, 200 * 528);
  assert.deepEqual(sumWire(peer.frames), { packets: 200, bytes: 200 * 528 });
  console.log(`# offload peer: 200 datagrams in ${peer.frames.length} frames (USO runs merged: ${s1.usoTx - s0.usoTx})`);
  endPeer(peer);
  await waitFor(() => downOf(s1.id) !== undefined, 3000, 'peer_down');
  assert.deepEqual(ip(downOf(s1.id)!.stats), ip(s1));
});

test('a limited peer closing with packets in its shaper: they are its own rate_limit drops, in peer_down\'s stats', async () => {
  const addr = L.host(4);
  // 8 Mbit/s with a 1,000-byte burst: a 1,000-byte datagram per ms leaves,
  // 50 ms of them (50) wait, the rest is dropped at once.
  L.router.setLimits([{ addr: ipToInt(addr), out: { bitsPerSec: 8e6, packetsPerSec: 0, burstBytes: 1000, burstPackets: 0 } }]);
  const peer = await peerAt(addr);
  await sleep(50);  // the bucket full again
  const s0 = L.peerStats(addr);
  const globalBefore = L.router.stats().drops.rate_limit;
  const sent = 300;
  const pkt = udpPacket(addr, L.gw, 4300, PORT, Buffer.alloc(972));
  await peer.write(Buffer.concat(Array.from({ length: sent }, () => encodeFrame(pkt))));
  endPeer(peer);
  await waitFor(() => downOf(s0.id) !== undefined, 3000, 'peer_down');
  const last = downOf(s0.id)!.stats;
  const out = last.ipPacketsOut - s0.ipPacketsOut;
  const dropped = last.drops.rate_limit - (s0.drops.rate_limit ?? 0);
  const globalDropped = L.router.stats().drops.rate_limit - globalBefore;
  // What waited in the shaper and never left: shaped, not written, not dropped on arrival.
  const atClose = dropped + (last.shapedOut - s0.shapedOut) - sent;
  console.log(`# limited peer closing: sent ${sent}, to the tun ${out}, rate_limit ${dropped} (the router's: ${globalDropped}), shaped ${last.shapedOut - s0.shapedOut}; at least ${atClose} were waiting at close`);
  assert.equal(last.rx - s0.rx, sent, 'every frame read');
  assert.equal(out + dropped, sent, 'each packet went to the tun or is a rate_limit drop of the peer');
  assert.equal(dropped, globalDropped, 'the peer\'s drops are the router\'s');
  assert.ok(atClose > 0, 'some packets were still waiting when it closed');
  assert.equal(last.shapeQueuedOut, 0, 'nothing waits for a closed peer');
  assert.equal(last.ipBytesOut - s0.ipBytesOut, out * 1000);
  L.router.setLimits([]);
});

test('a limited offload peer: a super-packet over the limit is dropped as its segments; a pps queue holds 50 ms of segments', async () => {
  const addr = L.host(5);
  // 1,000 pps: the queue holds 50 packets (segments), the bucket 10.
  L.router.setLimits([{ addr: ipToInt(addr), out: { bitsPerSec: 0, packetsPerSec: 1000, burstBytes: 0, burstPackets: 0 } }]);
  const peer = await peerAt(addr);
  peer.send(offloadHello(addr), MOD_HELLO);
  await waitFor(() => L.peerStats(addr).offload, 3000, 'offload negotiated');
  await sleep(50);
  const s0 = L.peerStats(addr);
  // 40 super-packets of 5 datagrams each: 200 packets at once.
  const big = udpPacket(addr, L.gw, 4400, PORT, Buffer.alloc(5000, 3));
  const frame = encodeFrame(vnetPayload(big, USO_1000), MOD_VNET);
  await peer.write(Buffer.concat(Array(40).fill(frame)));
  await waitFor(() => L.peerStats(addr).rx - s0.rx === 40, 3000, 'all read');
  // The queue's high-water mark: counting the super-packets that ever
  // waited would also count those let in as it drained during a slow read.
  const peak = L.peerStats(addr).shapePeakOut;
  assert.ok(peak <= 50, `at most 50 ms of segments wait at once: ${peak}`);
  assert.ok(peak >= 40, `the queue filled (200 segments offered at once): ${peak}`);
  await sleep(200);   // the queue drains
  const s2 = L.peerStats(addr);
  const out = s2.ipPacketsOut - s0.ipPacketsOut;
  const dropped = s2.drops.rate_limit - (s0.drops.rate_limit ?? 0);
  assert.equal(out + dropped, 200, `each datagram went to the tun or is a rate_limit drop (out ${out}, dropped ${dropped})`);
  endPeer(peer);
  L.router.setLimits([]);
});

/** Frames from a peer at host(n) limited to 1 Mbit/s out (a bucket of
 *  8,192 bytes, a queue of 50 ms = 6,250 bytes), sent at once: how many of
 *  its IPv4 packets waited, were dropped as rate_limit, went to the tun. */
async function throughOneMbit(n: number, frames: (addr: string) => Buffer[]): Promise<{ waited: number; dropped: number; out: number; outBytes: number }> {
  const addr = L.host(n);
  L.router.setLimits([{ addr: ipToInt(addr), out: { bitsPerSec: 1_000_000, packetsPerSec: 0, burstBytes: 0, burstPackets: 0 } }]);
  const peer = await peerAt(addr);
  peer.send(offloadHello(addr), MOD_HELLO);
  await waitFor(() => L.peerStats(addr).offload, 3000, 'offload negotiated');
  await sleep(100);  // the bucket full again after the learning datagram
  const s0 = L.peerStats(addr);
  const f = frames(addr);
  await peer.write(Buffer.concat(f));
  await waitFor(() => L.peerStats(addr).rx - s0.rx === f.length, 3000, 'all read');
  await waitFor(() => L.peerStats(addr).shapeQueuedOut === 0, 3000, 'the queue drained');
  const s1 = L.peerStats(addr);
  assert.equal(s1.drops.tun_write ?? 0, s0.drops.tun_write ?? 0, 'the kernel took every packet');
  endPeer(peer);
  L.router.setLimits([]);
  return { waited: s1.shapedOut - s0.shapedOut, dropped: s1.drops.rate_limit - (s0.drops.rate_limit ?? 0), out: s1.ipPacketsOut - s0.ipPacketsOut, outBytes: s1.ipBytesOut - s0.ipBytesOut };
}

/** A USO super-packet of 20 datagrams of 1,028 bytes (20,560: more than the queue's 6,250). */
const twentySegments = (addr: string, sport: number): Buffer => encodeFrame(vnetPayload(udpPacket(addr, L.gw, sport, PORT, Buffer.alloc(20_000, sport & 0xff)), USO_1000), MOD_VNET);

test('a limited offload peer: a super-packet that meets a fuller queue waits as the segments that fit; only the rest is dropped', async () => {
  // 20 segments pass on the bucket's credit (it goes 12 KB into debt); a
  // 1,028-byte datagram then waits alone; of the next 20 segments, 5 fit
  // beside it (6 x 1,028 <= 6,250) and 15 are dropped.
  const r = await throughOneMbit(6, (addr) => [twentySegments(addr, 4500),
    encodeFrame(vnetPayload(udpPacket(addr, L.gw, 4501, PORT, Buffer.alloc(1000, 1))), MOD_VNET), twentySegments(addr, 4502)]);
  assert.deepEqual(r, { waited: 1 + 5, dropped: 15, out: 20 + 1 + 5, outBytes: 26 * 1028 });
});

test('a limited offload peer: a super-packet larger than the whole queue never waits whole: 50 ms of its segments do', async () => {
  // The second super-packet meets an empty queue in debt: 6 of its
  // segments wait (6 x 1,028 <= 6,250), not all 20 (160 ms at 1 Mbit/s).
  const r = await throughOneMbit(7, (addr) => [twentySegments(addr, 4600), twentySegments(addr, 4601)]);
  assert.deepEqual(r, { waited: 6, dropped: 14, out: 20 + 6, outBytes: 26 * 1028 });
});
