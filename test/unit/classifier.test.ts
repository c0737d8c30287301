// classifier.test.ts: the compiled native classifier must return exactly what
// a plain first-match walk returns (test/helpers/reference-firewall.ts), for
// every rule list and packet. Property tests generate overlapping rule lists
// and packets aimed at rule edges; hand-written cases pin down the semantics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';

import { addon, type NativeRule } from '../../src/native';
import { encodePackets, firstMatch, ip, type Packet } from '../helpers/reference-firewall';
import { ipv4Packet } from '../helpers/packets';

const { Classifier } = addon();

// ---------------------------------------------------------------------------
// Generators

const UINT32_MAX = 0xffffffff;

function masked(a: number, bits: number): number {
  if (bits === 0) return 0;
  const block = 2 ** (32 - bits);
  return Math.floor(a / block) * block;
}

/** Networks that overlap each other a lot, including the "any" spellings. */
const POOL: Array<[number, number]> = [
  [0, 0], [0, 24], [ip('10.0.0.0'), 0], [ip('10.0.0.0'), 8], [ip('10.1.0.0'), 16], [ip('10.1.2.0'), 24],
  [ip('10.1.2.3'), 32], [ip('10.1.2.4'), 30], [ip('10.1.2.0'), 25], [ip('10.1.2.128'), 25],
  [ip('192.168.0.0'), 24], [ip('192.168.0.1'), 32], [ip('192.168.0.0'), 16], [ip('255.255.255.255'), 32],
  [ip('128.0.0.0'), 1], [ip('0.0.0.1'), 32],
];

const poolNet = fc.constantFrom(...POOL);
const randomNet = fc.tuple(fc.integer({ min: 0, max: UINT32_MAX }), fc.integer({ min: 0, max: 32 }))
  .map(([a, bits]): [number, number] => [masked(a, bits), bits]);
const nearNet = fc.tuple(fc.integer({ min: 0, max: 0xffffff }), fc.integer({ min: 8, max: 32 }))
  .map(([x, bits]): [number, number] => [masked(ip('10.0.0.0') + x, bits), bits]);
const specificNet = fc.tuple(fc.integer({ min: 0, max: UINT32_MAX }), fc.integer({ min: 8, max: 32 }))
  .map(([a, bits]): [number, number] => [masked(a, bits), bits]);

// Well-known values, a tight cluster (ranges that touch, nest or leave a
// one-port gap) and anything.
const port = fc.oneof(
  { arbitrary: fc.constantFrom(0, 1, 22, 53, 443, 1023, 1024, 65534, 65535), weight: 2 },
  { arbitrary: fc.integer({ min: 76, max: 84 }), weight: 2 },
  { arbitrary: fc.integer({ min: 0, max: 65535 }), weight: 1 },
);
const portRange = fc.tuple(port, port).map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));
const portList = fc.oneof(
  { arbitrary: fc.constant<Array<[number, number]>>([]), weight: 4 },
  { arbitrary: port.map((p): Array<[number, number]> => [[p, p]]), weight: 2 },
  { arbitrary: portRange.map((r) => [r]), weight: 2 },
  { arbitrary: fc.array(portRange, { minLength: 2, maxLength: 4 }), weight: 2 },
);
const proto = fc.constantFrom(-1, -1, 6, 6, 17, 1, 0, 47, 255);
const icmpType = fc.oneof({ arbitrary: fc.constant(-1), weight: 2 }, { arbitrary: fc.constantFrom(0, 3, 8, 11, 255), weight: 2 });

/** A rule; `net` decides how much rules overlap. Ports and ICMP types mostly
 *  go with tcp/udp/icmp, sometimes with other protocols (the semantics are
 *  defined for every combination). */
function ruleArb(net: fc.Arbitrary<[number, number]>): fc.Arbitrary<NativeRule> {
  return fc.record({
    action: fc.constantFrom<0 | 1>(0, 1),
    src: net, dst: net, proto, sport: portList, dport: portList, icmp: icmpType, odd: fc.integer({ min: 0, max: 9 }),
  }).map(({ action, src, dst, proto, sport, dport, icmp, odd }): NativeRule => {
    const ports = proto === 6 || proto === 17 || odd === 0;
    const icmpOk = proto === 1 || odd === 1;
    return {
      action, src: src[0], srcBits: src[1], dst: dst[0], dstBits: dst[1], proto,
      sport: ports ? sport : [], dport: ports ? dport : [], icmpType: icmpOk ? icmp : -1,
    };
  });
}

