// limits.ts: per-peer rate limits (issue 16) measured, in two parts.
//
//   node dist/bench/limits.js [--quick] [--skip-rates] [--skip-scale]
//                             [--peers N] [--seconds S] [--rounds R]
//
// rates: moat's router and device (scenarios.ts's moat path, 192.168.0.1 <->
//   192.168.0.2, offloads on as in the main table), the router given `--tuntap-router-peer-limit "192.168.0.2
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
//   bookkeeping, not of limiting. peers.c connects N peers (1000) to each
//   router and stays connected; then unpaced 64-byte floods spread over the
//   N addresses (flood --dst-count) take turns, unlimited/limited/unlimited/
//   limited..., short and many: on this shared 2-core box one config's pps
//   moves by 3x from one flood to the next (other work takes the CPUs), and
//   reconnecting 1000 peers per flood (scale.ts's rounds) left too few
//   floods to see 5%. A flood's figure is what the router handed its peers
//   (the sum of their tx_packets on its stats socket) over the sender's
//   time. The ratio of the best limited flood to the best unlimited one is
//   the figure (target >= 0.95; best, because noise only lowers a figure);
//   beside it the median of each round's own ratio and the router's CPU
//   time per packet (all its threads, /proc schedstat).
//
// measureLimits() is the measurement; run.ts (`npm run bench`) runs it as its
// limits section. Standalone, results go to bench/results/limits-<timestamp>.json.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lab, requireRoot } from '../test/helpers/netns';
import { alignColumns, buildFlood, cleanupAll, collect, cpuNs, FLOOD, lastJson, releaseDir, releaseLab, run, sleep, trackDir, trackLab, until, writeResults } from './lib';
import { Dir, tcp, udpStep } from './measure';
import { BASE, buildPeers, GW, PEERS, PORT, startScaleRouter } from './scale';
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
  /** Seconds per scale flood (2, 1 quick). */
  scaleSeconds: number;
  /** Rounds of (unlimited, limited) floods (8, 5 quick). */
  rounds: number;
}

export function limitsDefaults(quick: boolean): LimitsOptions {
  return { quick, rates: true, scale: true, peers: 1000, rateSeconds: quick ? 2 : 4, scaleSeconds: quick ? 1 : 2, rounds: quick ? 5 : 8 };
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
    else if (a === '--seconds') o.scaleSeconds = num(a, (v) => v > 0 && v <= 10, '> 0 and <= 10');
    else if (a === '--rounds') o.rounds = num(a, (v) => Number.isInteger(v) && v >= 1 && v <= 20, 'an integer 1..20');
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
  const { lines, rule } = alignColumns([head, ...cells], 3);
  return [
    `limits: received rate against the limit (moat router + device, ${seconds} s per run; UDP paced at ${OFFER}x the limit,` +
      ' rate from first to last arrival, the queue\'s drain included; TCP: iperf3 payload, one stream)',
    lines[0].trimEnd(), rule, ...lines.slice(1).map((l) => l.trimEnd()),
  ];
}

// ---- scale: N peers, unlimited and each limited ----

export type ScaleConfig = 'unlimited' | 'limited';

/** One flood toward one router's N peers. */
export interface Burst {
  config: ScaleConfig;
  /** Packets the router handed its peers (sum of the peers' tx_packets, stats socket). */
  delivered: number;
  /** delivered / the sender's elapsed time. */
  pps: number;
  offeredPps: number;
  /** How many of the N peers got at least one packet. */
  peersHit: number;
  /** The router's CPU time (all threads) from the flood's start to 200 ms after it, ms. */
  routerCpuMs: number;
}

export interface LimitScale {
  status: 'ok' | 'error';
  reason?: string;
  peers: number;
  /** Seconds per burst. */
  seconds: number;
  /** In the order run: unlimited, limited, unlimited, limited, ... */
  bursts: Burst[];
  /** Best limited burst / best unlimited burst: the figure set against the target. */
  ratio?: number;
  /** Median over rounds of limited / unlimited of the same round (neighbours in time). */
  pairRatio?: number;
  /** The router's median CPU µs per delivered packet, each config. */
  cpuPerPacketUs?: Record<ScaleConfig, number>;
  /** Unlimited / limited median CPU per packet (1: the limits cost nothing; 0.95: 5%). */
  cpuRatio?: number;
  /** The limited router's rate_limit drops over all its bursts (0: no peer reached its limit). */
  rateLimitDrops?: number;
  target: number;
}

