// conntrack-packets.ts: packets for connection-tracking tests: TCP segments
// with any flags, ICMP errors quoting a packet, and a Packet's fields read
// back (for the reference model).
import { inetChecksum, ipv4Packet, PROTO_ICMP, PROTO_TCP } from './packets';

export const FIN = 0x01, SYN = 0x02, RST = 0x04, ACK = 0x10;

function addr(a: string | number): number {
  if (typeof a === 'number') return a >>> 0;
  return a.split('.').reduce((v, o) => v * 256 + Number(o), 0) >>> 0;
}

/** A TCP segment (20-byte header, optional payload) with a correct checksum. */
export function tcpSegment(src: string | number, dst: string | number, sport: number, dport: number, flags: number,
  seq = 1, ack = 0, data: Buffer = Buffer.alloc(0)): Buffer {
  const t = Buffer.alloc(20 + data.length);
  t.writeUInt16BE(sport, 0);
  t.writeUInt16BE(dport, 2);
  t.writeUInt32BE(seq >>> 0, 4);
  t.writeUInt32BE(ack >>> 0, 8);
  t[12] = 5 << 4;
  t[13] = flags;
  t.writeUInt16BE(65535, 14);
  data.copy(t, 20);
  const s = addr(src);
  const d = addr(dst);
  const pseudo = (s >>> 16) + (s & 0xffff) + (d >>> 16) + (d & 0xffff) + PROTO_TCP + t.length;
  t.writeUInt16BE(inetChecksum(t, 0, t.length, pseudo), 16);
  return ipv4Packet({ src: s, dst: d, proto: PROTO_TCP, payload: t });
}

/** An ICMP error (type/code) from src to dst quoting the first 28 bytes of pkt. */
export function icmpError(src: string | number, dst: string | number, type: number, code: number, quoted: Buffer): Buffer {
  const q = quoted.subarray(0, Math.min(quoted.length, 28));
  const m = Buffer.alloc(8 + q.length);
  m[0] = type;
  m[1] = code;
  q.copy(m, 8);
  m.writeUInt16BE(inetChecksum(m), 2);
  return ipv4Packet({ src, dst, proto: PROTO_ICMP, payload: m });
}
