// soak.test.ts: a bounded soak of the native Router (in this process, its tun
// in a gateway namespace the test makes): several peers ping the gateway and
// send UDP, the gateway namespace sprays UDP back at them, the rule set is
// swapped every RELOAD_MS among sets of different shapes (with hit counters
// carried by rule text), and a peer is restarted every RESTART_MS. Throughout:
// every ping is answered (no rule set ever denies ICMP), no counter goes
// backwards, the router reports no error; at the end the fd count is where it
// started and memory outside V8's heap was flat over the second half.
//
// SOAK_SECONDS (default 150, at least 80) bounds the run; CI may shorten it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import type { NativeRule, RouterStats } from '../../src/native';
import { requireRoot, sleep, waitFor } from '../helpers/netns';
import { ipToInt, udpPacket, PROTO_ICMP, PROTO_UDP } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { RouterLab } from '../helpers/native-router';
import { fdCount, memText, outsideHeapKiB, settle, UNDER_ASAN } from '../helpers/footprint';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 150);
const RELOAD_MS = 1500;
const RESTART_MS = 2500;
const PEERS = 6;
const FLAT_BOUND_KIB = 12 * 1024;   // growth allowed over the second half (RSS less V8's heap)

const L = new RouterLab();
after(async () => { await L.cleanup(); });

// A UDP sprayer for the gateway namespace: `rate` datagrams per second spread over the addresses, for `secs`.
const SPRAY = `
const dgram = require('node:dgram');
const [src, rate, secs, ...addrs] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const end = Date.now() + Number(secs) * 1000;
s.bind(0, src, async () => {
  const buf = Buffer.alloc(200, 0x73);
  let i = 0;
  while (Date.now() < end) {
    for (let k = 0; k < Number(rate) / 50; k++, i++) s.send(buf, 7000 + (i % 200), addrs[i % addrs.length]);
    await new Promise((r) => setTimeout(r, 20));
  }
  s.close();
});`;

interface Snap { at: number; gen: number; s: RouterStats }

/** Rule sets of distinct shapes (so a stats snapshot tells which one is live); none denies ICMP. */
function ruleSets(host: (n: number) => string, gw: string): Array<{ in: Array<[string, NativeRule]>; out: Array<[string, NativeRule]> }> {
  const r = (text: string, action: 0 | 1, src: string, sb: number, dst: string, db: number, proto = -1, dport: Array<[number, number]> = []): [string, NativeRule] =>
    [text, { action, src: ipToInt(src), srcBits: sb, dst: ipToInt(dst), dstBits: db, proto, sport: [], dport, icmpType: -1 }];
  const net = host(0);
  const denyUdp9 = r('out deny udp 9', 1, net, 24, gw, 32, PROTO_UDP, [[9, 9]]);
  const allowIcmpOut = r('out allow icmp', 0, net, 24, gw, 32, PROTO_ICMP);
  const allowIcmpIn = r('in allow icmp', 0, gw, 32, net, 24, PROTO_ICMP);
  const denySprayHigh = r('in deny udp 7100-7199', 1, gw, 32, net, 24, PROTO_UDP, [[7100, 7199]]);
  const denySpray11 = r('in deny udp to .11', 1, gw, 32, host(11), 32, PROTO_UDP);
  const allowAll = r('out allow', 0, '0.0.0.0', 0, '0.0.0.0', 0);
  // A long chain of rules that match nothing here (other networks), to make compiles non-trivial.
  const filler = (n: number, chain: string): Array<[string, NativeRule]> => Array.from({ length: n }, (_, i) =>
    r(`${chain} filler ${i}`, 1, `172.${16 + (i % 16)}.${(i >> 4) & 255}.0`, 24, `100.64.${i & 255}.0`, 24, i % 2 ? PROTO_UDP : 6, [[i % 60000, (i % 60000) + 10]]));
  return [
    { in: [], out: [] },
    { in: [allowIcmpIn], out: [denyUdp9] },
    { in: [allowIcmpIn, denySprayHigh], out: [allowIcmpOut, denyUdp9] },
    { in: [denySpray11, allowIcmpIn, denySprayHigh], out: [allowAll] },
    { in: [...filler(300, 'in'), denySprayHigh], out: [...filler(500, 'out'), denyUdp9, allowAll] },
    { in: [denySprayHigh, denySpray11, allowIcmpIn, ...filler(20, 'in')], out: [denyUdp9] .concat(filler(7, 'out')) },
  ];
}

