// scale.ts: moat's router with many connected peers.
//
//   node dist/bench/scale.js [--peers 1000] [--seconds 2] [--rounds 1]
//
// One gateway netns with moat's router (the CLI, as in run.ts) on a tun with
// 10.77.0.1/16. bench/gen/peers.c connects N peers in one process (peer i
// learns 10.77.1.0 + i from its first frame) and counts what reaches them;
// bench/gen/flood.c in the gateway sends an unpaced 64-byte UDP flood spread
// round-robin over the N addresses. Printed, for 1 peer and for N peers:
// received packets/s (at the peers), and the router's RSS growth per idle
// connected peer (RSS with N peers connected and their addresses learned,
// minus RSS before they connected, divided by N). Results also go to
// bench/results/scale-<timestamp>.json. Each round also prints where the
// machine's CPU went per received packet (router, receivers, the rest: mostly
// the unpaced generator), so a lower ratio can be told apart as the router's
// cost or the others'.
//
// Two kinds of peers, each 1 then N per round: framed peers (peers.c, as
// uWSGI's vassals and framed moat devices are: the router writes frames to
// their sockets) and one-hop peers (tun-peers.c, as moat's vassals are by
// default: each hands the router a tun device of its own, in a namespace
// made for the round, and the router writes packets to it; docs/one-hop.md).
// A third kind, the baseline: no router, the kernel's own path (the same
// generator through a veth pair to N UDP sockets in one process,
// bench/gen/udp-peers.c), so its N / 1 ratio shows what spreading the
// same flood over N receivers costs without moat (docs/scale.md).
// measureScale() is the measurement;
// run.ts (`npm run bench`) calls it too and prints its lines under its table.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, requireRoot, sh, uniqueName } from '../test/helpers/netns';
import { buildFlood, buildGen, cleanupAll, collect, cpuNs, FLOOD, lastJson, machineBusyNs, MOAT_CLI, ROOT, releaseDir, releaseLab, run, sleep, trackDir, trackLab, until, writeResults } from './lib';

// The peers generator, the gateway's address, the first peer's address and
// the flood's UDP port (limits.ts uses them too).
export const PEERS = path.join(ROOT, 'bench', 'bin', 'peers');
export const TUN_PEERS = path.join(ROOT, 'bench', 'bin', 'tun-peers');
export const UDP_PEERS = path.join(ROOT, 'bench', 'bin', 'udp-peers');
export const GW = '10.77.0.1';
export const BASE = '10.77.1.0';
export const PORT = 9000;
const PEERS_NET = '10.77.0.0/16';  // GW's network: every peer's address is in it

/** Compiles bench/gen/peers.c into bench/bin/peers (PEERS). */
export function buildPeers(): void {
  buildGen('peers');
}

/** The peers a round connects: framed (peers.c) or one hop (tun-peers.c);
 *  or, for the baseline, no router: UDP sockets behind a veth (udp-peers.c). */
export type PeerKind = 'framed' | 'one hop' | 'kernel';
export const PEER_KINDS: PeerKind[] = ['framed', 'one hop', 'kernel'];

/** The kernel baseline's namespaces: the generator's, and the receivers'
 *  behind a veth pair, which takes the peers' whole /16 as its own (a local
 *  route), so udp-peers.c can bind socket i to BASE + i. */
export interface KernelPath { gw: string; peers: string }

export function startKernelPath(lab: Lab): KernelPath {
  const gw = lab.netns('mkg'), peers = lab.netns('mkp');
  const a = uniqueName('mkv'), b = uniqueName('mkv');
  sh('ip', ['link', 'add', a, 'netns', gw, 'type', 'veth', 'peer', 'name', b, 'netns', peers]);
  for (const ns of [gw, peers]) sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns });
  sh('ip', ['-n', gw, 'addr', 'add', '10.78.0.1/24', 'dev', a]);
  sh('ip', ['-n', peers, 'addr', 'add', '10.78.0.2/24', 'dev', b]);
  sh('ip', ['-n', gw, 'link', 'set', a, 'up']);
  sh('ip', ['-n', peers, 'link', 'set', b, 'up']);
  sh('ip', ['-n', gw, 'route', 'add', PEERS_NET, 'via', '10.78.0.2']);
  sh('ip', ['-n', peers, 'route', 'add', 'local', PEERS_NET, 'dev', 'lo']);
  return { gw, peers };
}

function rssKiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) : NaN;
}

/** MOAT_SCALE_ROUTER_ARGS: more options for the moat CLI router, blank-separated
 *  (to compare settings, e.g. "--tuntap-router-hold 50"). */
function extraRouterArgs(): string[] {
  return (process.env.MOAT_SCALE_ROUTER_ARGS ?? '').split(/\s+/).filter(Boolean);
}

/** CPU time per received packet during the flood, µs: the router (all its
 *  threads), the receiving peers' process, and the rest of the machine's busy
 *  time (the generator, its kernel path into the tun, everything else). */
export interface CpuSplit { router: number; receivers: number; rest: number }

export interface Round { kind?: PeerKind; peers: number; received: number; pps: number; peersHit: number; sent: number; offeredPps: number; rssBeforeKiB: number; rssIdleKiB: number; cpu?: CpuSplit }

/** Where a round runs: moat's router (its gateway netns, socket and pid),
 *  and the kernel baseline's namespaces. */
interface Paths { gw: string; sock: string; routerPid: number; kernel?: KernelPath }

async function round(lab: Lab, paths: Paths, n: number, seconds: number, kind: PeerKind = 'framed'): Promise<Round> {
  const tag = String(Math.floor(Math.random() * 1e9));
  const kernel = kind === 'kernel' ? paths.kernel : undefined;
  if (kind === 'kernel' && !kernel) throw new Error('scale: a kernel round without the kernel path');
  const gw = kernel ? kernel.gw : paths.gw;
  const routerPid = kernel ? undefined : paths.routerPid;
  const rssBeforeKiB = routerPid ? rssKiB(routerPid) : NaN;
  const args = ['--socket', kernel ? '-' : paths.sock, '--count', String(n), '--base', BASE, '--gw', GW, '--port', String(PORT),
    '--tag', tag, '--duration', String(seconds + 20), '--idle', '1'];
  const tunNs = kind === 'one hop' ? tunPeersNetns(lab) : undefined;
  const peers = kind === 'framed' ? lab.spawn(PEERS, args)
    : kernel ? lab.spawn(UDP_PEERS, args, { ns: kernel.peers })
    : lab.spawn(TUN_PEERS, args, { ns: tunNs });
  const pc = collect(peers);
  await until(() => { if (peers.exitCode !== null) throw new Error(`peers exited: ${pc.err()}`); return pc.err().includes('"ready"'); }, 60000, 'peers connected');
  await sleep(1500);  // the router learns every address from the first frames
  const rssIdleKiB = routerPid ? rssKiB(routerPid) : NaN;
  // With MOAT_SCALE_PERF=1: syscalls and CPU time of the router (all its threads) during the flood.
  // MOAT_SCALE_PERF=record: a call-graph profile of the router per round, in /tmp/moat-scale-<kind>-<n>.perf;
  // =system: of the whole machine (every process and the kernel's threads), in /tmp/moat-scale-system-<kind>-<n>.perf.
  const system = process.env.MOAT_SCALE_PERF === 'system';
  if (system || (routerPid && process.env.MOAT_SCALE_PERF === 'record')) {
    const what = system ? ['-a'] : ['-g', '-p', String(routerPid)];
    const file = `/tmp/moat-scale-${system ? 'system-' : ''}${kind.replace(' ', '-')}-${n}.perf`;
    lab.spawn('perf', ['record', '-q', '-e', 'cpu-clock', '-F', '2000', ...what, '-o', file, '--', 'sleep', String(seconds)]);
  }
  const perf = routerPid && process.env.MOAT_SCALE_PERF === '1'
    ? lab.spawn('perf', ['stat', '-x,', '-e', 'raw_syscalls:sys_enter,task-clock,syscalls:sys_enter_read,syscalls:sys_enter_sendto', '-p', String(routerPid)])
    : undefined;
  const perfOut = perf ? collect(perf) : undefined;
  const routerNs = () => (routerPid ? cpuNs(routerPid) : 0);
  const cpu0 = { router: routerNs(), receivers: cpuNs(peers.pid!), busy: machineBusyNs() };
  // MOAT_SCALE_SHUFFLE=SEED: the peers in a shuffled order instead of address order.
  const shuffle = process.env.MOAT_SCALE_SHUFFLE ? ['--dst-shuffle', process.env.MOAT_SCALE_SHUFFLE] : [];
  const s = await run(lab, gw, FLOOD, ['send', '--dst', BASE, '--dst-count', String(n), ...shuffle, '--port', String(PORT), '--size', '64',
    '--duration', String(seconds), '--tag', tag], (seconds + 15) * 1000);
  const cpu1 = { router: routerNs(), receivers: cpuNs(peers.pid!), busy: machineBusyNs() };
  const sj = lastJson(s.stdout);
  if (!sj) throw new Error(`flood send failed: ${s.stderr}`);
  const r = await pc.done;
  const rj = lastJson(r.stdout);
  if (!rj) throw new Error(`peers failed: ${r.stderr}`);
  if (perf && perfOut) {
    perf.kill('SIGINT');
    await perfOut.done;
    const got = Number(rj.received) || 1;
    const per = perfOut.err().split('\n').map((l) => l.split(',')).filter((f) => f.length > 2 && /^\d/.test(f[0]))
      .map((f) => `${f[2]}=${(f[2] === 'task-clock' ? Number(f[0]) * 1000 / got : Number(f[0]) / got).toFixed(3)}`);
    process.stderr.write(`  router per received packet (${n} peers): ${per.join(' ')} (task-clock in us)\n`);
  }
  await sleep(500);  // the router closes the peers
  if (tunNs) await tunsGone(tunNs);
  const received = Number(rj.received);
  return { kind, peers: n, received, pps: Number(rj.pps), peersHit: Number(rj.peers_hit), sent: Number(sj.sent),
    offeredPps: Number(sj.pps), rssBeforeKiB, rssIdleKiB, cpu: cpuSplit(cpu0, cpu1, received) };
}

