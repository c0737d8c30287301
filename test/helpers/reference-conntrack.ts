// reference-conntrack.ts: connection tracking as the README describes it,
// written from those words (not from native/conntrack.cc), so the native
// table and chains can be compared with it packet by packet
// (test/fuzz/conntrack.test.ts):
//  - a flow is its protocol and its two ends (address, port; an ICMP echo's
//    id as both ports; other protocols and ICMP types: no ports), the same
//    flow in both directions; the side that opened it is its origin;
//  - a packet of no flow is new if it may open one (a TCP SYN alone, an echo
//    request, any UDP or other packet), else invalid; a packet of a flow is
//    established once an answer (a packet toward the origin) was accepted,
//    or if it is that answer; before, new; a non-first fragment, a short
//    transport header or an ICMP error quoting no flow is invalid; an ICMP
//    error quoting a flow is related;
//  - a TCP SYN from the origin on a flow closed (time-wait, close) opens it anew;
//  - only accepted packets change flows; a flow lives for the timeout of
//    its state after its last accepted packet; a new flow is refused over
//    the global or its vassal's count (expired flows count for nothing).
import { firstMatch, type Packet } from './reference-firewall';
import type { ConntrackOptions, NativeRule } from '../../src/native';

type TcpState = 'syn_sent' | 'syn_recv' | 'established' | 'fin_wait' | 'close_wait' | 'last_ack' | 'time_wait' | 'close';
interface Flow {
  origin: string;        // 'addr:port' of the opener
  replied: boolean;
  tcp: TcpState;
  finByOrigin: boolean;
  kind: 'tcp' | 'udp' | 'echo' | 'other';
  vassal: number;
  expires: number;       // ns
}
export const STATE_NAMES = ['new', 'established', 'related', 'invalid'] as const;

interface Parsed { proto: number; src: number; dst: number; sport: number; dport: number; ok: boolean; icmpType: number }

function parse(p: Buffer): Parsed {
  const ihl = (p[0] & 15) * 4;
  const r: Parsed = { proto: p[9], src: p.readUInt32BE(12), dst: p.readUInt32BE(16), sport: 0, dport: 0, ok: true, icmpType: -1 };
  if ((p.readUInt16BE(6) & 0x1fff) !== 0 || p.length < ihl) return { ...r, ok: false };
  const l4 = p.subarray(ihl);
  if (r.proto === 6 || r.proto === 17) {
    if (l4.length < 8) return { ...r, ok: false };
    r.sport = l4.readUInt16BE(0);
    r.dport = l4.readUInt16BE(2);
  } else if (r.proto === 1) {
    if (l4.length < 8) return { ...r, ok: false };
    r.icmpType = l4[0];
    if (l4[0] === 8 || l4[0] === 0) r.sport = r.dport = l4.readUInt16BE(4);
  }
  return r;
}

function flowKey(x: Parsed): string {
  const a = `${x.src}:${x.sport}`, b = `${x.dst}:${x.dport}`;
  const lo = x.src < x.dst || (x.src === x.dst && x.sport <= x.dport);
  return `${x.proto}/${lo ? a : b}/${lo ? b : a}`;
}

export class ReferenceConntrack {
  private readonly flows = new Map<string, Flow>();
  constructor(private inRules: NativeRule[], private outRules: NativeRule[], private opts: ConntrackOptions) {}

  setRules(inRules: NativeRule[], outRules: NativeRule[], opts: ConntrackOptions): void {
    this.inRules = inRules;
    this.outRules = outRules;
    this.opts = opts;
  }

  private live(key: string, now: number): Flow | undefined {
    const f = this.flows.get(key);
    if (f && f.expires <= now) { this.flows.delete(key); return undefined; }
    return f;
  }

  private timeout(f: Flow): number {
    const o = this.opts;
    const s = f.kind === 'udp' ? (f.replied ? o.ctTimeoutUdpStream : o.ctTimeoutUdp)
      : f.kind === 'echo' ? o.ctTimeoutIcmp
      : f.kind === 'other' ? o.ctTimeoutGeneric
      : ({ syn_sent: o.ctTimeoutTcpSynSent, syn_recv: o.ctTimeoutTcpSynRecv, established: o.ctTimeoutTcpEstablished,
        fin_wait: o.ctTimeoutTcpFinWait, close_wait: o.ctTimeoutTcpCloseWait, last_ack: o.ctTimeoutTcpLastAck,
        time_wait: o.ctTimeoutTcpTimeWait, close: o.ctTimeoutTcpClose })[f.tcp];
    return s * 1e9;
  }