/** Checks that nothing in b went below a (same peers by id; hits when the same rule set was live in both). */
function monotonic(a: Snap, b: Snap, carries: Map<string, { in: number[]; out: number[] }>): void {
  for (const k of ['rxPackets', 'rxBytes', 'txPackets', 'txBytes'] as const) assert.ok(b.s[k] >= a.s[k], `${k} went backwards: ${a.s[k]} -> ${b.s[k]}`);
  for (const [reason, v] of Object.entries(a.s.drops)) assert.ok(b.s.drops[reason] >= v, `drops.${reason} went backwards`);
  for (const p of a.s.peers) {
    const q = b.s.peers.find((x) => x.id === p.id);
    if (!q) continue;
    for (const k of ['tx', 'rx', 'txBytes', 'rxBytes', 'dropped'] as const) assert.ok(q[k] >= p[k], `peer ${p.id} ${k} went backwards: ${p[k]} -> ${q[k]}`);
    for (const [reason, v] of Object.entries(p.drops)) assert.ok(q.drops[reason] >= v, `peer ${p.id} drops.${reason} went backwards`);
  }
  const shape = (s: RouterStats) => `${s.hits.in.length}/${s.hits.out.length}`;
  if (shape(a.s) === shape(b.s)) {
    a.s.hits.in.forEach((v, i) => assert.ok(b.s.hits.in[i] >= v, `hits.in[${i}] went backwards`));
    a.s.hits.out.forEach((v, i) => assert.ok(b.s.hits.out[i] >= v, `hits.out[${i}] went backwards`));
  } else if (b.gen === a.gen + 1) {
    // One reload between the two: a carried counter starts from its old value.
    const c = carries.get(`${shape(a.s)}->${shape(b.s)}`);
    if (c) {
      c.in.forEach((from, i) => { if (from >= 0) assert.ok(b.s.hits.in[i] >= a.s.hits.in[from], `carried hits.in[${i}] went backwards`); });
      c.out.forEach((from, i) => { if (from >= 0) assert.ok(b.s.hits.out[i] >= a.s.hits.out[from], `carried hits.out[${i}] went backwards`); });
    }
  }
}

