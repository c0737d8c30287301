// multicore.ts: does a second loop thread pay on this box? (issue 19, item 5;
// docs/multicore.md). Two layouts, both up for the whole run, measured in
// interleaved rounds (the order alternating) so both sample the same moods of
// a shared 2-core machine:
//   A  one moat router (one loop thread) with two vassals (192.168.0.2, .3)
//   B  two moat routers (two processes, two loop threads), each in a gateway
//      namespace of its own with one vassal: the upper bound of sharding peers
//      over two loop threads (nothing shared between them to pay for).
// Per block: two unpaced 64-byte UDP floods at once (gen/flood.c), one per
// vassal, vassal->gateway, then gateway->vassal; the figure is the sum of the
// two receivers' pps. While the floods run, the CPU each part used is taken
// from /proc (utime + stime of the router and device loop threads, the rest of
// those processes, the generators, ksoftirqd) beside the machine's busy time
// (/proc/stat), so the note can say where the CPU went.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, requireRoot } from '../test/helpers/netns';
import { buildFlood, cleanupAll, sleep, writeResults } from './lib';
import { Dir, DIR_LABEL, startUdp, StepResult } from './measure';
import { GW_ADDR, makeScenario, moatBuilt, Scenario, setUp, TuntapScenario } from './scenarios';

type Layout = 'A' | 'B';
const LAYOUTS: Layout[] = ['A', 'B'];
const PORTS = [9001, 9002];
const TICK = 100; // USER_HZ: /proc's utime and stime are in 1/100 s

interface Options { rounds: number; seconds: number; dirs: Dir[] }

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 4, seconds: 3, dirs: ['v2g', 'g2v'] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => { const s = argv[++i]; if (s === undefined) throw new Error(`${a} needs a value`); return s; };
    if (a === '--rounds') o.rounds = Number(v());
    else if (a === '--seconds') o.seconds = Number(v());
    else if (a === '--dirs') o.dirs = v().split(',') as Dir[];
    else throw new Error(`unknown option ${a} (--rounds N, --seconds S, --dirs v2g,g2v)`);
  }
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && o.rounds <= 20)) throw new Error('--rounds must be 1..20');
  if (!(o.seconds >= 1.5 && o.seconds <= 30)) throw new Error('--seconds must be 1.5..30');
  if (!o.dirs.length || o.dirs.some((d) => d !== 'v2g' && d !== 'g2v')) throw new Error('--dirs: v2g and/or g2v');
  return o;
}

// ---- CPU accounting from /proc ----

/** Where CPU time is put: each a sum of utime + stime, in cores (CPU-s per s). */
const PARTS = ['routerLoop', 'routerRest', 'deviceLoop', 'deviceRest', 'sender', 'receiver', 'ksoftirqd'] as const;
type Part = (typeof PARTS)[number];
export interface Cpu {
  /** The machine's busy time, in cores, and its split (/proc/stat). */
  busy: number; user: number; system: number; softirq: number; steal: number;
  parts: Record<Part, number>;
  /** busy minus the parts: other work on the box (the lead's tests), this process, other kernel threads. */
  other: number;
}

interface Snap { at: number; stat: number[]; ticks: Map<string, { part: Part; t: number }> }

function readStat(file: string): string[] | null {
  try {
    const s = fs.readFileSync(file, 'utf8');
    const close = s.lastIndexOf(')');
    // Fields after the comm: state is field 3; utime 14, stime 15.
    return [s.slice(0, s.indexOf(' ')), s.slice(s.indexOf('(') + 1, close), ...s.slice(close + 2).split(' ')];
  } catch {
    return null;
  }
}
const ticksOf = (f: string[]) => Number(f[13]) + Number(f[14]);

/** Per-thread ticks of pid: loop thread (named `loopName`) or the rest. */
function threads(pid: number, loopName: string, loop: Part, rest: Part, into: Snap['ticks']): void {
  let tids: string[] = [];
  try { tids = fs.readdirSync(`/proc/${pid}/task`); } catch { return; }
  for (const tid of tids) {
    const f = readStat(`/proc/${pid}/task/${tid}/stat`);
    if (f) into.set(`t${tid}`, { part: f[1] === loopName ? loop : rest, t: ticksOf(f) });
  }
}

