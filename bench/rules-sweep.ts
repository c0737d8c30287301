// rules-sweep.ts: received packets/s through a firewall of 0, 100, 1,000 and
// 10,000 random CIDR/port rules, where the flood's packets hit the last rule
// ("last") or none ("none"), for:
//   moat      --tuntap-router-firewall-file FILE, lines `out deny SRC/BITS DST/BITS proto udp dport LIST`
//   uwsgi     its ini options `tuntap-router-firewall-out = deny SRC/BITS DST/BITS` (no ports in uWSGI)
//   nft-rules nftables on a veth pair (the kernel's reference): one rule per rule
//   nft-set   the same rules as one interval concatenation verdict map
// Each figure is the received rate of an unpaced 64-byte flood vassal->gateway
// (the `out` chain), the median of a few runs; ratios are to each one's own
// 0-rule figure. The bar: moat at 10,000 rules >= 95% of moat at 0 (issue 19;
// 90% before it). `npm run bench` measures that one figure itself, interleaved
// (rules-cost.ts); this sweep is the long form.
//
//   node dist/bench/run.js --rules-sweep [--quick] [--only moat,uwsgi,nft-rules,nft-set] [--counts 0,100,1000,10000]
//   (or node dist/bench/rules-sweep.js ...)
//
// The random rules are the same for every engine (seeded), never overlap each
// other in all of source, destination and port (nft refuses overlapping
// intervals in a set), and never match the flood (192.168.0.2 -> 192.168.0.1
// udp 9000) unless they are the "last" rule, an allow.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { requireRoot, sh } from '../test/helpers/netns';
import { buildFlood, cleanupAll, median, releaseDir, trackDir } from './lib';
import { udpStep } from './measure';
import { hostInfo, writeResults } from './run';
import { GW_ADDR, makeScenario, moatBuilt, Scenario, ScenarioOptions, V_ADDR } from './scenarios';

type Engine = 'moat' | 'uwsgi' | 'nft-rules' | 'nft-set';
const ENGINES: Engine[] = ['moat', 'uwsgi', 'nft-rules', 'nft-set'];
type Mode = 'last' | 'none';
const FLOOD_PORT = 9000;

interface Cidr { net: number; bits: number }
interface RandomRule { src: Cidr; dst: Cidr; ports: Array<[number, number]> }

function ip4(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}
function parseIp(s: string): number {
  return s.split('.').reduce((a, p) => a * 256 + Number(p), 0) >>> 0;
}
const maskOf = (bits: number) => (bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0);
const contains = (c: Cidr, a: number) => ((a & maskOf(c.bits)) >>> 0) === c.net;
const cidrOverlap = (a: Cidr, b: Cidr) => { const m = maskOf(Math.min(a.bits, b.bits)); return ((a.net & m) >>> 0) === ((b.net & m) >>> 0); };
const portsOverlap = (a: Array<[number, number]>, b: Array<[number, number]>) => a.some(([l1, h1]) => b.some(([l2, h2]) => l1 <= h2 && l2 <= h1));
const cidrText = (c: Cidr) => `${ip4(c.net)}/${c.bits}`;