test(`soak: ${SECONDS} s of mixed traffic, rule reloads and peer restarts`, { timeout: (SECONDS + 120) * 1000 }, async () => {
  requireRoot();
  L.start('sk', { maxFrame: 8188, queueBytes: 256 * 1024 });
  const addrs = Array.from({ length: PEERS }, (_, i) => L.host(10 + i));
  const sets = ruleSets((n) => L.host(n), L.gw);
  await settle();
  const fd0 = fdCount();
  const t0 = Date.now();
  const end = t0 + SECONDS * 1000;

  const peers: FramePeer[] = [];
  for (const a of addrs) {
    const p = await FramePeer.connect(L.sockPath, { keep: false });
    assert.ok(await p.ping(a, L.gw), `first ping from ${a}`);
    peers.push(p);
  }
  const spray = L.runInGateway(SPRAY, [L.gw, '2000', String(SECONDS), ...addrs]);

  let pings = 0;
  let answered = 0;
  const unanswered: string[] = [];
  let udpSent = 0;
  let restarts = 0;
  let reloads = 0;
  let gen = 0;
  const restarting = new Set<number>();

  // Each peer: ping, a burst of UDP to the gateway's discard port, a pause.
  const traffic = addrs.map(async (a, i) => {
    while (Date.now() < end) {
      if (restarting.has(i)) { await sleep(20); continue; }
      const p = peers[i];
      pings++;
      if (await p.ping(a, L.gw, 3000)) answered++;
      else if (p.closed || peers[i] !== p) pings--;   // its peer was restarted under it: the reply went to a closed socket
      else unanswered.push(`${a}@${Date.now() - t0}ms`);
      for (let k = 0; k < 20 && !p.closed; k++, udpSent++) p.send(udpPacket(a, L.gw, 30000 + k, 9, 'soak'));
      await sleep(10);
    }
  });

  // Restarts: close a peer, wait until the router has let its address go, reconnect, relearn.
  const restarter = (async () => {
    while (Date.now() + RESTART_MS < end) {
      await sleep(RESTART_MS);
      const i = crypto.randomInt(PEERS);
      restarting.add(i);
      const old = L.peerStats(addrs[i]).id;
      peers[i].close();
      await waitFor(() => L.log.some((e) => e.type === 'peer_down' && e.id === old), 5000, `peer_down of ${addrs[i]}`);
      const p = await FramePeer.connect(L.sockPath, { keep: false });
      assert.ok(await p.ping(addrs[i], L.gw, 3000), `ping after restart of ${addrs[i]}`);
      peers[i] = p;
      restarting.delete(i);
      restarts++;
    }
  })();

  // Reloads: rotate through the sets; carry hit counters by rule text.
  const carries = new Map<string, { in: number[]; out: number[] }>();
  let live = 0;
  const reloader = (async () => {
    while (Date.now() + RELOAD_MS < end) {
      await sleep(RELOAD_MS);
      const next = (live + 1 + crypto.randomInt(sets.length - 1)) % sets.length;
      const from = sets[live];
      const to = sets[next];
      const carryOf = (o: Array<[string, NativeRule]>, n: Array<[string, NativeRule]>) => n.map(([t]) => o.findIndex(([u]) => u === t));
      const c = { in: carryOf(from.in, to.in), out: carryOf(from.out, to.out) };
      carries.set(`${from.in.length}/${from.out.length}->${to.in.length}/${to.out.length}`, c);
      L.router.setRules(to.in.map(([, r]) => r), to.out.map(([, r]) => r), Int32Array.from(c.in), Int32Array.from(c.out));
      live = next;
      gen++;
      reloads++;
    }
  })();

  // The watcher: stats every 250 ms, checked against the previous snapshot; memory every 5 s, after a full GC.
  const mem: Array<[number, number]> = [];
  let snaps = 0;
  const watcher = (async () => {
    let prev: Snap | undefined;
    let lastMem = 0;
    while (Date.now() < end) {
      const cur: Snap = { at: Date.now(), gen, s: L.router.stats() };
      if (prev) monotonic(prev, cur, carries);
      prev = cur;
      snaps++;
      if (Date.now() - lastMem >= 5000) { lastMem = Date.now(); await settle(); mem.push([Date.now() - t0, outsideHeapKiB()]); }
      await sleep(250);
    }
  })();

  await Promise.all([...traffic, restarter, reloader, watcher]);
  assert.equal(await spray, 0);
  const final = L.router.stats();
  for (const p of peers) p.close();
  await waitFor(() => L.router.stats().peers.length === 0, 5000, 'all peers gone');
  const closed = L.router.stats();   // everything the peers wrote has been read by now
  await settle();
  const fd1 = fdCount();

  const half = mem.filter(([t]) => t >= (SECONDS * 1000) / 2);
  const mib = (k: number) => (k / 1024).toFixed(1);
  // The median of the half's last three samples against its first three's: a
  // steady leak shows over 6 of the half's ~8 intervals, one odd sample does not
  // decide it (V8 commits heap a while before it is resident).
  const med3 = (xs: Array<[number, number]>) => xs.map(([, k]) => k).sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  const growth = half.length >= 6 ? med3(half.slice(-3)) - med3(half.slice(0, 3)) : NaN;
  const drops = Object.fromEntries(Object.entries(final.drops).filter(([, v]) => v > 0));
  console.log(`# soak ${SECONDS} s: pings ${answered}/${pings}, UDP up ${udpSent}, tun rx ${final.rxPackets} / tx ${final.txPackets} packets, ` +
    `reloads ${reloads}, restarts ${restarts}, snapshots ${snaps}, events ${JSON.stringify(Object.fromEntries(L.log.counts))}`);
  console.log(`# soak drops ${JSON.stringify(drops)}; hits in ${JSON.stringify(final.hits.in.slice(0, 5))} out ${JSON.stringify(final.hits.out.slice(-3))}`);
  console.log(`# soak fds ${fd0} -> ${fd1}; RSS less V8 heap (s: MiB) ${mem.map(([t, k]) => `${Math.round(t / 1000)}:${mib(k)}`).join(' ')}; second-half growth ${mib(growth)} MiB; now ${memText()}`);

  assert.deepEqual(unanswered, [], 'every ping answered');
  assert.ok(pings >= PEERS * 10, `pings ${pings}`);
  assert.ok(reloads >= 2 && restarts >= 1, `reloads ${reloads}, restarts ${restarts}`);
  assert.equal(L.log.count('error'), 0, 'router errors');
  assert.equal(L.log.count('protocol_error'), 0);
  // Every UDP frame a peer wrote reached the tun or was denied by the out chain (pings add to both sides).
  assert.ok(closed.txPackets + (closed.drops.firewall_out ?? 0) >= udpSent, `tun tx ${closed.txPackets} + firewall_out ${closed.drops.firewall_out} < UDP sent ${udpSent}`);
  assert.ok((final.drops.firewall_out ?? 0) > 0 && (final.drops.firewall_in ?? 0) > 0, 'both chains judged packets');
  assert.ok(fd1 <= fd0 + 2, `fd count ${fd0} -> ${fd1}`);
  assert.ok(half.length >= 6, `${half.length} memory samples in the second half: SOAK_SECONDS must be at least 80`);
  if (!UNDER_ASAN) assert.ok(growth <= FLAT_BOUND_KIB, `RSS less V8's heap grew ${mib(growth)} MiB over the second half`);
});
