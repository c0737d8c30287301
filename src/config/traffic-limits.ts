// traffic-limits.ts: a vassal's traffic limits (issue 16) as config files
// write them, and what the native router's shapers take (PeerLimit,
// native/limiter.h). Pure functions: text in, numbers out, or an error that
// says what was expected.
//
// Rates are written as tc(8) writes them: bits per second as a bare number
// or with bit, kbit, mbit, gbit, tbit (1000-based) or kibit, mibit, gibit,
// tibit (1024-based); bytes per second with bps, kbps, mbps, gbps, tbps (tc's
// "bps" is bytes). Bursts are bytes with K, M or G (1024-based). `max` (or 0)
// is no limit: a vassal file's `vassal-rate-out = max` lifts the emperor's
// default. out = from the vassal toward the host, in = toward the vassal.
import { ConfigError, Option, OptionList } from './types';
import { ipv4ToInt } from '../addr';
import type { PeerLimit, RateLimit } from '../native';

/** A vassal's limits; absent or 0: unlimited. Bursts of 0: the router's default (10 ms of the rate). */
export interface TrafficLimits {
  rateOut?: number;   // bits per second
  rateIn?: number;
  ppsOut?: number;    // packets per second
  ppsIn?: number;
  burst?: number;     // bytes, each direction's bytes bucket
  ppsBurst?: number;  // packets, each direction's packets bucket
}

export const RATE_MIN = 1000;            // 1 kbit/s: below, one 1500-byte packet takes 12 s
export const RATE_MAX = 1e12;            // 1 tbit/s
export const PPS_MAX = 1e9;
export const BURST_MAX = 2 ** 30;        // 1 GiB
export const PPS_BURST_MAX = 1e7;

const RATE_UNITS: Record<string, number> = {
  '': 1, bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9, tbit: 1e12,
  kibit: 2 ** 10, mibit: 2 ** 20, gibit: 2 ** 30, tibit: 2 ** 40,
  bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9, tbps: 8e12,
  kibps: 8 * 2 ** 10, mibps: 8 * 2 ** 20, gibps: 8 * 2 ** 30, tibps: 8 * 2 ** 40,
};
const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 2 ** 10, kb: 2 ** 10, m: 2 ** 20, mb: 2 ** 20, g: 2 ** 30, gb: 2 ** 30 };

const isMax = (v: string) => /^(max|0)$/i.test(v);

/** A rate in bits per second (0: no limit), e.g. 10mbit, 512kbit, 1gbit, 125kbps. */
export function parseRate(value: string): number {
  const v = value.trim();
  if (isMax(v)) return 0;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v);
  const unit = m ? RATE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new RangeError(`'${value}' is not a rate: write bits per second as tc does, e.g. 10mbit, 512kbit, 1gbit (or max)`);
  const bits = Math.round(Number(m[1]) * unit);
  if (bits < RATE_MIN) throw new RangeError(`'${value}' is ${bits} bit/s, below the smallest rate, 1kbit${m[2] ? '' : ' (a bare number is bits per second: did you mean ' + m[1] + 'mbit?)'}`);
  if (bits > RATE_MAX) throw new RangeError(`'${value}' is above 1tbit (write max for no limit)`);
  return bits;
}

/** Packets per second, a whole number (0 or max: no limit). */
export function parsePps(value: string): number {
  const v = value.trim();
  if (isMax(v)) return 0;
  if (!/^\d+$/.test(v)) throw new RangeError(`'${value}' is not a whole number of packets per second (e.g. 1000, or max)`);
  const n = Number(v);
  if (n > PPS_MAX) throw new RangeError(`'${value}' is above ${PPS_MAX} packets per second (write max for no limit)`);
  return n;
}

/** A bytes burst: bytes, or a number with K, M or G (1024-based); 0: the default (10 ms of the rate). */
export function parseBurst(value: string): number {
  const v = value.trim();
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) throw new RangeError(`'${value}' is not a size: write bytes, or a number with K, M or G, e.g. 64K`);
  const n = Math.round(Number(m[1]) * unit);
  if (n > BURST_MAX) throw new RangeError(`'${value}' is above 1G`);
  return n;
}

/** A packets burst, a whole number; 0: the default (10 ms of the rate). */
export function parsePpsBurst(value: string): number {
  const v = value.trim();
  if (!/^\d+$/.test(v)) throw new RangeError(`'${value}' is not a whole number of packets`);
  const n = Number(v);
  if (n > PPS_BURST_MAX) throw new RangeError(`'${value}' is above ${PPS_BURST_MAX} packets`);
  return n;
}

const FIELDS: Array<[string, keyof TrafficLimits, (v: string) => number]> = [
  ['rate-out', 'rateOut', parseRate], ['rate-in', 'rateIn', parseRate],
  ['pps-out', 'ppsOut', parsePps], ['pps-in', 'ppsIn', parsePps],
  ['burst', 'burst', parseBurst], ['pps-burst', 'ppsBurst', parsePpsBurst],
];

/** The option names of one prefix ('vassal-' or 'emperor-vassal-'). */
export const trafficOptionNames = (prefix: string): string[] => FIELDS.map(([k]) => prefix + k);

