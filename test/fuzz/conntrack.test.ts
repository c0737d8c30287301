// conntrack.test.ts: the stateful firewall against its reference. fast-check
// draws rule sets that name states (allow, deny, reject) and sequences of
// packets between two vassals and two outside hosts: TCP with SYN, SYN-ACK,
// ACK, FIN and RST, UDP, ICMP echo and errors quoting earlier packets, time
// passing past short timeouts, rule reloads. Every packet goes through the
// native chains and connection table (addon().Firewall: the router's own
// Chain and Conntrack, with the test's clock) and through
// test/helpers/reference-conntrack.ts; state, verdict and quota refusal
// must agree for every packet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { addon, type ConntrackOptions, type NativeRule } from '../../src/native';
import { ReferenceConntrack } from '../helpers/reference-conntrack';
import { icmpEcho, ipToInt, udpPacket } from '../helpers/packets';
import { ACK, FIN, icmpError, RST, SYN, tcpSegment } from '../helpers/conntrack-packets';
import { params } from './fuzz-helpers';

const VASSALS = ['10.0.0.2', '10.0.0.3'];
const OUTSIDE = ['192.0.2.1', '192.0.2.2'];
const PORTS = [53, 1000, 2000];

const opts = (max: number, perVassal: number, t: number[]): ConntrackOptions => ({
  ctMax: max, ctMaxPerVassal: perVassal,
  ctTimeoutTcpSynSent: t[0], ctTimeoutTcpSynRecv: t[1], ctTimeoutTcpEstablished: t[2], ctTimeoutTcpFinWait: t[3],
  ctTimeoutTcpCloseWait: t[4], ctTimeoutTcpLastAck: t[5], ctTimeoutTcpTimeWait: t[6], ctTimeoutTcpClose: t[7],
  ctTimeoutUdp: t[8], ctTimeoutUdpStream: t[9], ctTimeoutIcmp: t[10], ctTimeoutGeneric: t[11],
});

const host = fc.constantFrom(...VASSALS, ...OUTSIDE);
const net = fc.constantFrom<[string, number]>(['0.0.0.0', 0], ['10.0.0.0', 24], ['10.0.0.2', 32], ['192.0.2.0', 24]);
const rule: fc.Arbitrary<NativeRule> = fc.record({
  action: fc.constantFrom<0 | 1 | 2>(0, 0, 1, 2),
  src: net, dst: net,
  proto: fc.constantFrom(-1, -1, 1, 6, 17),
  dport: fc.option(fc.constantFrom(...PORTS), { freq: 3 }),
  states: fc.integer({ min: 0, max: 15 }),
}).map((r) => ({
  action: r.action, src: ipToInt(r.src[0]), srcBits: r.src[1], dst: ipToInt(r.dst[0]), dstBits: r.dst[1],
  proto: r.proto, sport: [], dport: r.dport !== null && (r.proto === 6 || r.proto === 17) ? [[r.dport, r.dport]] : [],
  icmpType: -1, states: r.states,
}));
// At least one rule names a state, so flows are tracked (a reload keeps them).
const ruleSet = fc.tuple(fc.array(rule, { maxLength: 5 }), fc.array(rule, { maxLength: 5 }))
  .map(([i, o]) => ({ in: [...i, { ...i[0] ?? RULE_ANY, states: 3, action: 0 as const }], out: [...o, { ...RULE_ANY, states: 8, action: 1 as const }] }));
const RULE_ANY: NativeRule = { action: 0, src: 0, srcBits: 0, dst: 0, dstBits: 0, proto: -1, sport: [], dport: [], icmpType: -1, states: 0 };

// Packets belong to a few connections (two ends, two ports), sent either way.
interface Conn { a: string; b: string; sp: number; dp: number }
const conn: fc.Arbitrary<Conn> = fc.record({ a: host, b: host, sp: fc.constantFrom(...PORTS), dp: fc.constantFrom(...PORTS) });
type Step =
  | { kind: 'tcp'; c: number; back: boolean; flags: number }
  | { kind: 'udp'; c: number; back: boolean }
  | { kind: 'echo'; c: number; back: boolean; reply: boolean }
  | { kind: 'error'; c: number; back: boolean; quote: number; type: number }
  | { kind: 'open' | 'close'; c: number; back: boolean }
  | { kind: 'wait'; s: number }
  | { kind: 'reload'; set: number };
