// measure.ts: the figures, each bounded in count and time:
//   udpStep   one paced or unpaced 64-byte UDP run between the two namespaces
//   flood     unpaced run, then: does a ping still answer through the path?
//   pacedMax  the highest paced rate with under 1% loss (doubling, then bisection)
//   tcp       iperf3, one stream
//   rtt       ping p50 / p99
import { histogram } from './rtt-histogram';
import { Lab } from '../test/helpers/netns';
import { collect, FLOOD, lastJson, percentile, run, sleep } from './lib';
import { GW_ADDR, Scenario, V_ADDR } from './scenarios';

export type Dir = 'v2g' | 'g2v';
export const DIRS: Dir[] = ['v2g', 'g2v'];
export const DIR_LABEL: Record<Dir, string> = { v2g: 'vassal->gateway', g2v: 'gateway->vassal' };

const UDP_PORT = 9000;
const TCP_PORT = 5201;
let nextTag = (Date.now() % 100000) * 1000;

function ends(sc: Scenario, dir: Dir): { from: string; to: string; dst: string } {
  return dir === 'v2g' ? { from: sc.vns, to: sc.gw, dst: GW_ADDR } : { from: sc.gw, to: sc.vns, dst: V_ADDR };
}

export interface StepResult {
  rate: number | null;   // offered packets/s, null = unpaced
  sent: number;
  txPps: number;
  received: number;
  rxPps: number;          // received / (last - first arrival)
  loss: number;           // 1 - received / sent
}

/** One run of the generator: a receiver in the destination netns, a sender in the source. */
export async function udpStep(sc: Scenario, dir: Dir, rate: number | null, seconds: number, size = 64): Promise<StepResult> {
  const { from, to, dst } = ends(sc, dir);
  const flow = await startUdp(sc.lab, { from, to, dst, port: UDP_PORT, rate, seconds, size, idle: 0.5 });
  return flow.done;
}

export interface UdpFlowSpec {
  from: string;          // the sender's netns
  to: string;            // the receiver's netns
  dst: string;           // the receiver's address (in `to`)
  port: number;
  rate: number | null;   // packets/s, null = unpaced
  seconds: number;       // the sender's bound
  size: number;          // IPv4 packet bytes
  idle: number;          // the receiver stops this long after the last packet, s
}

/**
 * Starts one run of the generator (receiver bound, then the sender) and
 * returns once the sender is started: `done` resolves with the figures
 * after the sender's bound or after stop() (SIGTERM: the sender ends early
 * and reports what it sent). Both processes are killed by their pid at
 * seconds + 10 s at the latest.
 */
export async function startUdp(lab: Lab, f: UdpFlowSpec): Promise<{ stop: () => void; done: Promise<StepResult> }> {
  const tag = String(++nextTag >>> 0);
  const recv = lab.spawn(FLOOD, ['recv', '--bind', f.dst, '--port', String(f.port), '--duration', String(f.seconds + 4),
    '--idle', String(f.idle), '--tag', tag], { ns: f.to });
  const rc = collect(recv);
  const killRecv = setTimeout(() => recv.kill('SIGKILL'), (f.seconds + 10) * 1000);
  const reap = () => { clearTimeout(killRecv); if (recv.exitCode === null) recv.kill('SIGKILL'); };
  try {
    // Wait for the receiver to be bound (it says so on stderr).
    const readyBy = Date.now() + 5000;
    while (!rc.err().includes('"ready"')) {
      if (recv.exitCode !== null || Date.now() > readyBy) throw new Error(`flood recv did not start: ${rc.err()}`);
      await sleep(20);
    }
  } catch (e) {
    reap();
    throw e;
  }
  const args = ['send', '--dst', f.dst, '--port', String(f.port), '--size', String(f.size), '--duration', String(f.seconds), '--tag', tag];
  if (f.rate !== null) args.push('--rate', String(Math.round(f.rate)));
  const send = lab.spawn(FLOOD, args, { ns: f.from });
  send.stdin?.end();
  const sc = collect(send);
  const killSend = setTimeout(() => send.kill('SIGKILL'), (f.seconds + 10) * 1000);
  const done = (async (): Promise<StepResult> => {
    try {
      const s = await sc.done;
      const sj = lastJson(s.stdout);
      if (!sj) throw new Error(`flood send failed: ${s.stderr || s.stdout}`);
      const r = await rc.done;
      const rj = lastJson(r.stdout);
      if (!rj) throw new Error(`flood recv failed: ${r.stderr}`);
      const sent = Number(sj.sent);
      const received = Number(rj.received);
      return {
        rate: f.rate, sent, txPps: Number(sj.pps), received, rxPps: Number(rj.pps),
        loss: sent > 0 ? Math.max(0, 1 - received / sent) : 1,
      };
    } finally {
      clearTimeout(killSend);
      if (send.exitCode === null) send.kill('SIGKILL');
      reap();
    }
  })();
  return { stop: () => { if (send.exitCode === null) send.kill('SIGTERM'); }, done };
}

export interface FloodResult extends StepResult {
  aliveAfter: boolean;
  deviceExited?: boolean;
  peers?: unknown;
}

export async function flood(sc: Scenario, dir: Dir, seconds: number): Promise<FloodResult> {
  const r = await udpStep(sc, dir, null, seconds);
  let alive = false;
  for (let i = 0; i < 3 && !alive; i++) alive = await sc.alive();
  const out: FloodResult = { ...r, aliveAfter: alive };
  const dev = (sc as { deviceRunning?: () => boolean }).deviceRunning;
  if (dev) out.deviceExited = !dev.call(sc);
  const peers = await sc.stats();
  if (peers) out.peers = peers;
  return out;
}

