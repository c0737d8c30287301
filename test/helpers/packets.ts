// packets.ts: builders for the IPv4 packets and uwsgi frames the tests send,
// and a reader that reassembles frames from a byte stream. Addresses are
// dotted strings or uint32 in host order (as the addon takes them).

/** '10.1.2.3' -> 0x0a010203 */
export function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return ((parts[0] << 24) | (parts[1] << 16) | (parts[2] << 8) | parts[3]) >>> 0;
}

/** 0x0a010203 -> '10.1.2.3' */
export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function addr(a: string | number): number {
  return typeof a === 'number' ? a >>> 0 : ipToInt(a);
}

/** The internet checksum (RFC 1071) of buf[start, end). */
export function inetChecksum(buf: Buffer, start = 0, end = buf.length, initial = 0): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += buf.readUInt16BE(i);
  if ((end - start) % 2 === 1) sum += buf[end - 1] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

export interface Ipv4Options {
  src: string | number;
  dst: string | number;
  proto: number;
  payload: Buffer;
  ttl?: number;
  id?: number;
}

/** One IPv4 packet with a 20-byte header and a correct header checksum. */
export function ipv4Packet(o: Ipv4Options): Buffer {
  const total = 20 + o.payload.length;
  if (total > 65535) throw new Error('IPv4 packet too long');
  const b = Buffer.alloc(total);
  b[0] = 0x45;
  b[1] = 0;
  b.writeUInt16BE(total, 2);
  b.writeUInt16BE(o.id ?? 0x1234, 4);
  b.writeUInt16BE(0x4000, 6); // DF, no fragment offset
  b[8] = o.ttl ?? 64;
  b[9] = o.proto;
  b.writeUInt32BE(addr(o.src), 12);
  b.writeUInt32BE(addr(o.dst), 16);
  b.writeUInt16BE(inetChecksum(b, 0, 20), 10);
  o.payload.copy(b, 20);
  return b;
}

function pseudoHeaderSum(src: number, dst: number, proto: number, len: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + len;
}

/** A UDP datagram with a correct UDP checksum. */
export function udpPacket(src: string | number, dst: string | number, sport: number, dport: number, data: Buffer | string = ''): Buffer {
  const d = typeof data === 'string' ? Buffer.from(data) : data;
  const u = Buffer.alloc(8 + d.length);
  u.writeUInt16BE(sport, 0);
  u.writeUInt16BE(dport, 2);
  u.writeUInt16BE(u.length, 4);
  d.copy(u, 8);
  const s = addr(src);
  const t = addr(dst);
  let ck = inetChecksum(u, 0, u.length, pseudoHeaderSum(s, t, PROTO_UDP, u.length));
  if (ck === 0) ck = 0xffff;
  u.writeUInt16BE(ck, 6);
  return ipv4Packet({ src: s, dst: t, proto: PROTO_UDP, payload: u });
}

/** An ICMP echo request (type 8) or reply (type 0). */
export function icmpEcho(src: string | number, dst: string | number, id: number, seq: number, data: Buffer | string = 'moat-ping', type = 8): Buffer {
  const d = typeof data === 'string' ? Buffer.from(data) : data;
  const m = Buffer.alloc(8 + d.length);
  m[0] = type;
  m[1] = 0;
  m.writeUInt16BE(id, 4);
  m.writeUInt16BE(seq, 6);
  d.copy(m, 8);
  m.writeUInt16BE(inetChecksum(m), 2);
  return ipv4Packet({ src, dst, proto: PROTO_ICMP, payload: m });
}

/** A TCP segment with only SYN set and a correct TCP checksum. */
export function tcpSyn(src: string | number, dst: string | number, sport: number, dport: number, seqNo = 1): Buffer {
  const t = Buffer.alloc(20);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(seqNo >>> 0, 4);
  t[12] = 5 << 4;  // data offset 5 words
  t[13] = 0x02;    // SYN
  t.writeUInt16BE(65535, 14);
  const s = addr(src);
  const d = addr(dst);
  t.writeUInt16BE(inetChecksum(t, 0, 20, pseudoHeaderSum(s, d, PROTO_TCP, 20)), 16);
  return ipv4Packet({ src: s, dst: d, proto: PROTO_TCP, payload: t });
}

/** An IPv6 packet (a router solicitation from fe80::1 to ff02::2, as a link coming up sends). */
export function ipv6Packet(): Buffer {
  const icmp = Buffer.from([133, 0, 0, 0, 0, 0, 0, 0]);
  const b = Buffer.alloc(40 + icmp.length);
  b[0] = 0x60;
  b.writeUInt16BE(icmp.length, 4);
  b[6] = 58;   // next header: ICMPv6
  b[7] = 255;  // hop limit
  b[8] = 0xfe; b[9] = 0x80; b[23] = 1;        // fe80::1
  b[24] = 0xff; b[25] = 0x02; b[39] = 2;      // ff02::2
  icmp.copy(b, 40);
  return b;
}

