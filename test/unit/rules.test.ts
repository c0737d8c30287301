// rules.test.ts: the rule language: parse errors (exact file:line:column),
// option leniency, load order, shadowed rules, compiled form and carryMap.
import { test, describe, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { OptionRule } from '../../src/config/types';
import { loadRuleSet } from '../../src/rules/load';
import { RuleError, type CompiledRule } from '../../src/rules/types';
import { carryMap, compileRule, ruleText } from '../../src/rules/compile';
import { parseFileLine, parseOptionRule } from '../../src/rules/parse';
import { covers, findShadowed } from '../../src/rules/shadow';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-rules-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

let fileNo = 0;
function write(name: string, text: string, dir = tmp): string {
  const p = path.join(dir, name);
  fs.mkdirSync(path.dirname(p), { recursive: true });
  fs.writeFileSync(p, text);
  return p;
}

/** The error a rule file fails with; the bad line is line 3 (after a comment and a blank). */
function fileError(line: string): string {
  const f = write(`e${fileNo++}.rules`, `# a comment\n\n${line}\nin deny\n`);
  try {
    loadRuleSet([], [f]);
  } catch (e) {
    assert.ok(e instanceof RuleError, String(e));
    return e.message.slice(f.length + 1);  // 'line:column: reason'
  }
  assert.fail(`no error for: ${line}`);
}

function opt(chain: 'in' | 'out', text: string, index = 1, line = 7): OptionRule {
  return { chain, text, index, source: { file: 'vassal.ini', line } };
}

function rule(line: string, origin = 'x'): CompiledRule {
  const r = parseFileLine(line, { file: 't', line: 1 }).rule;
  assert.ok(r);
  return compileRule(r, origin);
}

describe('rule file errors (file:line:column: reason)', () => {
  const cases: Array<[string, string]> = [
    ['in dney 1.2.3.4 5.6.7.8', "3:4: unknown action 'dney' (expected allow, deny or reject)"],
    ['out Deny', "3:5: unknown action 'Deny' (expected allow, deny or reject)"],
    ['out deny 10.0.0.0/8', "3:20: 'deny' needs a source and a destination address, found only one"],
    ['out deny 10.0.0.0/8 proto tcp', "3:21: 'deny' needs a source and a destination address, found only one"],
    ['in allow proto tcp', "3:10: expected a source address before 'proto' (write 0.0.0.0/0 0.0.0.0/0 to match any)"],
    ['in allow 300.1.1.1 1.2.3.4', "3:10: bad source address '300.1.1.1' (expected A.B.C.D[/BITS])"],
    ['in allow 1.2.3.4 1.2.3', "3:18: bad destination address '1.2.3' (expected A.B.C.D[/BITS])"],
    ['in allow 10.0.0.0/33 1.2.3.4', "3:19: bad source mask '/33' (expected /0 to /32)"],
    ['in allow 1.2.3.4 10.0.0.0/ ', "3:27: bad destination mask '/' (expected /0 to /32)"],
    ['in allow 10.0.0.1/8 0.0.0.0/0', "3:10: host bits set in source '10.0.0.1/8' (did you mean 10.0.0.0/8?)"],
    ['in allow 0.0.0.0/0 10.1.0.0/0', "3:20: host bits set in destination '10.1.0.0/0' (did you mean 0.0.0.0/0?)"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto tcp dport 80,70000', '3:49: dport 70000 is outside 0-65535'],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto tcp sport 1-65536', '3:48: sport 65536 is outside 0-65535'],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto udp dport 22,90-80', '3:49: dport range 90-80 is reversed (write 80-90)'],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto udp dport 80,,81', "3:49: bad dport '' (expected PORT or LO-HI, comma separated)"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto icmp dport 80', "3:41: 'dport' applies to tcp and udp only, not icmp"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 sport 80', "3:30: 'sport' needs 'proto tcp' or 'proto udp'"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 sport 80 proto 47', "3:30: 'sport' applies to tcp and udp only, not protocol 47"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto tcp icmp-type 8', "3:40: 'icmp-type' needs 'proto icmp'"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto icmp icmp-type 256', "3:51: icmp-type '256' is outside 0-255"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto sctp', "3:36: bad protocol 'sctp' (expected tcp, udp, icmp or 0-255)"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 port 80', "3:30: unknown keyword 'port' (expected proto, sport, dport, icmp-type or state)"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 1.2.3.4', "3:30: unknown keyword '1.2.3.4' (expected proto, sport, dport, icmp-type or state)"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto tcp proto udp', "3:40: duplicate 'proto' (first at column 30)"],
    ['in allow 0.0.0.0/0 0.0.0.0/0 proto tcp dport', "3:45: 'dport' needs a value"],
    ['allow 1.2.3.4 5.6.7.8', "3:1: missing chain word: write 'in allow ...' or 'out allow ...'"],
    ['  inn deny', "3:3: unknown chain 'inn' (expected in or out)"],
    ['out   # nothing', "3:4: missing action after 'out' (expected allow, deny or reject)"],
  ];
  for (const [line, expected] of cases) test(line, () => assert.equal(fileError(line), expected));

  test('the first error fails the whole load, whatever else loaded fine', () => {
    const good = write('good.rules', 'in deny\n');
    const badOne = write('bad.rules', 'out allow\nout alow\n');
    assert.throws(() => loadRuleSet([opt('in', 'allow')], [good, badOne]), { message: `${badOne}:2:5: unknown action 'alow' (expected allow, deny or reject)` });
  });

  test('a missing file is an error naming it', () => {
    const p = path.join(tmp, 'nope.rules');
    assert.throws(() => loadRuleSet([], [p]), { message: `${p}: cannot read: ENOENT` });
  });
});

describe('options are read as uWSGI reads them, where that is harmless', () => {
  test('host bits are masked with a warning naming the option and its source', () => {
    const set = loadRuleSet([opt('out', 'allow 192.168.0.5/24 0.0.0.0')], []);
    assert.deepEqual(set.warnings, ["vassal.ini:7: tuntap-router-firewall-out (option:1): host bits set in source '192.168.0.5/24', read as 192.168.0.0/24"]);
    assert.equal(set.out[0].text, 'allow 192.168.0.0/24 0.0.0.0/0');
    assert.equal(set.out[0].native.src, 0xc0a80000);
    assert.equal(set.out[0].origin, 'option:1');
  });
  test('a typo in the action is refused (uWSGI reads it as allow)', () => {
    assert.throws(() => loadRuleSet([opt('in', 'allow'), opt('out', 'dney 1.2.3.4 5.6.7.8', 2, 9)], []),
      { message: "vassal.ini:9: tuntap-router-firewall-out (option:2): unknown action 'dney' (expected allow, deny or reject; uWSGI would read it as allow)" });
    assert.throws(() => loadRuleSet([opt('out', 'dney')], []), RuleError);
  });
  test('a one-address rule is refused (uWSGI skips it)', () => {
    assert.throws(() => loadRuleSet([opt('in', 'deny 10.0.0.0/8', 3, 12)], []),
      { message: "vassal.ini:12: tuntap-router-firewall-in (option:3): 'deny' needs a source and a destination address, found only one (uWSGI would skip this rule)" });
  });
  test('other errors name the option too; flags have no line', () => {
    assert.throws(() => parseOptionRule('allow 1.2.3.4/40 0.0.0.0', 'in', { file: '<flags>', line: 0 }, 4),
      { message: "<flags>: tuntap-router-firewall-in (option:4): bad source mask '/40' (expected /0 to /32)" });
  });
  test('bare allow / deny and the extended matches work in options', () => {
    const set = loadRuleSet([opt('in', 'deny'), opt('out', 'allow 10.0.0.0/8 0.0.0.0/0 proto tcp dport 443', 2)], []);
    assert.equal(set.in[0].text, 'deny 0.0.0.0/0 0.0.0.0/0');
    assert.equal(set.out[0].text, 'allow 10.0.0.0/8 0.0.0.0/0 proto tcp dport 443');
  });
});

describe('load order', () => {
  test('options first (file order), then files in the order given; origins', () => {
    const a = write('order/a.rules', 'out deny 10.0.0.1 0.0.0.0/0\nin deny 10.0.0.2 0.0.0.0/0\n');
    const b = write('order/b.rules', '# b\nout deny 10.0.0.3 0.0.0.0/0\n');
    const set = loadRuleSet([opt('out', 'allow 10.0.0.9 0.0.0.0', 1), opt('in', 'allow 10.0.0.8 0.0.0.0', 2), opt('out', 'deny 10.0.0.7 0.0.0.0', 3)], [b, a]);
    assert.deepEqual(set.out.map((r) => r.origin), ['option:1', 'option:3', `${b}:2`, `${a}:1`]);
    assert.deepEqual(set.in.map((r) => r.origin), ['option:2', `${a}:2`]);
    assert.deepEqual(set.warnings, []);
  });
  test('a directory loads its *.rules files in name order, path joined with the name', () => {
    const dir = path.join(tmp, 'dir');
    write('20-b.rules', 'in deny 10.0.0.2 0.0.0.0/0\n', dir);
    write('10-a.rules', 'in deny 10.0.0.1 0.0.0.0/0\n', dir);
    write('30-c.rules.bak', 'in deny 10.0.0.3 0.0.0.0/0\n', dir);
    write('README', 'not rules\n', dir);
    write('9-z.rules', 'in deny 10.0.0.9 0.0.0.0/0\n', dir);
    const set = loadRuleSet([], [dir + '/']);
    assert.deepEqual(set.in.map((r) => r.origin), [`${dir}/10-a.rules:1`, `${dir}/20-b.rules:1`, `${dir}/9-z.rules:1`]);
  });
  test('the example rules directory loads (blocklist, customers, isolation)', () => {
    const root = path.join(__dirname, '..', '..', '..');
    const set = loadRuleSet([], [path.join(root, 'rules')]);
    assert.deepEqual(set.warnings, []);
    assert.ok(set.in.length > 4 && set.out.length > 4);
  });
});

describe('shadowed rules', () => {
  test('a rule covered by an earlier one is a warning naming both origins', () => {
    const f = write('shadow.rules', [
      'out allow 192.168.0.0/24 192.168.0.1',         // 1
      'out deny 192.168.0.0/16 0.0.0.0/0 proto tcp',  // 2
      'out deny 192.168.0.7 192.168.0.1',             // 3: shadowed by 1
      'out deny 192.168.3.0/24 8.8.8.8 proto tcp dport 80', // 4: shadowed by 2
      'out deny 192.168.3.0/24 8.8.8.8 proto udp',    // 5: not (udp)
      'in deny 192.168.0.7 192.168.0.1',              // 6: other chain, not shadowed
      'out allow 0.0.0.0/0 0.0.0.0/0 proto tcp dport 80-90',  // 7
      'out allow 10.0.0.0/8 0.0.0.0/0 proto tcp dport 81,85-86', // 8: shadowed by 7
      'out allow 10.0.0.0/8 0.0.0.0/0 proto tcp',     // 9: not (matches fragments, other ports)
      'out allow 10.0.0.0/8 0.0.0.0/0 proto tcp dport 88-95', // 10: not (91-95), but 9 covers it
      'out deny',                                     // 11
      'out allow 1.2.3.4 5.6.7.8 proto icmp icmp-type 8', // 12: shadowed by 11
    ].join('\n'));
    const set = loadRuleSet([], [f]);
    assert.deepEqual(set.warnings, [
      `${f}:3: never matches: shadowed by ${f}:1`,
      `${f}:4: never matches: shadowed by ${f}:2`,
      `${f}:8: never matches: shadowed by ${f}:7`,
      `${f}:10: never matches: shadowed by ${f}:9`,
      `${f}:12: never matches: shadowed by ${f}:11`,
    ]);
  });
  test('the bucketed walk finds the same earliest shadowing rule as a naive one', () => {
    // Random small chains over few prefixes so that shadowing is common.
    let seed = 12345;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const nets = ['0.0.0.0/0', '10.0.0.0/8', '10.1.0.0/16', '10.1.2.0/24', '10.1.2.3', '10.2.0.0/16', '192.168.0.0/24', '192.168.0.9'];
    const matches = ['', ' proto tcp', ' proto udp dport 53', ' proto tcp dport 80,443', ' proto tcp dport 1-1000', ' proto icmp', ' proto icmp icmp-type 8', ' proto tcp sport 1024-65535 dport 80'];
    for (let round = 0; round < 30; round++) {
      const chain = Array.from({ length: 60 }, (_, i) =>
        rule(`out ${rnd(2) ? 'allow' : 'deny'} ${nets[rnd(nets.length)]} ${nets[rnd(nets.length)]}${matches[rnd(matches.length)]}`, `r:${i}`));
      const naive = chain.map((b, j) => chain.slice(0, j).findIndex((a) => covers(a.native, b.native)));
      assert.deepEqual(Array.from(findShadowed(chain).shadowedBy), naive);
    }
  });
  test('10,000 rules are checked well within a second or two', () => {
    const lines: string[] = [];
    const net = (i: number): string => `10.${(i >> 8) & 255}.${i & 255}`;
    for (let i = 0; i < 10000; i++) {
      const a = net(i);
      switch (i % 4) {
        case 0: lines.push(`in deny ${a}.0/24 0.0.0.0/0`); break;
        case 1: lines.push(`in allow 0.0.0.0/0 ${a}.7 proto tcp dport ${i % 65536}`); break;
        case 2: lines.push(`in deny 0.0.0.0/0 0.0.0.0/0 proto udp dport ${i}`); break;
        default: lines.push(`in allow ${net(i - 3)}.0/24 ${net(i - 3)}.1 proto tcp dport 80`); break; // shadowed by the case 0 rule 3 lines up
      }
    }
    const f = write('big.rules', lines.join('\n'));
    const t0 = process.hrtime.bigint();
    const set = loadRuleSet([], [f]);
    const ms = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(set.in.length, 10000);
    assert.equal(set.warnings.length, 2500);
    assert.equal(set.warnings[0], `${f}:4: never matches: shadowed by ${f}:1`);
    assert.ok(ms < 2000, `load + shadow check took ${ms} ms`);
  });
});

test('a budget bounds pathological chains, and the check says where it stopped', () => {
  const chain = Array.from({ length: 200 }, (_, i) => rule(`in allow 10.0.0.0/8 0.0.0.0/0 proto tcp dport ${i * 2},${i * 2 + 7000}`, `r:${i + 1}`));
  chain.push(rule('in deny 10.0.0.0/8 0.0.0.0/0 proto tcp dport 7000', 'r:last'));
  assert.deepEqual(findShadowed(chain).warnings, ['r:last: never matches: shadowed by r:1']);
  const capped = findShadowed(chain, 1000);
  assert.equal(capped.complete, false);
  assert.match(capped.warnings[0], /^shadow check stopped at r:\d+ after \d+ comparisons; later rules of the in chain were not checked$/);
});

describe('compiled form', () => {
  test('native fields and canonical text', () => {
    const r = rule('in allow 192.168.0.0/24 0.0.0.0 proto 6 dport 443,80,81-85,86');
    assert.deepEqual(r.native, { action: 0, src: 0xc0a80000, srcBits: 24, dst: 0, dstBits: 0, proto: 6, sport: [], dport: [[80, 86], [443, 443]], icmpType: -1, states: 0 });
    assert.equal(r.text, 'allow 192.168.0.0/24 0.0.0.0/0 proto tcp dport 80-86,443');
    assert.equal(rule('out deny').text, 'deny 0.0.0.0/0 0.0.0.0/0');
    assert.equal(rule('out deny 0.0.0.0/0 10.0.0.1 proto 47').text, 'deny 0.0.0.0/0 10.0.0.1/32 proto 47');
    assert.equal(rule('out deny 1.2.3.4 255.255.255.255/32 proto icmp icmp-type 3').native.dst, 0xffffffff);
    assert.equal(rule('out deny 1.2.3.4 5.6.7.8 dport 53 proto udp sport 1024-65535').text, 'deny 1.2.3.4/32 5.6.7.8/32 proto udp sport 1024-65535 dport 53');
    // the canonical text parses back to the same rule
    const back = rule(`in ${r.text}`);
    assert.equal(ruleText(back.native), r.text);
  });
  test('carryMap: same chain, same text, k-th occurrence to k-th', () => {
    const mk = (lines: string[]): CompiledRule[] => lines.map((l, i) => rule(l, `o:${i}`));
    const old = mk(['in deny 10.0.0.1 0.0.0.0', 'in allow', 'in deny 10.0.0.1 0.0.0.0/0', 'in deny 10.0.0.2 0.0.0.0']);
    const neu = mk(['in deny 10.0.0.2 0.0.0.0', 'in deny 10.0.0.1/32 0.0.0.0', 'in deny 10.0.0.3 0.0.0.0', 'in deny 10.0.0.1 0.0.0.0', 'in deny 10.0.0.1 0.0.0.0', 'in allow']);
    assert.deepEqual(Array.from(carryMap(old, neu)), [3, 0, -1, 2, -1, 1]);
    // another chain never inherits
    assert.deepEqual(Array.from(carryMap(old, mk(['out allow']))), [-1]);
    assert.deepEqual(Array.from(carryMap([], neu)), [-1, -1, -1, -1, -1, -1]);
  });
});