const overlappingNet = fc.oneof({ arbitrary: poolNet, weight: 3 }, { arbitrary: nearNet, weight: 2 }, { arbitrary: randomNet, weight: 1 });
const sparseNet = fc.oneof({ arbitrary: specificNet, weight: 40 }, { arbitrary: nearNet, weight: 4 }, { arbitrary: poolNet, weight: 1 });

/** How to build a packet from a rule list: aimed at some rule's edges. */
/** Mostly a mode that lands inside the rule (in), sometimes just outside (out). */
const mode = (inside: number[], outside: number[]) =>
  fc.oneof({ arbitrary: fc.constantFrom(...inside), weight: 6 }, { arbitrary: fc.constantFrom(...outside), weight: 1 });
const recipe = fc.record({
  rule: fc.nat(),
  srcMode: mode([0, 1, 4, 5], [2, 3, 6]), dstMode: mode([0, 1, 4, 5], [2, 3, 6]),
  a: fc.integer({ min: 0, max: UINT32_MAX }), b: fc.integer({ min: 0, max: UINT32_MAX }),
  protoMode: mode([2, 3], [0, 1]), protoAny: fc.integer({ min: 0, max: 255 }),
  l4: fc.integer({ min: 0, max: 7 }),
  spMode: mode([0, 1], [2, 3, 4, 5]), dpMode: mode([0, 1], [2, 3, 4, 5]), c: fc.nat(), d: fc.nat(),
  icmpMode: mode([0], [1, 2]),
});
type Recipe = typeof recipe extends fc.Arbitrary<infer T> ? T : never;

function addrFrom(net: number, bits: number, mode: number, r: number): number {
  const lo = bits === 0 || net === 0 ? 0 : masked(net, bits);
  const size = bits === 0 || net === 0 ? 2 ** 32 : 2 ** (32 - bits);
  const hi = lo + size - 1;
  switch (mode) {
    case 0: return lo;
    case 1: return hi;
    case 2: return lo === 0 ? UINT32_MAX : lo - 1;
    case 3: return hi === UINT32_MAX ? 0 : hi + 1;
    case 4: case 5: return lo + (r % size);
    default: return r;
  }
}

function portFrom(list: Array<[number, number]>, mode: number, r: number): number {
  if (list.length === 0 || mode === 5) return [0, 53, 80, 443, 65535][r % 5] ?? 0;
  const [lo, hi] = list[r % list.length];
  switch (mode) {
    case 0: return lo;
    case 1: return hi;
    case 2: return Math.max(0, lo - 1);
    case 3: return Math.min(65535, hi + 1);
    default: return r % 65536;
  }
}

function packetFrom(rules: readonly NativeRule[], p: Recipe): Packet {
  const r: NativeRule = rules.length > 0 ? rules[p.rule % rules.length] :
    { action: 0, src: 0, srcBits: 0, dst: 0, dstBits: 0, proto: -1, sport: [], dport: [], icmpType: -1 };
  const proto = p.protoMode === 0 || r.proto === -1 ? p.protoAny : p.protoMode === 1 ? [6, 17, 1][p.protoAny % 3] : r.proto;
  return {
    src: addrFrom(r.src, r.srcBits, p.srcMode, p.a),
    dst: addrFrom(r.dst, r.dstBits, p.dstMode, p.b),
    proto,
    hasL4: p.l4 !== 0,
    sport: portFrom(r.sport, p.spMode, p.c),
    dport: portFrom(r.dport, p.dpMode, p.d),
    icmpType: p.icmpMode === 0 && r.icmpType >= 0 ? r.icmpType : p.icmpMode === 1 && r.icmpType >= 0 ? (r.icmpType + 1) % 256 : p.c % 256,
  };
}

/** Native answers vs the reference; throws with the first difference. */
function check(rules: NativeRule[], packets: Packet[]): void {
  const got = new Classifier(rules).match(encodePackets(packets));
  assert.equal(got.length, packets.length);
  for (let i = 0; i < packets.length; i++) {
    const want = firstMatch(rules, packets[i]);
    if (got[i] !== want) {
      assert.fail(`packet ${JSON.stringify(packets[i])}: native ${got[i]}, reference ${want}` +
        ` (rule ${want}: ${JSON.stringify(rules[want])}; rule ${got[i]}: ${JSON.stringify(rules[got[i]])}; ${rules.length} rules)`);
    }
  }
}

// ---------------------------------------------------------------------------
// Properties

