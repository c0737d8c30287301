// trace-packet.ts: the bytes of a traced packet (an IPv4 header with a TCP,
// UDP or ICMP header after it, no payload), so `moat rules trace --sequence`
// can play packets through the router's own connection table
// (native/conntrack.cc, through addon().Firewall) rather than a model of it.
import type { TracePacket } from './trace';

/** TCP flags as `moat rules trace` writes them: letters of S (SYN), A (ACK), F (FIN), R (RST), P (PSH). */
export const TCP_FLAG_BITS: Record<string, number> = { F: 0x01, S: 0x02, R: 0x04, P: 0x08, A: 0x10 };

export function parseTcpFlags(text: string): number | null {
  if (!/^[SAFRP]+$/i.test(text)) return null;
  let f = 0;
  for (const c of text.toUpperCase()) f |= TCP_FLAG_BITS[c];
  return f;
}

function checksum(b: Buffer): number {
  let s = 0;
  for (let i = 0; i + 1 < b.length; i += 2) s += b.readUInt16BE(i);
  if (b.length & 1) s += b[b.length - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** The packet's bytes: a TCP segment carries p.flags (default SYN); an ICMP
 *  echo (types 0 and 8) carries sport as its id; a fragment is a non-first one. */
export function packetBytes(p: TracePacket): Buffer {
  let l4 = Buffer.alloc(0);
  if (p.hasL4 && p.proto === 6) {
    l4 = Buffer.alloc(20);
    l4.writeUInt16BE(p.sport, 0);
    l4.writeUInt16BE(p.dport, 2);
    l4[12] = 5 << 4;
    l4[13] = p.flags ?? TCP_FLAG_BITS.S;
    l4.writeUInt16BE(65535, 14);
  } else if (p.hasL4 && p.proto === 17) {
    l4 = Buffer.alloc(8);
    l4.writeUInt16BE(p.sport, 0);
    l4.writeUInt16BE(p.dport, 2);
    l4.writeUInt16BE(8, 4);
  } else if (p.hasL4 && p.proto === 1) {
    l4 = Buffer.alloc(8);
    l4[0] = p.icmpType;
    if (p.icmpType === 0 || p.icmpType === 8) l4.writeUInt16BE(p.sport, 4);
  } else if (!p.hasL4) {
    l4 = Buffer.alloc(8);   // a non-first fragment's payload
  }
  const ip = Buffer.alloc(20);
  ip[0] = 0x45;
  ip.writeUInt16BE(20 + l4.length, 2);
  if (!p.hasL4 && (p.proto === 1 || p.proto === 6 || p.proto === 17)) ip.writeUInt16BE(185, 6);   // fragment offset 1480
  ip[8] = 64;
  ip[9] = p.proto;
  ip.writeUInt32BE(p.src >>> 0, 12);
  ip.writeUInt32BE(p.dst >>> 0, 16);
  ip.writeUInt16BE(checksum(ip), 10);
  return Buffer.concat([ip, l4]);
}
