// frame.test.ts: the frame reassembler and the IPv4 check the router runs on
// every peer frame, through the addon's parseFrames/checkIpv4.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addon } from '../../src/native';
import { encodeFrame, encodeFrames, frameHeader, icmpEcho, ipv4Packet, ipv6Packet, tcpSyn, udpPacket, FrameReader, decodeFrames, inetChecksum } from '../helpers/packets';

const { parseFrames, checkIpv4 } = addon();

const packets = [
  icmpEcho('10.0.0.2', '10.0.0.1', 7, 1),
  udpPacket('10.0.0.2', '10.0.0.1', 4000, 53, 'hello'),
  tcpSyn('10.0.0.2', '10.0.0.1', 40000, 80),
  ipv4Packet({ src: '10.0.0.2', dst: '10.0.0.1', proto: 17, payload: Buffer.alloc(0) }),
];

/** Feeds a stream to parseFrames the way the router does: keep the rest, append the next chunk. */
function reassemble(chunks: Buffer[], maxPayload: number): { payloads: Buffer[]; status: string } {
  let pending = Buffer.alloc(0);
  const payloads: Buffer[] = [];
  let status = 'ok';
  for (const c of chunks) {
    pending = Buffer.concat([pending, c]);
    const r = parseFrames(pending, maxPayload);
    for (const f of r.frames) payloads.push(f.payload);
    status = r.status;
    if (r.status === 'oversize') break;
    pending = pending.subarray(r.consumed);
  }
  return { payloads, status };
}

test('the helpers build valid packets', () => {
  for (const p of packets) {
    assert.equal(checkIpv4(p), null);
    assert.equal(inetChecksum(p, 0, 20), 0, 'header checksum verifies');
  }
});

test('several frames in one buffer', () => {
  const r = parseFrames(encodeFrames(packets), 8188);
  assert.equal(r.status, 'ok');
  assert.equal(r.frames.length, packets.length);
  assert.equal(r.consumed, encodeFrames(packets).length);
  r.frames.forEach((f, i) => {
    assert.deepEqual(f.payload, packets[i]);
    assert.equal(f.mod1, 0);
    assert.equal(f.mod2, 0);
  });
});

test('a stream split at every byte boundary reassembles to the same frames', () => {
  const stream = encodeFrames(packets);
  for (let cut = 0; cut <= stream.length; cut++) {
    const r = reassemble([stream.subarray(0, cut), stream.subarray(cut)], 8188);
    assert.equal(r.status, 'ok', `cut at ${cut}`);
    assert.deepEqual(r.payloads, packets, `cut at ${cut}`);
  }
  // and one byte at a time
  const bytes = [...stream].map((b) => Buffer.from([b]));
  assert.deepEqual(reassemble(bytes, 8188).payloads, packets);
});

test('a partial frame is need_more and nothing is consumed of it', () => {
  const f = encodeFrame(packets[0]);
  for (let n = 0; n < f.length; n++) {
    const r = parseFrames(f.subarray(0, n), 8188);
    assert.equal(r.frames.length, 0);
    assert.equal(r.consumed, 0);
    assert.equal(r.status, n === 0 ? 'ok' : 'need_more');
  }
});

test('oversize: a header announcing more than maxPayload is refused before any payload arrives', () => {
  const hdr = frameHeader(1501);
  const r = parseFrames(hdr, 1500);
  assert.equal(r.status, 'oversize');
  assert.equal(r.frames.length, 0);
  // exactly the limit is fine
  const ok = parseFrames(encodeFrame(Buffer.alloc(1500, 0x45)), 1500);
  assert.equal(ok.status, 'ok');
  assert.equal(ok.frames[0].payload.length, 1500);
  // frames before the oversize one are still delivered
  const mixed = parseFrames(Buffer.concat([encodeFrame(packets[0]), frameHeader(65535)]), 8188);
  assert.equal(mixed.status, 'oversize');
  assert.equal(mixed.frames.length, 1);
  assert.equal(mixed.consumed, packets[0].length + 4);
});