const median = (v: number[]) => {
  const s = [...v].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};

/** A burst's router CPU µs per delivered packet (NaN when unknown). */
export function cpuPerPacket(b: Burst): number {
  return Number.isFinite(b.routerCpuMs) && b.delivered > 0 ? (b.routerCpuMs * 1000) / b.delivered : NaN;
}

/** Ratios from the bursts (no I/O). Bursts alternate unlimited, limited: round k is bursts 2k and 2k+1. */
export function scaleRatios(bursts: Burst[]): Pick<LimitScale, 'ratio' | 'pairRatio' | 'cpuPerPacketUs' | 'cpuRatio'> {
  const of = (c: ScaleConfig) => bursts.filter((b) => b.config === c);
  const best = (c: ScaleConfig) => (of(c).length ? Math.max(...of(c).map((b) => b.pps)) : NaN);
  const pairs: number[] = [];
  for (let i = 0; i + 1 < bursts.length; i += 2) {
    const [u, l] = [bursts[i], bursts[i + 1]];
    if (u.config === 'unlimited' && l.config === 'limited' && u.pps > 0) pairs.push(l.pps / u.pps);
  }
  const cpu = (c: ScaleConfig) => median(of(c).map(cpuPerPacket).filter(Number.isFinite));
  const cpuPerPacketUs = { unlimited: cpu('unlimited'), limited: cpu('limited') };
  return { ratio: best('limited') / best('unlimited'), pairRatio: median(pairs), cpuPerPacketUs, cpuRatio: cpuPerPacketUs.unlimited / cpuPerPacketUs.limited };
}

/** The scale part's printed lines (no I/O). */
export function scaleLines(s: LimitScale): string[] {
  const out = [
    `limits at scale: ${s.peers} peers connected to each of two moat routers, one unlimited, one where every peer has a limit none reaches` +
      ` (default in/out ${UNREACHED_LIMIT}); 64 B UDP floods round-robin over the peers, ${s.seconds} s each, taking turns`,
    'round  config     delivered pps  offered pps  peers reached  router CPU µs/pkt',
    ...s.bursts.map((b, i) => `${String(Math.floor(i / 2) + 1).padStart(5)}  ${b.config.padEnd(9)}  ${int(b.pps).padStart(13)}  ${int(b.offeredPps).padStart(11)}` +
      `  ${String(b.peersHit).padStart(13)}  ${(Number.isFinite(cpuPerPacket(b)) ? cpuPerPacket(b).toFixed(3) : '-').padStart(17)}`),
  ];
  const f = (v?: number) => (v !== undefined && Number.isFinite(v) ? v.toFixed(3) : 'n/a');
  if (s.ratio !== undefined) {
    out.push(`limited / unlimited pps: ${f(s.ratio)} best of each (target >= ${s.target.toFixed(2)}); ${f(s.pairRatio)} median of the rounds' own ratios`);
  }
  if (s.cpuPerPacketUs) {
    out.push(`router CPU per delivered packet (median): unlimited ${f(s.cpuPerPacketUs.unlimited)} µs, limited ${f(s.cpuPerPacketUs.limited)} µs;` +
      ` unlimited / limited ${f(s.cpuRatio)}`);
  }
  if (s.rateLimitDrops !== undefined) out.push(`limited router's rate_limit drops: ${int(s.rateLimitDrops)} (0: the limits cost bookkeeping only)`);
  if (s.status !== 'ok') out.push(`limits at scale: ${s.status}${s.reason ? ': ' + s.reason.split('\n')[0] : ''}`);
  return out;
}

/** Per peer with an address: packets handed to it so far; and the router's rate_limit drops. */
async function peerCounters(file: string): Promise<{ tx: Map<string, number>; rateLimit: number }> {
  const doc = await statsDoc(file);
  if (!doc) throw new Error(`no stats document from ${file}`);
  const tx = new Map<string, number>();
  for (const p of (doc.peers ?? []) as Array<{ addr: string; tx_packets: number }>) if (p.addr) tx.set(p.addr, p.tx_packets);
  const drops = (doc.moat as { drops?: Drops } | undefined)?.drops;
  return { tx, rateLimit: drops?.rate_limit ?? 0 };
}

interface ScaleRouter { gw: string; sock: string; pid: number; stats: string }

