// conntrack.ts: the router's cost of connection tracking. Two native routers
// (this process, each its tun in a namespace of its own) take the same load:
// 4 frame peers (conntrack-writer.ts, a child process) writing 100,000
// distinct UDP flows round and round, unpaced, 64-byte packets; the router
// writes them to its tun (the gateway kernel drops them: no route). One
// router's rules name a state, the other's are the same without it:
//   stateful   out allow NET/24 0.0.0.0/0 state new,established,related; out deny
//   stateless  out allow NET/24 0.0.0.0/0;                                out deny
// so every packet of the stateful router looks its flow up in a table of
// 100,000 (it stays full: the UDP timeout is raised to 600 s for the run).
// The figure is packets/s the router wrote to its tun (stats().txPackets),
// rounds interleaved (stateful, stateless, alternating which goes first).
// The ratio is best stateful / best stateless (as scale.ts: noise on a
// shared box only ever lowers a figure); the median of the rounds' own
// ratios is printed beside it. The bar: the ratio >= 0.9. The
// memory per entry is the process's RSS growth while the table filled,
// divided by its entries (beside it, what the table's slots take).
//
//   node dist/bench/conntrack.js [--quick] [--flows N] [--peers N] [--seconds S] [--rounds R]
//   npm run bench -- --conntrack-only [--quick]   (the same, as the bench's section; --skip-conntrack leaves it out)
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { conntrackDefaults } from '../src/config/router-config';
import { NativeRouter, NativeRule } from '../src/native';
import { Lab, requireRoot, sh, sleep } from '../test/helpers/netns';
import { startNativeRouter } from '../test/helpers/native-router';
import { ipToInt } from '../test/helpers/packets';
import { cpuNs, median, releaseLab, trackLab, until } from './lib';

export const CONNTRACK_TARGET = 0.9;

export interface ConntrackBenchOptions { quick: boolean; flows: number; peers: number; seconds: number; rounds: number }