  /** The state pkt meets, the chain's verdict, and a quota refusal. */
  judge(chain: 'in' | 'out', pkt: Buffer, now: number, vassal: number): { state: number; verdict: string; refused: string } {
    const x = parse(pkt);
    const ihl = (pkt[0] & 15) * 4;
    let state = 3;
    let flow: Flow | undefined;
    let key = '';
    let reply = false;
    let reopen = false;
    let flags = 0;
    const isError = x.proto === 1 && [3, 4, 5, 11, 12].includes(x.icmpType);
    const tcpOk = x.proto !== 6 || pkt.length - ihl >= 14;
    if (x.ok && tcpOk && isError) {
      const inner = parse(pkt.subarray(ihl + 8));
      const innerOk = pkt.length - ihl - 8 >= 20 && inner.ok && !(inner.proto === 1 && [3, 4, 5, 11, 12].includes(inner.icmpType));
      state = innerOk && this.live(flowKey(inner), now) ? 2 : 3;
    } else if (x.ok && tcpOk) {
      if (x.proto === 6) flags = pkt[ihl + 13];
      key = flowKey(x);
      flow = this.live(key, now);
      if (!flow) {
        const f = flags & (0x02 | 0x10 | 0x04 | 0x01);
        state = (x.proto === 6 ? f === 0x02 : x.proto === 1 && x.icmpType === 0 ? false : true) ? 0 : 3;
      } else {
        reply = flow.origin !== `${x.src}:${x.sport}` || (x.src === x.dst && x.sport === x.dport ? false : false);
        if (x.proto === 6 && !reply && (flags & 0x16) === 0x02 && (flow.tcp === 'time_wait' || flow.tcp === 'close')) {
          reopen = true;
          state = 0;
        } else {
          state = reply || flow.replied ? 1 : 0;
        }
      }
    }
    const rules = chain === 'in' ? this.inRules : this.outRules;
    const pk: Packet = { src: x.src, dst: x.dst, proto: x.proto, hasL4: false, sport: 0, dport: 0, icmpType: 0 };
    const frag = (pkt.readUInt16BE(6) & 0x1fff) !== 0;
    const l4len = pkt.length - ihl;
    if (!frag && (x.proto === 6 || x.proto === 17) && l4len >= 4) { pk.hasL4 = true; pk.sport = pkt.readUInt16BE(ihl); pk.dport = pkt.readUInt16BE(ihl + 2); }
    if (!frag && x.proto === 1 && l4len >= 1) { pk.hasL4 = true; pk.icmpType = pkt[ihl]; }
    const withState = rules.filter((r) => !r.states || (r.states >> state) & 1);
    const i = firstMatch(withState, pk);
    const action = i < 0 ? 0 : withState[i].action;
    const verdict = ['allow', 'deny', 'reject'][action];
    let refused = '';
    if (action === 0 && (state === 0 || state === 1)) refused = this.commit(x, key, flow, reply, reopen, flags, vassal, now);
    return { state, verdict, refused };
  }

  private commit(x: Parsed, key: string, flow: Flow | undefined, reply: boolean, reopen: boolean, flags: number, vassal: number, now: number): string {
    if (flow) {
      if (reopen) {
        flow.origin = `${x.src}:${x.sport}`;
        flow.replied = false;
        flow.tcp = 'syn_sent';
      } else {
        if (reply) flow.replied = true;
        if (flow.kind === 'tcp') this.tcp(flow, flags, !reply);
      }
      flow.expires = now + this.timeout(flow);
      return '';
    }
    for (const [k, f] of this.flows) if (f.expires <= now) this.flows.delete(k);
    if (this.flows.size >= this.opts.ctMax) return 'conntrack_full';
    let mine = 0;
    for (const f of this.flows.values()) if (f.vassal === vassal) mine++;
    if (mine >= this.opts.ctMaxPerVassal) return 'conntrack_vassal';
    const kind = x.proto === 6 ? 'tcp' : x.proto === 17 ? 'udp' : x.proto === 1 && (x.icmpType === 8 || x.icmpType === 0) ? 'echo' : 'other';
    const f: Flow = { origin: `${x.src}:${x.sport}`, replied: false, tcp: 'syn_sent', finByOrigin: false, kind, vassal, expires: 0 };
    f.expires = now + this.timeout(f);
    this.flows.set(key, f);
    return '';
  }

  private tcp(f: Flow, flags: number, fromOrigin: boolean): void {
    const has = (b: number): boolean => (flags & b) !== 0;
    if (has(0x04)) { f.tcp = 'close'; return; }
    const finSide = f.finByOrigin === fromOrigin;
    switch (f.tcp) {
      case 'syn_sent': if (!fromOrigin && has(0x02) && has(0x10)) f.tcp = 'syn_recv'; break;
      case 'syn_recv': if (fromOrigin && has(0x10) && !has(0x02)) f.tcp = 'established'; break;
      case 'established': if (has(0x01)) { f.tcp = 'fin_wait'; f.finByOrigin = fromOrigin; } break;
      case 'fin_wait': if (!finSide && has(0x01)) f.tcp = 'last_ack'; else if (!finSide && has(0x10)) f.tcp = 'close_wait'; break;
      case 'close_wait': if (!finSide && has(0x01)) f.tcp = 'last_ack'; break;
      case 'last_ack': if (finSide && has(0x10) && !has(0x01)) f.tcp = 'time_wait'; break;
      default: break;
    }
  }

  get size(): number { return this.flows.size; }
}
