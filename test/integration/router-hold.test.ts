// router-hold.test.ts: holding (tuntap-router-hold). While the tun has a
// backlog, a peer that got only a few frames in a batch waits for later ones
// so that one write carries several. The backlog is made deterministic: the
// router (the moat CLI, in a gateway namespace) is stopped with SIGSTOP, a
// sender queues 4,000 datagrams spread round-robin over 100 peers in the
// tun's queue (txqueuelen 50000: the kernel keeps them all), then SIGCONT.
// Every peer must get exactly its datagrams, in order, intact, as many as the
// router counted for it; with holding on, writes carried several frames, and
// light traffic (a tun batch that empties the tun) is never held. With
// holding off (0) nothing is held. Offload peers (moat devices that keep
// their tun) get their held datagrams merged into USO runs, which must split
// back into exactly their datagrams, in order. Peers that hang up while the backlog is
// routed (their frames held, written, held again) are closed cleanly and the
// others get all theirs (this file also runs under the ASan addon in CI).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
import { readStats } from '../helpers/moat';
import { icmpEcho, parseIpv4, inetChecksum, MOD_HELLO, MOD_VNET, offloadHello, PROTO_UDP } from '../helpers/packets';
import { addon } from '../../src/native';
import { FramePeer } from '../helpers/frame-peer';
import { backlog, countingPeers, datagram, startHoldRouter, startSender } from '../helpers/hold-backlog';

const PEERS = 100;
const PER_PEER_DEFAULT = 40;
const PORT = 9000;
const GSO_UDP_L4 = 5, NEEDS_CSUM = 1;
const { gsoSplit } = addon();

interface PeerConn {
  peer: FramePeer;     // counts every frame (the echo reply too) and the bytes received
  addr: string;
  seqs: number[];      // UDP datagrams received, by seq
  bad: string[];       // what was wrong with a datagram
  hungUp: boolean;     // hung up by the test while the backlog was routed
  packets: number;     // IPv4 packets received (a USO run's each), the echo reply too
  runs: number;        // USO runs received (offload peers)
}

