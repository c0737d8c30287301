// shadow.ts: finds rules that can never match because an earlier rule of the
// same chain matches every packet they match (first match wins).
//
// Only single-rule shadowing is found (a rule covered by the union of several
// earlier rules is not reported). Earlier rules are bucketed (see
// findShadowed), so a rule is compared only with the few earlier rules that
// could cover it, not with the whole chain. Within a bucket the walk is
// linear; a total budget of comparisons bounds pathological chains (e.g.
// thousands of multi-port rules on the same addresses), and the check then
// says where it stopped.
import type { NativeRule } from '../native';
import type { CompiledRule } from './types';
import { maskOf } from './parse';

export const COMPARISON_BUDGET = 20_000_000;

function wantsL4(r: NativeRule): boolean {
  return r.sport.length > 0 || r.dport.length > 0 || r.icmpType >= 0;
}

/** Every port of `inner` lies in `outer` (both normalised: sorted, merged). */
function portsWithin(inner: Array<[number, number]>, outer: Array<[number, number]>): boolean {
  let j = 0;
  for (const [lo, hi] of inner) {
    while (j < outer.length && outer[j][1] < lo) j++;
    if (j === outer.length || outer[j][0] > lo || outer[j][1] < hi) return false;
  }
  return true;
}

/** Does `a` match every packet `b` matches, looking past the addresses
 *  (the buckets have already checked that a's prefixes contain b's)? */
export function coversBeyondAddresses(a: NativeRule, b: NativeRule): boolean {
  if (a.proto >= 0 && a.proto !== b.proto) return false;
  // a state match: b's states (all of them when it names none) must lie in a's.
  const all = 15;
  if (a.states && ((b.states || all) & ~a.states) !== 0) return false;
  if (!wantsL4(a)) return true;
  // a needs a transport header; b must need one too, or b also matches fragments.
  if (!wantsL4(b)) return false;
  if (a.icmpType >= 0 && a.icmpType !== b.icmpType) return false;
  if (a.sport.length && (!b.sport.length || !portsWithin(b.sport, a.sport))) return false;
  if (a.dport.length && (!b.dport.length || !portsWithin(b.dport, a.dport))) return false;
  return true;
}

function prefixContains(aNet: number, aBits: number, bNet: number, bBits: number): boolean {
  if (aNet === 0 || aBits === 0) return true;
  if (bNet === 0 || bBits === 0 || bBits < aBits) return false;
  return ((bNet & maskOf(aBits)) >>> 0) === aNet;
}

/** The reference check (tests compare the bucketed walk against it). */
export function covers(a: NativeRule, b: NativeRule): boolean {
  return prefixContains(a.src, a.srcBits, b.src, b.srcBits)
    && prefixContains(a.dst, a.dstBits, b.dst, b.dstBits)
    && coversBeyondAddresses(a, b);
}

export interface ShadowResult {
  warnings: string[];
  /** shadowedBy[i] = index of the earliest earlier rule covering rule i, or -1. */
  shadowedBy: Int32Array;
  complete: boolean;   // false when the comparison budget ran out
}

const bitsOf = (addr: number, bits: number): number => (addr === 0 ? 0 : bits);
const prefixKey = (addr: number, bits: number): number => addr * 64 + bits;
/** The port a rule's dport set is, when it is exactly one port; else -1. */
const singleDport = (r: NativeRule): number => (r.dport.length === 1 && r.dport[0][0] === r.dport[0][1] ? r.dport[0][0] : -1);
/** Innermost bucket: protocol (-1 any) and single destination port (-1: none or several). */
const matchKey = (proto: number, dport: number): number => (proto + 1) * 65537 + (dport + 1);

/** Shadowed rules of one chain, in chain order.
 *
 *  Earlier rules sit in buckets keyed by (source prefix, destination prefix,
 *  protocol, single destination port). A rule A can cover B only if A's
 *  prefixes contain B's, A's protocol is any or B's, and A's destination
 *  port, when it is a single port, is B's single port. So B looks only into
 *  the buckets of its own prefixes' ancestors (one per prefix length in use)
 *  and, in each, at most four protocol/port buckets. */
export function findShadowed(chain: readonly CompiledRule[], budget = COMPARISON_BUDGET): ShadowResult {
  const shadowedBy = new Int32Array(chain.length).fill(-1);
  const warnings: string[] = [];
  const index = new Map<number, Map<number, Map<number, number[]>>>();
  const srcLens: number[] = [];   // prefix lengths in use, ascending
  const dstLens: number[] = [];
  const addLen = (lens: number[], n: number): void => {
    if (!lens.includes(n)) { lens.push(n); lens.sort((x, y) => x - y); }
  };
  let comparisons = 0;
  let complete = true;

  for (let j = 0; j < chain.length; j++) {
    const b = chain[j].native;
    const bSrcBits = bitsOf(b.src, b.srcBits);
    const bDstBits = bitsOf(b.dst, b.dstBits);
    const bPort = singleDport(b);
    const keys = [matchKey(-1, -1)];
    if (b.proto >= 0) keys.push(matchKey(b.proto, -1));
    if (b.proto >= 0 && bPort >= 0) keys.push(matchKey(b.proto, bPort));
    let best = -1;
    if (complete) {
      for (const sl of srcLens) {
        if (sl > bSrcBits) break;
        const byDst = index.get(prefixKey((b.src & maskOf(sl)) >>> 0, sl));
        if (!byDst) continue;
        for (const dl of dstLens) {
          if (dl > bDstBits) break;
          const byMatch = byDst.get(prefixKey((b.dst & maskOf(dl)) >>> 0, dl));
          if (!byMatch) continue;
          for (const key of keys) {
            const list = byMatch.get(key);
            if (!list) continue;
            for (let n = 0; n < list.length; n++) {
              const i = list[n];
              if (best >= 0 && i > best) break;
              comparisons++;
              if (coversBeyondAddresses(chain[i].native, b)) { best = i; break; }
            }
          }
        }
      }
      if (comparisons > budget) {
        complete = false;
        warnings.push(`shadow check stopped at ${chain[j].origin} after ${comparisons} comparisons; later rules of the ${chain[j].chain} chain were not checked`);
      }
    }
    if (best >= 0) {
      shadowedBy[j] = best;
      warnings.push(`${chain[j].origin}: never matches: shadowed by ${chain[best].origin}`);
    }
    const sKey = prefixKey(b.src, bSrcBits);
    let byDst = index.get(sKey);
    if (!byDst) index.set(sKey, (byDst = new Map()));
    const dKey = prefixKey(b.dst, bDstBits);
    let byMatch = byDst.get(dKey);
    if (!byMatch) byDst.set(dKey, (byMatch = new Map()));
    const mKey = matchKey(b.proto, bPort);
    const list = byMatch.get(mKey);
    if (list) list.push(j);
    else byMatch.set(mKey, [j]);
    addLen(srcLens, bSrcBits);
    addLen(dstLens, bDstBits);
  }
  return { warnings, shadowedBy, complete };
}
