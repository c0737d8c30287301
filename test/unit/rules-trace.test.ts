// rules-trace.test.ts: `moat rules check` and `moat rules trace` through the
// native classifier (addon().Classifier, the router's own), against the
// example rule files.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, type NativeRule } from '../../src/native';
import { rulesCheck, rulesTrace } from '../../src/rules/cli';
import { loadRuleSet } from '../../src/rules/load';
import { Tracer, type TracePacket } from '../../src/rules/trace';

const root = path.join(__dirname, '..', '..', '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-trace-'));
const cwd = process.cwd();
before(() => process.chdir(root));   // origins print as the paths are given: rules/isolation.rules:N
after(() => {
  process.chdir(cwd);
  fs.rmSync(tmp, { recursive: true, force: true });
});

function run(fn: (out: { write(s: string): unknown }, err: { write(s: string): unknown }) => number): { code: number; out: string; err: string } {
  let out = '';
  let err = '';
  const code = fn({ write: (s: string) => (out += s) }, { write: (s: string) => (err += s) });
  return { code, out, err };
}
const trace = (...args: string[]) => run((o, e) => rulesTrace(args, o, e));

const ISO = 'rules/isolation.rules';

describe('rules trace: one packet', () => {
  const cases: Array<[string, string[], string]> = [
    ['vassal -> gateway', ['--dir', 'out', '--src', '192.168.0.2', '--dst', '192.168.0.1'], `allow ${ISO}:5`],
    ['vassal -> vassal', ['--dir', 'out', '--src', '192.168.0.2', '--dst', '192.168.0.3'], `deny ${ISO}:6`],
    ['vassal -> outside', ['--dir', 'out', '--src', '192.168.0.2', '--dst', '8.8.8.8', '--proto', 'tcp', '--sport', '40000', '--dport', '443'], `allow ${ISO}:7`],
    ['foreign source out', ['--dir', 'out', '--src', '10.9.9.9', '--dst', '8.8.8.8'], `deny ${ISO}:8`],
    ['gateway -> vassal', ['--dir=in', '--src=192.168.0.1', '--dst=192.168.0.2', '--proto=icmp', '--icmp-type=8'], `allow ${ISO}:10`],
    ['vassal -> vassal via the host', ['--dir', 'in', '--src', '192.168.0.3', '--dst', '192.168.0.2', '--proto', '17'], `deny ${ISO}:11`],
    ['outside -> vassal', ['--dir', 'in', '--src', '8.8.8.8', '--dst', '192.168.0.2', '--fragment'], `allow ${ISO}:12`],
    ['outside -> elsewhere', ['--dir', 'in', '--src', '8.8.8.8', '--dst', '10.0.0.1'], `deny ${ISO}:13`],
  ];
  for (const [name, args, expected] of cases) {
    test(`${name}: ${expected}`, () => {
      assert.deepEqual(trace(ISO, ...args), { code: 0, out: `${expected}\n`, err: '' });
    });
  }

  test('no matching rule: allow default', () => {
    const r = trace('rules/blocklist.rules', '--dir', 'out', '--src', '192.168.0.2', '--dst', '8.8.8.8', '--proto', 'tcp', '--sport', '1000', '--dport', '443');
    assert.deepEqual(r, { code: 0, out: 'allow default\n', err: '' });
  });
  test('ports match only packets that carry them (a fragment does not)', () => {
    const args = ['rules/blocklist.rules', '--dir', 'out', '--src', '192.168.0.2', '--dst', '8.8.8.8', '--proto', 'tcp', '--dport', '587'];
    assert.equal(trace(...args).out, 'deny rules/blocklist.rules:9\n');
    assert.equal(trace(...args, '--fragment').out, 'allow default\n');
  });
  test('several files: first match wins across them, in the order given', () => {
    const args = ['--dir', 'in', '--src', '8.8.8.8', '--dst', '192.168.0.10', '--proto', 'icmp', '--icmp-type'];
    assert.equal(trace('rules/customers.rules', ISO, ...args, '8').out, 'allow rules/customers.rules:16\n');
    assert.equal(trace('rules/customers.rules', ISO, ...args, '0').out, 'deny rules/customers.rules:19\n');
    assert.equal(trace(ISO, 'rules/customers.rules', ...args, '0').out, `allow ${ISO}:12\n`);
    assert.equal(trace('rules', ...args, '13').out, 'deny rules/customers.rules:19\n');
  });

  const bad: Array<[string, string[], RegExp]> = [
    ['bad direction', ['--dir', 'sideways', '--src', '1.1.1.1', '--dst', '2.2.2.2'], /--dir: direction 'sideways' is not in or out/],
    ['bad address', ['--dir', 'in', '--src', '1.1.1', '--dst', '2.2.2.2'], /--src: bad source address '1.1.1'/],
    ['missing --dst', ['--dir', 'in', '--src', '1.1.1.1'], /'--dst' is required/],
    ['ports without tcp/udp', ['--dir', 'in', '--src', '1.1.1.1', '--dst', '2.2.2.2', '--proto', 'icmp', '--dport', '80'], /--dport: ports need protocol tcp or udp/],
    ['port out of range', ['--dir', 'in', '--src', '1.1.1.1', '--dst', '2.2.2.2', '--proto', 'tcp', '--dport', '65536'], /--dport: dport '65536' is outside 0-65535/],
    ['unknown protocol', ['--dir', 'in', '--src', '1.1.1.1', '--dst', '2.2.2.2', '--proto', 'tpc'], /--proto: bad protocol 'tpc'/],
    ['unknown option', ['--dir', 'in', '--src', '1.1.1.1', '--dst', '2.2.2.2', '--verbose'], /unknown option '--verbose'/],
  ];
  for (const [name, args, re] of bad) {
    test(`bad input, exit 1: ${name}`, () => {
      const r = trace(ISO, ...args);
      assert.equal(r.code, 1);
      assert.equal(r.out, '');
      assert.match(r.err, re);
    });
  }
  test('no rule file: exit 1', () => assert.equal(trace('--dir', 'in', '--src', '1.1.1.1', '--dst', '2.2.2.2').code, 1));
  test('a bad rule file: exit 1 with its file:line:column', () => {
    const f = path.join(tmp, 'bad.rules');
    fs.writeFileSync(f, 'in allow\nout deny 10.0.0.0/8\n');
    const r = trace(f, '--dir', 'in', '--src', '1.1.1.1', '--dst', '2.2.2.2');
    assert.deepEqual(r, { code: 1, out: '', err: `${f}:2:20: 'deny' needs a source and a destination address, found only one\n` });
  });
});