function snapshot(routers: number[], devices: number[]): Snap {
  const stat = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const ticks: Snap['ticks'] = new Map();
  for (const p of routers) threads(p, 'moat-router', 'routerLoop', 'routerRest', ticks);
  for (const p of devices) threads(p, 'moat-device', 'deviceLoop', 'deviceRest', ticks);
  // The generators are our children (`ip netns exec` execs into them); ksoftirqd are kernel threads.
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const f = readStat(`/proc/${d}/stat`);
    if (!f) continue;
    if (f[1].startsWith('ksoftirqd/')) ticks.set(`p${d}`, { part: 'ksoftirqd', t: ticksOf(f) });
    else if (f[1] === 'flood' && Number(f[3]) === process.pid) {
      let cmd = '';
      try { cmd = fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0')[1] ?? ''; } catch { continue; }
      ticks.set(`p${d}`, { part: cmd === 'recv' ? 'receiver' : 'sender', t: ticksOf(f) });
    }
  }
  return { at: Date.now(), stat, ticks };
}

function cpuBetween(a: Snap, b: Snap): Cpu {
  const secs = (b.at - a.at) / 1000;
  const d = b.stat.map((v, i) => v - (a.stat[i] ?? 0));
  const cores = (t: number) => t / TICK / secs;
  // /proc/stat: user nice system idle iowait irq softirq steal (guest is inside user).
  const [user, nice, system, , , irq, softirq, steal] = d;
  const parts = Object.fromEntries(PARTS.map((p) => [p, 0])) as Record<Part, number>;
  for (const [k, v] of b.ticks) {
    const before = a.ticks.get(k);
    if (before) parts[v.part] += cores(v.t - before.t); // only what ran the whole window
  }
  const busy = cores(user + nice + system + irq + softirq + steal);
  return {
    busy, user: cores(user + nice), system: cores(system), softirq: cores(irq + softirq), steal: cores(steal),
    parts, other: busy - PARTS.reduce((s, p) => s + parts[p], 0),
  };
}

// ---- the two layouts ----

interface Up { A: TuntapScenario; B: TuntapScenario[] }

interface FlowEnds { lab: Lab; from: string; to: string; dst: string }

/** One flow per vassal of the layout, in direction dir. */
function flowEnds(up: Up, layout: Layout, dir: Dir): FlowEnds[] {
  const pairs: Array<{ sc: Scenario; i: number }> = layout === 'A' ? [0, 1].map((i) => ({ sc: up.A, i })) : up.B.map((sc) => ({ sc, i: 0 }));
  return pairs.map(({ sc, i }) => {
    const v = sc.vassals[i];
    return dir === 'v2g' ? { lab: sc.lab, from: v.ns, to: sc.gw, dst: GW_ADDR } : { lab: sc.lab, from: sc.gw, to: v.ns, dst: v.addr };
  });
}

const scenariosOf = (up: Up, layout: Layout): TuntapScenario[] => (layout === 'A' ? [up.A] : up.B);
const pidsOf = (scs: TuntapScenario[], pick: (sc: TuntapScenario) => Array<number | undefined>) =>
  scs.flatMap(pick).filter((p): p is number => typeof p === 'number');

export interface Block {
  round: number; layout: Layout; dir: Dir;
  /** Sum of the two receivers' pps (each from its first to its last packet). */
  rxPps: number;
  /** Sum of the two senders' offered pps. */
  txPps: number;
  flows: StepResult[];
  cpu: Cpu;
  load1: number;
}

