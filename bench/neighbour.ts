// neighbour.ts: the interactive neighbour (issue 19, item 2). One router with
// three vassals (scenarios.ts, `vassals: 3`), for uWSGI and for moat, both up
// at once: the third vassal (192.168.0.4) pings the gateway every 10 ms while
// the other two (.2, .3) flood it with unpaced 64-byte UDP (gen/flood.c), and
// once per round without the floods, for comparison. The two routers take
// turns (order rotating each round), as the RTT section's paths do, so both
// sample the same moods of this shared box. Each loaded block: both floods
// start, `warmup` s later the pings, and the floods are stopped (SIGTERM) when
// the pings are done. A lost ping counts as infinitely late. After each block
// every vassal must still answer a ping, else the path is rebuilt (counted).
import os from 'node:os';
import { startUdp, pingFrom, StepResult } from './measure';
import { alignColumns, inTurns, percentile, sleep } from './lib';
import { GW_ADDR, KIND_LABEL, makeScenario, moatBuilt, Scenario, ScenarioOptions, setUp } from './scenarios';

export type NeighbourKind = 'uwsgi' | 'moat';
/** Which way the two floods go: to the gateway (the case: the
 *  neighbour's pings share the way out with them) or from it to the two
 *  flooded vassals (the neighbour's answers share the host tun's queue
 *  with them, docs/scale.md). */
export type FloodDirection = 'v2g' | 'g2v';
export const NEIGHBOUR_KINDS: NeighbourKind[] = ['uwsgi', 'moat'];
/** The bar for moat: the neighbour's p99 under two floods, ms. */
export const NEIGHBOUR_P99_MS = 2;
const FLOOD_PORTS = [9001, 9002];

export interface NeighbourOptions {
  kinds: NeighbourKind[];
  /** Rounds; each has, per router, a quiet block and a loaded block. */
  rounds: number;
  /** Pings per block, 10 ms apart. */
  block: number;
  /** Seconds of flooding before a loaded block's pings start. */
  warmup: number;
  /** Each flooder's rate, packets/s; null = unpaced (the bench's flood). */
  rate: number | null;
  /** IPv4 packet bytes of the floods. */
  size: number;
  direction: FloodDirection;
  scenario: ScenarioOptions;
}

export function neighbourDefaults(quick: boolean, scenario: ScenarioOptions = {}): NeighbourOptions {
  return { kinds: [...NEIGHBOUR_KINDS], rounds: quick ? 2 : 4, block: quick ? 50 : 100, warmup: 0.3, rate: null, size: 64, direction: 'v2g', scenario };
}

export interface PingStats { sent: number; received: number; p50: number; p90: number; p99: number; max: number }

export interface FloodStats {
  from: string;
  /** Means over the loaded blocks. */
  txPps: number;
  rxPps: number;
  loss: number;
  /** Blocks whose flood failed (its error in `errors`). */
  failed: number;
  errors?: string[];
}

export interface NeighbourKindResult {
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  quiet?: PingStats;
  loaded?: PingStats;
  floods: FloodStats[];
  /** Times the path was rebuilt because a vassal stopped answering. */
  restarts: number;
}

export interface NeighbourSection {
  rounds: number;
  block: number;
  rate: number | null;
  size: number;
  direction: FloodDirection;
  /** Each vassal in a cgroup of its own (vassal-cgroups.ts), as the emperor runs them. */
  cgroups: boolean;
  kinds: Partial<Record<NeighbourKind, NeighbourKindResult>>;
  loadavgBefore: number[];
  loadavgAfter: number[];
  seconds: number;
}

/** p50/p90/p99/max of count pings of which `times` answered; a lost one is infinitely late. */
export function pingStats(count: number, times: number[]): PingStats {
  const all = [...times, ...Array<number>(Math.max(0, count - times.length)).fill(Infinity)].sort((a, b) => a - b);
  return {
    sent: count, received: times.length,
    p50: percentile(all, 50), p90: percentile(all, 90), p99: percentile(all, 99), max: all.length ? all[all.length - 1] : NaN,
  };
}

interface Acc { quiet: number[]; loaded: number[]; sentQuiet: number; sentLoaded: number; floods: StepResult[][]; errors: string[][] }