const c = fc.nat(3);
const back = fc.boolean();
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 5, arbitrary: fc.record({ kind: fc.constant('tcp' as const), c, back,
    flags: fc.constantFrom(SYN, SYN, SYN | ACK, ACK, ACK, FIN | ACK, RST, RST | ACK, ACK | SYN | FIN, 0) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('udp' as const), c, back }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constantFrom('open' as const, 'close' as const), c, back }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('echo' as const), c, back, reply: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('error' as const), c, back, quote: fc.nat(), type: fc.constantFrom(3, 11) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('wait' as const), s: fc.integer({ min: 0, max: 4 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reload' as const), set: fc.nat() }) },
);

// 64 rules first in a chain that no packet of these sequences matches (their
// sources are 198.51.100.x): the chain is then long enough for its verdict
// cache (native/verdict_cache.h), which must never change an answer, also
// when a flow's state changes between two packets of the same key.
const PADDING: NativeRule[] = Array.from({ length: 64 }, (_, i) => ({
  ...RULE_ANY, action: (i % 3) as 0 | 1 | 2, src: ipToInt(`198.51.100.${i}`), srcBits: 32, states: i % 16,
}));
const padded = (set: { in: NativeRule[]; out: NativeRule[] }) => ({ in: [...PADDING, ...set.in], out: [...PADDING, ...set.out] });

test('random packet sequences meet the same states and verdicts in the native table and the reference', () => {
  agreeOnSequences((set) => set, Number(process.env.FUZZ_RUNS ?? 4000));
});

test('the same with chains long enough for the verdict cache', () => {
  agreeOnSequences(padded, Number(process.env.FUZZ_RUNS ?? 1500));
});

function agreeOnSequences(shape: (set: { in: NativeRule[]; out: NativeRule[] }) => { in: NativeRule[]; out: NativeRule[] }, runs: number): void {
  const { Firewall } = addon();
  fc.assert(fc.property(
    fc.array(ruleSet.map(shape), { minLength: 1, maxLength: 3 }), fc.array(conn, { minLength: 4, maxLength: 4 }), fc.array(step, { minLength: 1, maxLength: 60 }),
    fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 12, maxLength: 12 }),
    fc.constantFrom([1000, 1000], [4, 2]),
    (sets, conns, steps, timeouts, [max, perVassal]) => {
      const o = opts(max, perVassal, timeouts);
      const native = new Firewall(sets[0].in, sets[0].out, o);
      const ref = new ReferenceConntrack(sets[0].in, sets[0].out, o);
      let now = 1e9;
      const sent: Buffer[] = [];
      // From a vassal: the out chain, its quota; else the in chain, the destination's.
      const send = (pkt: Buffer, a: string, b: string, s: Step): void => {
        sent.push(pkt);
        const chain = VASSALS.includes(a) ? 'out' : 'in';
        const vassal = ipToInt(chain === 'out' ? a : b);
        const got = native.judge(chain, pkt, now, vassal);
        const want = ref.judge(chain, pkt, now, vassal);
        assert.deepEqual(got, want, `${JSON.stringify(s)} at ${now / 1e9} s`);
      };
      for (const s of steps) {
        if (s.kind === 'wait') {
          now += s.s * 1e9;
          // The router sweeps every wakeup: expired entries go before a quota counts them.
          if (max < 1000) native.sweep(now);
          continue;
        }
        if (s.kind === 'reload') {
          const set = sets[s.set % sets.length];
          native.setRules(set.in, set.out, o);
          ref.setRules(set.in, set.out, o);
          continue;
        }
        const k = conns[s.c];
        const [a, b, sp, dp] = s.back ? [k.b, k.a, k.dp, k.sp] : [k.a, k.b, k.sp, k.dp];
        if (s.kind === 'open' || s.kind === 'close') {
          // A handshake or a close, each segment judged in turn.
          const seq: Array<[boolean, number]> = s.kind === 'open'
            ? [[false, SYN], [true, SYN | ACK], [false, ACK]]
            : [[false, FIN | ACK], [true, ACK], [true, FIN | ACK], [false, ACK]];
          for (const [rev, flags] of seq) send(tcpSegment(rev ? b : a, rev ? a : b, rev ? dp : sp, rev ? sp : dp, flags), rev ? b : a, rev ? a : b, s);
          continue;
        }
        let pkt: Buffer;
        if (s.kind === 'tcp') pkt = tcpSegment(a, b, sp, dp, s.flags);
        else if (s.kind === 'udp') pkt = udpPacket(a, b, sp, dp, 'x');
        else if (s.kind === 'echo') pkt = icmpEcho(a, b, k.sp, 1, 'x', s.reply ? 0 : 8);
        else if (s.kind === 'error' && sent.length > 0) pkt = icmpError(a, b, s.type, 0, sent[s.quote % sent.length]);
        else continue;
        send(pkt, a, b, s);
      }
    }), params(runs));
}