/** A namespace for one round's one-hop peers: their tun devices share the
 *  peers' /16, so the reverse-path filter must not insist on one device. */
function tunPeersNetns(lab: Lab): string {
  const ns = lab.netns('msv');
  sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1',
    'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.default.rp_filter=0'], { ns });
  return ns;
}

/** Waits (at most 120 s) until the one-hop peers' tun devices in ns are
 *  gone. The kernel unregisters each closed tun on its own, with waits for
 *  RCU: 1,000 of them take about 20 s, which the next rounds would
 *  otherwise run beside (docs/scale.md). */
async function tunsGone(ns: string): Promise<void> {
  const t0 = Date.now();
  const tuns = () => sh('ip', ['-o', 'link', 'show', 'type', 'tun'], { ns }).split('\n').filter(Boolean).length;
  let left = tuns();
  while (left > 0 && Date.now() - t0 < 120000) {
    await sleep(250);
    left = tuns();
  }
  process.stderr.write(`  the round's tun devices gone after ${((Date.now() - t0) / 1000).toFixed(1)} s${left ? ` (${left} left)` : ''}\n`);
}

/** µs per received packet of each part between two samples (ns); undefined if a sample failed. */
export function cpuSplit(a: { router: number; receivers: number; busy: number }, b: typeof a, received: number): CpuSplit | undefined {
  const router = b.router - a.router;
  const receivers = b.receivers - a.receivers;
  const busy = b.busy - a.busy;
  if (![router, receivers, busy].every(Number.isFinite) || received <= 0) return undefined;
  const us = (ns: number) => ns / 1000 / received;
  return { router: us(router), receivers: us(receivers), rest: us(Math.max(0, busy - router - receivers)) };
}

/**
 * A gateway netns of lab with a router (moat's CLI with routerArgs, or the
 * pathd build) on a tun with GW/16 and its socket at dir/<name>.sock; resolves
 * once the tun is up. round() runs against it.
 */
export async function startScaleRouter(lab: Lab, dir: string, name: string, routerArgs: string[], pathd?: string): Promise<{ gw: string; sock: string; pid: number }> {
  const gw = lab.netns('msg');
  sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns: gw });
  const tun = uniqueName('mst');
  const sock = path.join(dir, `${name}.sock`);
  const router = pathd
    ? lab.spawn(pathd, ['router', tun, sock], { ns: gw })
    : lab.spawn(process.execPath, [MOAT_CLI, '--tuntap-router', `${tun} ${sock}`, ...routerArgs], { ns: gw });
  const rc = collect(router);
  await until(() => { if (router.exitCode !== null) throw new Error(`router exited: ${rc.err()}`); return fs.existsSync(sock); }, 30000, 'router socket');
  sh('ip', ['-n', gw, 'addr', 'add', `${GW}/16`, 'dev', tun]);
  sh('ip', ['-n', gw, 'link', 'set', tun, 'up']);
  return { gw, sock, pid: router.pid! };
}