/** mulberry32: a small seeded PRNG, so every engine gets the same rules. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomRules(n: number, seed = 1): RandomRule[] {
  const r = rng(seed);
  const flooder = parseIp(V_ADDR);
  const cidr = (avoid?: number): Cidr => {
    for (;;) {
      const bits = 8 + Math.floor(r() * 25);
      const net = (Math.floor(r() * 4294967296) & maskOf(bits)) >>> 0;
      if (net === 0) continue;                        // 0.0.0.0 means "any" in uWSGI
      if (avoid !== undefined && contains({ net, bits }, avoid)) continue;
      return { net, bits };
    }
  };
  const out: RandomRule[] = [];
  while (out.length < n) {
    const ports: Array<[number, number]> = [];
    const k = 1 + Math.floor(r() * 3);
    for (let i = 0; i < k; i++) {
      const lo = 1 + Math.floor(r() * 65000);
      const hi = r() < 0.5 ? lo : Math.min(65535, lo + Math.floor(r() * 500));
      if (lo <= FLOOD_PORT && FLOOD_PORT <= hi) continue;
      if (ports.some(([l, h]) => lo <= h && l <= hi)) continue;
      ports.push([lo, hi]);
    }
    if (ports.length === 0) continue;
    const rule = { src: cidr(flooder), dst: cidr(), ports };
    if (out.some((o) => cidrOverlap(o.src, rule.src) && cidrOverlap(o.dst, rule.dst) && portsOverlap(o.ports, rule.ports))) continue;
    out.push(rule);
  }
  return out;
}

const portList = (ps: Array<[number, number]>) => ps.map(([l, h]) => (l === h ? `${l}` : `${l}-${h}`)).join(',');
const LAST_SRC: Cidr = { net: parseIp(V_ADDR), bits: 32 };
const LAST_DST: Cidr = { net: parseIp(GW_ADDR), bits: 32 };

/** moat's rule file. `lastAction` deny is only used to check that rules are enforced. */
export function moatRules(rules: RandomRule[], mode: Mode | 'deny-last'): string {
  const lines = ['# bench/rules-sweep: random rules, generated'];
  for (const x of rules) lines.push(`out deny ${cidrText(x.src)} ${cidrText(x.dst)} proto udp dport ${portList(x.ports)}`);
  if (mode !== 'none') lines.push(`out ${mode === 'last' ? 'allow' : 'deny'} ${cidrText(LAST_SRC)} ${cidrText(LAST_DST)} proto udp dport ${FLOOD_PORT}`);
  return lines.join('\n') + '\n';
}

export function uwsgiRules(rules: RandomRule[], mode: Mode | 'deny-last'): string[] {
  const lines = rules.map((x) => `deny ${cidrText(x.src)} ${cidrText(x.dst)}`);
  if (mode !== 'none') lines.push(`${mode === 'last' ? 'allow' : 'deny'} ${cidrText(LAST_SRC)} ${cidrText(LAST_DST)}`);
  return lines;
}

export function nftRuleset(rules: RandomRule[], mode: Mode | 'deny-last', asSet: boolean): string {
  const last = mode === 'last' ? 'accept' : 'drop';
  const lines = ['table ip moatbench {'];
  if (asSet) {
    lines.push('  map fw {', '    type ipv4_addr . ipv4_addr . inet_service : verdict', '    flags interval');
    const elems: string[] = [];
    for (const x of rules) for (const [l, h] of x.ports) elems.push(`${cidrText(x.src)} . ${cidrText(x.dst)} . ${l === h ? l : `${l}-${h}`} : drop`);
    if (mode !== 'none') elems.push(`${cidrText(LAST_SRC)} . ${cidrText(LAST_DST)} . ${FLOOD_PORT} : ${last}`);
    if (elems.length) lines.push('    elements = {', elems.map((e) => '      ' + e).join(',\n'), '    }');
    lines.push('  }');
  }
  lines.push('  chain input {', '    type filter hook input priority 0; policy accept;');
  if (asSet) {
    lines.push('    ip saddr . ip daddr . udp dport vmap @fw');
  } else {
    for (const x of rules) {
      const p = x.ports.length === 1 ? portList(x.ports) : `{ ${x.ports.map(([l, h]) => (l === h ? `${l}` : `${l}-${h}`)).join(', ')} }`;
      lines.push(`    ip saddr ${cidrText(x.src)} ip daddr ${cidrText(x.dst)} udp dport ${p} drop`);
    }
    if (mode !== 'none') lines.push(`    ip saddr ${ip4(LAST_SRC.net)} ip daddr ${ip4(LAST_DST.net)} udp dport ${FLOOD_PORT} ${last}`);
  }
  lines.push('  }', '}');
  return lines.join('\n') + '\n';
}

interface Point { engine: Engine; rules: number; mode: Mode | 'baseline'; pps: number | null; runs: number[]; lostVassal: number; error?: string }

interface SweepOpts { quick: boolean; only: Engine[]; counts: number[] }