test('modifiers are reported as sent', () => {
  const r = parseFrames(Buffer.concat([encodeFrame(packets[0], 1), encodeFrame(packets[1], 0, 7), encodeFrame(Buffer.alloc(0), 100)]), 8188);
  assert.deepEqual(r.frames.map((f) => [f.mod1, f.mod2]), [[0, 1], [7, 0], [0, 100]]);
  assert.equal(r.frames[2].payload.length, 0);
});

test('garbage never reads past the buffer and ends in need_more, ok or oversize', () => {
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 2000; i++) {
    const len = rnd() % 300;
    const b = Buffer.alloc(len);
    for (let j = 0; j < len; j++) b[j] = rnd() & 255;
    const max = rnd() % 400;
    const r = parseFrames(b, max);
    assert.ok(r.consumed <= len);
    let total = 0;
    for (const f of r.frames) {
      assert.ok(f.payload.length <= max);
      total += 4 + f.payload.length;
    }
    assert.equal(total, r.consumed);
    assert.ok(['ok', 'need_more', 'oversize'].includes(r.status));
  }
});

test('FrameReader (test helper) agrees with the native reassembler', () => {
  const stream = encodeFrames(packets);
  const reader = new FrameReader();
  const got = [];
  for (let i = 0; i < stream.length; i += 7) got.push(...reader.push(stream.subarray(i, i + 7)));
  assert.deepEqual(got.map((f) => f.payload), packets);
  assert.equal(reader.pending, 0);
  assert.deepEqual(decodeFrames(stream).map((f) => f.payload), parseFrames(stream, 65535).frames.map((f) => f.payload));
});

test('checkIpv4: IPv6 is ipv6, never accepted', () => {
  assert.equal(checkIpv4(ipv6Packet()), 'ipv6');
});

test('checkIpv4: short, other versions, bad IHL, bad total length', () => {
  assert.equal(checkIpv4(Buffer.alloc(0)), 'short');
  assert.equal(checkIpv4(packets[0].subarray(0, 19)), 'short');
  const v5 = Buffer.from(packets[0]);
  v5[0] = 0x55;
  assert.equal(checkIpv4(v5), 'not_ipv4');
  const v0 = Buffer.from(packets[0]);
  v0[0] = 0x05;
  assert.equal(checkIpv4(v0), 'not_ipv4');

  const ihl4 = Buffer.from(packets[1]);
  ihl4[0] = 0x44; // IHL 16 bytes, below the minimum
  assert.equal(checkIpv4(ihl4), 'bad_header');
  const ihlBig = Buffer.from(packets[3]); // 20 bytes long
  ihlBig[0] = 0x46; // IHL 24 bytes, beyond the packet
  assert.equal(checkIpv4(ihlBig), 'bad_header');

  const longer = Buffer.from(packets[1]);
  longer.writeUInt16BE(longer.length + 1, 2);
  assert.equal(checkIpv4(longer), 'bad_length');
  const shorter = Buffer.from(packets[1]);
  shorter.writeUInt16BE(shorter.length - 1, 2);
  assert.equal(checkIpv4(shorter), 'bad_length');
  // frame carries trailing bytes beyond the IPv4 total length
  assert.equal(checkIpv4(Buffer.concat([packets[1], Buffer.alloc(3)])), 'bad_length');
  const tooSmall = Buffer.from(packets[3]);
  tooSmall.writeUInt16BE(10, 2);
  assert.equal(checkIpv4(tooSmall), 'bad_length');
});

test('parseFrames and checkIpv4 reject wrong argument types', () => {
  assert.throws(() => (parseFrames as unknown as (a: unknown, b: unknown) => unknown)('x', 10), TypeError);
  assert.throws(() => (checkIpv4 as unknown as (a: unknown) => unknown)(42), TypeError);
});
