// shadow.ts: finds rules that can never match because an earlier rule of the
// same chain matches every packet they match (first match wins).
//
// Only single-rule shadowing is found (a rule covered by the union of several
// earlier rules is not reported). Earlier rules are bucketed by their source
// and destination prefixes, so a rule is compared only with the earlier rules
// whose prefixes contain its own (at most one bucket per prefix length in use),
// not with the whole chain. Within a bucket the walk is linear; a total budget
// of comparisons bounds pathological chains, and the check then says it stopped.
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

/** Shadowed rules of one chain, in chain order. */
export function findShadowed(chain: readonly CompiledRule[], budget = COMPARISON_BUDGET): ShadowResult {
  const shadowedBy = new Int32Array(chain.length).fill(-1);
  const warnings: string[] = [];
  const index = new Map<number, Map<number, number[]>>();  // src prefix -> dst prefix -> rule indices (ascending)
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
    let best = -1;
    if (complete) {
      for (const sl of srcLens) {
        if (sl > bSrcBits) break;
        const byDst = index.get(prefixKey((b.src & maskOf(sl)) >>> 0, sl));
        if (!byDst) continue;
        for (const dl of dstLens) {
          if (dl > bDstBits) break;
          const list = byDst.get(prefixKey((b.dst & maskOf(dl)) >>> 0, dl));
          if (!list) continue;
          for (const i of list) {
            if (best >= 0 && i > best) break;
            comparisons++;
            if (coversBeyondAddresses(chain[i].native, b)) { best = i; break; }
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
    const list = byDst.get(dKey);
    if (list) list.push(j);
    else byDst.set(dKey, [j]);
    addLen(srcLens, bSrcBits);
    addLen(dstLens, bDstBits);
  }
  return { warnings, shadowedBy, complete };
}
