// conntrack.test.ts: the stateful firewall's parts without a network: the
// `state` match and `reject` action in rule files and options, their
// canonical text and shadowing; reject's answers (native/reject.h) for TCP,
// UDP and other protocols; the connection table's states, quotas (global,
// per vassal), timeouts and reloads (addon().Firewall: the router's Chain
// and Conntrack with the test's clock).
import { test } from 'node:test';
import path from 'node:path';
import { loadRuleSet } from '../../src/rules/load';
import { formatVerdict, Tracer } from '../../src/rules/trace';
import assert from 'node:assert/strict';
import { addon, type ConntrackOptions, type NativeRule } from '../../src/native';
import { compileRule } from '../../src/rules/compile';
import { parseFileLine, parseOptionRule } from '../../src/rules/parse';
import { covers } from '../../src/rules/shadow';
import { RuleError } from '../../src/rules/types';
import { conntrackDefaults } from '../../src/config/router-config';
import { icmpEcho, inetChecksum, ipToInt, udpPacket } from '../helpers/packets';
import { ACK, FIN, icmpError, RST, SYN, tcpSegment } from '../helpers/conntrack-packets';

const rule = (line: string): NativeRule => compileRule(parseFileLine(line, { file: 'x.rules', line: 1 }).rule!, 'x').native;
const fileError = (line: string): string => {
  try { parseFileLine(line, { file: 'x.rules', line: 1 }); } catch (e) { assert.ok(e instanceof RuleError); return e.message; }
  throw new Error(`no error for ${line}`);
};

test('state and reject parse, compile to native fields and print canonically', () => {
  const r = compileRule(parseFileLine('in allow 0.0.0.0/0 192.168.0.0/24 state established,related', { file: 'x', line: 1 }).rule!, 'x');
  assert.equal(r.native.states, 0b0110);
  assert.equal(r.text, 'allow 0.0.0.0/0 192.168.0.0/24 state established,related');
  assert.equal(rule('out reject 10.0.0.0/8 0.0.0.0 proto tcp dport 25').action, 2);
  assert.equal(compileRule(parseFileLine('out reject', { file: 'x', line: 1 }).rule!, 'x').text, 'reject 0.0.0.0/0 0.0.0.0/0');
  assert.equal(rule('in deny 0.0.0.0 0.0.0.0 state invalid,new').states, 0b1001);
  const o = parseOptionRule('reject 0.0.0.0/0 10.0.0.0/8 state new proto udp', 'in', { file: 'r.ini', line: 4 }, 1).rule!;
  assert.equal(o.action, 'reject');
  assert.equal(o.states, 1);
  assert.equal(rule('in allow 0.0.0.0 0.0.0.0').states, 0, 'a rule without state matches any state');
});

test('state errors carry file:line:column', () => {
  assert.equal(fileError('in allow 0.0.0.0 0.0.0.0 state established,bogus'), "x.rules:1:44: unknown state 'bogus' (expected new, established, related, invalid, comma separated)");
  assert.equal(fileError('in allow 0.0.0.0 0.0.0.0 state new,new'), "x.rules:1:36: state 'new' listed twice");
  assert.equal(fileError('in allow 0.0.0.0 0.0.0.0 state'), "x.rules:1:31: 'state' needs a value");
  assert.equal(fileError('in rejct'), "x.rules:1:4: unknown action 'rejct' (expected allow, deny or reject)");
  assert.equal(fileError('reject 0.0.0.0 0.0.0.0'), "x.rules:1:1: missing chain word: write 'in reject ...' or 'out reject ...'");
});

test('a state rule covers only rules whose states it holds', () => {
  assert.ok(covers(rule('in allow 0.0.0.0 0.0.0.0 state established,related'), rule('in deny 10.0.0.0/8 0.0.0.0 state established')));
  assert.ok(!covers(rule('in allow 0.0.0.0 0.0.0.0 state established'), rule('in deny 10.0.0.0/8 0.0.0.0')));
  assert.ok(covers(rule('in allow 0.0.0.0 0.0.0.0'), rule('in deny 10.0.0.0/8 0.0.0.0 state new')));
});

function checksumOk(b: Buffer, start: number, end: number, initial = 0): boolean {
  return inetChecksum(b, start, end, initial) === 0;
}