test('matches the first-match reference on overlapping rule lists (200 lists x 600 packets)', () => {
  let pairs = 0;
  fc.assert(
    fc.property(fc.array(ruleArb(overlappingNet), { maxLength: 60 }), fc.array(recipe, { minLength: 600, maxLength: 600 }),
      (rules, recipes) => {
        check(rules, recipes.map((r) => packetFrom(rules, r)));
        pairs += recipes.length;
      }),
    // A failure shrinks for at most a minute, then reports what it has.
    { numRuns: 200, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true },
  );
  assert.ok(pairs >= 100_000, `only ${pairs} packet/rule-set pairs checked`);
});

test('matches the reference when rules differ mostly in ports (the tree must cut port lists)', () => {
  const fewNets = fc.constantFrom<[number, number]>([0, 0], [ip('10.0.0.0'), 8], [ip('10.1.2.0'), 24]);
  const clusterPort = fc.integer({ min: 70, max: 90 });
  const clusterRange = fc.tuple(clusterPort, clusterPort).map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));
  const clusterList = fc.oneof(
    { arbitrary: fc.constant<Array<[number, number]>>([]), weight: 1 },
    { arbitrary: fc.array(clusterRange, { minLength: 1, maxLength: 4 }), weight: 4 },
  );
  const portRule = fc.record({
    action: fc.constantFrom<0 | 1>(0, 1), src: fewNets, dst: fewNets, proto: fc.constantFrom(6, 6, 17, -1),
    sport: clusterList, dport: clusterList,
  }).map(({ action, src, dst, proto, sport, dport }): NativeRule => ({
    action, src: src[0], srcBits: src[1], dst: dst[0], dstBits: dst[1], proto, sport, dport, icmpType: -1,
  }));
  fc.assert(
    fc.property(fc.array(portRule, { minLength: 10, maxLength: 80 }), fc.array(recipe, { minLength: 300, maxLength: 300 }),
      (rules, recipes) => {
        const packets = recipes.map((r) => packetFrom(rules, r));
        // And every port of the cluster, both directions.
        for (let p = 68; p <= 92; p++) packets.push(pkt({ sport: p, dport: recipes[p].c % 25 + 68 }), pkt({ dport: p, sport: recipes[p].d % 25 + 68 }));
        check(rules, packets);
      }),
    { numRuns: 150, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true },
  );
});

test('matches the reference on big sparse rule lists (1,000-10,000 rules)', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1000, max: 10000 }).chain((n) => fc.array(ruleArb(sparseNet), { minLength: n, maxLength: n })),
      fc.array(recipe, { minLength: 1500, maxLength: 1500 }),
      (rules, recipes) => {
        const packets = recipes.map((r) => packetFrom(rules, r));
        // Aim at late rules too: packets built from the last 50 rules.
        for (let i = 0; i < 300; i++) packets.push(packetFrom(rules.slice(-50), recipes[i]));
        check(rules, packets);
      }),
    // Shrinking 10,000-rule lists takes too long: report the first failure.
    { numRuns: 6, endOnFailure: true },
  );
});

// The router judges through a Chain (native/chain.h), and a chain of 64
// rules or more remembers its answers by packet key (native/verdict_cache.h).
// Each packet's bytes, and the key the router reads from them.
function onTheWire(p: Packet): [Buffer, Packet] {
  const l4 = p.hasL4 && (p.proto === 1 || p.proto === 6 || p.proto === 17);
  const k: Packet = { ...p, hasL4: l4, sport: l4 && p.proto !== 1 ? p.sport : 0, dport: l4 && p.proto !== 1 ? p.dport : 0, icmpType: l4 && p.proto === 1 ? p.icmpType : 0 };
  let payload = Buffer.alloc(8);
  if (k.proto === 1) payload = l4 ? Buffer.from([k.icmpType, 0, 0, 0]) : Buffer.alloc(0);
  else if (k.proto === 6 || k.proto === 17) {
    payload = Buffer.alloc(l4 ? 8 : 2);
    if (l4) { payload.writeUInt16BE(k.sport, 0); payload.writeUInt16BE(k.dport, 2); }
  }
  return [ipv4Packet({ src: k.src, dst: k.dst, proto: k.proto, payload }), k];
}

