// trace.ts: which rule judges a packet. Uses the same compiled native
// classifier as the router (addon().Classifier, keys in KEY_FIELDS order), one
// match() call per chain for a whole batch of packets, so a trace can never
// disagree with the data path.
import { addon, KEY_FIELDS, STATES, type NativeClassifier } from '../native';
import type { Chain, Origin, RuleSet } from './types';
import { RuleError } from './types';
import { parseIpv4, parseProto, tokenize, type Token } from './parse';
import { packetBytes, parseTcpFlags } from './trace-packet';
import { conntrackDefaults } from '../config/router-config';

/** A packet as a rule sees it. */
export interface TracePacket {
  chain: Chain;
  src: number;        // uint32 host order
  dst: number;
  proto: number;      // 0..255
  hasL4: boolean;     // false for a non-first fragment
  sport: number;
  dport: number;
  icmpType: number;
  state?: number;     // STATES index the packet meets (rules naming states look at it); absent: new
  flags?: number;     // tcp: its flags (trace-packet.ts; default SYN), for --sequence
  at?: number;        // --sequence: seconds since the first packet (default: the previous packet's time)
  stated?: boolean;   // its state was given (not with --sequence: the table decides)
}

export interface Verdict {
  verdict: 'allow' | 'deny' | 'reject';
  index: number;              // rule index in its chain, -1 for the default policy
  origin: Origin | 'default';
  state?: string;             // the state the packet met, when a rule of its chain names states
}

export function formatVerdict(v: Verdict): string {
  return `${v.verdict} ${v.origin}${v.state ? ` (${v.state})` : ''}`;
}

/** Fills the 7-uint32-per-packet key array the native classifier takes. */
export function packetKeys(packets: readonly TracePacket[]): Uint32Array {
  const n = KEY_FIELDS.length;
  const keys = new Uint32Array(packets.length * n);
  packets.forEach((p, i) => {
    const fields: Record<(typeof KEY_FIELDS)[number], number> = {
      src: p.src, dst: p.dst, proto: p.proto, hasL4: p.hasL4 ? 1 : 0,
      sport: p.sport, dport: p.dport, icmpType: p.icmpType,
    };
    KEY_FIELDS.forEach((f, j) => { keys[i * n + j] = fields[f]; });
  });
  return keys;
}

/** A chain as the router compiles it for one state (native/chain.h): the
 *  rules that can match a packet in that state, with their indices. */
interface StateChain { classifier: NativeClassifier; index: number[] }

export class Tracer {
  private readonly chains = new Map<string, StateChain>();

  constructor(private readonly set: RuleSet) {}

  private chain(chain: Chain, state: number): StateChain {
    const key = `${chain}/${state}`;
    let c = this.chains.get(key);
    if (!c) {
      const index: number[] = [];
      this.set[chain].forEach((r, i) => { if (!r.native.states || (r.native.states >> state) & 1) index.push(i); });
      c = { classifier: new (addon().Classifier)(index.map((i) => this.set[chain][i].native)), index };
      this.chains.set(key, c);
    }
    return c;
  }

  /** Verdicts in input order; one native match() call per chain and state. */
  trace(packets: readonly TracePacket[]): Verdict[] {
    const out: Verdict[] = new Array(packets.length);
    for (const chain of ['in', 'out'] as const) {
      const stateful = this.set[chain].some((r) => r.native.states);
      for (let state = 0; state < STATES.length; state++) {
        const positions: number[] = [];
        packets.forEach((p, i) => { if (p.chain === chain && (p.state ?? 0) === state) positions.push(i); });
        if (positions.length === 0) continue;
        const c = this.chain(chain, stateful ? state : 0);
        const hits = c.classifier.match(packetKeys(positions.map((i) => packets[i])));
        positions.forEach((pos, j) => {
          const idx = hits[j] >= 0 ? c.index[hits[j]] : -1;
          const rule = idx >= 0 ? this.set[chain][idx] : undefined;
          const st = stateful ? { state: STATES[state] } : {};
          out[pos] = rule
            ? { verdict: (['allow', 'deny', 'reject'] as const)[rule.native.action], index: idx, origin: rule.origin, ...st }
            : { verdict: 'allow', index: -1, origin: 'default', ...st };
        });
      }
    }
    return out;
  }
}

export interface PacketSpec {
  chain: string;
  src: string;
  dst: string;
  proto?: string;
  sport?: string;
  dport?: string;
  icmpType?: string;
  fragment?: boolean;
  state?: string;
  flags?: string;     // tcp flags letters (S, A, F, R, P)
  at?: string;        // seconds (--sequence)
}

