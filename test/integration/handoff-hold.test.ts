// handoff-hold.test.ts: holding for handed-over tuns (one hop, docs/one-hop.md).
// A backlog spread over many vassals: with holding on, a vassal's datagrams
// wait in the router until it has several, and those of one flow go to its
// tun as one USO run (coalesce.h, uso_merge_frames): one write and one
// receive in the vassal's kernel for the run, not one per datagram. The
// backlog is made as in router-hold.test.ts (the router, the moat CLI,
// stopped with SIGSTOP while a sender queues datagrams round-robin over the
// vassals in its tun). bench/gen/tun-peers.c hands 50 tuns over to the
// router; a receiver in their namespace binds a socket to each address and
// checks each datagram: exactly the vassal's own, intact, in order, once.
// Light traffic is never held. With holding off, nothing is held or merged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Lab, requireRoot, sh, waitFor, waitForAsync } from '../helpers/netns';
import { readStats } from '../helpers/moat';
import { buildInLab } from '../helpers/frame-flood';
import { backlog, datagram, lines, startHoldRouter, startSender } from '../helpers/hold-backlog';

const PEERS = 50;
const PER_PEER = 40;
const PORT = 9100;      // the test's datagrams (tun-peers counts on another port)
const TUN_PEERS_PORT = 9000;

// The receiver (node -e RECEIVER prefix peers port), in the vassals'
// namespace: a socket bound to each vassal's address. On "report" it prints
// {seqs: [[...], ...], bad: [...]} as one line.
const RECEIVER = `
const dgram = require('node:dgram');
const readline = require('node:readline');
const [prefix, peers, port] = process.argv.slice(1);
${datagram.toString()}
const seqs = [], bad = [];
let bound = 0;
for (let i = 0; i < Number(peers); i++) {
  seqs.push([]);
  const s = dgram.createSocket('udp4');
  s.on('message', (m, from) => {
    const idx = m.length >= 6 ? m.readUInt16BE(0) : -1;
    const seq = m.length >= 6 ? m.readUInt32BE(2) : -1;
    if (idx !== i || !m.equals(datagram(i, seq))) bad.push('peer ' + i + ' got peer ' + idx + ' seq ' + seq + ' (' + m.length + ' bytes from ' + from.address + '), or mangled');
    else seqs[i].push(seq);
  });
  s.bind(Number(port), prefix + (i + 1), () => { if (++bound === Number(peers)) process.stdout.write('ready\\n'); });
}
readline.createInterface({ input: process.stdin }).on('line', () => process.stdout.write(JSON.stringify({ seqs, bad }) + '\\n'));
`;

