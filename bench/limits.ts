// limits.ts: per-peer rate limits (issue 16) measured, in two parts.
//
//   node dist/bench/limits.js [--quick] [--skip-rates] [--skip-scale]
//                             [--peers N] [--seconds S] [--rounds R]
//
// rates: moat's router and device (scenarios.ts's moat path, 192.168.0.1 <->
//   192.168.0.2), the router given `--tuntap-router-peer-limit "192.168.0.2
//   in|out ..."`, one path per limit: 1, 10, 100 Mbit/s and 1,000, 10,000
//   packets/s, each way. UDP (flood.c, paced at twice the limit; 1000-byte
//   packets under a bit rate, 64-byte under a packet rate) is counted at the
//   receiver from its first to its last arrival, so the shaper's queue
//   draining after the sender stopped is included; TCP (iperf3, one stream)
//   under the bit rates. Each received rate is set against its limit: within
//   +-10% (TCP too: at least 90%, at most 110%).
// scale: two gateway netns, each with moat's router (scale.ts's), one without
//   limits and one where every peer has a limit none reaches
//   (`default in|out rate 1gbit pps 1000000`): the cost of the shapers'
//   bookkeeping, not of limiting. peers.c connects N peers (1000) and the
//   gateway floods them (scale.ts's round), rounds interleaved
//   unlimited/limited/unlimited/limited; the ratio of the best limited round
//   to the best unlimited round is the figure (target >= 0.95). On a shared
//   box the pps of one config moves by 3x between rounds (the sender and the
//   router share 2 CPUs with other work), so the router's CPU time per
//   received packet (all its threads, during the flood) is set beside it:
//   unlimited / limited CPU per packet is the pps ratio a saturated router
//   would show, and moves far less.
//
// measureLimits() is the measurement; run.ts (`npm run bench`) runs it as its
// limits section. Standalone, results go to bench/results/limits-<timestamp>.json.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lab, requireRoot } from '../test/helpers/netns';
import { buildFlood, cleanupAll, releaseDir, releaseLab, trackDir, trackLab, writeResults } from './lib';
import { Dir, tcp, udpStep } from './measure';
import { buildPeers, round, Round, startScaleRouter } from './scale';
import { TuntapScenario, V_ADDR } from './scenarios';
import { limitsTargetsText } from './targets';

/** The received rate is within this fraction of the limit, either way. */
export const RATE_TOLERANCE = 0.1;
/** Limited (every peer) / unlimited received pps with N peers: at least this. */
export const LIMITS_SCALE_TARGET = 0.95;
/** The limit every peer has in the scale part: far above what one peer gets there. */
export const UNREACHED_LIMIT = 'rate 1gbit pps 1000000';

export interface LimitCase {
  label: string;
  /** The words after `<address> <in|out>` in tuntap-router-peer-limit. */
  spec: string;
  unit: 'bit/s' | 'pps';
  value: number;
}

export const LIMIT_CASES: LimitCase[] = [
  { label: '1 Mbit/s', spec: 'rate 1mbit', unit: 'bit/s', value: 1e6 },
  { label: '10 Mbit/s', spec: 'rate 10mbit', unit: 'bit/s', value: 10e6 },
  { label: '100 Mbit/s', spec: 'rate 100mbit', unit: 'bit/s', value: 100e6 },
  { label: '1,000 pps', spec: 'pps 1000', unit: 'pps', value: 1000 },
  { label: '10,000 pps', spec: 'pps 10000', unit: 'pps', value: 10000 },
];

/** IPv4 packet bytes of the UDP flood: under a bit rate, and under a packet rate. */
export const UDP_BYTES_BITS = 1000;
export const UDP_BYTES_PPS = 64;
/** The sender offers this multiple of the limit. */
export const OFFER = 2;

export interface LimitsOptions {
  quick: boolean;
  rates: boolean;
  scale: boolean;
  peers: number;
  /** Seconds per UDP or TCP run (4, 2 quick). */
  rateSeconds: number;
  /** Seconds per scale round (3, 1 quick). */
  scaleSeconds: number;
  /** Rounds of (unlimited, limited) (4, 2 quick). */
  rounds: number;
}

export function limitsDefaults(quick: boolean): LimitsOptions {
  return { quick, rates: true, scale: true, peers: 1000, rateSeconds: quick ? 2 : 4, scaleSeconds: quick ? 1 : 3, rounds: quick ? 2 : 4 };
}