/** Checks a packet description; `fail(field, reason)` reports a bad field. */
export function buildPacket(spec: PacketSpec, fail: (field: keyof PacketSpec, reason: string) => never): TracePacket {
  if (spec.chain !== 'in' && spec.chain !== 'out') fail('chain', `direction '${spec.chain}' is not in or out`);
  const src = parseIpv4(spec.src);
  if (src === null) fail('src', `bad source address '${spec.src}'`);
  const dst = parseIpv4(spec.dst);
  if (dst === null) fail('dst', `bad destination address '${spec.dst}'`);
  let proto = 0;
  if (spec.proto !== undefined) {
    const p = parseProto(spec.proto);
    if (p === null) fail('proto', `bad protocol '${spec.proto}' (expected tcp, udp, icmp or 0-255)`);
    proto = p;
  }
  const num = (field: 'sport' | 'dport' | 'icmpType', max: number): number => {
    const t = spec[field];
    if (t === undefined) return 0;
    if (!/^\d{1,5}$/.test(t) || Number(t) > max) fail(field, `${field === 'icmpType' ? 'icmp type' : field} '${t}' is outside 0-${max}`);
    return Number(t);
  };
  if ((spec.sport !== undefined || spec.dport !== undefined) && proto !== 6 && proto !== 17)
    fail(spec.sport !== undefined ? 'sport' : 'dport', 'ports need protocol tcp or udp');
  if (spec.icmpType !== undefined && proto !== 1) fail('icmpType', 'an icmp type needs protocol icmp');
  const state = spec.state === undefined ? 0 : (STATES as readonly string[]).indexOf(spec.state);
  if (state < 0) fail('state', `unknown state '${spec.state}' (expected ${STATES.join(', ')})`);
  let flags: number | undefined;
  if (spec.flags !== undefined) {
    if (proto !== 6) fail('flags', 'flags need protocol tcp');
    const f = parseTcpFlags(spec.flags);
    if (f === null) fail('flags', `bad tcp flags '${spec.flags}' (letters of S, A, F, R, P, e.g. SA)`);
    flags = f!;
  }
  let at: number | undefined;
  if (spec.at !== undefined) {
    if (!/^\d+(\.\d+)?$/.test(spec.at)) fail('at', `bad time '${spec.at}' (seconds since the first packet, e.g. 31.5)`);
    at = Number(spec.at);
  }
  return {
    ...(flags !== undefined ? { flags } : {}), ...(at !== undefined ? { at } : {}), ...(spec.state !== undefined ? { stated: true } : {}),
    chain: spec.chain as Chain, src, dst, proto,
    hasL4: !spec.fragment && (proto === 1 || proto === 6 || proto === 17),
    sport: num('sport', 65535), dport: num('dport', 65535), icmpType: num('icmpType', 255), state,
  };
}

/** Plays packets in order through the router's own chains and connection
 *  table (addon().Firewall: the code the router runs, with the default
 *  table limits and timeouts), each at its `at` time: the verdict of each
 *  and the state it met (a new flow over a quota: `deny conntrack_full` or
 *  `conntrack_vassal`). A packet's own `state` is not used: the table decides. */
export function traceSequence(set: RuleSet, packets: readonly TracePacket[]): Verdict[] {
  const stateful = [...set.in, ...set.out].some((r) => r.native.states);
  const fw = new (addon().Firewall)(set.in.map((r) => r.native), set.out.map((r) => r.native), stateful ? conntrackDefaults() : null);
  const tracer = new Tracer(set);
  let t = 0;
  return packets.map((p) => {
    t = p.at ?? t;
    const j = fw.judge(p.chain, packetBytes(p), Math.round(t * 1e9) + 1, p.chain === 'out' ? p.src : p.dst);
    const v = tracer.trace([{ ...p, state: j.state < 0 ? 0 : j.state }])[0];
    return j.refused ? { ...v, verdict: 'deny', origin: j.refused } : v;
  });
}

/** Packets file: `in|out SRC DST [PROTO [SPORT DPORT]] [fragment]`, for icmp
 *  `in|out SRC DST icmp [TYPE] [fragment]`, then any of `state S`, `flags F`
 *  (tcp), `at T`; '#' comments, blank lines. */
export function parsePackets(text: string, file: string): TracePacket[] {
  const packets: TracePacket[] = [];
  text.split(/\r?\n/).forEach((line, i) => {
    const toks = tokenize(line);
    if (toks.length === 0) return;
    const at = (col: number, reason: string): never => {
      throw new RuleError(`${file}:${i + 1}:${col}: ${reason}`);
    };
    let end = toks.length;
    // `state S`, `flags F`, `at T` at the end, in any order: the state the
    // packet meets; a tcp packet's flags; its time (--sequence).
    const tail: Partial<Record<'state' | 'flags' | 'at', Token>> = {};
    while (end >= 2 && ['state', 'flags', 'at'].includes(toks[end - 2].text) && !tail[toks[end - 2].text as 'state']) {
      tail[toks[end - 2].text as 'state' | 'flags' | 'at'] = toks[end - 1];
      end -= 2;
    }
    const state = tail.state;
    const fragment = toks[end - 1].text === 'fragment';
    if (fragment) end--;
    if (end < 3) at(toks[end - 1]?.col ?? 1, 'expected in|out SRC DST [PROTO [SPORT DPORT]]');
    const spec: PacketSpec = { chain: toks[0].text, src: toks[1].text, dst: toks[2].text, fragment, state: state?.text, flags: tail.flags?.text, at: tail.at?.text };
    const col: Partial<Record<keyof PacketSpec, number>> = { chain: toks[0].col, src: toks[1].col, dst: toks[2].col, state: state?.col, flags: tail.flags?.col, at: tail.at?.col };
    if (end > 3) { spec.proto = toks[3].text; col.proto = toks[3].col; }
    const p = spec.proto === undefined ? null : parseProto(spec.proto);
    if (end > 4) {
      if (p === 1) {
        if (end > 5) at(toks[5].col, `unexpected '${toks[5].text}' after the icmp type`);
        spec.icmpType = toks[4].text; col.icmpType = toks[4].col;
      } else if (p === 6 || p === 17) {
        if (end !== 6) at(end === 5 ? toks[4].col : toks[6].col, 'expected SPORT DPORT after tcp or udp');
        spec.sport = toks[4].text; col.sport = toks[4].col;
        spec.dport = toks[5].text; col.dport = toks[5].col;
      } else if (p !== null) {
        at(toks[4].col, `unexpected '${toks[4].text}': only tcp, udp and icmp packets have more fields`);
      }
    }
    packets.push(buildPacket(spec, (field, reason) => at(col[field] ?? 1, reason)));
  });
  return packets;
}