export interface ScaleOptions { peers: number; seconds: number; rounds: number }

export interface ScaleResult {
  peers: number;
  seconds: number;
  /** 1 peer then N peers, per round, in the order run. */
  rounds: Round[];
  /** Best N-peer received pps / best 1-peer received pps, framed peers. */
  ratio: number;
  /** The same with one-hop peers (NaN when not measured). */
  ratioOneHop: number;
  /** The same without moat: the kernel's path to UDP sockets (the baseline; NaN when not measured). */
  ratioKernel: number;
  /** Router RSS growth per idle connected peer, one per N-peer round. */
  rssPerIdlePeerKiB: number[];
  /** The pathd build that was the router (MOAT_SCALE_PATHD), if any. */
  pathd?: string;
  /** The printed summary: table of rounds, ratio, RSS per peer. */
  lines: string[];
}

/** The ratio N peers / 1 peer that moat aims for. */
export const SCALE_TARGET = 0.9;   // issue 19: 1000 peers at least 0.9 of one

/** Throws on values scale.ts and run.ts's --scale-* options do not take. */
export function checkScaleOptions(o: ScaleOptions): void {
  if (!(Number.isInteger(o.peers) && o.peers >= 1 && o.peers <= 20000)) throw new Error('peers must be an integer 1..20000');
  if (!(o.seconds > 0 && o.seconds <= 30)) throw new Error('seconds must be > 0 and <= 30');
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && o.rounds <= 5)) throw new Error('rounds must be an integer 1..5');
}

/** Ratio, RSS per idle peer and printed lines from the rounds (no I/O). */
export function summarize(o: ScaleOptions, results: Round[]): Pick<ScaleResult, 'ratio' | 'ratioOneHop' | 'ratioKernel' | 'rssPerIdlePeerKiB' | 'lines'> {
  const n = o.peers;
  const kindOf = (r: Round): PeerKind => r.kind ?? 'framed';
  const best = (rs: Round[]) => (rs.length ? Math.max(...rs.map((r) => r.pps)) : NaN);
  const ratioOf = (kind: PeerKind) => {
    const rs = results.filter((r) => kindOf(r) === kind);
    return best(rs.filter((r) => r.peers === n)) / best(rs.filter((r) => r.peers === 1));
  };
  const ratio = ratioOf('framed');
  const ratioOneHop = ratioOf('one hop');
  const ratioKernel = ratioOf('kernel');
  const many = results.filter((r) => r.peers === n && kindOf(r) === 'framed');
  const rssPerIdlePeerKiB = many.map((r) => (r.rssIdleKiB - r.rssBeforeKiB) / n);
  const int = (v: number) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en-US') : 'n/a');
  const us = (v: number | undefined) => (v !== undefined && Number.isFinite(v) ? v.toFixed(2) : 'n/a');
  const ratioText = (v: number) => (Number.isFinite(v) ? v.toFixed(2) : 'n/a');
  const lines = [
    'peers  kind     received pps  offered pps  peers reached  CPU µs per received packet: router  receivers  rest',
    ...results.map((r) => `${String(r.peers).padStart(5)}  ${kindOf(r).padEnd(7)}  ${int(r.pps).padStart(12)}  ${int(r.offeredPps).padStart(11)}  ${String(r.peersHit).padStart(13)}` +
      `  ${(kindOf(r) === 'kernel' ? '-' : us(r.cpu?.router)).padStart(34)}  ${us(r.cpu?.receivers).padStart(9)}  ${us(r.cpu?.rest).padStart(4)}`),
    `${n} peers / 1 peer${o.rounds > 1 ? ' (best of each)' : ''}: framed ${ratioText(ratio)}, one hop ${ratioText(ratioOneHop)} (target >= ${SCALE_TARGET.toFixed(2)})` +
      (Number.isFinite(ratioKernel) ? `; without moat (the kernel's path to ${n} UDP sockets, the same generator) ${ratioText(ratioKernel)}` : ''),
    `router RSS per idle framed peer: ${rssPerIdlePeerKiB.map((k) => k.toFixed(1)).join(', ')} KiB (RSS with ${n} peers connected and learned minus before, / ${n})`,
  ];
  return { ratio, ratioOneHop, ratioKernel, rssPerIdlePeerKiB, lines };
}