/** Standalone limits.ts options. Throws on what it does not take. */
export function parseLimitsArgs(argv: string[]): LimitsOptions {
  const quick = argv.includes('--quick');
  const o = limitsDefaults(quick);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const num = (what: string, ok: (v: number) => boolean, range: string): number => {
      const v = Number(argv[++i]);
      if (argv[i] === undefined || !ok(v)) throw new Error(`${what} must be ${range}`);
      return v;
    };
    if (a === '--quick') continue;
    else if (a === '--skip-rates') o.rates = false;
    else if (a === '--skip-scale') o.scale = false;
    else if (a === '--peers') o.peers = num(a, (v) => Number.isInteger(v) && v >= 1 && v <= 20000, 'an integer 1..20000');
    else if (a === '--seconds') o.scaleSeconds = num(a, (v) => v > 0 && v <= 30, '> 0 and <= 30');
    else if (a === '--rounds') o.rounds = num(a, (v) => Number.isInteger(v) && v >= 1 && v <= 5, 'an integer 1..5');
    else throw new Error(`unknown option ${a}`);
  }
  if (!o.rates && !o.scale) throw new Error('--skip-rates and --skip-scale: nothing left to measure');
  return o;
}

// ---- rates ----

export type Traffic = 'UDP' | 'TCP';

export interface RateRow {
  limit: string;
  unit: 'bit/s' | 'pps';
  /** The limit, in unit. */
  value: number;
  traffic: Traffic;
  dir: Dir;
  /** UDP: IPv4 bytes per packet. */
  bytes?: number;
  /** UDP: what the sender offered, in unit. */
  offered?: number;
  /** Received at the far end, in unit (TCP: iperf3's received payload bit/s). */
  received?: number;
  ratio?: number;
  within?: boolean;
  /** UDP: packets sent and received. */
  sent?: number;
  delivered?: number;
  /** The peer's drops counted as rate_limit during this run (stats socket). */
  rateLimitDrops?: number;
  retransmits?: number;
  error?: string;
}

/** in = toward the peer (gateway->vassal), out = from it (issue 16's words). */
export const DIR_NAME: Record<Dir, string> = { g2v: 'in (gateway->vassal)', v2g: 'out (vassal->gateway)' };
const LIMIT_DIR: Record<Dir, 'in' | 'out'> = { g2v: 'in', v2g: 'out' };

/** The router options for one case: the same limit each way for the vassal's address. */
export function peerLimitArgs(addr: string, spec: string): string[] {
  return (['in', 'out'] as const).flatMap((d) => ['--tuntap-router-peer-limit', `${addr} ${d} ${spec}`]);
}

/** ratio and within from received and the limit (no I/O). */
export function judge(row: RateRow): RateRow {
  if (row.received === undefined || !Number.isFinite(row.received)) return row;
  const ratio = row.received / row.value;
  return { ...row, ratio, within: ratio >= 1 - RATE_TOLERANCE && ratio <= 1 + RATE_TOLERANCE };
}

/** The router's stats document (stats socket), or null. */
async function statsDoc(file: string): Promise<Record<string, unknown> | null> {
  if (!file || !fs.existsSync(file)) return null;
  const text = await new Promise<string>((resolve) => {
    let buf = '';
    const s = net.connect(file);
    const t = setTimeout(() => { s.destroy(); resolve(buf); }, 2000);
    s.on('data', (d) => { buf += d.toString(); });
    s.on('end', () => { clearTimeout(t); resolve(buf); });
    s.on('error', () => { clearTimeout(t); resolve(buf); });
  });
  try { return JSON.parse(text) as Record<string, unknown>; } catch { return null; }
}

type Drops = Record<string, number>;
async function peerRateLimitDrops(file: string, addr: string): Promise<number | undefined> {
  const doc = await statsDoc(file);
  const peers = (doc?.peers ?? []) as Array<{ addr: string; drops?: Drops }>;
  const p = peers.find((x) => x.addr === addr);
  return p ? (p.drops?.rate_limit ?? 0) : undefined;
}

async function routerRateLimitDrops(file: string): Promise<number | undefined> {
  const doc = await statsDoc(file);
  const drops = (doc?.moat as { drops?: Drops } | undefined)?.drops;
  return drops ? (drops.rate_limit ?? 0) : undefined;
}