function read(opts: OptionList, prefix: string, base: TrafficLimits): TrafficLimits {
  const out: TrafficLimits = { ...base };
  for (const o of opts) {
    if (!o.key.startsWith(prefix)) continue;
    const f = FIELDS.find(([k]) => prefix + k === o.key);
    if (!f) continue;
    try { out[f[1]] = f[2](o.value); } catch (e) { throw new ConfigError(`${o.key}: ${(e as Error).message}`, o.source); }
  }
  for (const k of Object.keys(out) as Array<keyof TrafficLimits>) if (!out[k]) delete out[k];
  return out;
}

/** A vassal file's limits (vassal-rate-out, ...; the last value wins) over the emperor's defaults. Throws ConfigError. */
export const vassalTrafficLimits = (opts: OptionList, defaults: TrafficLimits = {}): TrafficLimits => read(opts, 'vassal-', defaults);

/** The emperor-wide defaults (emperor-vassal-rate-out, ...). Throws ConfigError. */
export const emperorTrafficLimits = (opts: OptionList): TrafficLimits => read(opts, 'emperor-vassal-', {});

const rateLimit = (bits = 0, pps = 0, burst = 0, ppsBurst = 0): RateLimit | undefined =>
  (bits || pps ? { bitsPerSec: bits, packetsPerSec: pps, burstBytes: bits ? burst : 0, burstPackets: pps ? ppsBurst : 0 } : undefined);

/** The router's limit for one address (0: the default for peers without one of their own). */
export function peerLimit(addr: number, t: TrafficLimits): PeerLimit {
  const out: PeerLimit = { addr };
  const o = rateLimit(t.rateOut, t.ppsOut, t.burst, t.ppsBurst);
  const i = rateLimit(t.rateIn, t.ppsIn, t.burst, t.ppsBurst);
  if (o) out.out = o;
  if (i) out.in = i;
  return out;
}

export const hasTrafficLimits = (t: TrafficLimits): boolean => !!(t.rateOut || t.rateIn || t.ppsOut || t.ppsIn);

/** "out 10mbit 1000pps, in 5mbit" for status tables; '' when unlimited. */
export function describeTraffic(t: TrafficLimits): string {
  const dir = (name: string, bits?: number, pps?: number) => {
    const parts = [bits ? formatRate(bits) : '', pps ? `${pps}pps` : ''].filter(Boolean);
    return parts.length ? `${name} ${parts.join(' ')}` : '';
  };
  return [dir('out', t.rateOut, t.ppsOut), dir('in', t.rateIn, t.ppsIn)].filter(Boolean).join(', ');
}

/** Bits per second in tc's short form: 10000000 -> 10mbit. */
export function formatRate(bits: number): string {
  for (const [u, f] of [['tbit', 1e12], ['gbit', 1e9], ['mbit', 1e6], ['kbit', 1e3]] as const) {
    if (bits >= f) return `${+(bits / f).toFixed(2)}${u}`;
  }
  return `${bits}bit`;
}

/** tuntap-router-peer-limit lines (`<address|default> <in|out> [rate R] [pps N] [burst B] [pps-burst N]`),
 *  merged by address (a later line for the same address and direction replaces the earlier one). Throws ConfigError. */
export function parsePeerLimits(opts: Option[]): PeerLimit[] {
  const byAddr = new Map<number, PeerLimit>();
  for (const o of opts) {
    const fail = (msg: string): never => { throw new ConfigError(`${o.key}: ${msg}`, o.source); };
    const w = o.value.trim().split(/\s+/);
    if (w.length < 4 || w.length % 2) fail(`expected <address|default> <in|out> [rate R] [pps N] [burst B] [pps-burst N], got '${o.value}'`);
    let addr = 0;
    if (w[0] !== 'default') {
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(w[0]) || w[0].split('.').some((x) => Number(x) > 255)) fail(`'${w[0]}' is not an IPv4 address or 'default'`);
      addr = ipv4ToInt(w[0]);
      if (addr === 0) fail('0.0.0.0 is no peer\'s address (write default)');
    }
    if (w[1] !== 'in' && w[1] !== 'out') fail(`'${w[1]}': the direction is in (toward the peer) or out (from the peer)`);
    let bits = 0, pps = 0, burst = 0, ppsBurst = 0;
    const seen = new Set<string>();
    for (let i = 2; i < w.length; i += 2) {
      const [k, v] = [w[i], w[i + 1]];
      if (seen.has(k)) fail(`${k} given twice`);
      seen.add(k);
      try {
        if (k === 'rate') bits = parseRate(v);
        else if (k === 'pps') pps = parsePps(v);
        else if (k === 'burst') burst = parseBurst(v);
        else if (k === 'pps-burst') ppsBurst = parsePpsBurst(v);
        else fail(`'${k}' is not rate, pps, burst or pps-burst`);
      } catch (e) {
        if (e instanceof ConfigError) throw e;
        fail(`${k}: ${(e as Error).message}`);
      }
    }
    if (!seen.has('rate') && !seen.has('pps')) fail('names no limit: give rate R and/or pps N');
    const p = byAddr.get(addr) ?? { addr };
    const dir = w[1] as 'in' | 'out';
    const r = rateLimit(bits, pps, burst, ppsBurst);
    if (r) p[dir] = r;
    else delete p[dir];
    byAddr.set(addr, p);
  }
  return [...byAddr.values()];
}