/** One loaded block on sc: two floods from vassals 0 and 1 (or to them, g2v), the pings from vassal 2. */
async function loadedBlock(sc: Scenario, o: NeighbourOptions, acc: Acc): Promise<void> {
  const [a, b, n] = sc.vassals;
  // Bound: the pings' own time thrice over, plus the warm-up and 2 s; stopped when they are done.
  const seconds = o.warmup + o.block * 0.01 * 3 + 2;
  const flows: Array<Awaited<ReturnType<typeof startUdp>>> = [];
  try {
    for (const [i, v] of [a, b].entries()) {
      const way = o.direction === 'v2g' ? { from: v.ns, to: sc.gw, dst: GW_ADDR } : { from: sc.gw, to: v.ns, dst: v.addr };
      flows.push(await startUdp(sc.lab, { ...way, port: FLOOD_PORTS[i], rate: o.rate, seconds, size: o.size, idle: 0.2 }));
    }
    await sleep(o.warmup * 1000);
    const p = await pingFrom(sc.lab, n.ns, GW_ADDR, o.block);
    acc.loaded.push(...p.times);
    acc.sentLoaded += o.block;
  } finally {
    for (const f of flows) f.stop();
    const got = await Promise.allSettled(flows.map((f) => f.done));
    got.forEach((g, i) => {
      if (g.status === 'fulfilled') acc.floods[i].push(g.value);
      else acc.errors[i].push((g.reason as Error).message.split('\n')[0]);
    });
  }
}

/** Every vassal still answers (two tries each); else the path is rebuilt. */
async function keepAlive(sc: Scenario, log: (l: string) => void): Promise<void> {
  for (const v of sc.vassals) {
    if (await sc.alive(v.ns) || await sc.alive(v.ns)) continue;
    log(`  neighbour ${sc.kind}: vassal ${v.addr} lost: rebuilding the path`);
    await sc.restart();
    return;
  }
}

function floodStats(from: string, runs: StepResult[], errors: string[]): FloodStats {
  const mean = (f: (r: StepResult) => number) => (runs.length ? runs.reduce((s, r) => s + f(r), 0) / runs.length : NaN);
  return { from, txPps: mean((r) => r.txPps), rxPps: mean((r) => r.rxPps), loss: mean((r) => r.loss), failed: errors.length, ...(errors.length ? { errors } : {}) };
}

export async function measureNeighbour(o: NeighbourOptions, log: (l: string) => void = () => undefined): Promise<NeighbourSection> {
  const t0 = Date.now();
  const loadavgBefore = os.loadavg();
  const kinds: NeighbourSection['kinds'] = {};
  const up = new Map<NeighbourKind, Scenario>();
  const acc = new Map<NeighbourKind, Acc>();
  try {
    for (const k of o.kinds) {
      if (k === 'moat' && !moatBuilt()) { kinds[k] = { status: 'skipped', reason: 'not built (dist/src/cli.js missing)', floods: [], restarts: 0 }; continue; }
      const sc = makeScenario(k, { ...o.scenario, vassals: 3 });
      try {
        await setUp(sc, (what) => log(`  neighbour ${k}: ${what}`));
        up.set(k, sc);
        acc.set(k, { quiet: [], loaded: [], sentQuiet: 0, sentLoaded: 0, floods: [[], []], errors: [[], []] });
      } catch (e) {
        await sc.teardown().catch(() => undefined);
        kinds[k] = { status: 'error', reason: `setup: ${(e as Error).message.split('\n')[0]}`, floods: [], restarts: 0 };
      }
    }
    const ks = [...up.keys()];
    await inTurns(ks, o.rounds, async (k, r) => {
      const sc = up.get(k)!;
      const a = acc.get(k)!;
      if (kinds[k]?.status === 'error') return;
      try {
        log(`  neighbour ${k}: round ${r + 1}/${o.rounds}: ${o.block} pings quiet, ${o.block} under two floods`);
        const q = await pingFrom(sc.lab, sc.vassals[2].ns, GW_ADDR, o.block);
        a.quiet.push(...q.times);
        a.sentQuiet += o.block;
        await loadedBlock(sc, o, a);
        await keepAlive(sc, log);
      } catch (e) {
        kinds[k] = { status: 'error', reason: (e as Error).message.split('\n')[0], floods: [], restarts: sc.restarts };
        log(`  neighbour ${k}: ERROR ${kinds[k]!.reason}`);
      }
    });
    for (const k of ks) {
      const a = acc.get(k)!;
      const sc = up.get(k)!;
      const prev = kinds[k];
      kinds[k] = {
        status: prev?.status ?? 'ok', ...(prev?.reason ? { reason: prev.reason } : {}),
        quiet: pingStats(a.sentQuiet, a.quiet), loaded: pingStats(a.sentLoaded, a.loaded),
        floods: [0, 1].map((i) => floodStats(sc.vassals[i].addr, a.floods[i], a.errors[i])),
        restarts: sc.restarts,
      };
    }
  } finally {
    for (const sc of up.values()) await sc.teardown().catch(() => undefined);
  }
  return { rounds: o.rounds, block: o.block, rate: o.rate, size: o.size, direction: o.direction, cgroups: o.scenario.cgroups ?? false, kinds, loadavgBefore, loadavgAfter: os.loadavg(), seconds: (Date.now() - t0) / 1000 };
}