describe('rules trace --packets', () => {
  test('one verdict per packet, in input order, one native match() per chain', () => {
    const f = path.join(tmp, 'packets.txt');
    fs.writeFileSync(f, [
      '# direction src dst [proto [sport dport]]',
      'out 192.168.0.2 192.168.0.1',
      'in 192.168.0.1 192.168.0.2 tcp 22 40000',
      '',
      'out 192.168.0.2 192.168.0.3 udp 5353 5353   # neighbour',
      'in 8.8.8.8 192.168.0.2 icmp 0',
      'out 192.168.0.2 1.1.1.1 6 40000 443',
      'in 192.168.0.4 192.168.0.2 icmp',
      'out 10.0.0.1 1.1.1.1 tcp 1 2 fragment',
      'in 8.8.8.8 10.1.1.1 47',
    ].join('\n'));
    // Count match() calls with a subclass of the addon's own Classifier.
    const exports = addon();
    const Original = exports.Classifier;
    let calls = 0;
    exports.Classifier = class extends Original {
      override match(keys: Uint32Array): Int32Array { calls++; return super.match(keys); }
    } as unknown as typeof Original;
    let r;
    try {
      r = trace(ISO, '--packets', f);
    } finally {
      exports.Classifier = Original;
    }
    assert.equal(calls, 2);
    assert.deepEqual(r, {
      code: 0, err: '',
      out: [`allow ${ISO}:5`, `allow ${ISO}:10`, `deny ${ISO}:6`, `allow ${ISO}:12`, `allow ${ISO}:7`, `deny ${ISO}:11`, `deny ${ISO}:8`, `deny ${ISO}:13`, ''].join('\n'),
    });
  });
  test('a bad packet line: exit 1 naming file:line:column', () => {
    const f = path.join(tmp, 'badpackets.txt');
    fs.writeFileSync(f, 'out 192.168.0.2 192.168.0.1\nout 192.168.0.2 192.168.0.1 tcp 80\n');
    const r = trace(ISO, '--packets', f);
    assert.equal(r.code, 1);
    assert.equal(r.out, '');
    assert.match(r.err, new RegExp(`^moat rules trace: ${f}:2:33: expected SPORT DPORT after tcp or udp\n`));
    fs.writeFileSync(f, 'in 192.168.0.2 192.168.0.1 icmp 300\n');
    assert.match(trace(ISO, '--packets', f).err, new RegExp(`${f}:1:33: icmp type '300' is outside 0-255`));
    fs.writeFileSync(f, 'up 192.168.0.2 192.168.0.1\n');
    assert.match(trace(ISO, '--packets', f).err, new RegExp(`${f}:1:1: direction 'up' is not in or out`));
  });
  test('--packets excludes the single-packet options', () => {
    assert.equal(trace(ISO, '--packets', '/dev/null', '--dir', 'in').code, 1);
  });
});

