// router-sndbuf-growth.test.ts: a streaming peer's send buffer grows
// (tuntap-router-sndbuf-busy / -budget, native/sndbuf.h's SndbufGrowth).
// The native router in a gateway namespace; frame peers on its socket learn
// their addresses; UDP from the gateway toward a peer whose socket is paused
// fills the router's send buffer (moat's own queue takes the rest). A peer
// that then reads (its buffer drained: EPOLLOUT) gets the larger buffer, as
// the kernel shows (`ss` reads the router's socket) and the stats say; idle,
// it gets its size back; a peer that never reads never grows; the budget
// bounds the growths of all peers, and a closed peer's growth returns to it;
// a grown peer that stops reading pins no more than its grown buffer and
// moat's queue, and keeps its growth (out of others' reach) only until it
// reads again or goes away.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { requireRoot, sh, waitFor } from '../helpers/netns';
import { RouterLab } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';
import { ipToInt, udpPacket } from '../helpers/packets';

const BUSY = 524288;            // asked; the kernel keeps twice that
const PORT = 9000;

function wmemDefault(): number {
  return Number(sh('sysctl', ['-n', 'net.core.wmem_default']).trim());
}

/** The skmem of this process's unix sockets on path (the router's accepted ends): tb, the send buffer; t, the bytes sent and not yet read. */
function routerSendMemory(path: string): { tb: number; t: number }[] {
  const out = sh('ss', ['-x', '-m', '-n', '-p', 'state', 'established']);
  const mem: { tb: number; t: number }[] = [];
  // ss prints a socket on one line, its skmem on the next when long: join them.
  const text = out.replace(/\n\s+skmem/g, ' skmem');
  for (const line of text.split('\n')) {
    if (!line.includes(` ${path} `) || !line.includes(`pid=${process.pid},`)) continue;
    const tb = /tb(\d+)/.exec(line), t = /[(,]t(\d+)/.exec(line);
    if (tb && t) mem.push({ tb: Number(tb[1]), t: Number(t[1]) });
  }
  return mem;
}

function routerSendBuffers(path: string): number[] {
  return routerSendMemory(path).map((m) => m.tb);
}

/** A peer on the router that has learned addr (it sent one datagram from it). */
async function peerAt(r: RouterLab, addr: string): Promise<FramePeer> {
  const p = await FramePeer.connect(r.sockPath, { keep: false });
  p.send(udpPacket(addr, r.gw, PORT, PORT, 'hello'));
  await waitFor(() => r.router.stats().peers.some((x) => x.addr === ipToInt(addr)), 5000, `router learned ${addr}`);
  return p;
}

/** Fills the router's send buffer toward p (paused) until moat's own queue holds frames too. */
async function fill(r: RouterLab, p: FramePeer, addr: string): Promise<void> {
  p.sock.pause();
  const sent = r.udpFromGateway(addr, PORT, 3000, 1400);
  await waitFor(() => r.peerStats(addr).queued > 0, 15000, `frames queued for ${addr} (its socket full)`);
  assert.equal(await sent, 0, 'the gateway sent its datagrams');
}

test('a peer that reads after its buffer filled gets the larger buffer; idle, it gets its size back', async () => {
  requireRoot();
  const r = new RouterLab();
  try {
    r.start('msg', { sndbufBusy: BUSY, sndbufBudget: 64 << 20, queueBytes: 8 << 20 });
    const addr = r.host(2);
    const p = await peerAt(r, addr);
    const base = wmemDefault();
    assert.deepEqual(routerSendBuffers(r.sockPath), [base], 'before: the kernel default');
    await fill(r, p, addr);
    assert.equal(r.peerStats(addr).sndbufGrown, 0, 'not grown while it does not read');
    assert.deepEqual(routerSendBuffers(r.sockPath), [base], 'a full buffer of a peer that does not read stays the default');
    p.sock.resume();
    await waitFor(() => r.peerStats(addr).sndbufGrown > 0, 10000, 'grown once the peer read');
    await waitFor(() => r.peerStats(addr).queued === 0, 10000, 'its queue drained');
    const s = r.router.stats();
    const grown = r.peerStats(addr).sndbufGrown;
    assert.equal(grown, 2 * BUSY - base, 'grown to twice what is asked, from the default');
    assert.equal(s.sndbufGrownPeers, 1);
    assert.equal(s.sndbufGrownBytes, grown);
    assert.equal(s.sndbufGrows, 1);
    assert.deepEqual(routerSendBuffers(r.sockPath), [2 * BUSY], 'the kernel keeps the larger buffer');
    // Idle (nothing sent, nothing unread) for 5 s: back to the default.
    await waitFor(() => r.peerStats(addr).sndbufGrown === 0, 12000, 'its growth given back after 5 s idle');
    assert.deepEqual(routerSendBuffers(r.sockPath), [base], 'the kernel default again');
    assert.equal(r.router.stats().sndbufGrownBytes, 0);
    assert.ok(p.received > 3000 * 0.9, `the peer got the datagrams (${p.received})`);
  } finally {
    await r.cleanup();
  }
});

test('a peer that never reads never grows; the budget bounds all growths; a closed peer returns its growth', async () => {
  requireRoot();
  const r = new RouterLab();
  try {
    const base = wmemDefault();
    const one = 2 * BUSY - base;
    // Room for one growth, not two.
    r.start('msg', { sndbufBusy: BUSY, sndbufBudget: one + Math.floor(one / 2), queueBytes: 8 << 20 });
    const [a, b, c] = [r.host(2), r.host(3), r.host(4)];
    const pa = await peerAt(r, a), pb = await peerAt(r, b), pc = await peerAt(r, c);
    await fill(r, pa, a);
    pa.sock.resume();
    await waitFor(() => r.peerStats(a).sndbufGrown === one, 10000, 'a grown');
    await fill(r, pb, b);
    pb.sock.resume();
    await waitFor(() => r.peerStats(b).queued === 0, 10000, 'b drained');
    assert.equal(r.peerStats(b).sndbufGrown, 0, 'b not grown: the budget holds one growth');
    await fill(r, pc, c);          // c never reads
    await new Promise((res) => setTimeout(res, 500));
    assert.equal(r.peerStats(c).sndbufGrown, 0, 'c never read: not grown');
    let s = r.router.stats();
    assert.equal(s.sndbufGrownPeers, 1);
    assert.ok(s.sndbufGrownBytes <= one + Math.floor(one / 2), 'within the budget');
    // a goes away: its growth returns to the budget, and b grows on its next drain.
    pa.sock.destroy();
    await waitFor(() => r.router.stats().sndbufGrownPeers === 0, 5000, "a's growth returned when it closed");
    await fill(r, pb, b);
    pb.sock.resume();
    await waitFor(() => r.peerStats(b).sndbufGrown === one, 10000, 'b grown once the budget had room');
    s = r.router.stats();
    assert.equal(s.sndbufGrownPeers, 1);
    assert.equal(s.sndbufGrows, 2);
    assert.equal(r.peerStats(c).sndbufGrown, 0, 'c still not grown');
  } finally {
    await r.cleanup();
  }
});

test('a grown peer that stops reading pins at most its buffer and queue, and keeps its growth only until it reads again', async () => {
  requireRoot();
  const r = new RouterLab();
  const QUEUE = 1 << 20;
  try {
    const base = wmemDefault();
    const one = 2 * BUSY - base;
    r.start('msg', { sndbufBusy: BUSY, sndbufBudget: one, queueBytes: QUEUE });
    const [a, b] = [r.host(2), r.host(3)];
    const pa = await peerAt(r, a), pb = await peerAt(r, b);
    await fill(r, pa, a);
    pa.sock.resume();
    await waitFor(() => r.peerStats(a).sndbufGrown === one, 10000, 'a grown');
    await waitFor(() => r.peerStats(a).queued === 0, 10000, 'a drained');
    // a stops reading while the gateway goes on sending to it.
    const droppedBefore = r.peerStats(a).dropped;
    await fill(r, pa, a);
    await r.udpFromGateway(a, PORT, 3000, 1400);
    const mem = routerSendMemory(r.sockPath).find((m) => m.tb === 2 * BUSY);
    assert.ok(mem, 'a still has the grown buffer while it has unread data');
    // The kernel lets a send overshoot the buffer by one message at most.
    assert.ok(mem.t <= mem.tb + 70000, `unread bytes in the kernel ${mem.t} within the grown buffer ${mem.tb}`);
    assert.ok(r.peerStats(a).queued <= QUEUE, `moat's queue for a ${r.peerStats(a).queued} within queue-bytes ${QUEUE}`);
    assert.ok(r.peerStats(a).dropped > droppedBefore, 'the rest was dropped and counted');
    // Its growth is not given back while data waits unread (past the 5 s idle rule)...
    await new Promise((res) => setTimeout(res, 6500));
    assert.equal(r.peerStats(a).sndbufGrown, one, 'a keeps its growth while its data waits');
    // ... and b, streaming meanwhile, finds the budget taken.
    await fill(r, pb, b);
    pb.sock.resume();
    await waitFor(() => r.peerStats(b).queued === 0, 10000, 'b drained');
    assert.equal(r.peerStats(b).sndbufGrown, 0, 'b not grown: a holds the budget');
    // a reads again: drained and idle, its growth goes back, and b can grow.
    pa.sock.resume();
    await waitFor(() => r.peerStats(a).queued === 0, 10000, 'a drained again');
    await waitFor(() => r.peerStats(a).sndbufGrown === 0, 12000, "a's growth given back after 5 s idle");
    await fill(r, pb, b);
    pb.sock.resume();
    await waitFor(() => r.peerStats(b).sndbufGrown === one, 10000, 'b grown once a gave its growth back');
  } finally {
    await r.cleanup();
  }
});
