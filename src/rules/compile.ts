// compile.ts: rule AST -> what the native classifier takes (NativeRule), the
// rule's canonical text, and the map that carries hit counters across reloads.
import { STATES, type NativeRule } from '../native';
import type { CompiledRule, Origin } from './types';
import { formatIpv4, PROTO_NAMES, type RuleAst } from './parse';

/** Sorted, overlapping and adjacent ranges merged: one spelling per port set. */
export function normalisePorts(ranges: Array<[number, number]>): Array<[number, number]> {
  const sorted = ranges.map(([lo, hi]) => [lo, hi] as [number, number]).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const out: Array<[number, number]> = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

function portsText(ranges: Array<[number, number]>): string {
  return ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}-${hi}`)).join(',');
}

/** 'established,related' for a states mask, in STATES order. */
export function statesText(bits: number): string {
  return STATES.filter((_, i) => bits & (1 << i)).join(',');
}

export function protoText(proto: number): string {
  return PROTO_NAMES[proto] ?? String(proto);
}

/** The native form: addresses already masked (parse.ts did), 0.0.0.0 as /0. */
export function toNative(ast: RuleAst): NativeRule {
  return {
    action: ast.action === 'reject' ? 2 : ast.action === 'deny' ? 1 : 0,
    src: ast.src.addr, srcBits: ast.src.addr === 0 ? 0 : ast.src.bits,
    dst: ast.dst.addr, dstBits: ast.dst.addr === 0 ? 0 : ast.dst.bits,
    proto: ast.proto,
    sport: normalisePorts(ast.sport),
    dport: normalisePorts(ast.dport),
    icmpType: ast.icmpType,
    states: ast.states,
  };
}

/** Canonical text of a native rule: equal texts mean equal rules.
 *  e.g. `allow 192.168.0.0/24 0.0.0.0/0 proto tcp dport 80,443` */
export function ruleText(r: NativeRule): string {
  const action = r.action === 2 ? 'reject' : r.action === 1 ? 'deny' : 'allow';
  let s = `${action} ${formatIpv4(r.src)}/${r.srcBits} ${formatIpv4(r.dst)}/${r.dstBits}`;
  if (r.proto >= 0) s += ` proto ${protoText(r.proto)}`;
  if (r.sport.length) s += ` sport ${portsText(r.sport)}`;
  if (r.dport.length) s += ` dport ${portsText(r.dport)}`;
  if (r.icmpType >= 0) s += ` icmp-type ${r.icmpType}`;
  if (r.states) s += ` state ${statesText(r.states)}`;
  return s;
}

export function compileRule(ast: RuleAst, origin: Origin): CompiledRule {
  const native = toNative(ast);
  return { chain: ast.chain, origin, text: ruleText(native), native };
}

/** For one chain: carry[i] = index in oldRules whose hit counter newRules[i]
 *  inherits, or -1. A rule inherits when it has the same chain and normalised
 *  text and is the k-th occurrence of that text in both lists. */
export function carryMap(oldRules: readonly CompiledRule[], newRules: readonly CompiledRule[]): Int32Array {
  const key = (r: CompiledRule): string => `${r.chain} ${r.text}`;
  const oldByKey = new Map<string, number[]>();
  oldRules.forEach((r, i) => {
    const list = oldByKey.get(key(r));
    if (list) list.push(i);
    else oldByKey.set(key(r), [i]);
  });
  const seen = new Map<string, number>();
  const carry = new Int32Array(newRules.length).fill(-1);
  newRules.forEach((r, i) => {
    const k = key(r);
    const nth = seen.get(k) ?? 0;
    seen.set(k, nth + 1);
    const old = oldByKey.get(k);
    if (old && nth < old.length) carry[i] = old[nth];
  });
  return carry;
}