function parse(argv: string[]): SweepOpts {
  const o: SweepOpts = { quick: false, only: [...ENGINES], counts: [0, 100, 1000, 10000] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--only') {
      const l = (argv[++i] ?? '').split(',').filter(Boolean);
      for (const e of l) if (!ENGINES.includes(e as Engine)) throw new Error(`--only: unknown engine ${e} (${ENGINES.join(', ')})`);
      o.only = l as Engine[];
    } else if (a === '--counts') {
      o.counts = (argv[++i] ?? '').split(',').map(Number);
      if (o.counts.some((n) => !Number.isInteger(n) || n < 0 || n > 100000)) throw new Error('--counts: integers 0..100000');
      if (!o.counts.includes(0)) o.counts.unshift(0);
    } else throw new Error(`unknown option ${a}`);
  }
  return o;
}

/** Floods vassal->gateway `reps` times; the median received rate. */
async function measure(sc: Scenario, seconds: number, reps: number, p: Point): Promise<void> {
  for (let i = 0; i < reps; i++) {
    const r = await udpStep(sc, 'v2g', null, seconds);
    p.runs.push(Math.round(r.rxPps));
    if (!(await sc.alive()) && !(await sc.alive())) { p.lostVassal++; await sc.restart(); }
  }
  p.pps = median(p.runs);
}

/** With the last rule a deny, does a paced burst get through? (It must not.) */
async function enforced(sc: Scenario): Promise<boolean> {
  const r = await udpStep(sc, 'v2g', 20000, 0.3);
  return r.sent > 0 && r.received === 0;
}

