// gso.test.ts: gso_split (native/gso.cc) through the addon's gsoSplit. TCP and
// UDP super-packets are built here, split natively, and every segment is
// checked against checksums computed here independently (IPv4 header, TCP/UDP
// with pseudo-header), plus sequence numbers, flags, lengths and ids; then
// headers that do not describe their packet must be refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import os from 'node:os';
import { addon } from '../../src/native';

const { gsoSplit } = addon();

const NEEDS_CSUM = 1;
const GSO_NONE = 0, GSO_TCPV4 = 1, GSO_UDP = 3, GSO_TCPV6 = 4, GSO_UDP_L4 = 5, GSO_ECN = 0x80;
const TCP = 6, UDP = 17;
const FIN = 0x01, SYN = 0x02, PSH = 0x08, ACK = 0x10, CWR = 0x80;
const SRC = [10, 9, 8, 7], DST = [192, 0, 2, 33];

interface Vnet { flags: number; gsoType: number; hdrLen: number; gsoSize: number; csumStart: number; csumOffset: number }

/** struct virtio_net_hdr in host byte order (moat never sets TUNSETVNETBE). */
function vnet(h: Vnet): Buffer {
  const b = Buffer.alloc(10);
  const le = os.endianness() === 'LE';
  const w = (v: number, at: number) => (le ? b.writeUInt16LE(v, at) : b.writeUInt16BE(v, at));
  b[0] = h.flags;
  b[1] = h.gsoType;
  w(h.hdrLen, 2);
  w(h.gsoSize, 4);
  w(h.csumStart, 6);
  w(h.csumOffset, 8);
  return b;
}

/** Sum of 16-bit big-endian words, odd byte padded, not folded. */
function sum16(b: Buffer, start = 0, end = b.length): number {
  let s = 0;
  for (let i = start; i + 1 < end; i += 2) s += b.readUInt16BE(i);
  if ((end - start) % 2) s += b[end - 1] << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 0x10000);
  return s;
}
function pseudo(p: Buffer, l4len: number): number {
  return sum16(p, 12, 20) + p[9] + l4len;
}
/** True when the L4 checksum of IPv4 packet p verifies (pseudo-header included). */
function l4Verifies(p: Buffer): boolean {
  const ihl = (p[0] & 15) * 4;
  return fold(pseudo(p, p.length - ihl) + sum16(p, ihl)) === 0xffff;
}
function ipVerifies(p: Buffer): boolean {
  return fold(sum16(p, 0, (p[0] & 15) * 4)) === 0xffff;
}

