// router-uso-queue.test.ts: a USO run (native/coalesce.h) the router merges
// for an offload peer never outgrows that peer's outbound queue. A run is
// built in the batch arena and may reach 65000 bytes; when the peer's socket
// takes only part of it, the rest is copied into the peer's queue, which
// holds queueBytes. A raw offload peer with a small queue (16 KiB) stops
// reading while the gateway floods it with runs of 1400-byte datagrams, then
// reads again, a few times over: the router's queue for it must never hold
// more than queueBytes (more would be written past the end of the buffer).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { requireRoot, sleep, waitFor } from '../helpers/netns';
import { MOD_HELLO, offloadHello } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { RouterLab } from '../helpers/native-router';

const QUEUE = 16384;
const L = new RouterLab();

// argv: dst port count. 1400-byte datagrams in bursts of 64 (so the tun
// holds runs for the router's reader), a 1 ms pause every 1024.
const SENDER = `
const dgram = require('node:dgram');
const [dst, port, count] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const body = Buffer.alloc(1400, 0x5a);
s.bind(0, async () => {
  for (let seq = 0; seq < Number(count);) {
    let last;
    for (let k = 0; k < 64 && seq < Number(count); k++, seq++) last = new Promise((r) => s.send(body, Number(port), dst, r));
    await last;
    if (seq % 1024 < 64) await new Promise((r) => setTimeout(r, 1));
  }
  s.close();
});
`;

before(() => {
  requireRoot();
  L.start('mq', { offload: true, queueBytes: QUEUE });
});

after(() => L.cleanup());

test('a USO run cut by a short write fits the peer\'s queue (queueBytes 16 KiB)', async () => {
  const addr = L.host(2);
  const peer = await FramePeer.connect(L.sockPath, { keep: false });
  assert.ok(await peer.ping(addr, L.gw), 'the peer is learned');  // before the hello: the reply comes plain
  peer.send(offloadHello(addr), MOD_HELLO);
  await waitFor(() => L.peerStats(addr).offload, 3000, 'offloads negotiated');

  let maxQueued = 0;
  const watch = setInterval(() => { maxQueued = Math.max(maxQueued, L.peerStats(addr).queued); }, 2);
  try {
    for (let round = 0; round < 6; round++) {
      peer.sock.pause();  // the router's writes fill the socket, then fall short
      const tx = L.lab.spawn(process.execPath, ['-e', SENDER, addr, String(20000 + crypto.randomInt(20000)), '6000'], { ns: L.ns });
      await new Promise((r) => tx.once('exit', r));
      await sleep(50);
      maxQueued = Math.max(maxQueued, L.peerStats(addr).queued);
      peer.sock.resume();
      await waitFor(() => L.peerStats(addr).queued === 0, 5000, 'the queue drains once the peer reads');
    }
  } finally {
    clearInterval(watch);
  }
  const p = L.peerStats(addr);
  assert.ok(L.router.stats().usoTx > 0, 'runs were merged for the peer');
  assert.ok((p.drops.queue_full ?? 0) > 0, 'the queue filled (the peer stopped reading)');
  assert.ok(maxQueued <= QUEUE, `the queue held at most ${QUEUE} bytes (saw ${maxQueued})`);
  assert.equal(peer.closed, false, 'the peer stays connected');
  peer.close();
});