export async function main(argv: string[]): Promise<void> {
  const o = parse(argv);
  requireRoot();
  buildFlood();
  const seconds = o.quick ? 1 : 2;
  const reps = o.quick ? 1 : 3;
  const dir = trackDir(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-sweep-')));
  fs.chmodSync(dir, 0o755);
  const points: Point[] = [];
  const checks: Partial<Record<Engine, boolean | string>> = {};
  const maxN = Math.max(...o.counts);
  const rulesByN = new Map<number, RandomRule[]>();
  const all = randomRules(maxN);
  for (const n of o.counts) rulesByN.set(n, all.slice(0, n));
  const configs: Array<{ n: number; mode: Mode | 'baseline' }> = [];
  for (const n of o.counts) {
    if (n === 0) configs.push({ n, mode: 'baseline' });
    else configs.push({ n, mode: 'last' }, { n, mode: 'none' });
  }
  const say = (s: string) => process.stderr.write(s + '\n');

  try {
    for (const engine of o.only) {
      if (engine === 'moat' && !moatBuilt()) { checks.moat = 'not built (dist/src/cli.js missing)'; say('moat: not built (dist/src/cli.js missing), skipped'); continue; }
      if (engine === 'moat' || engine === 'uwsgi') {
        // A fresh router per configuration: the rules are read at start.
        const make = (rules: RandomRule[], mode: Mode | 'deny-last'): ScenarioOptions => {
          if (engine === 'uwsgi') return { uwsgiFirewallOut: uwsgiRules(rules, mode) };
          const f = path.join(dir, `moat-${rules.length}-${mode}.rules`);
          fs.writeFileSync(f, moatRules(rules, mode));
          return { moatFirewallFile: f };
        };
        for (const c of configs) {
          const rules = rulesByN.get(c.n)!;
          const p: Point = { engine, rules: c.n, mode: c.mode, pps: null, runs: [], lostVassal: 0 };
          points.push(p);
          say(`${engine}: ${c.n} rules, ${c.mode}`);
          const sc = makeScenario(engine, make(rules, c.mode === 'baseline' ? 'none' : c.mode));
          try { await sc.setup(); await measure(sc, seconds, reps, p); } catch (e) { p.error = (e as Error).message.split('\n')[0]; say(`  error: ${p.error}`); } finally { await sc.teardown(); }
          say(`  -> ${p.pps} pps (${p.runs.join(', ')})`);
        }
        // uWSGI's rules have no ports, so its deny-last also stops pings: do not wait for one.
        const sc = makeScenario(engine, { ...make(rulesByN.get(maxN)!, 'deny-last'), waitPing: false });
        try { await sc.setup(); checks[engine] = await enforced(sc); } catch (e) { checks[engine] = (e as Error).message.split('\n')[0]; } finally { await sc.teardown(); }
      } else {
        const asSet = engine === 'nft-set';
        const sc = makeScenario('veth');
        try {
          await sc.setup();
          const load = (text: string) => {
            const f = path.join(dir, `nft-${asSet ? 'set' : 'rules'}.nft`);
            fs.writeFileSync(f, text);
            try { sh('nft', ['delete', 'table', 'ip', 'moatbench'], { ns: sc.gw }); } catch { /* none yet */ }
            sh('nft', ['-f', f], { ns: sc.gw, timeoutMs: 120000 });
          };
          for (const c of configs) {
            const p: Point = { engine, rules: c.n, mode: c.mode, pps: null, runs: [], lostVassal: 0 };
            points.push(p);
            say(`${engine}: ${c.n} rules, ${c.mode}`);
            try { load(nftRuleset(rulesByN.get(c.n)!, c.mode === 'baseline' ? 'none' : c.mode, asSet)); await measure(sc, seconds, reps, p); } catch (e) { p.error = String((e as { stderr?: string }).stderr ?? (e as Error).message).split('\n')[0]; say(`  error: ${p.error}`); }
            say(`  -> ${p.pps} pps (${p.runs.join(', ')})`);
          }
          load(nftRuleset(rulesByN.get(maxN)!, 'deny-last', asSet));
          checks[engine] = await enforced(sc);
        } finally {
          await sc.teardown();
        }
      }
    }
  } finally {
    releaseDir(dir);
  }

  const t = sweepTable(points, o.only, checks);
  process.stdout.write('\n' + t + '\n');
  const file = writeResults('rules-sweep', { date: new Date().toISOString(), options: o, seconds, reps, host: hostInfo(), points, enforced: checks, table: t });
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), file)}\n`);
}

function sweepTable(points: Point[], engines: Engine[], checks: Partial<Record<Engine, boolean | string>>): string {
  const keys = [...new Set(points.map((p) => `${p.rules}|${p.mode}`))];
  const base = (e: Engine) => points.find((p) => p.engine === e && p.rules === 0)?.pps ?? null;
  const head = ['rules', 'hit', ...engines.flatMap((e) => [`${e} pps`, 'ratio'])];
  const rows = [head];
  for (const k of keys) {
    const [n, mode] = k.split('|');
    const row = [Number(n).toLocaleString('en-US'), mode];
    for (const e of engines) {
      const p = points.find((q) => q.engine === e && `${q.rules}|${q.mode}` === k);
      const b = base(e);
      const v = p?.pps ?? null;
      row.push(v === null ? (p?.error ? 'error' : '-') : Math.round(v).toLocaleString('en-US') + (p && p.lostVassal ? '*' : ''));
      row.push(v !== null && b ? (v / b).toFixed(2) : '-');
    }
    rows.push(row);
  }
  const w = head.map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === 1 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ');
  const out = [line(rows[0]), w.map((n) => '-'.repeat(n)).join('  '), ...rows.slice(1).map(line)];
  out.push('hit: last = the flood matches the last rule (an allow); none = it matches no rule; ratio = to the same engine at 0 rules.');
  out.push('* = the vassal was lost during a run and the path rebuilt.');
  for (const e of engines) {
    const c = checks[e];
    out.push(`${e}: rules enforced (last rule turned to deny stops the flood): ${c === true ? 'yes' : c === false ? 'NO' : c ?? '-'}`);
  }
  const mb = base('moat');
  const m10 = points.filter((p) => p.engine === 'moat' && p.rules === 10000 && p.pps !== null);
  if (mb && m10.length) {
    const worst = Math.min(...m10.map((p) => p.pps! / mb));
    out.push(`moat at 10,000 rules: ${(worst * 100).toFixed(0)}% of its 0-rule figure (worst of last/none); the bar is 95% (issue 19): ${worst >= 0.95 ? 'met' : 'NOT met'}`);
  }
  return out.join('\n');
}

if (require.main === module) {
  main(process.argv.slice(2)).catch(async (e) => {
    process.stderr.write(`rules-sweep: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