describe('the native classifier agrees with the rule semantics', () => {
  // Reference: uWSGI's semantics plus moat's matches, written out in TS.
  function matches(r: NativeRule, p: TracePacket): boolean {
    const inNet = (net: number, bits: number, a: number): boolean =>
      net === 0 || bits === 0 || ((a & (bits === 32 ? 0xffffffff : ~(0xffffffff >>> bits))) >>> 0) === net;
    if (!inNet(r.src, r.srcBits, p.src) || !inNet(r.dst, r.dstBits, p.dst)) return false;
    if (r.proto >= 0 && r.proto !== p.proto) return false;
    if (!r.sport.length && !r.dport.length && r.icmpType < 0) return true;
    if (!p.hasL4) return false;
    if (r.icmpType >= 0 && r.icmpType !== p.icmpType) return false;
    const inRanges = (rs: Array<[number, number]>, v: number): boolean => !rs.length || rs.some(([lo, hi]) => v >= lo && v <= hi);
    return inRanges(r.sport, p.sport) && inRanges(r.dport, p.dport);
  }
  test('random packets against the example rules', () => {
    const set = loadRuleSet([], ['rules']);
    let seed = 42;
    const rnd = (n: number): number => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed % n; };
    const addrs = [0xc0a80001, 0xc0a80002, 0xc0a8000a, 0xc0a8000b, 0xcb007105, 0xc6336407, 0x08080808, 0x0a000001];
    const protos = [1, 6, 17, 47];
    const packets: TracePacket[] = Array.from({ length: 5000 }, () => ({
      chain: rnd(2) ? 'in' : 'out', src: addrs[rnd(addrs.length)], dst: addrs[rnd(addrs.length)], proto: protos[rnd(protos.length)],
      hasL4: rnd(10) > 0, sport: [25, 53, 80, 443, 5672, 40000][rnd(6)], dport: [25, 53, 80, 443, 587, 5672, 11211][rnd(7)], icmpType: [0, 3, 8][rnd(3)],
    }));
    const got = new Tracer(set).trace(packets);
    packets.forEach((p, i) => {
      const idx = set[p.chain].findIndex((r) => matches(r.native, p));
      assert.equal(got[i].index, idx, `packet ${i}: ${JSON.stringify(p)}`);
      assert.equal(got[i].origin, idx >= 0 ? set[p.chain][idx].origin : 'default');
    });
  });
});

