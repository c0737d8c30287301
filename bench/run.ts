// run.ts: `npm run bench`: moat beside a veth pair (the kernel's own path) and
// beside uWSGI's tuntap router, in one run, in namespaces made for the run.
//
//   node dist/bench/run.js [--quick] [--only veth,uwsgi,moat]
//                          [--skip-flood] [--skip-paced] [--skip-tcp] [--skip-rtt] [--rtt-pings N]
//                          [--skip-scale] [--scale-peers N] [--scale-seconds S] [--scale-rounds R]
//                          [--skip-limits | --limits-only]   (the limits section, limits.ts)
//                          [--skip-conntrack | --conntrack-only]   (the conntrack section, conntrack.ts)
//                          [--skip-rules | --rules-only]   (the 10,000-rule section, rules-cost.ts)
//                          [--skip-neighbour | --neighbour-only] [--neighbour-rate PPS]
//                          [--neighbour-cgroups on|off] [--neighbour-direction v2g|g2v]
//                                              (the interactive neighbour section, neighbour.ts)
//                          [--moat-device runtime|cli]   (moat's vassal device: the native
//                                              runtime, as the emperor runs it (default), or the CLI)
//                          [--busy-poll US]   (moat's polling after traffic, both ends; docs/busy-poll.md)
//                          [--mtu N]   (links at MTU N; uWSGI's at most 8188)
//                          [--offload on|off]   (moat's virtio-net offloads; default on)
//                          [--rules-sweep ...]   (runs bench/rules-sweep instead)
//
// RTT and TCP are measured first, all kinds up at once and in turns (measureInTurns);
// with moat on its default links a bare tun relay streams TCP in the same turns
// (relay-scenario.ts), printed as the floor under moat's stream.
// Prints a table (each figure for veth / uWSGI / moat, and moat/uWSGI, moat/veth),
// then, when moat is measured, the interactive neighbour section (neighbour.ts:
// a third vassal's ping while two others flood, uWSGI and moat), the scale section (scale.ts: moat's router with
// 1 peer and with N peers, default 1000), the limits section (limits.ts: received
// rates against per-peer limits, and 1000 peers each limited against
// unlimited) and writes bench/results/bench-<timestamp>.json. --limits-only
// runs the limits section alone.
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { requireRoot } from '../test/helpers/netns';
import { alignColumns, buildFlood, cleanupAll, inTurns, writeResults } from './lib';
import { DIR_LABEL, DIRS, Dir, flood, FloodResult, pacedMax, PacedResult, pingTimes, RttResult, rttSummary, tcp, TcpResult } from './measure';
import { histogramText } from './rtt-histogram';
import { sectionTargetsText, targetsText } from './targets';
import { checkScaleOptions, measureScale, Round, SCALE_TARGET, ScaleError, summarize } from './scale';
import { limitsDefaults, limitsFailed, LimitsSection, limitsText, measureLimits } from './limits';
import { measureRules, rulesDefaults, RulesSection, rulesText } from './rules-cost';
import { CONNTRACK_TARGET, ConntrackSection, conntrackText, measureConntrack, parseConntrackArgs } from './conntrack';
import { FloodDirection, measureNeighbour, NEIGHBOUR_KINDS, neighbourDefaults, NeighbourSection, neighbourText } from './neighbour';
import { RelayScenario, relayBinary } from './relay-scenario';
import { Kind, KIND_LABEL, KINDS, makeScenario, moatBuilt, Scenario, setUp } from './scenarios';

// Kept here too: rules-sweep.ts and others import it from run.
export { writeResults };

export interface Options {
  quick: boolean;
  only: Kind[];
  skip: Set<string>;
  mtu?: number;
  offload: boolean;
  /** moat's polling after traffic, µs (--busy-poll; absent: moat's default, docs/busy-poll.md). */
  busyPollUs?: number;
  /** The scale section: peers connected in its N-peer round. */
  scalePeers: number;
  /** The scale section: flood seconds per round (3, 1 with --quick). */
  scaleSeconds: number;
  /** The scale section: rounds of (1 peer, N peers); the ratio takes the best of each (3, 1 with --quick). */
  scaleRounds: number;
  /** Only the limits section (--limits-only): no rtt, no kinds, no scale. */
  limitsOnly: boolean;
  /** Only the conntrack section (--conntrack-only). */
  conntrackOnly: boolean;
  /** Only the interactive neighbour section (--neighbour-only). */
  neighbourOnly: boolean;
  /** Only the 10,000-rule section (--rules-only). */
  rulesOnly: boolean;
  /** The neighbour section's floods, packets/s each (--neighbour-rate; absent: unpaced). */
  neighbourRate?: number;
  /** The neighbour section: each vassal in a cgroup of its own, as the emperor runs them (--neighbour-cgroups; default on). */
  neighbourCgroups: boolean;
  /** The neighbour section's floods: to the gateway (v2g, default) or from it to two vassals (g2v; --neighbour-direction). */
  neighbourDirection: FloodDirection;
  /** moat's vassal device (--moat-device): the native runtime (default) or the CLI. */
  moatDevice: 'runtime' | 'cli';
  /** Pings per path and direction in the RTT section, a multiple of RTT_BLOCK (--rtt-pings; 2000, 50 quick). */
  rttPings: number;
}