/** A burst toward r's peers: the flood, then what the router handed them. */
async function burst(lab: Lab, r: ScaleRouter, config: ScaleConfig, peers: number, seconds: number): Promise<Burst> {
  const before = await peerCounters(r.stats);
  const cpu0 = cpuNs(r.pid);
  const s = await run(lab, r.gw, FLOOD, ['send', '--dst', BASE, '--dst-count', String(peers), '--port', String(PORT), '--size', '64',
    '--duration', String(seconds), '--tag', '7'], (seconds + 15) * 1000);
  await sleep(200);  // what the router still holds leaves
  const routerCpuMs = (cpuNs(r.pid) - cpu0) / 1e6;
  const sj = lastJson(s.stdout);
  if (!sj) throw new Error(`flood send failed: ${s.stderr}`);
  const after = await peerCounters(r.stats);
  let delivered = 0, peersHit = 0;
  for (const [addr, tx] of after.tx) {
    const d = tx - (before.tx.get(addr) ?? 0);
    delivered += d;
    if (d > 0) peersHit++;
  }
  const elapsed = Number(sj.elapsed);
  return { config, delivered, pps: elapsed > 0 ? delivered / elapsed : NaN, offeredPps: Number(sj.pps), peersHit, routerCpuMs };
}

/**
 * Two gateway netns with a router each (unlimited; every peer limited), N
 * peers connected to each for the whole part (bench/gen/peers.c: it reads
 * every frame; its own count is not used), then `rounds` times a flood
 * toward the unlimited router's peers and one toward the limited router's.
 */
export async function measureLimitScale(o: LimitsOptions, step: (what: string) => void): Promise<LimitScale> {
  buildPeers();
  const res: LimitScale = { status: 'ok', peers: o.peers, seconds: o.scaleSeconds, bursts: [], target: LIMITS_SCALE_TARGET };
  const lab = trackLab(new Lab());
  const dir = trackDir(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-limits-')));
  // Bounds the peers processes: the whole part with room to spare (peers.c takes at most 600 s).
  const peersSeconds = Math.min(600, 120 + o.rounds * 2 * (o.scaleSeconds + 5));
  try {
    const limited = (['in', 'out'] as const).flatMap((d) => ['--tuntap-router-peer-limit', `default ${d} ${UNREACHED_LIMIT}`]);
    const routers = {} as Record<ScaleConfig, ScaleRouter>;
    for (const config of ['unlimited', 'limited'] as ScaleConfig[]) {
      step(`scale: ${config} router, ${o.peers} peers connecting`);
      const stats = path.join(dir, `${config}.stats`);
      const r = await startScaleRouter(lab, dir, config, ['--tuntap-router-stats', stats, ...(config === 'limited' ? limited : [])]);
      const peers = lab.spawn(PEERS, ['--socket', r.sock, '--count', String(o.peers), '--base', BASE, '--gw', GW, '--port', String(PORT),
        '--tag', '7', '--duration', String(peersSeconds), '--idle', '0']);
      const pc = collect(peers);
      await until(() => { if (peers.exitCode !== null) throw new Error(`peers exited: ${pc.err()}`); return pc.err().includes('"ready"'); }, 60000, 'peers connected');
      routers[config] = { ...r, stats };
      const deadline = Date.now() + 15000;
      for (;;) {
        const learned = (await peerCounters(stats)).tx.size;
        if (learned >= o.peers) break;
        if (Date.now() > deadline) throw new Error(`${config} router learned ${learned} of ${o.peers} peers' addresses`);
        await sleep(250);
      }
    }
    const dropsBefore = (await peerCounters(routers.limited.stats)).rateLimit;
    for (let k = 0; k < o.rounds; k++) {
      for (const config of ['unlimited', 'limited'] as ScaleConfig[]) {
        const b = await burst(lab, routers[config], config, o.peers, o.scaleSeconds);
        step(`scale round ${k + 1} ${config}: ${int(b.pps)} pps delivered (offered ${int(b.offeredPps)}), ${b.peersHit} peers reached`);
        res.bursts.push(b);
      }
    }
    res.rateLimitDrops = (await peerCounters(routers.limited.stats)).rateLimit - dropsBefore;
    Object.assign(res, scaleRatios(res.bursts));
  } catch (e) {
    res.status = 'error';
    res.reason = (e as Error).message;
    if (res.bursts.some((b) => b.config === 'limited')) Object.assign(res, scaleRatios(res.bursts));
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
