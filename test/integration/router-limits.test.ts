// router-limits.test.ts: per-peer rate limits in the native router (issue 16,
// items 1 and 2): a bytes bucket and a packets bucket each direction, and a
// small queue (50 ms of the rate) where packets over the limit wait before
// they are dropped as rate_limit. Raw router in a gateway namespace:
//   out (peer -> tun): a frame peer floods UDP at 3x the limit toward a
//       receiver on the gateway; the receiver's rate (first to last
//       arrival, the queue's drain included) is within 10% of the limit;
//   in (tun -> peer): a sender on the gateway floods the peer the same way;
//   TCP: a real moat device in its own namespace, iperf3 through a 10 Mbit/s
//       limit each way gets at least 90% of it (and not more than 110%),
//       plain and with offloads (TSO super-packets cost their segments);
//   a limited flooding peer does not slow an unlimited neighbour;
//   setLimits while traffic flows changes the rate, nobody is disconnected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { PeerLimit, RateLimit } from '../../src/native';
import { Device } from '../../src/device/device';
import { deviceConfigFor } from '../../src/config/router-config';
import { encodeFrame, ipToInt, udpPacket } from '../helpers/packets';
import { requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { RouterLab } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';
import { Arrivals, RECEIVER_JS, SENDER_JS, UdpReceiver } from '../helpers/udp-meter';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const FLOOD_MS = 3000;
const L = new RouterLab();

const rate = (over: Partial<RateLimit>): RateLimit => ({ bitsPerSec: 0, packetsPerSec: 0, burstBytes: 0, burstPackets: 0, ...over });

/** A receiver on the gateway (udp-meter.ts), ready. */
async function receiver(port: number): Promise<UdpReceiver> {
  const r = new UdpReceiver(L.lab.spawn(process.execPath, ['-e', RECEIVER_JS, L.gw, String(port)], { ns: L.ns }));
  await r.ready();
  return r;
}

/** pps datagrams per second of pkt from peer for ms, paced; resolves to the count sent. */
async function floodFromPeer(peer: FramePeer, pkt: Buffer, pps: number, ms: number): Promise<number> {
  const frame = encodeFrame(pkt);
  const t0 = performance.now();
  let sent = 0;
  for (;;) {
    const el = performance.now() - t0;
    if (el >= ms) return sent;
    const want = Math.floor((pps * el) / 1000);
    if (want > sent) {
      await peer.write(Buffer.concat(Array(want - sent).fill(frame)));
      sent = want;
    }
    await sleep(2);
  }
}

/** The gateway floods dst; resolves to the count sent. */
async function floodFromGateway(dst: string, port: number, pps: number, size: number, ms: number): Promise<number> {
  const child = L.lab.spawn(process.execPath, ['-e', SENDER_JS, L.gw, dst, String(port), String(pps), String(size), String(ms)], { ns: L.ns });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  await new Promise((res) => child.once('exit', res));
  return Number(out.trim());
}

let nextHost = 10;
/** A frame peer that has its address (learned from a ping to the gateway). */
async function addressedPeer(onFrame?: () => void): Promise<{ peer: FramePeer; addr: string }> {
  const addr = L.host(nextHost++);
  const peer = await FramePeer.connect(L.sockPath, { keep: false, onFrame });
  L.lab.onCleanup(() => peer.close());
  assert.ok(await peer.ping(addr, L.gw), `${addr} learned and answered`);
  return { peer, addr };
}

function within(measured: number, limit: number, what: string, lo = 0.9, hi = 1.1): void {
  assert.ok(measured >= limit * lo && measured <= limit * hi,
    `${what}: measured ${measured.toFixed(0)}, limit ${limit} (allowed ${(limit * lo).toFixed(0)}..${(limit * hi).toFixed(0)})`);
}

const figures: string[] = [];

before(() => {
  requireRoot();
  L.start('rl');
  sh('ip', ['-n', L.ns, 'link', 'set', L.tun, 'up']);
});

after(async () => {
  if (figures.length) console.log(`# limits measured:\n${figures.map((f) => `#   ${f}`).join('\n')}`);
  await L.cleanup();
});

// ---- out: peer -> tun ----------------------------------------------------

async function outCase(limit: RateLimit, pktLen: number, floodPps: number, expect: (a: Arrivals) => [number, number, string]): Promise<void> {
  const port = 20000 + nextHost;
  const addr = L.host(nextHost);
  L.router.setLimits([{ addr: ipToInt(addr), out: limit }]);
  const { peer } = await addressedPeer();
  const rx = await receiver(port);
  const pkt = udpPacket(addr, L.gw, 4000, port, Buffer.alloc(pktLen - 28, 0x62));
  const before = L.peerStats(addr);
  const sent = await floodFromPeer(peer, pkt, floodPps, FLOOD_MS);
  await waitFor(() => L.peerStats(addr).rx - before.rx === sent, 5000, 'every frame read by the router');
  await waitFor(() => L.peerStats(addr).shapeQueuedOut === 0, 2000, 'the shaper drained');
  await sleep(200);
  const a = await rx.all();
  rx.stop();
  const after = L.peerStats(addr);
  const dropped = after.drops.rate_limit - (before.drops.rate_limit ?? 0);
  const [measured, lim, what] = expect(a);
  figures.push(`${what}: limit ${lim}, measured ${measured.toFixed(0)} (sent ${sent}, delivered ${a.n}, rate_limit drops ${dropped}, shaped ${after.shapedOut})`);
  within(measured, lim, what);
  assert.ok(dropped > 0, 'the flood over the limit is dropped as rate_limit');
  assert.ok(after.shapedOut > 0, 'packets waited in the shaper');
  assert.equal(a.n + dropped, sent, 'every datagram was delivered or dropped as rate_limit');
  peer.close();
}

test('out: a UDP flood through 10 Mbit/s arrives at 10 Mbit/s (+-10%), the rest dropped as rate_limit', async () => {
  const len = 1000;
  await outCase(rate({ bitsPerSec: 10e6 }), len, 3750, (a) => [((a.n - 1) * len * 8) / ((a.last - a.first) / 1000), 10e6, 'out 10 Mbit/s (bit/s)']);
});

test('out: a UDP flood through 1,000 packets/s arrives at 1,000 packets/s (+-10%)', async () => {
  await outCase(rate({ packetsPerSec: 1000 }), 200, 3000, (a) => [(a.n - 1) / ((a.last - a.first) / 1000), 1000, 'out 1000 pps (packets/s)']);
});

// ---- in: tun -> peer -----------------------------------------------------

async function inCase(limit: RateLimit, pktLen: number, floodPps: number, expect: (n: number, secs: number) => [number, number, string]): Promise<void> {
  let n = 0, first = 0, last = 0;
  const addr = L.host(nextHost);
  L.router.setLimits([{ addr: ipToInt(addr), in: limit }]);
  const { peer } = await addressedPeer(() => {
    const t = performance.now();
    if (n === 0) first = t;
    last = t;
    n++;
  });
  n = 0;  // the echo reply is not the flood's
  const before = L.peerStats(addr);
  const rxBefore = L.router.stats().rxPackets;
  const sent = await floodFromGateway(addr, 5000, floodPps, pktLen - 28, FLOOD_MS);
  await waitFor(() => L.router.stats().rxPackets - rxBefore >= sent, 5000, 'every datagram read from the tun');
  await waitFor(() => L.peerStats(addr).shapeQueuedIn === 0 && L.peerStats(addr).queued === 0, 2000, 'the shaper drained');
  await sleep(200);
  const after = L.peerStats(addr);
  const dropped = after.drops.rate_limit - (before.drops.rate_limit ?? 0);
  const [measured, lim, what] = expect(n, (last - first) / 1000);
  figures.push(`${what}: limit ${lim}, measured ${measured.toFixed(0)} (sent ${sent}, delivered ${n}, rate_limit drops ${dropped}, shaped ${after.shapedIn})`);
  within(measured, lim, what);
  assert.ok(dropped > 0, 'the flood over the limit is dropped as rate_limit');
  assert.ok(after.shapedIn > 0, 'packets waited in the shaper');
  assert.equal(n + dropped, sent, 'every datagram was delivered or dropped as rate_limit');
  peer.close();
}

test('in: a UDP flood toward the peer through 10 Mbit/s arrives at 10 Mbit/s (+-10%)', async () => {
  const len = 1000;
  await inCase(rate({ bitsPerSec: 10e6 }), len, 3750, (n, s) => [((n - 1) * len * 8) / s, 10e6, 'in 10 Mbit/s (bit/s)']);
});

test('in: a UDP flood toward the peer through 1 Mbit/s arrives at 1 Mbit/s (+-10%)', async () => {
  const len = 500;
  await inCase(rate({ bitsPerSec: 1e6 }), len, 750, (n, s) => [((n - 1) * len * 8) / s, 1e6, 'in 1 Mbit/s (bit/s)']);
});

test('in: a UDP flood toward the peer through 1,000 packets/s arrives at 1,000 packets/s (+-10%)', async () => {
  await inCase(rate({ packetsPerSec: 1000 }), 200, 3000, (n, s) => [(n - 1) / s, 1000, 'in 1000 pps (packets/s)']);
});

// ---- a neighbour, and a change while traffic flows -----------------------

test('a limited flooding peer does not slow an unlimited neighbour', async () => {
  const limited = L.host(nextHost);
  L.router.setLimits([{ addr: ipToInt(limited), out: rate({ bitsPerSec: 10e6 }) }]);
  const a = await addressedPeer();
  const b = await addressedPeer();
  const portA = 21000 + nextHost, portB = portA + 1;
  const rxA = await receiver(portA);
  const rxB = await receiver(portB);
  const len = 1000;
  const pktA = udpPacket(a.addr, L.gw, 4000, portA, Buffer.alloc(len - 28));
  const pktB = udpPacket(b.addr, L.gw, 4000, portB, Buffer.alloc(len - 28));
  const bRate = async (): Promise<number> => {
    // B's rate: what arrived of its 2 s of sending (paced at 40 Mbit/s).
    const before = await rxB.all();
    const sent = await floodFromPeer(b.peer, pktB, 5000, 2000);
    await sleep(300);
    const after = await rxB.all();
    assert.ok(after.n - before.n >= sent * 0.98, `B got ${after.n - before.n} of ${sent}`);
    return ((after.n - before.n) * len * 8) / 2;
  };
  const alone = await bRate();
  const [withFlood] = await Promise.all([bRate(), floodFromPeer(a.peer, pktA, 12500, 2000)]);  // A: 100 Mbit/s at a 10 Mbit/s limit
  await sleep(300);
  const aGot = await rxA.all();
  const aRate = ((aGot.n - 1) * len * 8) / ((aGot.last - aGot.first) / 1000);
  figures.push(`neighbour: unlimited B ${(alone / 1e6).toFixed(1)} Mbit/s alone, ${(withFlood / 1e6).toFixed(1)} Mbit/s beside A; A (limit 10 Mbit/s, flooding 100) ${(aRate / 1e6).toFixed(2)} Mbit/s, rate_limit drops ${L.peerStats(a.addr).drops.rate_limit}`);
  assert.ok(withFlood >= alone * 0.9, `B: ${withFlood} beside the flood, ${alone} alone`);
  within(aRate, 10e6, 'A under its limit');
  assert.equal(L.peerStats(b.addr).drops.rate_limit, 0, 'B is never limited');
  assert.equal(L.peerStats(b.addr).shapedOut, 0);
  rxA.stop();
  rxB.stop();
});

test('setLimits while traffic flows changes the rate; nobody is disconnected', async () => {
  const addr = L.host(nextHost);
  const lim = (bits: number): PeerLimit[] => [{ addr: ipToInt(addr), out: rate({ bitsPerSec: bits }) }];
  L.router.setLimits(lim(10e6));
  const { peer } = await addressedPeer();
  const id = L.peerStats(addr).id;
  const downs = L.log.count('peer_down');
  const port = 22000 + nextHost;
  const rx = await receiver(port);
  const len = 1000;
  const pkt = udpPacket(addr, L.gw, 4000, port, Buffer.alloc(len - 28));
  const bytesAt = () => ({ t: performance.now(), b: L.router.stats().txBytes });
  const rates: number[] = [];
  const flood = floodFromPeer(peer, pkt, 3750, 4000);  // 30 Mbit/s
  await sleep(500);
  let s = bytesAt();
  await sleep(1300);
  let e = bytesAt();
  rates.push(((e.b - s.b) * 8) / ((e.t - s.t) / 1000));
  L.router.setLimits(lim(5e6));
  await sleep(400);
  s = bytesAt();
  await sleep(1300);
  e = bytesAt();
  rates.push(((e.b - s.b) * 8) / ((e.t - s.t) / 1000));
  await flood;
  rx.stop();
  figures.push(`setLimits mid-flow: 10 Mbit/s -> ${(rates[0] / 1e6).toFixed(2)}, then 5 Mbit/s -> ${(rates[1] / 1e6).toFixed(2)} Mbit/s`);
  within(rates[0], 10e6, 'before the change');
  within(rates[1], 5e6, 'after the change');
  assert.equal(L.peerStats(addr).id, id, 'the same connection');
  assert.equal(L.log.count('peer_down'), downs, 'nobody disconnected');
  // Limits removed: the peer is unlimited again, its shaper gone.
  // What still waits leaves at once.
  L.router.setLimits([]);
  await waitFor(() => L.peerStats(addr).shapeQueuedOut === 0, 1000, 'the queue drained');
  const q = L.peerStats(addr).shapedOut;
  peer.send(pkt);
  await sleep(100);
  assert.equal(L.peerStats(addr).shapedOut, q, 'unlimited: nothing waits');
  peer.close();
});

// ---- TCP through a real device --------------------------------------------

/** A moat device in a namespace of its own, learned by lab's router at addr. */
async function deviceAt(lab: RouterLab, addr: string, offload: boolean): Promise<string> {
  const ns = lab.lab.netns('rlv');
  const name = uniqueName('rld');
  const d = new Device(deviceConfigFor(name, lab.sockPath, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload }),
    { netns: `/run/netns/${ns}` });
  d.start();
  lab.lab.onCleanup(() => d.stop());
  sh('ip', ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', name]);
  sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
  sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  sh('ip', ['netns', 'exec', ns, 'ping', '-n', '-c', '1', '-W', '2', lab.gw]);
  await waitFor(() => lab.router.stats().peers.some((p) => p.addr === ipToInt(addr)), 5000, 'device learned');
  if (offload) await waitFor(() => d.stats().offload, 5000, 'offloads negotiated');
  return ns;
}

/** iperf3 from lab's gateway to a device through a 10 Mbit/s limit each way. */
async function tcpCase(lab: RouterLab, addr: string, offload: boolean): Promise<void> {
  lab.router.setLimits([{ addr: ipToInt(addr), in: rate({ bitsPerSec: 10e6 }), out: rate({ bitsPerSec: 10e6 }) }]);
  const ns = await deviceAt(lab, addr, offload);
  const server = lab.lab.spawn('iperf3', ['-s', '-B', addr], { ns });
  lab.lab.onCleanup(() => { server.kill(); });
  // Listening before the first connect (a fixed wait lost the race on a busy machine).
  await waitFor(() => sh('ss', ['-Hltn', 'sport = :5201'], { ns }).includes(':5201'), 5000, 'iperf3 listening');
  const run = (reverse: boolean): number => {
    const out = sh('iperf3', ['-c', addr, '-B', lab.gw, '-t', '4', '-J', ...(reverse ? ['-R'] : [])], { ns: lab.ns, timeoutMs: 20000 });
    return Number(JSON.parse(out).end.sum_received.bits_per_second);
  };
  const toVassal = run(false);   // in: toward the peer
  const fromVassal = run(true);  // out: from the peer
  const p = lab.peerStats(addr);
  const how = offload ? 'offload' : 'plain';
  figures.push(`TCP (${how}) in 10 Mbit/s: ${(toVassal / 1e6).toFixed(2)} Mbit/s; out 10 Mbit/s: ${(fromVassal / 1e6).toFixed(2)} Mbit/s (rate_limit drops ${p.drops.rate_limit}, shaped in ${p.shapedIn} out ${p.shapedOut}, super-packets in ${p.gsoTx} out ${p.gsoRx})`);
  within(toVassal, 10e6, `TCP (${how}) toward the vassal`);
  within(fromVassal, 10e6, `TCP (${how}) from the vassal`);
  if (offload) assert.ok(p.gsoRx > 0 && p.gsoTx > 0, 'super-packets went through the shaper');
}

test('TCP through a 10 Mbit/s limit gets at least 90% of it, each way', async () => {
  await tcpCase(L, L.host(nextHost++), false);
});

test('TCP through a 10 Mbit/s limit with offloads (super-packets cost their segments) gets 90-110% of it', async () => {
  const O = new RouterLab();
  try {
    O.start('rlo', { offload: true });
    sh('ip', ['-n', O.ns, 'link', 'set', O.tun, 'up']);
    await tcpCase(O, O.host(2), true);
  } finally {
    await O.cleanup();
  }
});

test('setLimits refuses what C++ cannot take, naming the field', () => {
  assert.throws(() => L.router.setLimits({} as unknown as PeerLimit[]), /limits: expected an array of peer limits/);
  assert.throws(() => L.router.setLimits([{ addr: -1 }]), /limits\[0\]\.addr: expected an integer/);
  assert.throws(() => L.router.setLimits([{ addr: 1, in: { bitsPerSec: 1.5, packetsPerSec: 0, burstBytes: 0, burstPackets: 0 } }]),
    /limits\[0\]\.in\.bitsPerSec: expected an integer/);
  assert.throws(() => L.router.setLimits([{ addr: 1, out: { bitsPerSec: 1 } as RateLimit }]), /limits\[0\]\.out\.packetsPerSec: missing/);
  assert.throws(() => L.router.setLimits([{ addr: 7 }, { addr: 7 }]), /limits\[1\]\.addr: a second limit/);
  L.router.setLimits([{ addr: 0 }]);  // a default with no direction: nothing limited
});