// ---- printing ----

const ms = (v: number | undefined) => (v === undefined || Number.isNaN(v) ? '-' : Number.isFinite(v) ? v.toFixed(3) : 'lost');
const pps = (v: number | undefined) => (v === undefined || !Number.isFinite(v) ? '-' : Math.round(v).toLocaleString('en-US'));

export function neighbourText(s: NeighbourSection): string {
  const load = s.rate === null ? 'unpaced' : `paced at ${pps(s.rate)} pps each`;
  const floods = s.direction === 'v2g' ? 'while 192.168.0.2 and .3 flood it' : 'while the gateway floods 192.168.0.2 and .3';
  const head = `interactive neighbour (192.168.0.4 pings the gateway every 10 ms ${floods} with ${s.size} B UDP, ${load}; ` +
    `${s.rounds} rounds of ${s.block} pings quiet and ${s.block} under the floods, routers in turns; ` +
    `${s.cgroups ? 'each vassal in a cgroup of its own, as the emperor runs them' : 'vassals in no cgroup of their own (--neighbour-cgroups off)'}; a lost ping counts as late):`;
  const ks = NEIGHBOUR_KINDS.filter((k) => s.kinds[k]);
  const cols = ['figure', ...ks.map((k) => KIND_LABEL[k]), ...(ks.length === 2 ? ['moat/uWSGI'] : [])];
  const rows: string[][] = [cols];
  const row = (label: string, get: (r: NeighbourKindResult) => number | undefined, f: (v: number | undefined) => string) => {
    const vals = ks.map((k) => get(s.kinds[k]!));
    const ratio = ks.length === 2 && Number.isFinite(vals[0]) && Number.isFinite(vals[1]) && vals[0]! > 0 ? (vals[1]! / vals[0]!).toFixed(2) : '-';
    rows.push([label, ...vals.map(f), ...(ks.length === 2 ? [ratio] : [])]);
  };
  for (const [name, key] of [['quiet', 'quiet'], ['2 floods', 'loaded']] as const) {
    for (const p of ['p50', 'p90', 'p99', 'max'] as const) row(`ping ${p} ms, ${name}`, (r) => r[key]?.[p], ms);
    row(`pings answered, ${name}`, (r) => r[key]?.received, (v) => (v === undefined ? '-' : String(v)));
  }
  for (const i of [0, 1]) {
    row(`flood ${i + 1} rx pps`, (r) => r.floods[i]?.rxPps, pps);
    row(`flood ${i + 1} offered pps`, (r) => r.floods[i]?.txPps, pps);
  }
  const { lines, rule } = alignColumns(rows, 1);
  const out = [head, lines[0], rule, ...lines.slice(1)];
  for (const k of ks) {
    const r = s.kinds[k]!;
    if (r.status !== 'ok') out.push(`${k}: ${r.status}${r.reason ? ': ' + r.reason : ''}`);
    if (r.restarts) out.push(`${k}: path rebuilt ${r.restarts} time(s) after a lost vassal`);
    for (const f of r.floods) if (f.failed) out.push(`${k}: flood from ${f.from} failed in ${f.failed} block(s): ${f.errors?.[0] ?? ''}`);
  }
  out.push(`flood rates: means over the loaded blocks (each from the first to the last packet received). ` +
    `Section: ${s.seconds.toFixed(0)} s, load average ${s.loadavgBefore[0].toFixed(2)} before, ${s.loadavgAfter[0].toFixed(2)} after.`);
  return out.join('\n');
}