async function runCase(holdMs: number, log: (s: string) => void): Promise<void> {
  requireRoot();
  const lab = new Lab();
  try {
    const hr = await startHoldRouter(lab, holdMs, 'mhh');
    const { router, sock, stats, ns, gw, prefix } = hr;
    const vns = lab.netns('mhv');

    // The vassals: one tun each (prefix + 1 ...), handed to the router.
    sh('sysctl', ['-qw', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'], { ns: vns });
    const peers = lab.spawn(buildInLab(lab, 'tun-peers'), ['--socket', sock, '--count', String(PEERS), '--base', prefix + '1',
      '--gw', gw, '--port', String(TUN_PEERS_PORT), '--tag', '1', '--duration', '120', '--idle', '120'], { ns: vns });
    const pl = lines(peers, 'tun-peers');
    await waitFor(() => pl.err().includes('"ready"') || peers.exitCode !== null, 20000, 'tuns handed over');
    assert.ok(pl.err().includes('"ready"'), pl.err());
    let doc: any;
    const refresh = async () => { doc = await readStats(stats); return doc; };
    const ours = () => doc.peers.filter((q: any) => q.handoff && String(q.addr).startsWith(prefix));
    await waitForAsync(async () => (await refresh(), ours().length === PEERS), 5000, 'the router holds every tun');

    const receiver = lab.spawn(process.execPath, ['-e', RECEIVER, prefix, String(PEERS), String(PORT)], { ns: vns });
    const rl = lines(receiver, 'receiver');
    await waitFor(() => rl.all.includes('ready') || receiver.exitCode !== null, 10000, 'receiver bound');
    const sender = await startSender(lab, ns, gw, prefix, PEERS, PER_PEER, PORT);

    await refresh();
    const before = { frames: doc.moat.hold.held_frames, writes: doc.moat.hold.held_writes, uso: doc.moat.offload.uso_tx, segs: doc.moat.offload.uso_segments };
    const tx0 = new Map<string, number>(ours().map((q: any) => [q.addr, q.tx_packets]));
    const drops0 = new Map<string, number>(ours().map((q: any) => [q.addr, q.dropped]));
    // The backlog: the router stopped, every datagram in its tun's queue.
    const dropped = await backlog(hr, () => sender.command('flood'));
    assert.equal(dropped, 0, `the tun dropped ${dropped} datagrams while the router was stopped`);

    const expect = Array.from({ length: PER_PEER }, (_, k) => k);
    let got: { seqs: number[][]; bad: string[] } = { seqs: [], bad: [] };
    await waitForAsync(async () => {
      got = JSON.parse(await rl.ask('report'));
      return got.bad.length > 0 || got.seqs.every((s) => s.length >= PER_PEER);
    }, 20000, 'every vassal\'s datagrams').catch((e) => {
      throw new Error(`${e.message}: short ${got.seqs.map((s, i) => [i, s.length]).filter(([, n]) => n < PER_PEER).slice(0, 8).join(' ')}`);
    });
    await new Promise((r) => setTimeout(r, 200));  // anything extra would show up now
    got = JSON.parse(await rl.ask('report'));
    assert.deepEqual(got.bad, [], 'every datagram intact and the vassal\'s own');
    got.seqs.forEach((s, i) => assert.deepEqual(s, expect, `vassal ${i}: exactly its datagrams, in order, once`));

    await refresh();
    const heldFrames = doc.moat.hold.held_frames - before.frames;
    const heldWrites = doc.moat.hold.held_writes - before.writes;
    const runs = doc.moat.offload.uso_tx - before.uso;
    const merged = doc.moat.offload.uso_segments - before.segs;
    log(`hold ${holdMs} ms: ${PEERS * PER_PEER} datagrams over ${PEERS} handed-over tuns; held_frames ${heldFrames}, held_writes ${heldWrites}; ` +
        `${runs} USO runs carried ${merged} datagrams`);
    for (const q of ours()) {
      assert.equal(q.tx_packets - tx0.get(q.addr)!, PER_PEER, `${q.addr}: tx_packets counts each datagram once`);
      assert.equal(q.dropped - drops0.get(q.addr)!, 0, `${q.addr}: nothing dropped (${JSON.stringify(q.drops)})`);
      assert.equal(q.queued, 0, `${q.addr}: nothing left queued`);
    }
    if (holdMs > 0) {
      assert.ok(heldWrites > 0 && heldFrames >= 2 * heldWrites, `held frames shared writes: ${heldFrames} frames, ${heldWrites} writes`);
      assert.ok(runs > 0 && merged >= 2 * runs, `held datagrams left as USO runs: ${runs} runs, ${merged} datagrams`);
      assert.ok(merged >= PEERS * PER_PEER / 2, `most datagrams went in runs (${merged} of ${PEERS * PER_PEER})`);
    } else {
      assert.equal(heldFrames, 0, 'hold 0: nothing held');
      assert.equal(runs, 0, 'hold 0: round-robin datagrams never merge');
    }

    // Light traffic: one datagram at a time to an idle router is never held.
    const light = { frames: doc.moat.hold.held_frames, writes: doc.moat.hold.held_writes };
    for (let k = 0; k < 10; k++) {
      await sender.command(`one 3 ${PER_PEER + k}`);
      await waitForAsync(async () => JSON.parse(await rl.ask('report')).seqs[3].length > PER_PEER + k, 5000, `light datagram ${k}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    got = JSON.parse(await rl.ask('report'));
    assert.deepEqual(got.seqs[3].slice(PER_PEER), Array.from({ length: 10 }, (_, k) => PER_PEER + k), 'light datagrams in order');
    await refresh();
    assert.equal(doc.moat.hold.held_frames, light.frames, 'light traffic: nothing held');
    assert.equal(doc.moat.hold.held_writes, light.writes, 'light traffic: no held writes');
    assert.ok(router.child.exitCode === null, `the router still runs:\n${router.output()}`);
    sender.end();
    receiver.stdin!.end();
  } finally {
    await lab.cleanup();
  }
}

test('a backlog spread over 50 handed-over tuns: held datagrams go as USO runs, all delivered in order; light traffic is never held', async (t) => {
  await runCase(200, (s) => t.diagnostic(s));
});

test('the same backlog with --tuntap-router-hold 0: all delivered in order, nothing held or merged', async (t) => {
  await runCase(0, (s) => t.diagnostic(s));
});