/** Two unpaced floods at once; the CPU sampled from 0.3 s after both started to 0.3 s before the first ends. */
async function block(up: Up, round: number, layout: Layout, dir: Dir, seconds: number): Promise<Block> {
  const scs = scenariosOf(up, layout);
  const routers = pidsOf(scs, (sc) => [sc.router?.pid]);
  const devices = pidsOf(scs, (sc) => sc.devices.map((d) => d.pid));
  const load1 = os.loadavg()[0];
  const flows: Array<Awaited<ReturnType<typeof startUdp>>> = [];
  let cpu: Cpu | undefined;
  try {
    const first = Date.now();
    for (const [i, e] of flowEnds(up, layout, dir).entries()) {
      flows.push(await startUdp(e.lab, { from: e.from, to: e.to, dst: e.dst, port: PORTS[i], rate: null, seconds, size: 64, idle: 0.3 }));
    }
    await sleep(300);
    const s0 = snapshot(routers, devices);
    await sleep(Math.max(300, first + seconds * 1000 - 300 - Date.now()));
    cpu = cpuBetween(s0, snapshot(routers, devices));
  } finally {
    for (const f of flows) f.stop();
    await Promise.allSettled(flows.map((f) => f.done));
  }
  const got = await Promise.all(flows.map((f) => f.done));
  return {
    round, layout, dir, flows: got, cpu: cpu!, load1,
    rxPps: got.reduce((s, r) => s + r.rxPps, 0), txPps: got.reduce((s, r) => s + r.txPps, 0),
  };
}

/** Every vassal still answers; else its path is rebuilt (counted in `restarts`). */
async function keepAlive(sc: Scenario, log: (l: string) => void): Promise<void> {
  for (const v of sc.vassals) {
    if (await sc.alive(v.ns) || await sc.alive(v.ns)) continue;
    log(`  vassal ${v.addr} lost: rebuilding the path`);
    await sc.restart();
    return;
  }
}

// ---- printing ----

const median = (xs: number[]) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const int = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : '-');
const f2 = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : '-');

function roundLine(a: Block, b: Block): string {
  return `round ${a.round} ${DIR_LABEL[a.dir].padEnd(15)}  A ${int(a.rxPps).padStart(9)}  B ${int(b.rxPps).padStart(9)}  B/A ${f2(b.rxPps / a.rxPps)}` +
    `  loop threads A ${f2(a.cpu.parts.routerLoop)} B ${f2(b.cpu.parts.routerLoop)} cores  busy A ${f2(a.cpu.busy)} B ${f2(b.cpu.busy)}  load ${f2(a.load1)}/${f2(b.load1)}`;
}

/** Medians over the rounds of each CPU figure, in cores, for one layout and direction. */
function cpuMedian(bs: Block[]): Cpu {
  const m = (g: (c: Cpu) => number) => median(bs.map((b) => g(b.cpu)));
  return {
    busy: m((c) => c.busy), user: m((c) => c.user), system: m((c) => c.system), softirq: m((c) => c.softirq), steal: m((c) => c.steal),
    parts: Object.fromEntries(PARTS.map((p) => [p, m((c) => c.parts[p])])) as Record<Part, number>, other: m((c) => c.other),
  };
}

export interface DirSummary { dir: Dir; aPps: number; bPps: number; ratio: number; ratios: number[]; cpu: Record<Layout, Cpu> }

function summarise(blocks: Block[], dir: Dir): DirSummary {
  const of = (l: Layout) => blocks.filter((b) => b.dir === dir && b.layout === l);
  const ratios = of('A').map((a) => {
    const b = of('B').find((x) => x.round === a.round);
    return b ? b.rxPps / a.rxPps : NaN;
  });
  return {
    dir, aPps: median(of('A').map((b) => b.rxPps)), bPps: median(of('B').map((b) => b.rxPps)), ratio: median(ratios), ratios,
    cpu: { A: cpuMedian(of('A')), B: cpuMedian(of('B')) },
  };
}