test('reject answers: TCP reset, ICMP port unreachable for UDP, administratively prohibited otherwise', () => {
  const { rejectAnswer } = addon();
  // A SYN: RST|ACK, ack = seq + 1, ports swapped, from the destination.
  const syn = tcpSegment('10.0.0.2', '192.0.2.1', 40000, 25, SYN, 1000);
  const rst = rejectAnswer(syn)!;
  assert.equal(rst.length, 40);
  assert.equal(rst.readUInt32BE(12), ipToInt('192.0.2.1'));
  assert.equal(rst.readUInt32BE(16), ipToInt('10.0.0.2'));
  assert.deepEqual([rst.readUInt16BE(20), rst.readUInt16BE(22)], [25, 40000]);
  assert.equal(rst[33], RST | ACK);
  assert.equal(rst.readUInt32BE(28), 1001);
  assert.ok(checksumOk(rst, 0, 20));
  const pseudo = (ipToInt('192.0.2.1') >>> 16) + (ipToInt('192.0.2.1') & 0xffff) + (ipToInt('10.0.0.2') >>> 16) + (ipToInt('10.0.0.2') & 0xffff) + 6 + 20;
  assert.ok(checksumOk(rst, 20, 40, pseudo), 'TCP checksum');
  // An ACK: RST with seq = its ack.
  const ackRst = rejectAnswer(tcpSegment('10.0.0.2', '192.0.2.1', 40000, 25, ACK, 5, 777))!;
  assert.equal(ackRst[33], RST);
  assert.equal(ackRst.readUInt32BE(24), 777);
  assert.equal(rejectAnswer(tcpSegment('10.0.0.2', '192.0.2.1', 1, 2, RST)), null, 'never a reset for a reset');
  // UDP: type 3 code 3 quoting the header and 8 bytes.
  const dgram = udpPacket('10.0.0.2', '192.0.2.1', 5000, 53, 'hello world');
  const unreach = rejectAnswer(dgram)!;
  assert.deepEqual([unreach[9], unreach[20], unreach[21]], [1, 3, 3]);
  assert.deepEqual(unreach.subarray(28), dgram.subarray(0, 28));
  assert.ok(checksumOk(unreach, 20, unreach.length) && checksumOk(unreach, 0, 20));
  // Anything else: type 3 code 13.
  const ping = rejectAnswer(icmpEcho('10.0.0.2', '192.0.2.1', 7, 1))!;
  assert.deepEqual([ping[20], ping[21]], [3, 13]);
  assert.equal(rejectAnswer(icmpError('10.0.0.2', '192.0.2.1', 3, 1, dgram)), null, 'never an error for an error');
});

const ANY: NativeRule = { action: 0, src: 0, srcBits: 0, dst: 0, dstBits: 0, proto: -1, sport: [], dport: [], icmpType: -1, states: 0 };
const S = { new: 1, established: 2, related: 4, invalid: 8 };
const short = (over: Partial<ConntrackOptions> = {}): ConntrackOptions => ({ ...conntrackDefaults(), ...over });
const V = ipToInt('10.0.0.2');

test('each state: new, established (the first answer), related (an ICMP error quoting a flow), invalid', () => {
  // Vassals reach out; only replies come in.
  const fw = new (addon().Firewall)([{ ...ANY, states: S.established | S.related }, { ...ANY, action: 1 }], [{ ...ANY, states: S.invalid, action: 1 }], short());
  const out = tcpSegment('10.0.0.2', '192.0.2.1', 40000, 80, SYN);
  assert.deepEqual(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 40000, SYN | ACK), 1e9, V), { state: 3, verdict: 'deny', refused: '' }, 'an answer to nothing is invalid');
  assert.deepEqual(fw.judge('out', out, 1e9, V), { state: 0, verdict: 'allow', refused: '' });
  assert.deepEqual(fw.judge('out', tcpSegment('10.0.0.2', '192.0.2.1', 40001, 80, ACK), 1e9, V), { state: 3, verdict: 'deny', refused: '' }, 'a non-SYN without a flow');
  assert.deepEqual(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 40000, SYN | ACK), 2e9, V), { state: 1, verdict: 'allow', refused: '' });
  assert.deepEqual(fw.judge('in', icmpError('192.0.2.9', '10.0.0.2', 3, 4, out), 2e9, V), { state: 2, verdict: 'allow', refused: '' });
  assert.deepEqual(fw.judge('in', icmpError('192.0.2.9', '10.0.0.2', 3, 4, udpPacket('10.0.0.2', '192.0.2.1', 1, 2)), 2e9, V).state, 3);
  assert.deepEqual(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 40002, SYN), 2e9, V), { state: 0, verdict: 'deny', refused: '' }, 'a new flow from outside');
  // A reset closes: after tcp-close (10 s) the flow is gone.
  fw.judge('out', tcpSegment('10.0.0.2', '192.0.2.1', 40000, 80, RST | ACK), 3e9, V);
  assert.equal(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 40000, ACK), 12e9, V).state, 1);
  assert.equal(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 40000, ACK), 23e9, V).state, 3);
});

test('timeouts: UDP unanswered 30 s, answered 180 s; echo 30 s; established TCP 5 days', () => {
  const fw = new (addon().Firewall)([{ ...ANY, states: S.established }], [], short());
  const q = udpPacket('10.0.0.2', '192.0.2.1', 5000, 53), a = udpPacket('192.0.2.1', '10.0.0.2', 53, 5000);
  fw.judge('out', q, 0, V);
  assert.equal(fw.judge('in', a, 29e9, V).state, 1);
  assert.equal(fw.judge('in', a, (29 + 179) * 1e9, V).state, 1);
  assert.equal(fw.judge('in', a, (29 + 179 + 181) * 1e9, V).state, 0);
  fw.judge('out', icmpEcho('10.0.0.2', '192.0.2.1', 9, 1), 0, V);
  assert.equal(fw.judge('in', icmpEcho('192.0.2.1', '10.0.0.2', 9, 1, 'x', 0), 31e9, V).state, 3, 'an echo reply after 30 s meets nothing');
  for (const [from, flags] of [[0, SYN], [1, SYN | ACK], [0, ACK]] as const) {
    fw.judge(from ? 'in' : 'out', from ? tcpSegment('192.0.2.1', '10.0.0.2', 80, 4000, flags) : tcpSegment('10.0.0.2', '192.0.2.1', 4000, 80, flags), 1e9, V);
  }
  assert.equal(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 4000, ACK), 400000e9, V).state, 1);
  assert.equal(fw.judge('in', tcpSegment('192.0.2.1', '10.0.0.2', 80, 4000, FIN | ACK), 800000e9, V).state, 1);
});