export function parseArgs(argv: string[]): Options {
  const o: Options = { quick: false, only: [...KINDS], skip: new Set(), offload: true, scalePeers: 1000, scaleSeconds: 3, scaleRounds: 3, limitsOnly: false, conntrackOnly: false, neighbourOnly: false, rulesOnly: false, neighbourCgroups: true, neighbourDirection: 'v2g', moatDevice: 'runtime', rttPings: 0 };
  let scaleSeconds: number | undefined;
  let scaleRounds: number | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--only') {
      const list = (argv[++i] ?? '').split(',').filter(Boolean);
      for (const k of list) if (!KINDS.includes(k as Kind)) throw new Error(`--only: unknown scenario ${k} (veth, uwsgi, moat)`);
      o.only = list as Kind[];
    } else if (/^--skip-(flood|paced|tcp|rtt|scale|limits|conntrack|neighbour|rules)$/.test(a)) o.skip.add(a.slice(7));
    else if (a === '--limits-only') o.limitsOnly = true;
    else if (a === '--conntrack-only') o.conntrackOnly = true;
    else if (a === '--neighbour-only') o.neighbourOnly = true;
    else if (a === '--rules-only') o.rulesOnly = true;
    else if (a === '--neighbour-rate') {
      o.neighbourRate = Number(argv[++i]);
      if (!Number.isInteger(o.neighbourRate) || o.neighbourRate < 1000 || o.neighbourRate > 10_000_000) throw new Error('--neighbour-rate must be an integer 1000..10000000 (packets/s per flood)');
    }
    else if (a === '--scale-peers') {
      o.scalePeers = Number(argv[++i]);
      if (!Number.isInteger(o.scalePeers) || o.scalePeers < 1 || o.scalePeers > 20000) throw new Error('--scale-peers must be an integer 1..20000');
    }
    else if (a === '--scale-rounds') {
      scaleRounds = Number(argv[++i]);
      if (!(Number.isInteger(scaleRounds) && scaleRounds >= 1 && scaleRounds <= 5)) throw new Error('--scale-rounds must be an integer 1..5');
    }
    else if (a === '--scale-seconds') {
      scaleSeconds = Number(argv[++i]);
      if (!(scaleSeconds > 0 && scaleSeconds <= 30)) throw new Error('--scale-seconds must be > 0 and <= 30');
    }
    else if (a === '--mtu') {
      o.mtu = Number(argv[++i]);
      if (!Number.isInteger(o.mtu) || o.mtu < 576 || o.mtu > 65535) throw new Error('--mtu must be 576..65535');
    }
    else if (a === '--busy-poll') {
      o.busyPollUs = Number(argv[++i]);
      if (!Number.isInteger(o.busyPollUs) || o.busyPollUs < 0 || o.busyPollUs > 1000) throw new Error('--busy-poll must be 0..1000 (µs)');
    }
    else if (a === '--offload') {
      const v = argv[++i];
      if (v !== 'on' && v !== 'off') throw new Error('--offload must be on or off');
      o.offload = v === 'on';
    }
    else if (a === '--neighbour-direction') {
      const v = argv[++i];
      if (v !== 'v2g' && v !== 'g2v') throw new Error('--neighbour-direction must be v2g or g2v');
      o.neighbourDirection = v;
    }
    else if (a === '--neighbour-cgroups') {
      const v = argv[++i];
      if (v !== 'on' && v !== 'off') throw new Error('--neighbour-cgroups must be on or off');
      o.neighbourCgroups = v === 'on';
    }
    else if (a === '--rtt-pings') {
      o.rttPings = Number(argv[++i]);
      if (!Number.isInteger(o.rttPings) || o.rttPings < RTT_BLOCK || o.rttPings > 4000 || o.rttPings % RTT_BLOCK !== 0) throw new Error(`--rtt-pings must be a multiple of ${RTT_BLOCK} from ${RTT_BLOCK} to 4000`);
    }
    else if (a === '--moat-device') {
      const v = argv[++i];
      if (v !== 'runtime' && v !== 'cli') throw new Error('--moat-device must be runtime or cli');
      o.moatDevice = v;
    }
    else throw new Error(`unknown option ${a}`);
  }
  if (o.rttPings === 0) o.rttPings = o.quick ? 50 : 2000;
  if (o.limitsOnly && o.skip.has('limits')) throw new Error('--limits-only and --skip-limits: nothing left to measure');
  if (o.conntrackOnly && o.skip.has('conntrack')) throw new Error('--conntrack-only and --skip-conntrack: nothing left to measure');
  if (o.neighbourOnly && o.skip.has('neighbour')) throw new Error('--neighbour-only and --skip-neighbour: nothing left to measure');
  if (o.rulesOnly && o.skip.has('rules')) throw new Error('--rules-only and --skip-rules: nothing left to measure');
  if ([o.conntrackOnly, o.limitsOnly, o.neighbourOnly, o.rulesOnly].filter(Boolean).length > 1) throw new Error('--conntrack-only, --limits-only, --neighbour-only, --rules-only: pick one');
  o.scaleSeconds = scaleSeconds ?? (o.quick ? 1 : 3);
  o.scaleRounds = scaleRounds ?? (o.quick ? 1 : 5);
  checkScaleOptions({ peers: o.scalePeers, seconds: o.scaleSeconds, rounds: o.scaleRounds });
  return o;
}