export interface PacedResult {
  maxPps: number;           // highest offered rate that passed (0 if none)
  steps: Array<StepResult & { pass: boolean; aliveAfter: boolean; note?: string }>;
  lostVassal: number;       // steps after which the path had to be rebuilt
}

/**
 * Doubling from `start` until a step fails, then bisection, at most maxSteps
 * steps of `seconds` each. A step passes when under 1% of the packets sent are
 * lost and the sender really offered (at least 99% of) the rate.
 */
export async function pacedMax(sc: Scenario, dir: Dir, opts: { start: number; cap: number; seconds: number; maxSteps: number }): Promise<PacedResult> {
  let lo = 0;
  let hi = Infinity;
  let rate = opts.start;
  const res: PacedResult = { maxPps: 0, steps: [], lostVassal: 0 };
  for (let i = 0; i < opts.maxSteps; i++) {
    const r = await udpStep(sc, dir, rate, opts.seconds);
    const offered = r.sent >= 0.99 * rate * opts.seconds;
    let pass = r.loss < 0.01 && offered;
    let aliveAfter = true;
    if (!pass) {
      aliveAfter = await sc.alive() || await sc.alive();
      if (!aliveAfter) { res.lostVassal++; pass = false; await sc.restart(); }
    }
    res.steps.push({ ...r, pass, aliveAfter, note: offered ? undefined : 'sender could not offer this rate' });
    if (pass) lo = rate; else hi = rate;
    if (hi === Infinity) {
      if (rate >= opts.cap) break;
      rate = Math.min(opts.cap, rate * 2);
    } else {
      if (lo > 0 && (hi - lo) / hi < 0.05) break;
      rate = lo > 0 ? Math.round((lo + hi) / 2) : Math.round(hi / 4);
      if (rate < 1000) break;
    }
  }
  res.maxPps = lo;
  return res;
}

export interface TcpResult { mbps: number; retransmits?: number; error?: string; /** Every run's Mbit/s, where the figure is the best of several (run.ts's turns). */ runs?: number[] }

export async function tcp(sc: Scenario, dir: Dir, seconds: number): Promise<TcpResult> {
  const { from, to, dst } = ends(sc, dir);
  const server = sc.lab.spawn('iperf3', ['-s', '-1', '-B', dst, '-p', String(TCP_PORT)], { ns: to });
  const sc_ = collect(server);
  const killer = setTimeout(() => server.kill('SIGKILL'), (seconds + 20) * 1000);
  try {
    let r = null;
    for (let attempt = 0; attempt < 20; attempt++) {
      await sleep(100);
      r = await run(sc.lab, from, 'iperf3', ['-c', dst, '-p', String(TCP_PORT), '-t', String(seconds), '-J'], (seconds + 15) * 1000);
      if (r.code === 0 || !/refused/i.test(r.stdout + r.stderr)) break;
    }
    let j: { end?: { sum_received?: { bits_per_second?: number }; sum_sent?: { retransmits?: number } }; error?: string } = {};
    try { j = JSON.parse(r!.stdout); } catch { /* below */ }
    const bps = j.end?.sum_received?.bits_per_second;
    if (typeof bps !== 'number') return { mbps: NaN, error: j.error ?? (r!.stderr || 'iperf3 failed').slice(0, 300) };
    return { mbps: bps / 1e6, retransmits: j.end?.sum_sent?.retransmits };
  } finally {
    clearTimeout(killer);
    if (server.exitCode === null) server.kill('SIGKILL');
    await sc_.done;
  }
}

export interface RttResult {
  sent: number; received: number; p50: number; p90: number; p99: number; max: number;
  /** Pings per bucket of rtt-histogram.ts's RTT_BUCKETS_MS. */
  histogram: number[];
  error?: string;
}

export async function rtt(sc: Scenario, dir: Dir, count: number): Promise<RttResult> {
  const s = await pingTimes(sc, dir, count);
  return rttSummary(count, s.times, s.error);
}

/** count pings at 0.01 s through sc in direction dir: the round-trip times (ms) received. */
export async function pingTimes(sc: Scenario, dir: Dir, count: number): Promise<{ times: number[]; error?: string }> {
  const { from, dst } = ends(sc, dir);
  return pingFrom(sc.lab, from, dst, count);
}

/** count pings at 0.01 s from netns `from` to dst: the round-trip times (ms) received. */
export async function pingFrom(lab: Lab, from: string, dst: string, count: number): Promise<{ times: number[]; error?: string }> {
  const r = await run(lab, from, 'ping', ['-n', '-c', String(count), '-i', '0.01', '-W', '1', dst], count * 50 + 5000);
  const times = [...r.stdout.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]));
  return { times, ...(times.length === 0 ? { error: (r.stderr || r.stdout).slice(0, 300) } : {}) };
}

export function rttSummary(sent: number, times: number[], error?: string): RttResult {
  const sorted = [...times].sort((a, b) => a - b);
  return {
    sent, received: sorted.length, p50: percentile(sorted, 50), p90: percentile(sorted, 90), p99: percentile(sorted, 99),
    max: sorted.length ? sorted[sorted.length - 1] : NaN, histogram: histogram(sorted),
    ...(sorted.length === 0 ? { error: error ?? 'no reply' } : {}),
  };
}