function summaryText(s: DirSummary): string[] {
  const out = [`${DIR_LABEL[s.dir]}: A ${int(s.aPps)} pps, B ${int(s.bPps)} pps (medians); B/A median ${f2(s.ratio)} ` +
    `(rounds: ${s.ratios.map(f2).join(' ')})`];
  const cols = ['cores (median)', 'busy', 'user', 'sys', 'softirq', 'steal', ...PARTS, 'other'];
  const w = cols.map((c) => Math.max(c.length, 5));
  const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' ');
  out.push('  ' + line(cols));
  for (const l of LAYOUTS) {
    const c = s.cpu[l];
    out.push('  ' + line([`  ${l}`, f2(c.busy), f2(c.user), f2(c.system), f2(c.softirq), f2(c.steal), ...PARTS.map((p) => f2(c.parts[p])), f2(c.other)]));
  }
  // CPU per received packet: which part a cheaper router could save at most.
  for (const l of LAYOUTS) {
    const c = s.cpu[l];
    const pps = l === 'A' ? s.aPps : s.bPps;
    const us = (cores: number) => f2((cores / pps) * 1e6);
    out.push(`  ${l}: CPU per received packet, µs: router loop ${us(c.parts.routerLoop)}, devices ${us(c.parts.deviceLoop + c.parts.deviceRest)}, ` +
      `senders ${us(c.parts.sender)}, receivers ${us(c.parts.receiver)}, whole machine ${us(c.busy)}`);
  }
  return out;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  requireRoot();
  if (!moatBuilt()) throw new Error('moat is not built: npm run build');
  buildFlood();
  const log = (l: string) => process.stderr.write(l + '\n');
  const started = new Date().toISOString();
  const loadBefore = os.loadavg();
  // The CLI device: its loop thread lives in the spawned process, where threads() reads it.
  const up: Up = { A: makeScenario('moat', { vassals: 2, moatDevice: 'cli' }) as TuntapScenario, B: [0, 1].map(() => makeScenario('moat', { moatDevice: 'cli' }) as TuntapScenario) };
  const all = [up.A, ...up.B];
  const blocks: Block[] = [];
  const lines: string[] = [];
  const head = `multicore: aggregate 64 B UDP pps from two unpaced floods, A = one router with both vassals, B = two routers with one each; ` +
    `${o.rounds} rounds of ${o.seconds} s per block, order alternating`;
  process.stdout.write(head + '\n');
  try {
    for (const [i, sc] of all.entries()) await setUp(sc, (w) => log(`  ${i === 0 ? 'A' : `B${i}`}: ${w}`));
    for (let r = 1; r <= o.rounds; r++) {
      const order: Layout[] = r % 2 ? ['A', 'B'] : ['B', 'A'];
      for (const dir of o.dirs) {
        const got: Partial<Record<Layout, Block>> = {};
        for (const l of order) {
          log(`  round ${r}/${o.rounds}: ${l}, ${DIR_LABEL[dir]}`);
          got[l] = await block(up, r, l, dir, o.seconds);
          blocks.push(got[l]!);
        }
        const line = roundLine(got.A!, got.B!);
        lines.push(line);
        process.stdout.write(line + '\n');
      }
      for (const sc of all) await keepAlive(sc, log);
    }
  } finally {
    for (const sc of all) await sc.teardown().catch(() => undefined);
  }
  const loadAfter = os.loadavg();
  const summaries = o.dirs.map((d) => summarise(blocks, d));
  const tail = [
    ...summaries.flatMap(summaryText),
    `parts: the router's loop thread (moat-router) and its other threads, the devices' loop threads (moat-device) and the rest of ` +
    `their processes, the flood senders and receivers, ksoftirqd; other = busy - parts (other work on the box). ${os.cpus().length} cpus.`,
    `restarts: ${all.map((s) => s.restarts).join('/')}; load average before ${f2(loadBefore[0])}, after ${f2(loadAfter[0])}`,
  ].join('\n');
  process.stdout.write('\n' + tail + '\n');
  const text = [head, ...lines, '', tail].join('\n');
  const file = writeResults('multicore', { started, finished: new Date().toISOString(), options: o, loadavgBefore: loadBefore, loadavgAfter: loadAfter, blocks, summaries, table: text });
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
}

if (require.main === module) {
  main().catch(async (e) => {
    process.stderr.write(`multicore: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