export interface DirFigures { flood?: FloodResult; paced?: PacedResult; tcp?: TcpResult; rtt?: RttResult }
export interface KindResult { status: 'ok' | 'skipped' | 'error'; reason?: string; restarts?: number; dirs: Partial<Record<Dir, DirFigures>> }


/**
 * Ping RTT and TCP of every kind, interleaved: all paths are up at once and
 * take turns (the order rotating each round), so each samples the same
 * states of the machine. Idle wake-ups on this VM swing the median RTT by 2x
 * over minutes, and veth's own TCP stream ran at 14 or 24 Gbit/s in runs an
 * hour apart; measured one kind after another, that swing, not the path,
 * decided which came out ahead.
 */
export const RTT_BLOCK = 25;
/** TCP runs per kind and direction, in turns (1 quick); a kind's figure is its best run. */
export const TCP_TURNS = 3;
export interface InTurns { dirs: Partial<Record<Dir, { rtt?: RttResult; tcp?: TcpResult }>>; restarts: number }
/**
 * TCP through a bare tun relay (relay-scenario.ts), streamed in the same
 * turns as the kinds when moat is measured on its default links: the floor
 * of any router between tun devices, beside which moat's stream is read.
 */
export type TcpBound = Partial<Record<Dir, TcpResult>>;
/** What `tcp` names in the turns: a kind, or the relay. */
type TcpPath = Kind | 'relay';

export async function measureInTurns(kinds: Kind[], o: Options): Promise<{ byKind: Map<Kind, InTurns>; tcpBound?: TcpBound }> {
  const out = new Map<Kind, InTurns>();
  let tcpBound: TcpBound | undefined;
  const up = new Map<Kind, Scenario>();
  const entry = (k: Kind): InTurns => {
    if (!out.has(k)) out.set(k, { dirs: {}, restarts: 0 });
    return out.get(k)!;
  };
  const fig = (k: Kind, dir: Dir) => (entry(k).dirs[dir] ??= {});
  let relay: RelayScenario | undefined;
  try {
    for (const k of kinds) {
      if (k === 'moat' && !moatBuilt()) continue;
      const sc = makeScenario(k, { mtu: o.mtu, offload: o.offload, busyPollUs: o.busyPollUs, moatDevice: o.moatDevice });
      try {
        await setUp(sc, (what) => process.stderr.write(`  turns ${k}: ${what}\n`));
        up.set(k, sc);
      } catch (e) {
        await sc.teardown().catch(() => undefined);
        const error = `setup: ${(e as Error).message.split('\n')[0]}`;
        for (const dir of DIRS) Object.assign(fig(k, dir), { rtt: rttSummary(0, [], error), tcp: { mbps: NaN, error } });
      }
    }
    const ks = [...up.keys()];
    if (!o.skip.has('rtt')) {
      const rounds = o.rttPings / RTT_BLOCK;
      for (const dir of DIRS) {
        process.stderr.write(`  rtt ${dir}: ${ks.join(', ')} in turns of ${RTT_BLOCK} pings\n`);
        const times = new Map<Kind, number[]>(ks.map((k) => [k, []]));
        const errors = new Map<Kind, string>();
        await inTurns(ks, rounds, async (k) => {
          const got = await pingTimes(up.get(k)!, dir, RTT_BLOCK);
          times.get(k)!.push(...got.times);
          if (got.error) errors.set(k, got.error);
        });
        for (const k of ks) fig(k, dir).rtt = rttSummary(rounds * RTT_BLOCK, times.get(k)!, errors.get(k));
      }
    }
    if (!o.skip.has('tcp')) {
      const turns = o.quick ? 1 : TCP_TURNS;
      const seconds = o.quick ? 1 : 3;
      const paths = new Map<TcpPath, Scenario>(up);
      // The relay carries virtio-net headers with TSO at the default MTU,
      // as moat's default links do; with other links it is not that floor.
      if (up.has('moat') && o.offload && !o.mtu) {
        try {
          relay = new RelayScenario(relayBinary());
          await setUp(relay, (what) => process.stderr.write(`  turns relay: ${what}\n`));
          paths.set('relay', relay);
        } catch (e) {
          process.stderr.write(`  turns relay: setup failed, no TCP floor this run: ${(e as Error).message.split('\n')[0]}\n`);
        }
      }
      const ps = [...paths.keys()];
      for (const dir of DIRS) {
        process.stderr.write(`  tcp ${dir}: ${ps.join(', ')} in turns of one ${seconds} s stream, ${turns} each\n`);
        const runs = new Map<TcpPath, TcpResult[]>(ps.map((k) => [k, []]));
        await inTurns(ps, turns, async (k) => { runs.get(k)!.push(await tcpAlive(paths.get(k)!, dir, seconds)); });
        for (const k of ks) fig(k, dir).tcp = bestTcp(runs.get(k)!);
        if (paths.has('relay')) (tcpBound ??= {})[dir] = bestTcp(runs.get('relay')!);
      }
    }
  } finally {
    if (relay) await relay.teardown().catch(() => undefined);
    for (const [k, sc] of up) {
      entry(k).restarts = sc.restarts;
      await sc.teardown().catch(() => undefined);
    }
  }
  return { byKind: out, tcpBound };
}

