// addr.ts: IPv4 addresses between text and the uint32 (host order) native code uses.
import { Address4 } from 'ip-address';

export function ipv4ToInt(text: string): number {
  if (!Address4.isValid(text) || text.includes('/')) throw new Error(`not an IPv4 address: ${text}`);
  return new Address4(text).toArray().reduce((acc, b) => (acc * 256 + b) >>> 0, 0);
}

export function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** uWSGI's stats show addr_32 as the address bytes read as a little-endian word. */
export function uwsgiAddr32(n: number): number {
  return (((n & 255) << 24) | (((n >>> 8) & 255) << 16) | (((n >>> 16) & 255) << 8) | (n >>> 24)) >>> 0;
}

/** An IPv4 network: net (uint32 host order, no host bits) / bits 0..32. */
export interface Ipv4Network { net: number; bits: number }

export function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
}

/** 'A.B.C.D/BITS' as a network; throws (the reason) if it is none or has host bits set. */
export function parseNetwork(text: string): Ipv4Network {
  const m = /^\s*([0-9.]+)\/(\d{1,2})\s*$/.exec(text);
  if (!m || Number(m[2]) > 32) throw new Error(`'${text.trim()}' is not A.B.C.D/BITS (BITS 0..32)`);
  const addr = ipv4ToInt(m[1]);
  const bits = Number(m[2]);
  const net = (addr & maskOf(bits)) >>> 0;
  if (net !== addr) throw new Error(`'${text.trim()}' has host bits set: the network is ${intToIpv4(net)}/${bits}`);
  return { net, bits };
}

export function formatNetwork(n: Ipv4Network): string {
  return `${intToIpv4(n.net)}/${n.bits}`;
}