describe('rules check', () => {
  test('counts rules per chain, exit 0', () => {
    assert.deepEqual(run((o, e) => rulesCheck([ISO], o, e)), { code: 0, out: 'in: 4 rules\nout: 4 rules\n', err: '' });
  });
  test('prints warnings', () => {
    const r = run((o, e) => rulesCheck([ISO, 'rules/customers.rules'], o, e));
    assert.equal(r.code, 0);
    // customers.rules belongs before isolation.rules: after it, its rules never match.
    const shadowed = (line: number, by: number): string => `warning: rules/customers.rules:${line}: never matches: shadowed by ${ISO}:${by}\n`;
    assert.equal(r.out, 'in: 9 rules\nout: 9 rules\n'
      + shadowed(8, 12) + shadowed(11, 10) + shadowed(14, 10) + shadowed(16, 12) + shadowed(19, 12)
      + shadowed(9, 7) + shadowed(10, 5) + shadowed(13, 5) + shadowed(17, 7) + shadowed(20, 7));
  });
  test('exit 1 with file:line:column on an error', () => {
    const f = path.join(tmp, 'typo.rules');
    fs.writeFileSync(f, '# x\nin dney\n');
    assert.deepEqual(run((o, e) => rulesCheck([f], o, e)), { code: 1, out: '', err: `${f}:2:4: unknown action 'dney' (expected allow, deny or reject)\n` });
  });
});

describe('rules trace --sequence: packets played through the router\'s own connection table', () => {
  const OUT = 'rules/stateful/outbound.rules';
  const seq = (lines: string[]) => {
    const f = path.join(tmp, `seq-${Math.random().toString(36).slice(2)}.packets`);
    fs.writeFileSync(f, lines.join('\n') + '\n');
    return trace(OUT, '--packets', f, '--sequence');
  };

  test('a TCP connection out, its answer, an outsider\'s ACK and SYN; a UDP answer within and after its timeout', () => {
    const r = seq([
      'out 192.168.0.5 8.8.8.8 tcp 40000 443 flags S',
      'in 8.8.8.8 192.168.0.5 tcp 443 40000 flags SA',
      'out 192.168.0.5 8.8.8.8 tcp 40000 443 flags A',
      'in 8.8.8.8 192.168.0.5 tcp 443 40001 flags A',
      'in 8.8.8.8 192.168.0.5 tcp 5555 22 flags S',
      'out 192.168.0.5 8.8.8.8 udp 5000 53 at 200',
      'in 8.8.8.8 192.168.0.5 udp 53 5000 at 210',
      'in 8.8.8.8 192.168.0.5 udp 53 5000 at 400   # 190 s later: past the 180 s of an answered UDP flow',
    ]);
    assert.equal(r.code, 0, r.err);
    assert.deepEqual(r.out.trim().split('\n'), [
      `allow ${OUT}:5 (new)`, `allow ${OUT}:7 (established)`, `allow ${OUT}:5 (established)`,
      `reject ${OUT}:9 (invalid)`, `reject ${OUT}:9 (new)`,
      `allow ${OUT}:5 (new)`, `allow ${OUT}:7 (established)`, `deny ${OUT}:10 (new)`,
    ]);
  });

  test('a given state, flags without tcp, a bad time: clear errors', () => {
    assert.match(seq(['out 192.168.0.5 8.8.8.8 udp 1 2 state new']).err, /--sequence: the connection table decides each packet's state/);
    assert.match(seq(['out 192.168.0.5 8.8.8.8 udp 1 2 flags S']).err, /:1:\d+: flags need protocol tcp/);
    assert.match(seq(['out 192.168.0.5 8.8.8.8 tcp 1 2 flags X']).err, /bad tcp flags 'X'/);
    assert.match(seq(['out 192.168.0.5 8.8.8.8 tcp 1 2 at soon']).err, /bad time 'soon'/);
    assert.match(trace(OUT, '--dir', 'out', '--src', '1.2.3.4', '--dst', '5.6.7.8', '--sequence').err, /--sequence plays a --packets file/);
  });
});
