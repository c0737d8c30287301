// router-batch.test.ts: the router's down path builds frames in a batch arena
// and sends each peer's frames with one sendmsg(); what a socket does not
// take (a frame cut in the middle, then whole frames) moves to the peer's
// queue. A peer that stops reading under a flood and then resumes must see
// only whole, intact packets, in the order sent, exactly as many as the
// router counted for it (tx), with the rest counted as queue_full.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { NativeRouter } from '../../src/native';
import { Lab, requireRoot, sh, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';
import { ipToInt, parseIpv4, PROTO_UDP } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';

const lab = new Lab();
let ns = '';
let router: NativeRouter;
let net24 = '';
let sock = '';
let tunName = '';
const gw = () => net24 + '1';

// Sends count UDP datagrams gw -> dst:port, each carrying its sequence number
// (4 bytes) and padded to size bytes; pauses 1 ms every 100 so the tun queue
// does not overflow in the kernel (the router's queue is what is tested).
const SENDER = `
const dgram = require('node:dgram');
const [src, dst, port, count, size] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.bind(0, src, async () => {
  for (let i = 0; i < Number(count); i++) {
    const b = Buffer.alloc(Number(size), 0x5a);
    b.writeUInt32BE(i, 0);
    await new Promise((r) => s.send(b, Number(port), dst, r));
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
  }
  s.close();
});`;

before(async () => {
  requireRoot();
  ns = lab.netns('mrb');
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  ({ router, tun: tunName, sock } = startNativeRouter(lab, ns, 'mrb', { maxFrame: 1500, queueBytes: 64 * 1024 }));
  const tun = tunName;
  sh('ip', ['-n', ns, 'addr', 'add', `${gw()}/24`, 'dev', tun]);
});

after(async () => { await lab.cleanup(); });

test('a peer that stops reading, then resumes, gets whole packets in order, as many as counted', async () => {
  const addr = net24 + '30';
  const peer = await FramePeer.connect(sock);
  lab.onCleanup(() => peer.close());
  assert.ok(await peer.ping(addr, gw(), 5000), 'echo reply');
  peer.clear();
  peer.sock.pause();
  const count = 3000;
  const size = 1000 + crypto.randomInt(300);  // frames do not line up with socket buffer sizes
  const child = lab.spawn(process.execPath, ['-e', SENDER, gw(), addr, '7000', String(count), String(size)], { ns });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 0);
  const counted = () => router.stats().peers.find((p) => p.addr === ipToInt(addr))!;
  await waitFor(() => counted().drops.queue_full > 0, 5000, 'queue_full while the peer does not read');
  peer.sock.resume();
  await waitFor(() => counted().queued === 0 && peer.packets.length >= counted().tx - 1, 5000, 'drained');
  await new Promise((r) => setTimeout(r, 200));
  const st = counted();
  assert.equal(peer.reader.pending, 0, 'no partial frame left over');
  // tx counted the echo reply before packets was cleared.
  assert.equal(peer.packets.length, st.tx - 1, `received ${peer.packets.length}, router counted ${st.tx - 1}`);
  // The kernel may drop at the tun's own queue on a busy box: counted there.
  const link = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', tunName]))[0];
  const tunDropped = Number(link.stats64?.tx?.dropped ?? 0);
  assert.equal(peer.packets.length + st.drops.queue_full + tunDropped, count, 'every datagram delivered or counted as dropped');
  let last = -1;
  for (const p of peer.packets) {
    const ip = parseIpv4(p);
    assert.ok(ip.headerOk && ip.proto === PROTO_UDP && ip.totalLength === p.length && p.length === 20 + 8 + size, 'an intact packet');
    const seq = ip.payload.readUInt32BE(8);
    assert.ok(seq > last, `in order: ${seq} after ${last}`);
    assert.ok(ip.payload.subarray(12).every((b) => b === 0x5a), 'payload intact');
    last = seq;
  }
  peer.close();
});