/** true if sc's vassal answers; else its path is rebuilt (counted in sc.restarts) and false. */
async function aliveOrRebuilt(sc: Scenario, step?: (what: string) => void): Promise<boolean> {
  if (await sc.alive()) return true;
  step?.('vassal lost: rebuilding the path');
  await sc.restart();
  return false;
}

/** One TCP run through sc; uWSGI's vassal may die under a stream: the path is rebuilt (counted) and the run tried once more. */
async function tcpAlive(sc: Scenario, dir: Dir, seconds: number): Promise<TcpResult> {
  await aliveOrRebuilt(sc);
  const r = await tcp(sc, dir, seconds);
  if (!r.error || (await aliveOrRebuilt(sc))) return r;
  return tcp(sc, dir, seconds);
}

/** A kind's TCP figure from its runs in turns: the best (noise on this box lowers a stream), with every run's rate. */
export function bestTcp(runs: TcpResult[]): TcpResult {
  const good = runs.filter((r) => Number.isFinite(r.mbps) && !r.error);
  const all = runs.map((r) => r.mbps);
  if (good.length === 0) return { mbps: NaN, error: runs.find((r) => r.error)?.error ?? 'no TCP run', runs: all };
  const best = good.reduce((a, b) => (b.mbps > a.mbps ? b : a));
  return { ...best, runs: all };
}

async function measureKind(kind: Kind, o: Options, turns?: InTurns): Promise<KindResult> {
  if (kind === 'moat' && !moatBuilt()) return { status: 'skipped', reason: 'not built (dist/src/cli.js missing)', dirs: {} };
  const res: KindResult = { status: 'ok', dirs: { v2g: { ...turns?.dirs.v2g }, g2v: { ...turns?.dirs.g2v } } };
  // TCP was measured in turns with the other kinds (measureInTurns).
  const measures = ['paced', 'flood'].filter((m) => !o.skip.has(m));
  if (measures.length === 0) return res;
  const sc = makeScenario(kind, { mtu: o.mtu, offload: o.offload, busyPollUs: o.busyPollUs, moatDevice: o.moatDevice });
  const q = o.quick;
  const step = (what: string) => process.stderr.write(`  ${kind}: ${what}\n`);
  // uWSGI's vassal may die under a paced step, not only under a flood: the
  // path is rebuilt (counted) before the next measure needs it.
  const ensureAlive = () => aliveOrRebuilt(sc, step);
  try {
    await setUp(sc, step);
    for (const dir of DIRS) {
      const d = res.dirs[dir]!;
      if (!o.skip.has('paced')) {
        await ensureAlive();
        step(`paced search ${dir}`);
        d.paced = await pacedMax(sc, dir, q ? { start: 25000, cap: 1600000, seconds: 0.4, maxSteps: 6 }
          : { start: 25000, cap: 3200000, seconds: 1.5, maxSteps: 11 });
        step(`  -> ${d.paced.maxPps} pps`);
      }
    }
    // Floods last: under one, uWSGI may lose its vassal; the path is rebuilt if so.
    if (!o.skip.has('flood')) {
      for (const dir of DIRS) {
        step(`flood ${dir}`);
        await ensureAlive();
        const f = await flood(sc, dir, q ? 1 : 3);
        res.dirs[dir]!.flood = f;
        step(`  -> ${Math.round(f.rxPps)} pps received, vassal ${f.aliveAfter ? 'still connected' : 'LOST'}`);
        if (!f.aliveAfter && dir !== DIRS[DIRS.length - 1]) await sc.restart();
      }
    }
  } catch (e) {
    res.status = 'error';
    res.reason = (e as Error).message;
    process.stderr.write(`  ${kind}: ERROR ${res.reason}\n`);
  } finally {
    res.restarts = sc.restarts + (turns?.restarts ?? 0);
    await sc.teardown().catch(() => undefined);
  }
  return res;
}