test('quotas: a new flow over the global or its vassal\'s share is refused and counted; expired flows free it', () => {
  const fw = new (addon().Firewall)([], [{ ...ANY, states: S.new | S.established }], short({ ctMax: 5, ctMaxPerVassal: 3 }));
  const W = ipToInt('10.0.0.3');
  const open = (v: number, port: number, t = 1e9): string => fw.judge('out', udpPacket(v, '192.0.2.1', port, 53), t, v).refused;
  assert.deepEqual([1, 2, 3, 4].map((p) => open(V, p)), ['', '', '', 'conntrack_vassal']);
  assert.deepEqual([1, 2, 3].map((p) => open(W, p)), ['', '', 'conntrack_full']);
  assert.equal(fw.size, 5);
  assert.equal(open(V, 1), '', 'a known flow is never refused');
  assert.equal(open(V, 9, 40e9), '', 'after 30 s the unanswered flows expired');
});

test('a reload with states keeps the flows; a rule set without states drops the table', () => {
  const rules: NativeRule[] = [{ ...ANY, states: S.established }, { ...ANY, action: 1 }];
  const fw = new (addon().Firewall)(rules, [], short());
  fw.judge('out', udpPacket('10.0.0.2', '192.0.2.1', 5000, 53), 1e9, V);
  fw.setRules([...rules.slice(0, 1), { ...ANY, action: 2 }], [], short());
  assert.deepEqual(fw.judge('in', udpPacket('192.0.2.1', '10.0.0.2', 53, 5000), 2e9, V), { state: 1, verdict: 'allow', refused: '' });
  assert.deepEqual(fw.judge('in', udpPacket('192.0.2.1', '10.0.0.2', 53, 5001), 2e9, V).verdict, 'reject');
  fw.setRules([{ ...ANY, action: 1 }], [], null);
  assert.equal(fw.size, 0);
  assert.deepEqual(fw.judge('in', udpPacket('192.0.2.1', '10.0.0.2', 53, 5000), 2e9, V), { state: -1, verdict: 'deny', refused: '' });
  assert.throws(() => fw.setRules(rules, []), /conntrack: required when a rule names a state/);
});

test('moat rules trace takes the state a packet meets', () => {
  const set = loadRuleSet([], [path.join(__dirname, '../../../rules/stateful')]);
  const t = new Tracer(set);
  const p = { chain: 'in' as const, src: ipToInt('8.8.8.8'), dst: ipToInt('192.168.0.5'), proto: 6, hasL4: true, sport: 1, dport: 22, icmpType: 0 };
  const [n, e, i] = t.trace([{ ...p, state: 0 }, { ...p, state: 1 }, { ...p, state: 3 }]).map(formatVerdict);
  assert.match(n, /^reject .*outbound\.rules:9 \(new\)$/);
  assert.match(e, /^allow .*outbound\.rules:7 \(established\)$/);
  assert.match(i, /^reject .*outbound\.rules:9 \(invalid\)$/);
});

test('the seed policy with state (rules/stateful-isolation): answers come in, nothing else from outside; vassals never reach each other', () => {
  const set = loadRuleSet([], [path.join(__dirname, '../../../rules/stateful-isolation')]);
  assert.deepEqual(set.warnings, []);
  const t = new Tracer(set);
  const pkt = (chain: 'in' | 'out', src: string, dst: string, state: number) =>
    formatVerdict(t.trace([{ chain, src: ipToInt(src), dst: ipToInt(dst), proto: 17, hasL4: true, sport: 5000, dport: 53, icmpType: 0, state }])[0]);
  assert.match(pkt('out', '192.168.0.5', '8.8.8.8', 0), /^allow .*:9 \(new\)$/, 'a vassal opens a flow to the outside');
  assert.match(pkt('in', '8.8.8.8', '192.168.0.5', 1), /^allow .*:12 \(established\)$/, 'its answer comes in');
  assert.match(pkt('in', '8.8.8.8', '192.168.0.5', 0), /^deny .*:14 \(new\)$/, 'nothing from outside opens one');
  assert.match(pkt('out', '192.168.0.5', '192.168.0.6', 0), /^deny .*:8 \(new\)$/, 'never another vassal');
  assert.match(pkt('in', '192.168.0.1', '192.168.0.5', 0), /^allow .*:13 \(new\)$/, 'the gateway may open one, as in the seed');
});
