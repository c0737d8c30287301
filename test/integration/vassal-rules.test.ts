// vassal-rules.test.ts: each vassal's own firewall rules in the native
// router (native/peer_rules.h, NativeRouter.setPeerRules), against a real tun
// device in a namespace the test makes. Two peers play two vassals; the
// gateway namespace's kernel answers their pings. A peer's rules narrow what
// the router's rules allow, in both chains, and never widen what they deny;
// a new set is swapped in under live connections, keeping the counters of
// unchanged rules (the carry PeerRuleBook computes, as the Router does).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { NativeRule, PeerRuleSet } from '../../src/native';
import { requireRoot, waitFor } from '../helpers/netns';
import { ipToInt, PROTO_ICMP } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { RouterLab } from '../helpers/native-router';
import { PeerRuleBook } from '../../src/router/peer-rules';
import { compileRule } from '../../src/rules/compile';
import { parseFileLine } from '../../src/rules/parse';

const L = new RouterLab();
let gw = '';
let a: FramePeer;
let b: FramePeer;
let A = '';
let B = '';

function rule(action: 0 | 1, src: string, srcBits: number, dst: string, dstBits: number, proto = -1, icmpType = -1): NativeRule {
  return { action, src: ipToInt(src), srcBits, dst: ipToInt(dst), dstBits, proto, sport: [], dport: [], icmpType };
}
const anyIcmp = (action: 0 | 1) => rule(action, '0.0.0.0', 0, '0.0.0.0', 0, PROTO_ICMP);
const peerHits = (addr: string) => L.router.stats().peerHits.find((h) => h.addr === ipToInt(addr));
const drops = (addr: string) => L.peerStats(addr).drops;

before(async () => {
  requireRoot();
  L.start('vr');
  gw = L.gw;
  A = L.host(20);
  B = L.host(21);
  a = await FramePeer.connect(L.sockPath);
  b = await FramePeer.connect(L.sockPath);
  assert.ok(await a.ping(A, gw), 'A answered before any rule');
  assert.ok(await b.ping(B, gw), 'B answered before any rule');
});

after(async () => {
  a?.close();
  b?.close();
  await L.cleanup();
});

test('setPeerRules is type-checked: one set per address and per key, never address 0', () => {
  const set = (over: Partial<PeerRuleSet>): PeerRuleSet => ({ key: 1, addr: ipToInt(A), in: [], out: [], ...over });
  assert.throws(() => L.router.setPeerRules([set({}), set({ key: 2 })]), /peerRules\[1\]\.addr: a second rule set for the same address/);
  assert.throws(() => L.router.setPeerRules([set({}), set({ addr: ipToInt(B) })]), /peerRules\[1\]\.key: a second rule set with the same key/);
  assert.throws(() => L.router.setPeerRules([set({ addr: 0 })]), TypeError);
  assert.throws(() => L.router.setPeerRules([set({ out: [{ action: 1 } as unknown as NativeRule] })]), /peerRules\[0\]\.out\[0\]/);
  assert.deepEqual(L.router.stats().peerHits, [], 'nothing installed by a refused call');
});

test('a peer\'s own rules narrow the router\'s, out and in, for that peer only', async () => {
  try {
    // out: A may not ping the gateway; the router's rules (none) allow it; B is untouched.
    L.router.setPeerRules([{ key: 1, addr: ipToInt(A), in: [], out: [rule(1, A, 32, gw, 32, PROTO_ICMP)] }]);
    const before = drops(A).vassal_firewall_out;
    assert.equal(await a.ping(A, gw, 400), false, 'A denied by its own out rule');
    assert.ok(drops(A).vassal_firewall_out > before, 'counted as vassal_firewall_out');
    assert.equal(drops(A).firewall_out, 0, 'not as the router\'s');
    assert.ok(peerHits(A)!.out[0] >= 1, 'its rule hit');
    assert.ok(await b.ping(B, gw), 'B is not A');

    // in: the echo reply toward A is denied by A's own in chain.
    L.router.setPeerRules([{ key: 1, addr: ipToInt(A), in: [rule(1, gw, 32, A, 32, PROTO_ICMP, 0)], out: [] }]);
    const inBefore = drops(A).vassal_firewall_in;
    assert.equal(await a.ping(A, gw, 400), false, 'A\'s replies denied by its own in rule');
    assert.ok(drops(A).vassal_firewall_in > inBefore, 'counted as vassal_firewall_in');
    assert.ok(peerHits(A)!.in[0] >= 1);
    assert.ok(await b.ping(B, gw), 'B still answered');
    assert.equal(L.router.stats().drops.vassal_firewall_in, drops(A).vassal_firewall_in, 'the router\'s total is A\'s');

    // A rule that matches nothing else falls through to allow (a peer's default).
    L.router.setPeerRules([{ key: 1, addr: ipToInt(A), in: [], out: [rule(1, A, 32, L.host(99), 32)] }]);
    assert.ok(await a.ping(A, gw), 'unmatched: allowed');
  } finally {
    L.router.setPeerRules([]);
  }
});