// ---- scale: moat's router with 1 peer and with N peers ----

export interface ScaleSection {
  status: 'ok' | 'skipped' | 'error';
  reason?: string;
  peers: number;
  seconds: number;
  /** Rounds completed (on error, those before the failure). */
  rounds: Round[];
  /** Framed peers (peers.c); ratioOneHop: one-hop peers (tun-peers.c);
   *  ratioKernel: the baseline without moat (udp-peers.c). */
  ratio?: number;
  ratioOneHop?: number;
  ratioKernel?: number;
  target: number;
  rssPerIdlePeerKiB?: number[];
  pathd?: string;
  lines: string[];
}

/** Whether this run has a scale section: moat is measured and it is not skipped. */
export function wantScale(o: Options): boolean {
  return !sectionOnly(o) && o.only.includes('moat') && !o.skip.has('scale');
}

/** One section alone (--limits-only, --conntrack-only, --neighbour-only, --rules-only): no rtt, no kinds, no scale. */
export function sectionOnly(o: Options): boolean {
  return o.limitsOnly || o.conntrackOnly || o.neighbourOnly || o.rulesOnly;
}

/** Whether this run has the 10,000-rule section: moat is measured and it is not skipped, or --rules-only. */
export function wantRules(o: Options): boolean {
  return o.rulesOnly || (!sectionOnly(o) && o.only.includes('moat') && !o.skip.has('rules'));
}

/** Whether this run has the interactive neighbour section: moat is measured and it is not skipped, or --neighbour-only. */
export function wantNeighbour(o: Options): boolean {
  return o.neighbourOnly || (!sectionOnly(o) && o.only.includes('moat') && !o.skip.has('neighbour'));
}

/** Whether this run has a limits section: moat is measured and it is not skipped, or --limits-only. */
export function wantLimits(o: Options): boolean {
  return o.limitsOnly || (!sectionOnly(o) && o.only.includes('moat') && !o.skip.has('limits'));
}

/** Whether this run has a conntrack section: moat is measured and it is not skipped, or --conntrack-only. */
export function wantConntrack(o: Options): boolean {
  return o.conntrackOnly || (!sectionOnly(o) && o.only.includes('moat') && !o.skip.has('conntrack'));
}

async function runLimits(o: Options): Promise<LimitsSection | { error: string }> {
  if (!moatBuilt()) return { error: 'not built (dist/src/cli.js missing)' };
  try {
    return await measureLimits(limitsDefaults(o.quick));
  } catch (e) {
    const error = (e as Error).message;
    process.stderr.write(`  limits: ERROR ${error}\n`);
    return { error };
  }
}

async function runScale(o: Options): Promise<ScaleSection> {
  const pathd = process.env.MOAT_SCALE_PATHD || undefined;
  const base = { peers: o.scalePeers, seconds: o.scaleSeconds, rounds: [] as Round[], target: SCALE_TARGET, pathd, lines: [] as string[] };
  if (!moatBuilt() && !pathd) return { ...base, status: 'skipped', reason: 'not built (dist/src/cli.js missing)' };
  try {
    const r = await measureScale({ peers: o.scalePeers, seconds: o.scaleSeconds, rounds: o.scaleRounds });
    return { ...base, status: 'ok', rounds: r.rounds, ratio: r.ratio, ratioOneHop: r.ratioOneHop, ratioKernel: r.ratioKernel, rssPerIdlePeerKiB: r.rssPerIdlePeerKiB, lines: r.lines };
  } catch (e) {
    const reason = (e as Error).message;
    process.stderr.write(`  scale: ERROR ${reason}\n`);
    const rounds = e instanceof ScaleError ? e.rounds : [];
    return { ...base, status: 'error', reason, rounds, lines: rounds.length ? summarize({ peers: o.scalePeers, seconds: o.scaleSeconds, rounds: o.scaleRounds }, rounds).lines.slice(0, 1 + rounds.length) : [] };
  }
}