async function udpRow(sc: TuntapScenario, c: LimitCase, dir: Dir, seconds: number): Promise<RateRow> {
  const bytes = c.unit === 'bit/s' ? UDP_BYTES_BITS : UDP_BYTES_PPS;
  const perPacket = c.unit === 'bit/s' ? bytes * 8 : 1;
  const row: RateRow = { limit: c.label, unit: c.unit, value: c.value, traffic: 'UDP', dir, bytes };
  try {
    const before = await peerRateLimitDrops(sc.statsPath, V_ADDR);
    const r = await udpStep(sc, dir, (OFFER * c.value) / perPacket, seconds, bytes);
    const after = await peerRateLimitDrops(sc.statsPath, V_ADDR);
    // The receiver's rate is received / (last - first arrival); n packets
    // span n - 1 gaps.
    const pps = r.received > 1 ? (r.rxPps * (r.received - 1)) / r.received : NaN;
    Object.assign(row, { offered: r.txPps * perPacket, received: pps * perPacket, sent: r.sent, delivered: r.received });
    if (before !== undefined && after !== undefined) row.rateLimitDrops = after - before;
  } catch (e) {
    row.error = (e as Error).message.split('\n')[0];
  }
  return judge(row);
}

async function tcpRow(sc: TuntapScenario, c: LimitCase, dir: Dir, seconds: number): Promise<RateRow> {
  const row: RateRow = { limit: c.label, unit: c.unit, value: c.value, traffic: 'TCP', dir };
  const before = await peerRateLimitDrops(sc.statsPath, V_ADDR);
  const t = await tcp(sc, dir, seconds);
  const after = await peerRateLimitDrops(sc.statsPath, V_ADDR);
  if (t.error) row.error = t.error.split('\n')[0];
  else Object.assign(row, { received: t.mbps * 1e6, retransmits: t.retransmits });
  if (before !== undefined && after !== undefined) row.rateLimitDrops = after - before;
  return judge(row);
}

/** One moat path per limit case; UDP each way, then TCP each way under bit rates. */
export async function measureRates(o: LimitsOptions, step: (what: string) => void): Promise<RateRow[]> {
  const rows: RateRow[] = [];
  for (const c of LIMIT_CASES) {
    step(`${c.label}: setting up`);
    const sc = new TuntapScenario('moat', { moatRouterArgs: peerLimitArgs(V_ADDR, c.spec) });
    try {
      await sc.setup();
      const dirs: Dir[] = ['g2v', 'v2g'];
      for (const dir of dirs) {
        step(`${c.label}: UDP ${LIMIT_DIR[dir]}`);
        rows.push(await udpRow(sc, c, dir, o.rateSeconds));
      }
      if (c.unit === 'bit/s') {
        for (const dir of dirs) {
          step(`${c.label}: TCP ${LIMIT_DIR[dir]}`);
          rows.push(await tcpRow(sc, c, dir, o.rateSeconds));
        }
      }
    } catch (e) {
      const error = `setup: ${(e as Error).message.split('\n')[0]}`;
      rows.push({ limit: c.label, unit: c.unit, value: c.value, traffic: 'UDP', dir: 'g2v', error });
    } finally {
      await sc.teardown().catch(() => undefined);
    }
  }
  return rows;
}

const int = (v: number) => Math.round(v).toLocaleString('en-US');
function rate(v: number | undefined, unit: 'bit/s' | 'pps'): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return unit === 'bit/s' ? `${(v / 1e6).toFixed(v < 10e6 ? 3 : 2)} Mbit/s` : `${int(v)} pps`;
}

/** The rates table (no I/O). */
export function ratesTable(rows: RateRow[], seconds: number): string[] {
  const head = ['limit', 'kind', 'direction', 'offered', 'received', 'recv/limit', 'within ±10%', 'rate_limit drops'];
  const cells = rows.map((r) => [
    r.limit, r.traffic + (r.bytes ? ` ${r.bytes} B` : ''), DIR_NAME[r.dir],
    r.traffic === 'TCP' ? 'iperf3' : rate(r.offered, r.unit),
    r.error ? `error: ${r.error.slice(0, 60)}` : rate(r.received, r.unit),
    r.ratio === undefined ? '-' : r.ratio.toFixed(3),
    r.within === undefined ? '-' : r.within ? 'yes' : 'NO',
    r.rateLimitDrops === undefined ? '-' : int(r.rateLimitDrops),
  ]);
  const all = [head, ...cells];
  const w = head.map((_, i) => Math.max(...all.map((c) => c[i].length)));
  const line = (c: string[]) => c.map((x, i) => (i < 3 ? x.padEnd(w[i]) : x.padStart(w[i]))).join('  ').trimEnd();
  return [
    `limits: received rate against the limit (moat router + device, ${seconds} s per run; UDP paced at ${OFFER}x the limit,` +
      ' rate from first to last arrival, the queue\'s drain included; TCP: iperf3 payload, one stream)',
    line(head), w.map((n) => '-'.repeat(n)).join('  '), ...cells.map(line),
  ];
}