test('a chain\'s verdict cache never changes an answer: packets judged again, in another order, and keys that collide', () => {
  const { Firewall } = addon();
  let judged = 0;
  fc.assert(
    fc.property(fc.array(ruleArb(overlappingNet), { minLength: 64, maxLength: 140 }), fc.array(recipe, { minLength: 400, maxLength: 400 }),
      fc.array(fc.nat(), { minLength: 1500, maxLength: 1500 }),
      (rules, recipes, picks) => {
        const fw = new Firewall([], rules);
        const wire = recipes.map((r) => onTheWire(packetFrom(rules, r)));
        // Every packet twice in order (the second from the cache unless a
        // collision pushed it out), then 1,500 drawn at random.
        const order = [...wire.keys(), ...wire.keys(), ...picks.map((i) => i % wire.length)];
        for (const i of order) {
          const [bytes, key] = wire[i];
          const want = firstMatch(rules, key);
          const verdict = want >= 0 && rules[want].action !== 0 ? 'deny' : 'allow';
          assert.equal(fw.judge('out', bytes, 0, 0).verdict, verdict, `packet ${JSON.stringify(key)}: rule ${want} of ${rules.length}`);
          judged++;
        }
      }),
    { numRuns: 60, interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true },
  );
  assert.ok(judged >= 100_000, `only ${judged} packets judged`);
});

test('a property failure is caught: a wrong reference answer is reported', () => {
  // The checker itself must be able to fail: give it a rule list whose native
  // answer (0) differs from what we claim by reordering the reference's view.
  const rules: NativeRule[] = [rule({ action: 1 }), rule({ action: 0 })];
  const packets: Packet[] = [pkt({})];
  assert.equal(new Classifier(rules).match(encodePackets(packets))[0], 0);
  assert.throws(() => {
    const got = new Classifier(rules.slice().reverse()).match(encodePackets(packets));
    assert.equal(got[0], firstMatch(rules, packets[0]) + 1);
  });
});

// ---------------------------------------------------------------------------
// Hand-written cases

function rule(r: Partial<NativeRule>): NativeRule {
  return { action: 0, src: 0, srcBits: 0, dst: 0, dstBits: 0, proto: -1, sport: [], dport: [], icmpType: -1, ...r };
}

function pkt(p: Partial<Packet>): Packet {
  return { src: ip('10.0.0.1'), dst: ip('10.0.0.2'), proto: 6, hasL4: true, sport: 40000, dport: 80, icmpType: 0, ...p };
}

function matchOne(rules: NativeRule[], p: Partial<Packet>): number {
  const packet = pkt(p);
  const got = new Classifier(rules).match(encodePackets([packet]))[0];
  assert.equal(got, firstMatch(rules, packet), 'native and reference disagree');
  return got;
}

test('uWSGI seed policy (firewall-out from the uWSGI docs)', () => {
  const net = ip('192.168.0.0');
  const out = [
    rule({ action: 0, src: net, srcBits: 24, dst: ip('192.168.0.1'), dstBits: 32 }),
    rule({ action: 1, src: net, srcBits: 24, dst: net, dstBits: 24 }),
    rule({ action: 0, src: net, srcBits: 24, dst: 0, dstBits: 32 }),
    rule({ action: 1 }),
  ];
  assert.equal(matchOne(out, { src: ip('192.168.0.5'), dst: ip('192.168.0.1') }), 0);
  assert.equal(matchOne(out, { src: ip('192.168.0.5'), dst: ip('192.168.0.7') }), 1);
  assert.equal(matchOne(out, { src: ip('192.168.0.5'), dst: ip('8.8.8.8') }), 2);
  assert.equal(matchOne(out, { src: ip('10.0.0.1'), dst: ip('192.168.0.5') }), 3);
  assert.equal(matchOne(out.slice(0, 3), { src: ip('10.0.0.1'), dst: ip('192.168.0.5') }), -1);
});

test('0.0.0.0 and /0 match any address; /32 only itself', () => {
  assert.equal(matchOne([rule({ src: ip('10.9.0.0'), srcBits: 0 })], { src: ip('1.2.3.4') }), 0);
  assert.equal(matchOne([rule({ dst: 0, dstBits: 24 })], { dst: ip('200.1.1.1') }), 0);
  const host = [rule({ src: ip('10.0.0.1'), srcBits: 32 })];
  assert.equal(matchOne(host, { src: ip('10.0.0.1') }), 0);
  assert.equal(matchOne(host, { src: ip('10.0.0.2') }), -1);
  assert.equal(matchOne(host, { src: ip('10.0.0.0') }), -1);
  const top = [rule({ src: ip('255.255.255.255'), srcBits: 32 })];
  assert.equal(matchOne(top, { src: ip('255.255.255.255') }), 0);
  assert.equal(matchOne(top, { src: ip('255.255.255.254') }), -1);
});