/** Runs the whole case with the router's --tuntap-router-hold = holdMs. */
async function runCase(holdMs: number, log: (s: string) => void, opts: { closeEven?: boolean; perPeer?: number; offload?: boolean } = {}): Promise<void> {
  requireRoot();
  const PER_PEER = opts.perPeer ?? PER_PEER_DEFAULT;
  const lab = new Lab();
  try {
    const hr = await startHoldRouter(lab, holdMs, 'mho');
    const { router, sock, stats, ns, gw, prefix } = hr;
    const peerAddr = (i: number) => prefix + (i + 1);

    // The peers: each says hello with an echo request (the router learns its
    // address from it; the kernel's reply is its first frame).
    const peers: PeerConn[] = [];
    // closeEven adds one quiet peer (index PEERS) that gets a single datagram
    // at the head of the backlog: held for the whole hold time, it stays first
    // in the router's list of held peers while the others are held, written
    // and held again behind it.
    const extra = opts.closeEven ? 1 : 0;
    for (let i = 0; i < PEERS + extra; i++) {
      const p = { addr: peerAddr(i), seqs: [], bad: [], hungUp: false, packets: 0, runs: 0 } as unknown as PeerConn;
      // One IPv4 packet of a frame: exactly the peer's own datagram, intact.
      // partial: its UDP checksum is the pseudo-header sum a NEEDS_CSUM
      // packet carries (the receiving kernel completes it), not checked.
      const check = (pkt: Buffer, partial: boolean) => {
        p.packets++;
        let ip;
        try { ip = parseIpv4(pkt); } catch { p.bad.push('not IPv4'); return; }
        if (ip.proto !== PROTO_UDP) return;
        const u = ip.payload;
        const data = u.subarray(8);
        if (!ip.headerOk || ip.totalLength !== pkt.length || ip.src !== gw || ip.dst !== p.addr ||
            u.length < 8 + 6 || u.readUInt16BE(2) !== PORT || u.readUInt16BE(4) !== u.length) {
          p.bad.push(`bad header: ${ip.src} -> ${ip.dst} len ${pkt.length}`);
          return;
        }
        const pseudo = (a: string) => a.split('.').map(Number);
        const [s1, s2, s3, s4] = pseudo(ip.src);
        const [d1, d2, d3, d4] = pseudo(ip.dst);
        const sum = ((s1 << 8) | s2) + ((s3 << 8) | s4) + ((d1 << 8) | d2) + ((d3 << 8) | d4) + PROTO_UDP + u.length;
        if (!partial && u.readUInt16BE(6) !== 0 && inetChecksum(u, 0, u.length, sum) !== 0) { p.bad.push('bad UDP checksum'); return; }
        const idx = data.readUInt16BE(0);
        const seq = data.readUInt32BE(2);
        if (idx !== i || !data.equals(datagram(i, seq))) { p.bad.push(`peer ${i} got datagram of peer ${idx} seq ${seq}, or mangled`); return; }
        p.seqs.push(seq);
        if (opts.closeEven && i % 2 === 0 && p.seqs.length === 9) {
          p.hungUp = true;
          p.peer.close();
        }
      };
      p.peer = await FramePeer.connect(sock, { keep: false, onFrame: (f) => {
        if (p.hungUp || f.mod2 === MOD_HELLO) return;
        if (f.mod2 !== MOD_VNET) return check(f.payload, false);
        // An offload peer's frame: a virtio_net_hdr, then a packet or a USO run.
        if (f.payload[1] !== GSO_UDP_L4) return check(f.payload.subarray(10), (f.payload[0] & NEEDS_CSUM) !== 0);
        const split = gsoSplit(f.payload);
        if (!split.segments) { p.bad.push(`a run that does not split: ${split.error}`); return; }
        p.runs++;
        for (const seg of split.segments) if (!p.hungUp) check(seg, false);
      } });
      lab.onCleanup(() => p.peer.close());
      if (opts.offload) p.peer.send(offloadHello(p.addr), MOD_HELLO);
      p.peer.send(icmpEcho(p.addr, gw, 0x4000 + i, 1));
      peers.push(p);
    }
    await waitFor(() => peers.every((p) => p.packets >= 1), 10000, 'echo replies to all peers');
    let doc: any;
    const refresh = async () => {
      try {
        doc = await readStats(stats);
      } catch (e) {
        throw new Error(`stats: ${(e as Error).message}; router output: ${router.output().slice(-4000)}`);
      }
      return doc;
    };
    await refresh();
    const known = new Set(peers.map((p) => p.addr));
    const learned = () => doc.peers.filter((q: any) => known.has(q.addr)).length;
    assert.equal(learned(), PEERS + extra, 'the router knows every peer by its address');
    assert.equal(doc.moat.hold.ms, holdMs, 'the stats show the hold option');
    const held0 = { frames: doc.moat.hold.held_frames, writes: doc.moat.hold.held_writes, runs: doc.moat.offload.uso_tx, merged: doc.moat.offload.uso_segments };

    const sender = await startSender(lab, ns, gw, prefix, PEERS, PER_PEER, PORT);
    const command = sender.command;

    // The backlog: the router stopped, 4,000 datagrams in the tun's queue.
    // closeEven: even peers hang up on their 9th datagram, in the middle of
    // the backlog, when the router has held and written their frames before
    // and holds more.
    const live = peers.filter((_, i) => i < PEERS && !(opts.closeEven && i % 2 === 0));
    const dropped = await backlog(hr, async () => {
      if (extra) await command(`one ${PEERS} 0`);
      await command('flood');
    });
    const t0 = Date.now();
    assert.equal(dropped, 0, `the tun dropped ${dropped} of the ${PEERS * PER_PEER} datagrams while the router was stopped (txqueuelen 50000 should hold them all)`);

    const all = () => live.every((p) => p.seqs.length >= PER_PEER || p.bad.length > 0);
    await waitFor(all, 30000, 'every peer\'s datagrams').catch((e) => {
      const short = live.filter((p) => p.seqs.length < PER_PEER).map((p) => `${p.addr}: ${p.seqs.length}`);
      throw new Error(`${e.message}; short peers: ${short.slice(0, 10).join(', ')} (${short.length})`);
    });
    const deliverMs = Date.now() - t0;
    await new Promise((r) => setTimeout(r, 200));  // anything extra would show up now
    const expect = Array.from({ length: PER_PEER }, (_, k) => k);
    for (const p of live) {
      assert.deepEqual(p.bad, [], `${p.addr}: every datagram intact`);
      assert.deepEqual(p.seqs, expect, `${p.addr}: exactly its datagrams, in order`);
      assert.equal(p.peer.reader.pending, 0, `${p.addr}: no partial frame`);
    }
    await refresh();
    if (opts.closeEven) {
      assert.deepEqual(peers[PEERS].seqs, [0], 'the quiet peer got its one datagram');
      const hungUp = peers.filter((p) => p.hungUp);
      assert.equal(hungUp.length, PEERS / 2, 'every even peer hung up mid-backlog');
      for (const p of hungUp) assert.deepEqual(p.seqs, expect.slice(0, 9), `${p.addr}: its first datagrams, in order, before hanging up`);
      const gone = new Set(hungUp.map((p) => p.addr));
      await waitFor(() => !doc.peers.some((q: any) => gone.has(q.addr)), 5000, 'closed peers gone from the stats');
      await refresh();
      assert.ok(!doc.peers.some((q: any) => gone.has(q.addr)), 'closed peers gone from the stats');
    }
    const byAddr = new Map<string, any>(doc.peers.map((q: any) => [q.addr, q]));
    for (const p of live) {
      const q = byAddr.get(p.addr);
      assert.ok(q, `${p.addr} in the stats`);
      assert.equal(q.tx_packets, p.packets, `${p.addr}: tx_packets = packets received`);
      assert.equal(q.tx, p.peer.bytes, `${p.addr}: tx bytes = bytes received`);
      assert.equal(q.queued, 0, `${p.addr}: nothing left queued`);
      assert.equal(q.dropped, 0, `${p.addr}: nothing dropped`);
    }
    const heldFrames = doc.moat.hold.held_frames - held0.frames;
    const heldWrites = doc.moat.hold.held_writes - held0.writes;
    const runs = doc.moat.offload.uso_tx - held0.runs;
    const merged = doc.moat.offload.uso_segments - held0.merged;
    log(`hold ${holdMs} ms${opts.offload ? ', offload peers' : ''}: ${PEERS * PER_PEER} datagrams delivered in ${deliverMs} ms; held_frames ${heldFrames}, held_writes ${heldWrites}` +
        (heldWrites ? ` (${(heldFrames / heldWrites).toFixed(2)} frames a write)` : '') + `; ${runs} USO runs carried ${merged} datagrams`);
    const received = live.reduce((t, p) => t + p.runs, 0);
    assert.equal(received, runs, 'every run the router counted arrived as one frame');
    if (opts.offload && holdMs > 0) {
      assert.ok(runs > 0 && merged >= 2 * runs, `held datagrams left as USO runs: ${runs} runs, ${merged} datagrams`);
    } else {
      assert.equal(runs, 0, 'round-robin datagrams, unheld or to plain peers, never merge');
    }
    if (holdMs > 0) {
      assert.ok(heldWrites > 0, `some writes carried held frames (held_writes ${heldWrites})`);
      assert.ok(heldFrames >= 2 * heldWrites, `held frames shared writes: held_frames ${heldFrames} >= 2 * held_writes ${heldWrites}`);
      assert.ok(heldFrames <= PEERS * PER_PEER, `held_frames ${heldFrames} <= datagrams sent`);
      if (opts.closeEven) assert.ok(heldWrites >= live.length, `every live peer had held writes (${heldWrites} >= ${live.length})`);
    } else {
      assert.equal(heldFrames, 0, 'hold 0: nothing held');
      assert.equal(heldWrites, 0, 'hold 0: no held writes');
    }

    // Light traffic: one datagram at a time to an idle router is never held.
    const before = { frames: doc.moat.hold.held_frames, writes: doc.moat.hold.held_writes };
    const p0 = live[0];
    const i0 = peers.indexOf(p0);
    for (let k = 0; k < 20; k++) {
      const seq = PER_PEER + k;
      await command(`one ${i0} ${seq}`);
      await waitFor(() => p0.seqs.length > PER_PEER + k || p0.bad.length > 0, 5000, `light datagram ${seq}`);
      assert.deepEqual(p0.bad, [], 'light datagram intact');
      assert.equal(p0.seqs[p0.seqs.length - 1], seq, 'light datagram in order');
      await new Promise((r) => setTimeout(r, 20));
    }
    await refresh();
    assert.equal(doc.moat.hold.held_frames, before.frames, 'light traffic: held_frames unchanged');
    assert.equal(doc.moat.hold.held_writes, before.writes, 'light traffic: held_writes unchanged');
    const q0 = doc.peers.find((q: any) => q.addr === p0.addr);
    assert.equal(q0.tx_packets, p0.packets, `${p0.addr}: tx_packets = packets received after the light traffic`);
    assert.ok(router.child.exitCode === null, `the router still runs:\n${router.output()}`);
    sender.end();
  } finally {
    await lab.cleanup();
  }
}