/** A failed scale run, with the rounds that completed before it failed. */
export class ScaleError extends Error {
  constructor(message: string, readonly rounds: Round[]) { super(message); }
}

/**
 * Builds the generators and a gateway netns with moat's router, runs `rounds`
 * times 1 peer then `peers` peers, removes everything (also on failure: a
 * ScaleError carries the completed rounds) and returns the figures.
 * Progress goes to stderr.
 */
export async function measureScale(o: ScaleOptions): Promise<ScaleResult> {
  checkScaleOptions(o);
  const n = o.peers;
  const seconds = o.seconds;
  // MOAT_SCALE_PATHD=FILE: the router is that bench/bin/pathd build (the
  // native core without Node), e.g. to compare two builds of the data path.
  const pathd = process.env.MOAT_SCALE_PATHD || undefined;
  if (pathd && !fs.existsSync(pathd)) throw new ScaleError(`MOAT_SCALE_PATHD: ${pathd} does not exist (bench/profile.sh builds bench/bin/pathd)`, []);
  // MOAT_SCALE_KINDS: a comma-separated subset of the kinds (to compare builds on one).
  const only = (process.env.MOAT_SCALE_KINDS ?? '').split(',').map((k) => k.trim()).filter(Boolean);
  const unknown = only.filter((k) => !(PEER_KINDS as string[]).includes(k));
  if (unknown.length) throw new ScaleError(`MOAT_SCALE_KINDS: ${unknown.join(', ')}: not one of ${PEER_KINDS.join(', ')}`, []);
  requireRoot();
  buildFlood();
  buildPeers();
  buildGen('tun-peers');
  buildGen('udp-peers');
  const lab = trackLab(new Lab());
  const dir = trackDir(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-scale-')));
  const results: Round[] = [];
  try {
    const { gw, sock, pid } = await startScaleRouter(lab, dir, 'router', extraRouterArgs(), pathd);
    // The pathd build takes no tuns (no handoff): framed peers only (and the baseline).
    const kinds = PEER_KINDS.filter((k) => !(pathd && k === 'one hop') && (only.length === 0 || only.includes(k)));
    // The kernel baseline's namespaces only when it is measured.
    const paths: Paths = { gw, sock, routerPid: pid, kernel: kinds.includes('kernel') ? startKernelPath(lab) : undefined };
    for (let k = 0; k < o.rounds; k++) {
      for (const [kind, count] of kinds.flatMap((kd) => [[kd, 1], [kd, n]] as Array<[PeerKind, number]>)) {
        process.stderr.write(`scale: ${count} ${kind} peer(s)\n`);
        const r = await round(lab, paths, count, seconds, kind);
        process.stderr.write(`  -> ${Math.round(r.pps)} pps received (offered ${Math.round(r.offeredPps)}), ${r.peersHit} peers reached\n`);
        results.push(r);
      }
    }
  } catch (e) {
    throw new ScaleError((e as Error).message, results);
  } finally {
    await releaseLab(lab);
    releaseDir(dir);
  }
  return { peers: n, seconds, rounds: results, pathd, ...summarize(o, results) };
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o: ScaleOptions = { peers: 1000, seconds: 2, rounds: 1 };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--peers') o.peers = Number(argv[++i]);
    else if (argv[i] === '--seconds') o.seconds = Number(argv[++i]);
    else if (argv[i] === '--rounds') o.rounds = Number(argv[++i]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  try { checkScaleOptions(o); } catch (e) { throw new Error(`--${(e as Error).message}`); }
  const r = await measureScale(o);
  const lines = [...r.lines, `load average: ${os.loadavg()[0].toFixed(2)} (${os.cpus().length} cpus)`];
  process.stdout.write(lines.join('\n') + '\n');
  const file = writeResults('scale', { peers: r.peers, seconds: r.seconds, results: r.rounds, ratio: r.ratio, ratioOneHop: r.ratioOneHop, ratioKernel: r.ratioKernel, rssPerIdlePeerKiB: r.rssPerIdlePeerKiB, pathd: r.pathd, loadavg: os.loadavg() });
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
}

if (require.main === module) {
  main().catch(async (e) => {
    process.stderr.write(`scale: ${(e as Error).stack ?? e}\n`);
    await cleanupAll();
    process.exit(1);
  });
}