test('first match wins, in chain order', () => {
  const rules = [
    rule({ action: 0, src: ip('10.1.2.0'), srcBits: 24 }),
    rule({ action: 1, src: ip('10.0.0.0'), srcBits: 8 }),
    rule({ action: 0, src: ip('10.1.2.3'), srcBits: 32 }), // shadowed by rule 0
  ];
  assert.equal(matchOne(rules, { src: ip('10.1.2.3') }), 0);
  assert.equal(matchOne(rules, { src: ip('10.1.3.3') }), 1);
  assert.equal(matchOne(rules, { src: ip('11.1.2.3') }), -1);
  assert.equal(matchOne([], {}), -1);
});

test('ports, ICMP types and packets without a transport header', () => {
  const rules = [
    rule({ proto: 6, dport: [[22, 22], [8000, 8080]] }),
    rule({ proto: 1, icmpType: 8 }),
    rule({ proto: 17, sport: [[53, 53]] }),
    rule({ proto: 6 }),
  ];
  assert.equal(matchOne(rules, { proto: 6, dport: 22 }), 0);
  assert.equal(matchOne(rules, { proto: 6, dport: 8080 }), 0);
  assert.equal(matchOne(rules, { proto: 6, dport: 8081 }), 3);
  assert.equal(matchOne(rules, { proto: 6, dport: 22, hasL4: false }), 3);  // fragment: ports unknown
  assert.equal(matchOne(rules, { proto: 1, icmpType: 8 }), 1);
  assert.equal(matchOne(rules, { proto: 1, icmpType: 0 }), -1);
  assert.equal(matchOne(rules, { proto: 1, icmpType: 8, hasL4: false }), -1);
  assert.equal(matchOne(rules, { proto: 17, sport: 53 }), 2);
  assert.equal(matchOne(rules, { proto: 17, sport: 54 }), -1);
  assert.equal(matchOne(rules, { proto: 47 }), -1);
});

test('size, output shape and batch of many packets', () => {
  const c = new Classifier([rule({ proto: 6 }), rule({})]);
  assert.equal(c.size, 2);
  const out = c.match(encodePackets([pkt({ proto: 6 }), pkt({ proto: 17 }), pkt({ proto: 6, hasL4: false })]));
  assert.ok(out instanceof Int32Array);
  assert.deepEqual([...out], [0, 1, 0]);
  assert.equal(c.match(new Uint32Array(0)).length, 0);
  assert.equal(new Classifier([]).size, 0);
});

test('malformed rules and keys throw precise TypeErrors', () => {
  const bad = (rules: unknown, msg: RegExp) =>
    assert.throws(() => new Classifier(rules as NativeRule[]), (e: Error) => e instanceof TypeError && msg.test(e.message));
  bad('x', /expected an array of rules/);
  bad([null], /rules\[0\]: expected a rule object/);
  bad([rule({}), { ...rule({}), action: 3 }], /rules\[1\]\.action: expected an integer 0\.\.2, got 3/);
  bad([{ ...rule({}), srcBits: 33 }], /rules\[0\]\.srcBits/);
  bad([{ ...rule({}), dst: 1.5 }], /rules\[0\]\.dst/);
  bad([{ ...rule({}), dst: 2 ** 32 }], /rules\[0\]\.dst/);
  bad([rule({ src: ip('10.0.0.1'), srcBits: 8 })], /rules\[0\]\.src: host bits set/);
  bad([{ ...rule({}), proto: 256 }], /rules\[0\]\.proto/);
  bad([rule({ dport: [[80, 79]] })], /rules\[0\]\.dport\[0\]: range 80-79 is empty/);
  bad([rule({ sport: [[1, 70000]] })], /rules\[0\]\.sport\[0\]\[1\]/);
  bad([{ ...rule({}), sport: [[1]] }], /rules\[0\]\.sport\[0\]: expected a \[lo, hi\] pair/);
  bad([{ ...rule({}), icmpType: -2 }], /rules\[0\]\.icmpType/);
  const { icmpType: _omit, ...noIcmp } = rule({});
  bad([noIcmp], /rules\[0\]\.icmpType: missing/);

  const c = new Classifier([rule({})]);
  assert.throws(() => c.match(new Uint32Array(8)), /not a multiple of 7/);
  assert.throws(() => c.match(new Int32Array(7) as unknown as Uint32Array), TypeError);
  assert.throws(() => c.match(new Uint32Array([0, 0, 6, 1, 70000, 0, 0])), /packet 0 sport 70000/);
  assert.throws(() => c.match(new Uint32Array([0, 0, 6, 2, 0, 0, 0])), /packet 0 hasL4/);
});