/** The fields of an IPv4 packet tests look at. */
export interface Ipv4Info {
  src: string;
  dst: string;
  proto: number;
  ttl: number;
  totalLength: number;
  payload: Buffer;      // what follows the IPv4 header
  headerOk: boolean;    // header checksum verifies
}

export function parseIpv4(p: Buffer): Ipv4Info {
  if (p.length < 20 || p[0] >> 4 !== 4) throw new Error('not an IPv4 packet');
  const ihl = (p[0] & 15) * 4;
  return {
    src: intToIp(p.readUInt32BE(12)),
    dst: intToIp(p.readUInt32BE(16)),
    proto: p[9],
    ttl: p[8],
    totalLength: p.readUInt16BE(2),
    payload: p.subarray(ihl),
    headerOk: inetChecksum(p, 0, ihl) === 0,
  };
}

// ---- uwsgi framing: [mod1][size lo][size hi][mod2] payload ----

export function frameHeader(size: number, mod2 = 0, mod1 = 0): Buffer {
  if (size < 0 || size > 65535) throw new Error('frame size out of range');
  return Buffer.from([mod1, size & 255, size >> 8, mod2]);
}

/** One frame around payload. */
export function encodeFrame(payload: Buffer, mod2 = 0, mod1 = 0): Buffer {
  return Buffer.concat([frameHeader(payload.length, mod2, mod1), payload]);
}

/** Several packets framed back to back (what one write() of a peer carries). */
export function encodeFrames(payloads: Buffer[]): Buffer {
  return Buffer.concat(payloads.map((p) => encodeFrame(p)));
}

export interface Frame {
  mod1: number;
  mod2: number;
  payload: Buffer;
}

/** Reassembles frames from stream chunks; a partial frame waits for more. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Feeds a chunk, returns the frames it completed. */
  push(chunk: Buffer): Frame[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const out: Frame[] = [];
    let off = 0;
    while (this.buf.length - off >= 4) {
      const size = this.buf[off + 1] | (this.buf[off + 2] << 8);
      if (this.buf.length - off - 4 < size) break;
      out.push({ mod1: this.buf[off], mod2: this.buf[off + 3], payload: Buffer.from(this.buf.subarray(off + 4, off + 4 + size)) });
      off += 4 + size;
    }
    this.buf = this.buf.subarray(off);
    return out;
  }

  /** Bytes held back waiting for the rest of a frame. */
  get pending(): number {
    return this.buf.length;
  }
}

/** Decodes a buffer that holds only whole frames; throws on a trailing partial frame. */
export function decodeFrames(buf: Buffer): Frame[] {
  const r = new FrameReader();
  const frames = r.push(buf);
  if (r.pending) throw new Error(`${r.pending} trailing bytes are not a whole frame`);
  return frames;
}

// ---- offloads (docs/offload.md): modifier2 2 = hello, 3 = virtio_net_hdr + packet ----

export const MOD_HELLO = 2;
export const MOD_VNET = 3;

/** An offload hello: a 20-byte IPv4 header (proto 253, TTL 1, wrong header
 *  checksum) + "moat-offload", version 1, 0, caps (BE16), max frame (BE16). */
export function offloadHello(src: string | number, caps = 7, maxFrame = 65535, magic = 'moat-offload'): Buffer {
  const b = Buffer.alloc(38);
  b[0] = 0x45;
  b.writeUInt16BE(38, 2);
  b.writeUInt16BE(0x4000, 6);
  b[8] = 1;
  b[9] = 253;
  b.writeUInt32BE(addr(src), 12);
  b.writeUInt32BE(addr(src), 16);
  b.writeUInt16BE(inetChecksum(b, 0, 20) ^ 0x5a5a, 10);
  b.write(magic.padEnd(12, '\0').slice(0, 12), 20, 'latin1');
  b[32] = 1;
  b.writeUInt16BE(caps, 34);
  b.writeUInt16BE(maxFrame, 36);
  return b;
}

/** A 10-byte virtio_net_hdr (little-endian fields) in front of pkt. */
export function vnetPayload(pkt: Buffer, h: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number } = {}): Buffer {
  const v = Buffer.alloc(10);
  v[0] = h.flags ?? 0;
  v[1] = h.gsoType ?? 0;
  v.writeUInt16LE(h.hdrLen ?? 0, 2);
  v.writeUInt16LE(h.gsoSize ?? 0, 4);
  v.writeUInt16LE(h.csumStart ?? 0, 6);
  v.writeUInt16LE(h.csumOffset ?? 0, 8);
  return Buffer.concat([v, pkt]);
}