test('a peer\'s allow never widens the router\'s deny, in either chain', async () => {
  const own = () => drops(A).vassal_firewall_in + drops(A).vassal_firewall_out;
  const ownBefore = own();
  try {
    L.router.setPeerRules([{ key: 1, addr: ipToInt(A), in: [anyIcmp(0)], out: [anyIcmp(0)] }]);
    L.router.setRules([], [rule(1, A, 32, gw, 32, PROTO_ICMP)]);
    let fw = drops(A).firewall_out;
    assert.equal(await a.ping(A, gw, 400), false, 'the router denies out; A\'s allow does not help');
    assert.ok(drops(A).firewall_out > fw, 'counted as the router\'s firewall_out');
    assert.equal(peerHits(A)!.out[0], 0, 'A\'s chain never saw the denied packets');

    L.router.setRules([rule(1, gw, 32, A, 32, PROTO_ICMP, 0)], []);
    fw = drops(A).firewall_in;
    assert.equal(await a.ping(A, gw, 400), false, 'the router denies in; A\'s allow does not help');
    assert.ok(drops(A).firewall_in > fw, 'counted as the router\'s firewall_in');
    assert.equal(peerHits(A)!.in[0], 0);
    assert.equal(own(), ownBefore, 'nothing counted for A\'s own chains');

    L.router.setRules([], []);
    assert.ok(await a.ping(A, gw), 'both allow: passes');
    assert.ok(peerHits(A)!.out[0] >= 1 && peerHits(A)!.in[0] >= 1, 'both of A\'s allows judged it');
  } finally {
    L.router.setRules([], []);
    L.router.setPeerRules([]);
  }
});

test('a reload of a peer\'s rules keeps its connection and the counters of unchanged rules', async () => {
  const book = new PeerRuleBook();
  const compiled = (lines: string[]) => lines.map((l, i) => compileRule(parseFileLine(l, { file: 'a.rules', line: i + 1 }).rule!, `a.rules:${i + 1}`));
  const set = async (lines: string[]) => {
    const rules = compiled(lines);
    const inRules = rules.filter((r) => r.chain === 'in');
    const outRules = rules.filter((r) => r.chain === 'out');
    book.set('emperor', [{ name: 'a.ini', addr: ipToInt(A), in: inRules, out: outRules }]);
    L.router.setPeerRules(book.next());
    // The loop thread takes a new set at its next wakeup: wait until the
    // stats show it (each set here differs from the last in its shape).
    await waitFor(() => {
      const h = peerHits(A);
      return h !== undefined && h.in.length === inRules.length && h.out.length === outRules.length;
    }, 3000, 'the router to install the new rule set');
  };
  const denyPing = `out deny ${A}/32 ${gw}/32 proto icmp`;
  try {
    const idBefore = L.peerStats(A).id;
    await set([denyPing]);
    assert.equal(await a.ping(A, gw, 300), false);
    assert.equal(await a.ping(A, gw, 300), false);
    const denied = peerHits(A)!.out[0];
    assert.ok(denied >= 2, `two pings denied (${denied})`);

    // An allow in front of it: the deny moves to index 1 with its counter; pings pass now.
    await set([`out allow ${A}/32 ${gw}/32 proto icmp`, denyPing, `in allow ${gw}/32 ${A}/32`]);
    assert.ok(await a.ping(A, gw), 'allowed by the new first rule');
    let h = peerHits(A)!;
    assert.equal(h.out[1], denied, 'the unchanged deny kept its counter');
    assert.ok(h.out[0] >= 1 && h.in[0] >= 1);
    assert.deepEqual(book.rows(L.router.stats())['a.ini'].out.map((r) => [r.rule, r.hits]), [['a.rules:1', h.out[0]], ['a.rules:2', denied]], 'rows name each rule');

    // Rules that changed start from 0; the key (the vassal) stays the same.
    const key = h.key;
    await set([`out allow ${A}/32 ${gw}/32 proto icmp`, `out deny ${A}/32 ${L.host(98)}/32`]);
    h = peerHits(A)!;
    assert.equal(h.key, key);
    assert.ok(h.out[0] >= 1, 'the unchanged allow (now alone at index 0) kept its count');
    assert.equal(h.out[1], 0, 'a new rule starts at 0');
    assert.deepEqual(h.in, []);
    assert.equal(L.peerStats(A).id, idBefore, 'the same connection throughout');
    assert.ok(!a.closed);
  } finally {
    L.router.setPeerRules([]);
  }
});
