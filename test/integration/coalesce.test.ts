// coalesce.test.ts: runs of same-flow UDP datagrams merged into one USO
// super-packet between a moat router and a moat device with offloads
// (native/coalesce.h, docs/offload.md), on real tun devices in namespaces.
//   gw ns: the native router (offload on), tun GW .1/24
//   ns A:  a device with offload on (.2)
// Floods of sequence-numbered datagrams each way must arrive byte-exact and
// in order per flow; the coalesced-frame counters must show merging.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { NativeRouter, PeerStats } from '../../src/native';
import { Device } from '../../src/device/device';
import { ipToInt } from '../helpers/packets';
import { Lab, linkStats, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';
import { deviceConfigFor } from '../../src/config/router-config';

const lab = new Lab();
const N = 20000;
let gwNs = '', nsA = '';
let router: NativeRouter;
let devA: Device;
let sock = '';
let net24 = '';
let gwTun = '', tunA = '';
const ip = (n: number) => net24 + n;

function peerA(): PeerStats {
  const p = router.stats().peers.find((x) => x.addr === ipToInt(ip(2)));
  assert.ok(p, 'peer A known');
  return p;
}

// Shared by sender and receiver: the length and bytes of datagram seq.
// mode "one": 36 bytes (a 64-byte packet), one flow. mode "mixed": two
// flows (source ports) alternating, 4 datagrams of one then 5 of the other,
// every 7th datagram 20 bytes long (it ends its run).
const COMMON = `
const mode = process.argv[4];
const lenOf = (seq) => mode === 'mixed' && seq % 7 === 6 ? 20 : 36;
const flowOf = (seq) => mode === 'mixed' ? (seq % 9 < 4 ? 0 : 1) : 0;
const body = (seq) => {
  const b = Buffer.alloc(lenOf(seq));
  b.writeUInt32BE(seq, 0);
  for (let i = 4; i < b.length; i++) b[i] = (seq * 7 + i) & 0xff;
  return b;
};`;

// argv: addr port count mode. Prints "ready", then one JSON line when count
// datagrams arrived or nothing came for 3 s.
const RECEIVER = `${COMMON}
const [addr, port, count] = process.argv.slice(1);
const s = require('node:dgram').createSocket({ type: 'udp4', recvBufferSize: 32 << 20 });
let got = 0, bad = 0, disorder = 0, idle;
const last = new Map();
const done = () => { process.stdout.write(JSON.stringify({ got, bad, disorder }) + '\\n'); process.exit(0); };
s.on('message', (m, r) => {
  got++;
  const seq = m.length >= 4 ? m.readUInt32BE(0) : -1;
  if (seq < 0 || !m.equals(body(seq))) bad++;
  const prev = last.get(r.port) ?? -1;
  if (seq <= prev) disorder++;
  last.set(r.port, seq);
  clearTimeout(idle);
  if (got >= Number(count)) done();
  idle = setTimeout(done, 3000);
});
s.bind(Number(port), addr, () => process.stdout.write('ready\\n'));
idle = setTimeout(done, 30000);
`;

// argv: dst port count mode. Sends in bursts of 64 (so the tun queue holds
// runs for the reader), a 1 ms pause every 256 so the kernels' queues
// outside moat (the sender's tun, the receiver's socket) rarely overflow,
// also on a slower or busier machine.
const SENDER = `${COMMON}
const dgram = require('node:dgram');
const [dst, port, count] = process.argv.slice(1);
const socks = [dgram.createSocket('udp4'), dgram.createSocket('udp4')];
(async () => {
  for (const s of socks) await new Promise((r) => s.bind(0, r));
  for (let seq = 0; seq < Number(count);) {
    let lastSent;
    for (let k = 0; k < 64 && seq < Number(count); k++, seq++)
      lastSent = new Promise((r) => socks[flowOf(seq)].send(body(seq), Number(port), dst, r));
    await lastSent;
    if (seq % 256 < 64) await new Promise((r) => setTimeout(r, 1));
  }
  for (const s of socks) s.close();
})();
`;

// Packets the sending side's kernel dropped at its tun's queue (qlen 500):
// an unpaced sender outruns the reader there, before moat sees anything.
function tunTxDropped(ns: string, dev: string): number {
  return linkStats(ns, dev).tx.dropped;
}

// Datagrams the receiving side's kernel dropped at the receiver's socket
// (its buffer full: the node receiver reads slower than a merged run
// arrives), from the namespace's Udp RcvbufErrors.
function udpRcvbufErrors(ns: string): number {
  const lines = sh('ip', ['netns', 'exec', ns, 'cat', '/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Udp: '));
  const [names, values] = lines.map((l) => l.trim().split(/\s+/).slice(1));
  return Number(values[names.indexOf('RcvbufErrors')]);
}

function moatDrops(): number {
  const sum = (d: Record<string, number>) => Object.entries(d).filter(([k]) => k !== 'ipv6').reduce((a, [, v]) => a + v, 0);
  return sum(router.stats().drops) + sum(devA.stats().drops);
}

// Floods count datagrams; every one must arrive byte-exact and in order per
// flow, except those the sender's own kernel dropped at its tun queue and
// those the receiver's kernel dropped at the receiver's full socket (each
// counted there, outside moat); moat drops none.
async function flood(fromNs: string, toNs: string, toAddr: string, mode: string, count = N): Promise<number> {
  const [qNs, qDev] = fromNs === gwNs ? [gwNs, gwTun] : [nsA, tunA];
  const queueDrops = tunTxDropped(qNs, qDev);
  const drops = moatDrops();
  const rcvbuf = udpRcvbufErrors(toNs);
  const port = 20000 + crypto.randomInt(20000);
  const rx = lab.spawn(process.execPath, ['-e', RECEIVER, toAddr, String(port), String(count), mode], { ns: toNs });
  let out = '';
  rx.stdout!.on('data', (d) => { out += d.toString(); });
  await waitFor(() => out.startsWith('ready\n'), 5000, 'receiver ready');
  const tx = lab.spawn(process.execPath, ['-e', SENDER, toAddr, String(port), String(count), mode], { ns: fromNs });
  let err = '';
  tx.stderr!.on('data', (d) => { err += d.toString(); });
  await waitFor(() => out.split('\n').length > 2, 60000, 'receiver done');
  const r = JSON.parse(out.split('\n')[1]) as { got: number; bad: number; disorder: number };
  if (process.env.COALESCE_DEBUG) {
    console.log(JSON.stringify(r), JSON.stringify(router.stats().drops), JSON.stringify(devA.stats().drops));
    console.log(sh('ip', ['-s', '-n', gwNs, 'link']), sh('ip', ['-s', '-n', nsA, 'link']), sh('ip', ['netns', 'exec', toNs, 'cat', '/proc/net/snmp']));
  }
  assert.equal(err, '', 'sender ran cleanly');
  assert.equal(r.bad, 0, 'every datagram byte-exact');
  assert.equal(r.disorder, 0, 'in order per flow');
  const lost = tunTxDropped(qNs, qDev) - queueDrops;
  assert.equal(moatDrops() - drops, 0, 'moat dropped nothing');
  const overflow = udpRcvbufErrors(toNs) - rcvbuf;
  assert.equal(r.got + lost + overflow, count, `all ${count} datagrams arrived but the ${lost} the sender's tun queue dropped and the ${overflow} the receiver's full socket dropped`);
  // Drops outside moat are the machine's, not moat's; the flood still has
  // to be one for the checks above to mean something.
  assert.ok(r.got >= count / 2, `at least half arrived (${r.got}): the sender's tun queue dropped ${lost}, the receiver's socket ${overflow}`);
  return r.got;
}

before(async () => {
  requireRoot();
  gwNs = lab.netns('mcg');
  nsA = lab.netns('mca');
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  ({ router, tun: gwTun, sock } = startNativeRouter(lab, gwNs, 'mc', { queueBytes: 4 << 20, offload: true }));
  const tun = gwTun;
  sh('ip', ['-n', gwNs, 'addr', 'add', `${ip(1)}/24`, 'dev', tun]);
  sh('ip', ['-n', gwNs, 'link', 'set', tun, 'up']);
  const name = uniqueName('mcd');
  tunA = name;
  devA = new Device(deviceConfigFor(name, sock, { maxFrame: 8188, queueBytes: 4 << 20, reconnectMinMs: 20, reconnectMaxMs: 200, offload: true }),
    { netns: `/run/netns/${nsA}` });
  devA.start();
  lab.onCleanup(() => devA.stop());
  sh('ip', ['-n', nsA, 'addr', 'add', `${ip(2)}/24`, 'dev', name]);
  sh('ip', ['-n', nsA, 'link', 'set', name, 'up']);
  sh('ip', ['netns', 'exec', nsA, 'ping', '-n', '-c', '1', '-W', '2', ip(1)]);
  await waitFor(() => devA.stats().offload && router.stats().peers.some((p) => p.offload), 5000, 'offload negotiated');
});

after(async () => { await lab.cleanup(); });

test('gateway -> vassal flood of one flow: byte-exact, in order, merged into USO frames', async () => {
  const b = peerA(), rb = router.stats();
  const db = devA.stats();
  const got = await flood(gwNs, nsA, ip(2), 'one');
  const a = peerA(), ra = router.stats();
  const merged = a.usoTx - b.usoTx;
  assert.ok(merged > 0, `the router merged runs (${merged} frames)`);
  assert.ok(merged < N / 4, `well below one frame per datagram (${merged})`);
  assert.equal(ra.usoTx - rb.usoTx, merged);
  assert.ok(ra.usoSegments - rb.usoSegments >= 2 * merged);
  assert.ok(a.tx - b.tx >= got, `tx counts datagrams (${a.tx - b.tx} for ${got})`);
  assert.ok(devA.stats().gsoRx - db.gsoRx >= merged, 'the device wrote them as super-packets');
  assert.equal(a.drops.bad_vnet ?? 0, 0);
});

test('vassal -> gateway flood of one flow: byte-exact, in order, merged into USO frames', async () => {
  const b = peerA(), db = devA.stats();
  const got = await flood(nsA, gwNs, ip(1), 'one');
  const a = peerA(), da = devA.stats();
  const merged = da.usoTx - db.usoTx;
  assert.ok(merged > 0, `the device merged runs (${merged} frames)`);
  assert.ok(merged < N / 4, `well below one frame per datagram (${merged})`);
  assert.ok(da.usoSegments - db.usoSegments >= 2 * merged);
  assert.ok(da.toRouterPackets - db.toRouterPackets >= got, `toRouterPackets counts datagrams (${da.toRouterPackets - db.toRouterPackets} for ${got})`);
  assert.ok(a.gsoRx - b.gsoRx >= merged, 'the router took them as super-packets');
  assert.equal(a.drops.bad_vnet ?? 0, 0);
});

test('mixed flows and shorter datagrams, both ways: every run ends right, nothing lost or reordered', async () => {
  const rb = router.stats(), db = devA.stats();
  await flood(gwNs, nsA, ip(2), 'mixed', 10000);
  await flood(nsA, gwNs, ip(1), 'mixed', 10000);
  assert.ok(router.stats().usoTx > rb.usoTx);
  assert.ok(devA.stats().usoTx > db.usoTx);
});