test('a backlog spread over 100 peers: holding shares writes, delivers all in order; light traffic is never held', async (t) => {
  await runCase(200, (s) => t.diagnostic(s));
});

test('the same backlog with --tuntap-router-hold 0: all delivered in order, nothing held', async (t) => {
  await runCase(0, (s) => t.diagnostic(s));
});

test('offload peers (moat devices that keep their tun): held datagrams leave as USO runs, split back in order', async (t) => {
  await runCase(200, (s) => t.diagnostic(s), { offload: true });
});

test('a backlog to one flooded peer and a neighbour: nothing is held, the neighbour\'s datagram is not kept waiting', async (t) => {
  // One vassal's flood is not spread traffic: holding would save a write or
  // two a batch and keep its neighbours' packets waiting up to the hold.
  requireRoot();
  const FLOOD = 1000;
  const lab = new Lab();
  try {
    const hr = await startHoldRouter(lab, 1000, 'mhn');
    const got = await countingPeers(lab, hr, 2, 0x4100);
    const before = (await readStats(hr.stats)).moat.hold;
    // The sender's "flood" goes to peer 0 only (1 peer); "one 1 0" to the neighbour.
    const sender = await startSender(lab, hr.ns, hr.gw, hr.prefix, 1, FLOOD, PORT);
    const dropped = await backlog(hr, async () => {
      await sender.command('flood');
      await sender.command('one 1 0');
      await sender.command('flood');
    });
    assert.equal(dropped, 0, 'the tun kept the whole backlog');
    const t0 = Date.now();
    await waitFor(() => got[1] === 1, 5000, 'the neighbour\'s datagram');
    const neighbourMs = Date.now() - t0;
    await waitFor(() => got[0] === 2 * FLOOD, 10000, `the flood (${got[0]} of ${2 * FLOOD})`);
    const after = (await readStats(hr.stats)).moat.hold;
    t.diagnostic(`the neighbour's datagram ${neighbourMs} ms after the router went on; held_frames +${after.held_frames - before.held_frames}`);
    assert.equal(after.held_frames, before.held_frames, 'nothing held: the backlog went to two peers');
    assert.equal(after.held_writes, before.held_writes, 'no held writes');
    // Held, it would have waited the hold (1 s) or, the tun drained, a quarter of it.
    assert.ok(neighbourMs < 200, `the neighbour's datagram came ${neighbourMs} ms after the backlog started to move (held: 250-1000 ms)`);
    sender.end();
  } finally {
    await lab.cleanup();
  }
});

test('peers that hang up while their frames are held: closed cleanly, the others get all theirs in order', async (t) => {
  // A longer backlog (20,000 datagrams) so the hang-ups land while it is routed.
  await runCase(1000, (s) => t.diagnostic(s), { closeEven: true, perPeer: 200 });
});