// ---- scale: N peers, unlimited and each limited ----

export type ScaleConfig = 'unlimited' | 'limited';
export interface LimitScaleRound extends Round { config: ScaleConfig }

export interface LimitScale {
  status: 'ok' | 'error';
  reason?: string;
  peers: number;
  seconds: number;
  /** In the order run: unlimited, limited, unlimited, limited, ... */
  rounds: LimitScaleRound[];
  /** Best limited round / best unlimited round. */
  ratio?: number;
  /** Median limited / median unlimited. */
  medianRatio?: number;
  /** The router's median CPU µs per received packet, each config. */
  cpuPerPacketUs?: Record<ScaleConfig, number>;
  /** Unlimited / limited median CPU per packet (1: the limits cost nothing; 0.95: 5%). */
  cpuRatio?: number;
  /** The limited router's rate_limit drops over all its rounds (0: no peer reached its limit). */
  rateLimitDrops?: number;
  target: number;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

/** A round's router CPU µs per received packet (NaN when unknown). */
export function cpuPerPacket(r: Round): number {
  return r.routerCpuMs !== undefined && r.received > 0 ? (r.routerCpuMs * 1000) / r.received : NaN;
}

/** Ratios from the rounds (no I/O). */
export function scaleRatios(rounds: LimitScaleRound[]): Pick<LimitScale, 'ratio' | 'medianRatio' | 'cpuPerPacketUs' | 'cpuRatio'> {
  const of = (c: ScaleConfig) => rounds.filter((r) => r.config === c);
  const pps = (c: ScaleConfig) => of(c).map((r) => r.pps);
  const cpu = (c: ScaleConfig) => median(of(c).map(cpuPerPacket).filter(Number.isFinite));
  const [u, l] = [pps('unlimited'), pps('limited')];
  const best = (v: number[]) => (v.length ? Math.max(...v) : NaN);
  const cpuPerPacketUs = { unlimited: cpu('unlimited'), limited: cpu('limited') };
  return { ratio: best(l) / best(u), medianRatio: median(l) / median(u), cpuPerPacketUs, cpuRatio: cpuPerPacketUs.unlimited / cpuPerPacketUs.limited };
}

/** The scale part's printed lines (no I/O). */
export function scaleLines(s: LimitScale): string[] {
  const out = [
    `limits at scale: ${s.peers} peers, moat router unlimited vs every peer limited (default in/out ${UNREACHED_LIMIT}: reached by none),` +
      ` 64 B UDP flood round-robin over the peers, ${s.seconds} s per round, interleaved`,
    'round  config     received pps  offered pps  peers reached  router CPU µs/pkt',
    ...s.rounds.map((r, i) => `${String(Math.floor(i / 2) + 1).padStart(5)}  ${r.config.padEnd(9)}  ${int(r.pps).padStart(12)}  ${int(r.offeredPps).padStart(11)}  ${String(r.peersHit).padStart(13)}` +
      `  ${(Number.isFinite(cpuPerPacket(r)) ? cpuPerPacket(r).toFixed(3) : '-').padStart(17)}`),
  ];
  const f = (v?: number) => (v !== undefined && Number.isFinite(v) ? v.toFixed(3) : 'n/a');
  if (s.ratio !== undefined) {
    out.push(`limited / unlimited pps: ${f(s.ratio)} best of each, ${f(s.medianRatio)} median of each (target >= ${s.target.toFixed(2)})`);
  }
  if (s.cpuPerPacketUs) {
    out.push(`router CPU per received packet (median): unlimited ${f(s.cpuPerPacketUs.unlimited)} µs, limited ${f(s.cpuPerPacketUs.limited)} µs;` +
      ` unlimited / limited ${f(s.cpuRatio)} (the pps ratio of a saturated router)`);
  }
  if (s.rateLimitDrops !== undefined) out.push(`limited router's rate_limit drops: ${int(s.rateLimitDrops)} (0: the limits cost bookkeeping only)`);
  if (s.status !== 'ok') out.push(`limits at scale: ${s.status}${s.reason ? ': ' + s.reason.split('\n')[0] : ''}`);
  return out;
}

export async function measureLimitScale(o: LimitsOptions, step: (what: string) => void): Promise<LimitScale> {
  buildPeers();
  const res: LimitScale = { status: 'ok', peers: o.peers, seconds: o.scaleSeconds, rounds: [], target: LIMITS_SCALE_TARGET };
  const lab = trackLab(new Lab());
  const dir = trackDir(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-limits-')));
  try {
    const limited = (['in', 'out'] as const).flatMap((d) => ['--tuntap-router-peer-limit', `default ${d} ${UNREACHED_LIMIT}`]);
    const routers = {
      unlimited: await startScaleRouter(lab, dir, 'unlimited', ['--tuntap-router-stats', path.join(dir, 'unlimited.stats')]),
      limited: await startScaleRouter(lab, dir, 'limited', ['--tuntap-router-stats', path.join(dir, 'limited.stats'), ...limited]),
    };
    const dropsBefore = await routerRateLimitDrops(path.join(dir, 'limited.stats'));
    for (let k = 0; k < o.rounds; k++) {
      for (const config of ['unlimited', 'limited'] as ScaleConfig[]) {
        step(`scale round ${k + 1}: ${o.peers} peers, ${config}`);
        const r = routers[config];
        const got = await round(lab, r.gw, r.sock, r.pid, o.peers, o.scaleSeconds);
        step(`  -> ${int(got.pps)} pps received (offered ${int(got.offeredPps)}), ${got.peersHit} peers reached`);
        res.rounds.push({ ...got, config });
      }
    }
    const dropsAfter = await routerRateLimitDrops(path.join(dir, 'limited.stats'));
    if (dropsBefore !== undefined && dropsAfter !== undefined) res.rateLimitDrops = dropsAfter - dropsBefore;
    Object.assign(res, scaleRatios(res.rounds));
  } catch (e) {
    res.status = 'error';
    res.reason = (e as Error).message;
    if (res.rounds.some((r) => r.config === 'limited')) Object.assign(res, scaleRatios(res.rounds));
  } finally {
    await releaseLab(lab);
    releaseDir(dir);
  }
  return res;
}

// ---- the section ----

export interface LimitsSection {
  quick: boolean;
  rateSeconds: number;
  rates?: RateRow[];
  scale?: LimitScale;
}

/** Both parts as asked; progress on stderr. Cleans up after itself, also on failure. */
export async function measureLimits(o: LimitsOptions): Promise<LimitsSection> {
  requireRoot();
  buildFlood();
  const step = (what: string) => process.stderr.write(`  limits: ${what}\n`);
  const out: LimitsSection = { quick: o.quick, rateSeconds: o.rateSeconds };
  if (o.rates) out.rates = await measureRates(o, step);
  if (o.scale) out.scale = await measureLimitScale(o, step);
  return out;
}

/** The printed section (without the targets). */
export function limitsText(l: LimitsSection): string {
  const parts: string[] = [];
  if (l.rates) parts.push(ratesTable(l.rates, l.rateSeconds).join('\n'));
  if (l.scale) parts.push(scaleLines(l.scale).join('\n'));
  return parts.join('\n\n');
}

/** A part failed to run (not: missed its target). */
export function limitsFailed(l: LimitsSection): boolean {
  return l.scale?.status === 'error' || (l.rates ?? []).some((r) => r.error !== undefined);
}

async function main(): Promise<void> {
  const o = parseLimitsArgs(process.argv.slice(2));
  const started = new Date().toISOString();
  const loadBefore = os.loadavg();
  const l = await measureLimits(o);
  const text = limitsText(l) + '\n\n' + limitsTargetsText(l);
  process.stdout.write('\n' + text + `\nload average before/after: ${loadBefore[0].toFixed(2)} / ${os.loadavg()[0].toFixed(2)} (${os.cpus().length} cpus)\n`);
  const file = writeResults('limits', { started, finished: new Date().toISOString(), options: o, loadavgBefore: loadBefore, loadavgAfter: os.loadavg(), limits: l, table: text });
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  process.exitCode = limitsFailed(l) ? 1 : 0;
}

if (require.main === module) {
  main().catch(async (e) => {
    process.stderr.write(`limits: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