export function parseConntrackArgs(argv: string[]): ConntrackBenchOptions {
  const o: ConntrackBenchOptions = { quick: false, flows: 100000, peers: 4, seconds: NaN, rounds: NaN };
  const num = (name: string, v: string | undefined, ok: (n: number) => boolean, range: string): number => {
    const n = Number(v);
    if (v === undefined || v === '' || !ok(n)) throw new Error(`${name} must be ${range}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--quick') o.quick = true;
    else if (a === '--flows') o.flows = num(a, argv[++i], (n) => Number.isInteger(n) && n >= 1 && n <= 1000000, 'an integer 1..1000000');
    else if (a === '--peers') o.peers = num(a, argv[++i], (n) => Number.isInteger(n) && n >= 1 && n <= 64, 'an integer 1..64');
    else if (a === '--seconds') o.seconds = num(a, argv[++i], (n) => n > 0 && n <= 30, '> 0 and <= 30');
    else if (a === '--rounds') o.rounds = num(a, argv[++i], (n) => Number.isInteger(n) && n >= 1 && n <= 10, 'an integer 1..10');
    else throw new Error(`unknown option ${a}`);
  }
  if (Number.isNaN(o.seconds)) o.seconds = o.quick ? 1 : 2;
  if (Number.isNaN(o.rounds)) o.rounds = o.quick ? 2 : 5;
  // each peer's flows within the default per-vassal share (65536)
  if (Math.ceil(o.flows / o.peers) > conntrackDefaults().ctMaxPerVassal) throw new Error(`--flows / --peers must be <= ${conntrackDefaults().ctMaxPerVassal} (a vassal's share of the table)`);
  return o;
}

type Variant = 'stateful' | 'stateless';
export interface ConntrackSection {
  options: ConntrackBenchOptions;
  pps: Record<Variant, number[]>;
  best: Record<Variant, number>;
  ratio: number;                // best stateful / best stateless
  roundRatios: number[];        // each round's stateful / stateless
  medianRoundRatio: number;
  nsPerPacket: Record<Variant, number[]>;        // the router's CPU per packet, each round
  medianNsPerPacket: Record<Variant, number>;
  entries: number;              // the stateful router's table once filled
  slots: number; slotBytes: number;
  rssGrowthBytes: number;
  bytesPerEntry: number;
  refused: number;              // conntrack_full + conntrack_vassal drops (should be 0)
}

function rules(net: string, stateful: boolean): NativeRule[] {
  const any = { sport: [], dport: [], icmpType: -1, proto: -1 };
  return [
    { action: 0, src: ipToInt(net), srcBits: 24, dst: 0, dstBits: 0, ...any, ...(stateful ? { states: 0b0111 } : {}) },
    { action: 1, src: 0, srcBits: 0, dst: 0, dstBits: 0, ...any },
  ];
}

function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

interface Rig { router: NativeRouter; writer: ChildProcess; lines: string[] }

async function startWriter(lab: Lab, r: Rig, sock: string, base: string, o: ConntrackBenchOptions): Promise<void> {
  r.writer = lab.spawn(process.execPath, [path.join(__dirname, 'conntrack-writer.js'), sock, base, String(o.peers), String(o.flows)]);
  r.writer.stdout!.setEncoding('utf8');
  r.writer.stdout!.on('data', (d: string) => r.lines.push(...d.split('\n').filter(Boolean)));
  await until(() => r.lines.includes('ready'), 30000, 'conntrack writer ready');
}

/** The routers' loop threads' CPU so far (ns): only the flooded one is busy in a round. */
const routersCpuNs = () => cpuNs(process.pid, 'moat-router');

/** Floods r's router for ms: packets/s it wrote to its tun meanwhile, and
 *  the routers' CPU per packet (ns), which the machine's slow and fast
 *  phases move less than the rate. */
async function round(r: Rig, ms: number): Promise<{ pps: number; nsPerPacket: number }> {
  const n = r.lines.filter((l) => l === 'done').length;
  const tx0 = r.router.stats().txPackets;
  const cpu0 = routersCpuNs();
  const t0 = process.hrtime.bigint();
  r.writer.stdin!.write(`run ${ms}\n`);
  await until(() => r.lines.filter((l) => l === 'done').length > n, ms + 30000, 'writer round done');
  const sent = r.router.stats().txPackets - tx0;
  const pps = sent / (Number(process.hrtime.bigint() - t0) / 1e9);
  const nsPerPacket = (routersCpuNs() - cpu0) / Math.max(1, sent);
  // let what the socket still holds drain before the next round
  for (let last = -1; ;) {
    await sleep(100);
    const tx = r.router.stats().txPackets;
    if (tx === last) break;
    last = tx;
  }
  return { pps, nsPerPacket };
}

export async function measureConntrack(o: ConntrackBenchOptions, say: (s: string) => void = () => undefined): Promise<ConntrackSection> {
  requireRoot();
  const lab = trackLab(new Lab());
  try {
    const rigs: Partial<Record<Variant, Rig>> = {};
    const variants: Variant[] = ['stateless', 'stateful'];
    for (const [i, v] of variants.entries()) {
      const ns = lab.netns(`ct${v[5]}`);
      const net = `10.${90 + i}.0.`;
      const { router, tun, sock } = startNativeRouter(lab, ns, `ct${v[5]}`, {});
      sh('ip', ['-n', ns, 'addr', 'add', `${net}1/24`, 'dev', tun]);
      sh('ip', ['-n', ns, 'link', 'set', tun, 'up']);
      router.setRules([], rules(net + '0', v === 'stateful'), undefined, undefined, { ...conntrackDefaults(), ctTimeoutUdp: 600 });
      rigs[v] = { router, writer: undefined as unknown as ChildProcess, lines: [] };
      await startWriter(lab, rigs[v]!, sock, net + '2', o);
    }
    const sf = rigs.stateful!, sl = rigs.stateless!;
    // Fill: the stateless router warms up first, then the RSS before and after the table fills.
    say('conntrack: warming up');
    await round(sl, 500);
    await sleep(200);
    const rss0 = rssBytes();
    await round(sf, Math.max(1000, o.seconds * 1000));
    await until(() => sf.router.stats().conntrack.entries >= o.flows, 10000, `${o.flows} tracked flows`).catch(() => undefined);
    await sleep(200);
    const rss1 = rssBytes();
    const st = sf.router.stats();
    const pps: Record<Variant, number[]> = { stateful: [], stateless: [] };
    const nsPerPacket: Record<Variant, number[]> = { stateful: [], stateless: [] };
    for (let r = 0; r < o.rounds; r++) {
      const order: Variant[] = r % 2 === 0 ? ['stateful', 'stateless'] : ['stateless', 'stateful'];
      for (const v of order) {
        const x = await round(rigs[v]!, o.seconds * 1000);
        pps[v].push(Math.round(x.pps));
        nsPerPacket[v].push(x.nsPerPacket);
        say(`conntrack: round ${r + 1} ${v}: ${Math.round(x.pps)} pps, router ${x.nsPerPacket.toFixed(0)} ns a packet`);
      }
    }
    const end = sf.router.stats();
    const best = { stateful: Math.max(...pps.stateful), stateless: Math.max(...pps.stateless) };
    const roundRatios = pps.stateful.map((x, i) => x / pps.stateless[i]);
    return {
      options: o, pps, best, ratio: best.stateful / best.stateless, roundRatios, medianRoundRatio: median(roundRatios),
      nsPerPacket, medianNsPerPacket: { stateful: median(nsPerPacket.stateful), stateless: median(nsPerPacket.stateless) },
      entries: st.conntrack.entries, slots: st.conntrack.slots, slotBytes: st.conntrack.slotBytes,
      rssGrowthBytes: rss1 - rss0, bytesPerEntry: st.conntrack.entries ? (rss1 - rss0) / st.conntrack.entries : NaN,
      refused: (end.drops.conntrack_full ?? 0) + (end.drops.conntrack_vassal ?? 0),
    };
  } finally {
    await releaseLab(lab);
  }
}

export function conntrackText(s: ConntrackSection): string {
  const k = (n: number) => Math.round(n).toLocaleString('en-US');
  const mib = (b: number) => (b / 1048576).toFixed(1);
  return [
    `conntrack: router pps with ${k(s.options.flows)} tracked flows (${s.options.peers} peers, 64-byte UDP, ${s.options.rounds} interleaved rounds of ${s.options.seconds} s, best)`,
    `  stateless rules: ${k(s.best.stateless)} pps (rounds ${s.pps.stateless.map(k).join(', ')})`,
    `  stateful rules:  ${k(s.best.stateful)} pps (rounds ${s.pps.stateful.map(k).join(', ')})`,
    `  ratio ${s.ratio.toFixed(3)} (best / best; the rounds' own ratios ${s.roundRatios.map((r) => r.toFixed(2)).join(', ')}, median ${s.medianRoundRatio.toFixed(2)}); the bar is ${CONNTRACK_TARGET}: ${s.ratio >= CONNTRACK_TARGET ? 'met' : 'NOT met'}`,
    `  router CPU per packet (median of rounds): stateless ${s.medianNsPerPacket.stateless.toFixed(0)} ns, stateful ${s.medianNsPerPacket.stateful.toFixed(0)} ns (rounds ${s.nsPerPacket.stateless.map((x) => x.toFixed(0)).join(', ')} and ${s.nsPerPacket.stateful.map((x) => x.toFixed(0)).join(', ')}): stateless / stateful ${(s.medianNsPerPacket.stateless / s.medianNsPerPacket.stateful).toFixed(3)}`,
    `  table: ${k(s.entries)} entries in ${k(s.slots)} slots of ${s.slotBytes} bytes (${mib(s.slots * s.slotBytes)} MiB reserved); refused flows ${s.refused}`,
    `  memory: RSS grew ${mib(s.rssGrowthBytes)} MiB while the table filled: ${s.bytesPerEntry.toFixed(0)} bytes per entry (slots x ${s.slotBytes} B / entries = ${(s.slots * s.slotBytes / Math.max(1, s.entries)).toFixed(0)} B once every page is touched)`,
  ].join('\n');
}

export async function main(argv: string[]): Promise<void> {
  const o = parseConntrackArgs(argv);
  const s = await measureConntrack(o, (l) => process.stderr.write(l + '\n'));
  process.stdout.write('\n' + conntrackText(s) + '\n');
  const { writeResults } = await import('./lib');
  const file = writeResults('conntrack', { date: new Date().toISOString(), ...s });
  process.stdout.write(`\nresults: ${path.relative(process.cwd(), file)}\n`);
  process.exitCode = s.ratio >= CONNTRACK_TARGET && s.entries >= o.flows ? 0 : 1;
}

if (require.main === module) {
  main(process.argv.slice(2)).catch(async (e) => {
    process.stderr.write(`conntrack: ${(e as Error).stack ?? e}\n`);
    const { cleanupAll } = await import('./lib');
    await cleanupAll();
    process.exit(1);
  });
}
