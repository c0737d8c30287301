// reference-firewall.ts: the firewall's meaning as a plain first-match walk,
// written from the rule semantics (uWSGI + moat's extensions) rather than
// from the C++, so the compiled native classifier can be checked against it.
//
// A rule matches a packet when every field it names agrees:
//  - src/dst: a network of 0.0.0.0 or a prefix length of 0 matches any
//    address; otherwise the address's first `bits` bits equal the network's.
//  - proto: -1 any, else equal.
//  - sport/dport: empty list = any, else some inclusive range holds the port.
//  - icmpType: -1 any, else equal.
//  - a rule naming ports or an ICMP type never matches a packet without a
//    transport header (hasL4 false: a non-first fragment).
// The first matching rule decides; no match returns -1 (default allow).
import type { NativeRule } from '../../src/native';

export interface Packet {
  src: number;        // uint32, host order
  dst: number;
  proto: number;      // 0..255
  hasL4: boolean;
  sport: number;      // 0..65535
  dport: number;
  icmpType: number;   // 0..255
}

/** Does address `a` lie in network `net`/`bits`? Arithmetic, not bit masks. */
export function inNetwork(net: number, bits: number, a: number): boolean {
  if (net === 0 || bits === 0) return true;
  if (bits >= 32) return a === net;
  const block = 2 ** (32 - bits);
  return Math.floor(a / block) === Math.floor(net / block);
}

function portListHas(list: Array<[number, number]>, port: number): boolean {
  return list.length === 0 || list.some(([lo, hi]) => lo <= port && port <= hi);
}

export function ruleMatches(rule: NativeRule, p: Packet): boolean {
  if (!inNetwork(rule.src, rule.srcBits, p.src)) return false;
  if (!inNetwork(rule.dst, rule.dstBits, p.dst)) return false;
  if (rule.proto !== -1 && rule.proto !== p.proto) return false;
  const namesTransport = rule.sport.length > 0 || rule.dport.length > 0 || rule.icmpType !== -1;
  if (namesTransport && !p.hasL4) return false;
  if (rule.icmpType !== -1 && rule.icmpType !== p.icmpType) return false;
  return portListHas(rule.sport, p.sport) && portListHas(rule.dport, p.dport);
}

/** Index of the first rule matching p, or -1. */
export function firstMatch(rules: readonly NativeRule[], p: Packet): number {
  for (let i = 0; i < rules.length; i++) if (ruleMatches(rules[i], p)) return i;
  return -1;
}

/** Packets in Classifier.match's layout (KEY_FIELDS order, 7 uint32 each). */
export function encodePackets(packets: readonly Packet[]): Uint32Array {
  const out = new Uint32Array(packets.length * 7);
  packets.forEach((p, i) => {
    out.set([p.src, p.dst, p.proto, p.hasL4 ? 1 : 0, p.sport, p.dport, p.icmpType], i * 7);
  });
  return out;
}

/** Dotted quad to uint32 (test convenience). */
export function ip(text: string): number {
  const parts = text.split('.').map(Number);
  if (parts.length !== 4 || parts.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`bad address ${text}`);
  return ((parts[0] * 256 + parts[1]) * 256 + parts[2]) * 256 + parts[3];
}