/** The printed scale section, under the main table. */
export function scaleText(s: ScaleSection): string {
  const router = s.pathd ? `pathd router ${s.pathd}` : 'moat router';
  const out = [`scale (${router}, 64 B UDP flood spread round-robin over the peers' addresses, ${s.seconds} s per round):`, ...s.lines];
  if (s.status !== 'ok') out.push(`scale: ${s.status}${s.reason ? ': ' + s.reason.split('\n')[0] : ''}`);
  return out.join('\n');
}

// ---- table ----

type Row = { label: string; get: (r: DirFigures) => number | string | undefined; unit: string; higherBetter: boolean };

const ROWS: Row[] = [
  { label: 'flood rx pps (64 B)', get: (r) => (r.flood ? fmt(r.flood.rxPps) + (r.flood.loss < 0.01 ? '^' : '') : undefined), unit: 'pps', higherBetter: true },
  { label: 'flood offered pps', get: (r) => r.flood?.txPps, unit: 'pps', higherBetter: true },
  { label: 'flood delivered %', get: (r) => (r.flood ? 100 * (1 - r.flood.loss) : undefined), unit: '%', higherBetter: true },
  { label: 'vassal alive after flood', get: (r) => (r.flood ? (r.flood.aliveAfter ? 'yes' : 'NO') : undefined), unit: '', higherBetter: true },
  { label: 'paced max pps <1% loss', get: (r) => (r.paced ? fmt(r.paced.maxPps) + (senderBound(r.paced) ? '^' : '') : undefined), unit: 'pps', higherBetter: true },
  { label: 'tcp Mbit/s', get: (r) => r.tcp?.mbps, unit: 'Mbit/s', higherBetter: true },
  { label: 'rtt p50 ms', get: (r) => r.rtt?.p50, unit: 'ms', higherBetter: false },
  { label: 'rtt p90 ms', get: (r) => r.rtt?.p90, unit: 'ms', higherBetter: false },
  { label: 'rtt p99 ms', get: (r) => r.rtt?.p99, unit: 'ms', higherBetter: false },
  { label: 'rtt max ms', get: (r) => r.rtt?.max, unit: 'ms', higherBetter: false },
];

/** The search stopped because the generator could not offer more, not because of loss. */
function senderBound(p: PacedResult): boolean {
  const failed = p.steps.filter((s) => !s.pass);
  return failed.length > 0 && failed.every((s) => s.note !== undefined && s.loss < 0.01);
}

/** Numbers in a cell may carry a mark ('^'); ratios read the number. */
function num(v: number | string | undefined): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v !== 'string') return undefined;
  const n = Number(v.replace(/[,^]/g, ''));
  return /\d/.test(v) && Number.isFinite(n) ? n : undefined;
}

function fmt(v: number | string | undefined): string {
  if (v === undefined) return '-';
  if (typeof v === 'string') return v;
  if (!Number.isFinite(v)) return 'n/a';
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US');
  if (Math.abs(v) >= 10) return v.toFixed(1);
  return v.toFixed(3);
}

function ratio(a0: number | string | undefined, b0: number | string | undefined): string {
  const a = num(a0);
  const b = num(b0);
  if (typeof a !== 'number' || typeof b !== 'number' || !Number.isFinite(a) || !Number.isFinite(b) || b === 0) return '-';
  return (a / b).toFixed(2);
}

export function table(results: Partial<Record<Kind, KindResult>>): string {
  const head = ['figure', 'direction', 'veth', 'uWSGI', 'moat', 'moat/uWSGI', 'moat/veth'];
  const rows: string[][] = [head];
  for (const row of ROWS) {
    for (const dir of DIRS) {
      const v = (k: Kind) => { const r = results[k]; return r && r.dirs[dir] ? row.get(r.dirs[dir]!) : undefined; };
      rows.push([row.label, DIR_LABEL[dir], fmt(v('veth')), fmt(v('uwsgi')), fmt(v('moat')), ratio(v('moat'), v('uwsgi')), ratio(v('moat'), v('veth'))]);
    }
  }
  const { lines, rule } = alignColumns(rows, 2);
  const out = [lines[0], rule, ...lines.slice(1)];
  for (const k of KINDS) {
    const r = results[k];
    if (r && r.status !== 'ok') out.push(`${k}: ${r.status}${r.reason ? ': ' + r.reason.split('\n')[0] : ''}`);
    if (r && r.restarts) out.push(`${k}: path rebuilt ${r.restarts} time(s) after a lost vassal`);
  }
  const tcpRuns = (k: Kind, dir: Dir) => results[k]?.dirs[dir]?.tcp?.runs;
  const runsText = DIRS.flatMap((dir) => KINDS.filter((k) => tcpRuns(k, dir)?.length)
    .map((k) => `${k} ${DIR_LABEL[dir]} ${tcpRunsText(tcpRuns(k, dir)!)}`));
  if (runsText.length) out.push(`tcp Mbit/s is the best of runs in turns with the other kinds: ${runsText.join('; ')}`);
  out.push('ratios: for rtt lower is better; flood rx pps is what arrived at the receiver under an unpaced sender.');
  out.push('^ = bound by the generator (no loss at the most it could offer), not by the path: the path can do more.');
  return out.join('\n');
}