function payloadBytes(n: number, seed = 1): Buffer {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

interface Super {
  proto: number;
  payload: Buffer;
  ipOptions?: number;     // 32-bit words of IP options
  tcpOptions?: number;    // 32-bit words of TCP options
  id?: number;
  seq?: number;
  tcpFlags?: number;
  frag?: number;          // flags + fragment offset field (default DF)
}

/** An IPv4 packet with a valid IP header checksum and, in the L4 checksum
 *  field, the pseudo-header sum the kernel leaves for CHECKSUM_PARTIAL. */
function superPacket(o: Super): { pkt: Buffer; ihl: number; hlen: number } {
  const ihl = 20 + 4 * (o.ipOptions ?? 0);
  const l4h = o.proto === TCP ? 20 + 4 * (o.tcpOptions ?? 0) : 8;
  const len = ihl + l4h + o.payload.length;
  const p = Buffer.alloc(len);
  p[0] = 0x40 | (ihl / 4);
  p.writeUInt16BE(len, 2);
  p.writeUInt16BE(o.id ?? 0x1234, 4);
  p.writeUInt16BE(o.frag ?? 0x4000, 6);
  p[8] = 64;
  p[9] = o.proto;
  Buffer.from(SRC).copy(p, 12);
  Buffer.from(DST).copy(p, 16);
  for (let i = 20; i < ihl; i++) p[i] = 1;  // NOP options
  const l4 = p.subarray(ihl);
  if (o.proto === TCP) {
    l4.writeUInt16BE(40000, 0);
    l4.writeUInt16BE(443, 2);
    l4.writeUInt32BE(o.seq ?? 1000, 4);
    l4.writeUInt32BE(0xabcdef01, 8);
    l4[12] = (l4h / 4) << 4;
    l4[13] = o.tcpFlags ?? (ACK | PSH);
    l4.writeUInt16BE(502, 14);
    for (let i = 20; i < l4h; i++) l4[i] = i === 20 ? 2 : 0x11;  // some option bytes to copy
    l4.writeUInt16BE(fold(pseudo(p, len - ihl)), 16);
  } else {
    l4.writeUInt16BE(5353, 0);
    l4.writeUInt16BE(9999, 2);
    l4.writeUInt16BE(len - ihl, 4);
    l4.writeUInt16BE(fold(pseudo(p, len - ihl)), 6);
  }
  o.payload.copy(p, ihl + l4h);
  p.writeUInt16BE(0xffff & ~fold(sum16(p, 0, ihl)), 10);
  return { pkt: p, ihl, hlen: ihl + l4h };
}

function gsoHeader(proto: number, ihl: number, hlen: number, mss: number, extra: Partial<Vnet> = {}): Vnet {
  return {
    flags: NEEDS_CSUM,
    gsoType: proto === TCP ? GSO_TCPV4 : GSO_UDP_L4,
    hdrLen: hlen,
    gsoSize: mss,
    csumStart: ihl,
    csumOffset: proto === TCP ? 16 : 6,
    ...extra,
  };
}

function split(h: Vnet, pkt: Buffer, scratchLen?: number): Buffer[] {
  const r = gsoSplit(Buffer.concat([vnet(h), pkt]), scratchLen);
  if (r.error !== undefined) assert.fail(`refused: ${r.error}`);
  return r.segments;
}
function refusal(h: Vnet, pkt: Buffer, scratchLen?: number): string | undefined {
  const r = gsoSplit(Buffer.concat([vnet(h), pkt]), scratchLen);
  if (r.error === undefined) assert.equal(r.segments.length, undefined, 'expected a refusal');
  return r.error;
}

/** Checks every segment of a split of super-packet `o` with segment size mss. */
function checkSplit(o: Super, mss: number, segs: Buffer[]): void {
  const { pkt, ihl, hlen } = superPacket(o);
  const n = Math.max(1, Math.ceil(o.payload.length / mss));
  assert.equal(segs.length, n, 'segment count');
  const id0 = o.id ?? 0x1234;
  const flags = o.tcpFlags ?? (ACK | PSH);
  const joined: Buffer[] = [];
  segs.forEach((s, i) => {
    const at = `segment ${i}/${n}`;
    const plen = Math.min(mss, o.payload.length - i * mss);
    assert.equal(s.length, hlen + plen, `${at} length`);
    assert.equal(s[0], pkt[0], `${at} version/ihl`);
    assert.equal(s.readUInt16BE(2), s.length, `${at} IPv4 total length`);
    assert.equal(s.readUInt16BE(4), (id0 + i) & 0xffff, `${at} IPv4 id`);
    assert.deepEqual(s.subarray(6, 10), pkt.subarray(6, 10), `${at} frag/ttl/proto`);
    assert.deepEqual(s.subarray(12, ihl), pkt.subarray(12, ihl), `${at} addresses and IP options`);
    assert.ok(ipVerifies(s), `${at} IPv4 header checksum`);
    assert.ok(l4Verifies(s), `${at} L4 checksum`);
    const l4 = s.subarray(ihl);
    if (o.proto === TCP) {
      assert.equal(l4.readUInt32BE(4), ((o.seq ?? 1000) + i * mss) >>> 0, `${at} seq`);
      let want = flags;
      if (i < n - 1) want &= ~(FIN | PSH);
      if (i > 0) want &= ~CWR;
      assert.equal(l4[13], want, `${at} TCP flags`);
      // everything else in the TCP header (ports, ack, window, options) as in the original
      assert.deepEqual(l4.subarray(0, 4), pkt.subarray(ihl, ihl + 4));
      assert.deepEqual(l4.subarray(8, 13), pkt.subarray(ihl + 8, ihl + 13));
      assert.deepEqual(l4.subarray(14, 16), pkt.subarray(ihl + 14, ihl + 16));
      assert.deepEqual(l4.subarray(20, hlen - ihl), pkt.subarray(ihl + 20, hlen));
    } else {
      assert.equal(l4.readUInt16BE(4), s.length - ihl, `${at} UDP length`);
      assert.notEqual(l4.readUInt16BE(6), 0, `${at} UDP checksum is never 0 (= none)`);
      assert.deepEqual(l4.subarray(0, 4), pkt.subarray(ihl, ihl + 4));
    }
    joined.push(s.subarray(hlen));
  });
  assert.deepEqual(Buffer.concat(joined), o.payload, 'payloads reassemble to the original');
}

test('TCPv4: a 10000-byte super-packet splits at gso_size with seq, flags, ids and checksums per segment', () => {
  const o: Super = { proto: TCP, payload: payloadBytes(10000), tcpOptions: 3, tcpFlags: ACK | PSH | FIN | CWR, seq: 0xfffff000 };
  const { pkt, ihl, hlen } = superPacket(o);
  const segs = split(gsoHeader(TCP, ihl, hlen, 1448, { gsoType: GSO_TCPV4 | GSO_ECN }), pkt);
  checkSplit(o, 1448, segs);
  assert.equal(segs.length, 7);
});

test('TCPv4 with IP options, odd payload and odd gso_size', () => {
  for (const [len, mss] of [[4001, 999], [2896, 1448], [1448, 1448], [1, 1448], [777, 1], [12345, 536]]) {
    const o: Super = { proto: TCP, payload: payloadBytes(len, len), ipOptions: 2, tcpFlags: ACK | FIN, id: 0xfffe };
    const { pkt, ihl, hlen } = superPacket(o);
    const r = gsoSplit(Buffer.concat([vnet(gsoHeader(TCP, ihl, hlen, mss)), pkt]));
    if (Math.ceil(len / mss) > 128) {
      assert.equal(r.error, 'too_many', `${len}/${mss}`);
      continue;
    }
    assert.equal(r.error, undefined, `${len}/${mss}`);
    checkSplit(o, mss, r.segments!);
  }
});

test('UDP_L4: datagrams with their own UDP length and checksum, ids +1', () => {
  for (const [len, mss] of [[5000, 1200], [2400, 1200], [1199, 1200], [65535 - 28, 1472], [3, 2]]) {
    const o: Super = { proto: UDP, payload: payloadBytes(len, len + 7), id: 0xffff };
    const { pkt, ihl, hlen } = superPacket(o);
    const segs = split(gsoHeader(UDP, ihl, hlen, mss), pkt);
    checkSplit(o, mss, segs);
  }
});

test('UDP_L4: a datagram whose checksum folds to 0 gets 0xffff', () => {
  // Choose the last two payload bytes so that the segment's checksum would be 0.
  const payload = payloadBytes(100);
  payload.writeUInt16BE(0, 98);
  const { pkt, ihl } = superPacket({ proto: UDP, payload });
  const s = fold(pseudo(pkt, pkt.length - ihl) + sum16(pkt, ihl, ihl + 4) + (pkt.length - ihl) + sum16(payload));
  payload.writeUInt16BE(0xffff - s, 98);  // the whole sum becomes 0xffff: checksum ~0xffff = 0
  const o: Super = { proto: UDP, payload };
  const sp = superPacket(o);
  const segs = split(gsoHeader(UDP, sp.ihl, sp.hlen, 1000), sp.pkt);
  assert.equal(segs.length, 1);
  assert.equal(segs[0].readUInt16BE(sp.ihl + 6), 0xffff);
  checkSplit(o, 1000, segs);
});

test('exactly 128 segments is fine, 129 is too_many', () => {
  for (const proto of [TCP, UDP]) {
    const ok: Super = { proto, payload: payloadBytes(128 * 100) };
    const a = superPacket(ok);
    checkSplit(ok, 100, split(gsoHeader(proto, a.ihl, a.hlen, 100), a.pkt));
    const b = superPacket({ proto, payload: payloadBytes(128 * 100 + 1) });
    assert.equal(refusal(gsoHeader(proto, b.ihl, b.hlen, 100), b.pkt), 'too_many');
  }
});

test('hdr_len is a hint: larger (forward path: the first packet) or 0 is accepted, beyond the packet is refused', () => {
  const o: Super = { proto: TCP, payload: payloadBytes(3000) };
  const { pkt, ihl, hlen } = superPacket(o);
  checkSplit(o, 1000, split(gsoHeader(TCP, ihl, hlen, 1000, { hdrLen: hlen + 1000 }), pkt));
  checkSplit(o, 1000, split(gsoHeader(TCP, ihl, hlen, 1000, { hdrLen: 0 }), pkt));
  checkSplit(o, 1000, split(gsoHeader(TCP, ihl, hlen, 1000, { hdrLen: pkt.length }), pkt));
  assert.equal(refusal(gsoHeader(TCP, ihl, hlen, 1000, { hdrLen: pkt.length + 1 }), pkt), 'bad_header');
  assert.equal(refusal(gsoHeader(TCP, ihl, hlen, 1000, { hdrLen: 0xffff }), pkt), 'bad_header');
});

test('the scratch buffer must hold one full segment', () => {
  const o: Super = { proto: UDP, payload: payloadBytes(3000) };
  const { pkt, ihl, hlen } = superPacket(o);
  checkSplit(o, 1000, split(gsoHeader(UDP, ihl, hlen, 1000), pkt, hlen + 1000));
  assert.equal(refusal(gsoHeader(UDP, ihl, hlen, 1000), pkt, hlen + 999), 'bad_header');
});

test('GSO_NONE: NEEDS_CSUM is finished in place of the pseudo-header sum, otherwise the packet passes unchanged', () => {
  for (const proto of [TCP, UDP]) {
    for (const n of [0, 1, 2, 501]) {
      const { pkt, ihl } = superPacket({ proto, payload: payloadBytes(n, n) });
      const segs = split({ flags: NEEDS_CSUM, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: ihl, csumOffset: proto === TCP ? 16 : 6 }, pkt);
      assert.equal(segs.length, 1);
      assert.ok(l4Verifies(segs[0]), `proto ${proto} payload ${n}`);
      // only the checksum field changed
      const at = ihl + (proto === TCP ? 16 : 6);
      assert.deepEqual(segs[0].subarray(0, at), pkt.subarray(0, at));
      assert.deepEqual(segs[0].subarray(at + 2), pkt.subarray(at + 2));
      const plain = split({ flags: 0, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart: 0, csumOffset: 0 }, pkt);
      assert.deepEqual(plain, [pkt]);
    }
  }
});

test('GSO_NONE: csum offsets outside the packet, a bad IPv4 header, and NONE|ECN are refused', () => {
  const { pkt } = superPacket({ proto: UDP, payload: payloadBytes(10) });  // 38 bytes
  const none = (csumStart: number, csumOffset: number): Vnet => ({ flags: NEEDS_CSUM, gsoType: GSO_NONE, hdrLen: 0, gsoSize: 0, csumStart, csumOffset });
  assert.equal(split(none(36, 0), pkt).length, 1, 'the last two bytes are fine');
  assert.equal(refusal(none(37, 0), pkt), 'bad_header');
  assert.equal(refusal(none(20, 17), pkt), 'bad_header');
  assert.equal(refusal(none(0xffff, 0xffff), pkt), 'bad_header');
  assert.equal(refusal(none(38, 0), pkt), 'bad_header');
  assert.equal(refusal(none(20, 5), pkt), 'bad_header', 'odd csum_offset');
  assert.equal(refusal(none(0, 10), pkt), 'bad_header', 'csum_start inside the IPv4 header');
  assert.equal(refusal(none(19, 0), pkt), 'bad_header', 'csum_start inside the IPv4 header');
  assert.equal(split(none(21, 4), pkt).length, 1, 'an odd csum_start is only a strange header');
  assert.equal(refusal({ ...none(20, 6), gsoType: GSO_ECN }, pkt), 'bad_header');
  const badSum = Buffer.from(pkt);
  badSum[10] ^= 1;
  assert.equal(refusal(none(20, 6), badSum), 'bad_ip');
  const badLen = Buffer.from(pkt);
  badLen.writeUInt16BE(pkt.length + 1, 2);
  assert.equal(refusal({ ...none(20, 6), flags: 0 }, badLen), 'bad_ip');
});

test('GSO headers that do not describe the packet are refused', () => {
  const t = superPacket({ proto: TCP, payload: payloadBytes(3000) });
  const u = superPacket({ proto: UDP, payload: payloadBytes(3000) });
  const H = (extra: Partial<Vnet> = {}) => gsoHeader(TCP, t.ihl, t.hlen, 1000, extra);
  const mod = (p: Buffer, f: (b: Buffer) => void) => { const b = Buffer.from(p); f(b); return b; };

  assert.equal(refusal(H({ gsoSize: 0 }), t.pkt), 'bad_header', 'gso_size 0');
  assert.equal(refusal(H({ csumStart: 21 }), t.pkt), 'bad_header', 'csum_start not the L4 header');
  assert.equal(refusal(H({ csumOffset: 6 }), t.pkt), 'bad_header', 'csum_offset not the TCP checksum');
  assert.equal(refusal(H({ csumStart: 0xfff0, csumOffset: 0xfff0 }), t.pkt), 'bad_header', 'csum beyond the packet');
  assert.equal(refusal(H({ gsoType: GSO_UDP_L4, csumOffset: 6 }), t.pkt), 'bad_header', 'UDP_L4 on a TCP packet');
  assert.equal(refusal(gsoHeader(UDP, u.ihl, u.hlen, 1000, { gsoType: GSO_TCPV4, csumOffset: 16 }), u.pkt), 'bad_header', 'TCPV4 on UDP');
  assert.equal(refusal(gsoHeader(UDP, u.ihl, u.hlen, 1000, { gsoType: GSO_UDP_L4 | GSO_ECN }), u.pkt), 'bad_header', 'ECN on UDP');
  assert.equal(refusal(H({ gsoType: GSO_TCPV6 }), t.pkt), 'unsupported');
  assert.equal(refusal(H({ gsoType: GSO_UDP }), t.pkt), 'unsupported', 'UFO');
  assert.equal(refusal(H({ gsoType: 0x7f }), t.pkt), 'unsupported');

  assert.equal(refusal(H(), mod(t.pkt, (b) => { b[20 + 12] = 0x40; })), 'bad_header', 'TCP data offset < 5');
  assert.equal(refusal(H({ hdrLen: 0 }), t.pkt.subarray(0, 39)), 'bad_ip', 'total length != len');
  const tiny = superPacket({ proto: TCP, payload: Buffer.alloc(0) });
  assert.equal(refusal(H({ hdrLen: 0 }), mod(tiny.pkt, (b) => { b[20 + 12] = 0xf0; })), 'bad_header', 'TCP header beyond the packet');
  // the L4 header ending exactly at the end of the packet is fine (no payload: one segment), one byte short is not
  for (const [proto, opts] of [[UDP, 0], [TCP, 0], [TCP, 1], [TCP, 10]]) {
    const e = superPacket({ proto, payload: Buffer.alloc(0), tcpOptions: opts });
    const hdr = gsoHeader(proto, e.ihl, e.hlen, 100);
    checkSplit({ proto, payload: Buffer.alloc(0), tcpOptions: opts }, 100, split(hdr, e.pkt));
    const cut = mod(e.pkt.subarray(0, e.pkt.length - 1), (b) => { b.writeUInt16BE(b.length, 2); });
    assert.equal(refusal({ ...hdr, hdrLen: 0 }, cut), 'bad_header', `proto ${proto}: L4 header one byte beyond the packet`);
  }
  const shortTcp = mod(tiny.pkt.subarray(0, 30), (b) => { b.writeUInt16BE(30, 2); });
  assert.equal(refusal(H({ hdrLen: 0 }), shortTcp), 'bad_header', 'packet shorter than a TCP header');

  assert.equal(refusal(H(), mod(t.pkt, (b) => { b.writeUInt16BE(b.length - 1, 2); })), 'bad_ip', 'IPv4 total length too small');
  assert.equal(refusal(H(), Buffer.concat([t.pkt, Buffer.alloc(1)])), 'bad_ip', 'IPv4 total length too large');
  assert.equal(refusal(H(), mod(t.pkt, (b) => { b[0] = 0x65; })), 'bad_ip', 'IPv6');
  assert.equal(refusal(H(), mod(t.pkt, (b) => { b[0] = 0x44; })), 'bad_ip', 'IHL < 5');
  assert.equal(refusal(H(), mod(t.pkt, (b) => { b.writeUInt16BE(0x2000, 6); })), 'bad_ip', 'MF fragment');
  assert.equal(refusal(H(), mod(t.pkt, (b) => { b.writeUInt16BE(0x0001, 6); })), 'bad_ip', 'later fragment');
  assert.equal(refusal(H({ hdrLen: 0 }), t.pkt.subarray(0, 19)), 'bad_ip', 'shorter than an IPv4 header');
  assert.equal(refusal(H({ hdrLen: 0 }), Buffer.alloc(0)), 'bad_ip', 'empty');
  const r = gsoSplit(Buffer.alloc(9));
  assert.equal(r.error, 'bad_header', 'shorter than the vnet header');
});

test('nothing is emitted on refusal and the input buffer is not modified', () => {
  const t = superPacket({ proto: TCP, payload: payloadBytes(3000) });
  const buf = Buffer.concat([vnet(gsoHeader(TCP, t.ihl, t.hlen, 1000)), t.pkt]);
  const copy = Buffer.from(buf);
  split(gsoHeader(TCP, t.ihl, t.hlen, 1000), t.pkt);
  gsoSplit(buf);
  assert.deepEqual(buf, copy);
  const r = gsoSplit(buf, 10);
  assert.equal(r.error, 'bad_header');
  assert.equal(r.segments, undefined);
});

test('flags: SYN, RST and URG pass through to every segment, FIN/PSH/CWR as the kernel does', () => {
  const o: Super = { proto: TCP, payload: payloadBytes(2500), tcpFlags: SYN | ACK | 0x20 | 0x40 | CWR | PSH | FIN };
  const { pkt, ihl, hlen } = superPacket(o);
  checkSplit(o, 1000, split(gsoHeader(TCP, ihl, hlen, 1000), pkt));
});
