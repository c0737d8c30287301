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