/** TCP runs' Mbit/s as printed under the table: whole numbers, 'failed' for a run without one. */
function tcpRunsText(mbps: number[]): string {
  return mbps.map((x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : 'failed')).join(', ');
}

/** The relay's TCP beside moat's, each direction: its runs and moat's fraction of its best. */
export function tcpBoundText(bound: TcpBound, moat?: KindResult): string {
  const parts = DIRS.filter((dir) => bound[dir]).map((dir) => {
    const b = bound[dir]!;
    const m = moat?.dirs[dir]?.tcp?.mbps;
    const of = Number.isFinite(b.mbps) && b.mbps > 0 && m !== undefined && Number.isFinite(m) ? `; moat ${(m / b.mbps).toFixed(2)} of it` : '';
    return `${DIR_LABEL[dir]} ${tcpRunsText(b.runs ?? [b.mbps])}${of}`;
  });
  return `tcp floor: a bare tun relay (bench/gen/tunrelay.cc: a tun read and a tun write a packet, nothing else) in the same turns, Mbit/s: ${parts.join('; ')}`;
}

export function hostInfo(): Record<string, unknown> {
  const v = (cmd: string, args: string[]) => { try { return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000 }).trim().split('\n')[0]; } catch { return null; } };
  return {
    node: process.version, kernel: os.release(), cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model,
    uwsgi: v('uwsgi', ['--version']), iperf3: v('iperf3', ['--version']), cc: v('cc', ['--version']),
  };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  if (argv.includes('--rules-sweep')) {
    const { main: sweep } = await import('./rules-sweep');
    return sweep(argv.filter((a) => a !== '--rules-sweep'));
  }
  const o = parseArgs(argv);
  requireRoot();
  buildFlood();
  const started = new Date().toISOString();
  const loadBefore = os.loadavg();
  if (loadBefore[0] > 0.5) process.stderr.write(`bench: load average ${loadBefore[0].toFixed(2)} before start: other work on this box will lower the figures\n`);
  const results: Partial<Record<Kind, KindResult>> = {};
  let turns = new Map<Kind, InTurns>();
  let tcpBound: TcpBound | undefined;
  const alone = sectionOnly(o);
  if (!(o.skip.has('rtt') && o.skip.has('tcp')) && !alone) {
    process.stderr.write(`bench: rtt and tcp (${o.only.join(', ')} in turns)\n`);
    ({ byKind: turns, tcpBound } = await measureInTurns(o.only, o));
  }
  for (const k of alone ? [] : o.only) {
    process.stderr.write(`bench: ${k}\n`);
    results[k] = await measureKind(k, o, turns.get(k));
  }
  let neighbour: NeighbourSection | undefined;
  if (wantNeighbour(o)) {
    const no = { ...neighbourDefaults(o.quick, { mtu: o.mtu, offload: o.offload, busyPollUs: o.busyPollUs, moatDevice: o.moatDevice, cgroups: o.neighbourCgroups }), kinds: NEIGHBOUR_KINDS.filter((k) => o.only.includes(k)) };
    if (o.neighbourRate !== undefined) no.rate = o.neighbourRate;
    no.direction = o.neighbourDirection;
    process.stderr.write(`bench: interactive neighbour (${no.kinds.join(', ')} in turns)\n`);
    neighbour = await measureNeighbour(no, (l) => process.stderr.write(l + '\n'));
  }
  let rulesRun: RulesSection | { error: string } | undefined;
  if (wantRules(o)) {
    process.stderr.write('bench: 10,000 rules\n');
    rulesRun = !moatBuilt() ? { error: 'not built (dist/src/cli.js missing)' }
      : await measureRules(rulesDefaults(o.quick, { mtu: o.mtu, offload: o.offload, busyPollUs: o.busyPollUs, moatDevice: o.moatDevice }), (l) => process.stderr.write(l + '\n'))
        .catch((e: Error) => ({ error: e.message }));
  }
  const rules = rulesRun && !('error' in rulesRun) ? rulesRun : undefined;
  let scale: ScaleSection | undefined;
  if (wantScale(o)) {
    process.stderr.write(`bench: scale (${o.scalePeers} peers)\n`);
    scale = await runScale(o);
  }
  let limitsRun: LimitsSection | { error: string } | undefined;
  if (wantLimits(o)) {
    process.stderr.write('bench: limits\n');
    limitsRun = await runLimits(o);
  }
  let conntrackRun: ConntrackSection | { error: string } | undefined;
  if (wantConntrack(o)) {
    process.stderr.write('bench: conntrack\n');
    conntrackRun = await measureConntrack(parseConntrackArgs(o.quick ? ['--quick'] : []), (l) => process.stderr.write(l + '\n'))
      .catch((e: Error) => ({ error: e.message }));
  }
  const limits = limitsRun && !('error' in limitsRun) ? limitsRun : undefined;
  const parts: string[] = [];
  if (!alone) {
    let t = table(results);
    if (o.mtu) t += `\nlink MTU ${o.mtu} (uWSGI: ${Math.min(o.mtu, 8188)}; moat: --tuntap-router-max-frame / --tuntap-device-max-frame ${o.mtu})`;
    if (tcpBound) t += '\n' + tcpBoundText(tcpBound, results.moat);
    t += `\nmoat offloads: ${o.offload ? 'on' : 'off'} (--offload on|off); busy polling: ${o.busyPollUs === undefined ? 'default (100 µs)' : `${o.busyPollUs} µs`} (--busy-poll US)`;
    parts.push(t);
    const hists = o.only.map((k) => ({ name: KIND_LABEL[k], byDir: { v2g: results[k]?.dirs.v2g?.rtt?.histogram, g2v: results[k]?.dirs.g2v?.rtt?.histogram } }));
    if (hists.some((h) => h.byDir.v2g || h.byDir.g2v)) parts.push(histogramText(hists, DIRS));
    if (scale) parts.push(scaleText(scale));
  }
  if (rulesRun) parts.push('error' in rulesRun ? `rules: error: ${rulesRun.error.split('\n')[0]}` : rulesText(rulesRun));
  if (neighbour) parts.push(neighbourText(neighbour));
  if (limits) parts.push(limitsText(limits));
  else if (limitsRun && 'error' in limitsRun) parts.push(`limits: error: ${limitsRun.error.split('\n')[0]}`);
  if (conntrackRun) parts.push('error' in conntrackRun ? `conntrack: error: ${conntrackRun.error.split('\n')[0]}` : conntrackText(conntrackRun));
  if (!alone && results.moat && o.only.length === KINDS.length) parts.push(targetsText(results, scale, limits, neighbour, rules, tcpBound));
  else if (limits || neighbour || rules) parts.push(sectionTargetsText(limits, neighbour, rules));
  const t = parts.join('\n\n');
  process.stdout.write('\n' + t + `\nload average before/after: ${loadBefore[0].toFixed(2)} / ${os.loadavg()[0].toFixed(2)} (${os.cpus().length} cpus)\n`);
  const file = writeResults('bench', { started, finished: new Date().toISOString(), options: { quick: o.quick, only: o.only, skip: [...o.skip], mtu: o.mtu, offload: o.offload, busyPollUs: o.busyPollUs, scalePeers: o.scalePeers, scaleSeconds: o.scaleSeconds, scaleRounds: o.scaleRounds, limitsOnly: o.limitsOnly, conntrackOnly: o.conntrackOnly, neighbourOnly: o.neighbourOnly, rulesOnly: o.rulesOnly, neighbourRate: o.neighbourRate, neighbourCgroups: o.neighbourCgroups, neighbourDirection: o.neighbourDirection, moatDevice: o.moatDevice, rttPings: o.rttPings }, host: hostInfo(), loadavgBefore: loadBefore, loadavgAfter: os.loadavg(), packetBytes: 64, results, tcpBound, scale, limits: limitsRun, conntrack: conntrackRun, neighbour, rules: rulesRun, table: t });
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), file)}\n`);
  const failed = Object.values(results).some((r) => r?.status === 'error') || scale?.status === 'error' ||
    Object.values(neighbour?.kinds ?? {}).some((r) => r?.status === 'error') || (rulesRun !== undefined && 'error' in rulesRun) ||
    (limitsRun !== undefined && ('error' in limitsRun || limitsFailed(limitsRun))) ||
    (conntrackRun !== undefined && ('error' in conntrackRun || conntrackRun.ratio < CONNTRACK_TARGET));
  process.exitCode = failed ? 1 : 0;
}

if (require.main === module) {
  main().catch(async (e) => {
    process.stderr.write(`bench: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
