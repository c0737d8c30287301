// one-hop.ts: what would a router that held each vassal's tun itself give?
// (docs/rates.md, "One hop instead of two".) moat's path has two hops: the
// vassal's tun -> the device (in the vassal) -> a unix socket -> the router ->
// the host's tun, four copies a packet and two threads to wake. A router
// handed the vassal's tun fd (by the emperor, which makes it) would have one:
// two copies, one thread. bench/gen/tunrelay.c is that hop with nothing else
// (no firewall, limits, accounting): an upper bound, measured beside veth and
// moat, all three up at once:
//   rtt  pings in turns, blocks of 25 at 10 ms (as the bench's RTT section)
//   tcp  iperf3, one stream, each path in turn, per round
//   flood  64-byte UDP, unpaced, 3 s, each path in turn, per round (what the
//        one thread doing both hops' work costs the packet rate)
// handoff is moat with the one hop built (--tuntap-router-handoff, docs/one-hop.md).
// Usage: node dist/bench/one-hop.js [--rounds N] [--pings N] [--tcp-seconds S] [--busy-us N] [--batch 0|1]
import fs from 'node:fs';
import { requireRoot } from '../test/helpers/netns';
import { alignColumns, cleanupAll, sleep, writeResults } from './lib';
import { Dir, DIRS, DIR_LABEL, flood, pingTimes, rttSummary, tcp } from './measure';
import { RelayScenario, relayBinary } from './relay-scenario';
import { RTT_BLOCK } from './run';
import { makeScenario, moatBuilt, Scenario, setUp } from './scenarios';

interface Options { rounds: number; pings: number; tcpSeconds: number; busyUs: number; batch: boolean }

function parseArgs(argv: string[]): Options {
  const o: Options = { rounds: 2, pings: 400, tcpSeconds: 4, busyUs: 100, batch: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => { const s = argv[++i]; if (s === undefined) throw new Error(`${a} needs a value`); return Number(s); };
    if (a === '--rounds') o.rounds = v();
    else if (a === '--pings') o.pings = v();
    else if (a === '--tcp-seconds') o.tcpSeconds = v();
    else if (a === '--busy-us') o.busyUs = v();
    else if (a === '--batch') o.batch = v() !== 0;
    else throw new Error(`unknown option ${a} (--rounds N, --pings N, --tcp-seconds S, --busy-us N, --batch 0|1)`);
  }
  if (!(Number.isInteger(o.rounds) && o.rounds >= 1 && o.rounds <= 10)) throw new Error('--rounds must be 1..10');
  if (!(Number.isInteger(o.pings) && o.pings >= RTT_BLOCK && o.pings <= 4000)) throw new Error(`--pings must be ${RTT_BLOCK}..4000`);
  if (!(o.tcpSeconds >= 1 && o.tcpSeconds <= 30)) throw new Error('--tcp-seconds must be 1..30');
  if (!(Number.isInteger(o.busyUs) && o.busyUs >= 0 && o.busyUs <= 10000)) throw new Error('--busy-us must be 0..10000');
  return o;
}

// handoff: moat with --tuntap-router-handoff and --tuntap-device-handoff, the
// one hop built (docs/one-hop.md); one hop: tunrelay, the bound.
const NAMES = ['veth', 'moat', 'handoff', 'one hop'] as const;
const TUNTAP = ['moat', 'handoff', 'one hop'] as const;
type Name = typeof NAMES[number];

async function main(): Promise<void> {
  requireRoot();
  if (!moatBuilt()) throw new Error('moat is not built (npm run build)');
  const o = parseArgs(process.argv.slice(2));
  const bin = relayBinary();
  const paths = new Map<Name, Scenario>();
  const log = (s: string) => process.stderr.write(s + '\n');
  try {
    paths.set('veth', makeScenario('veth'));
    paths.set('moat', makeScenario('moat'));
    paths.set('handoff', makeScenario('moat', { handoff: true }));
    paths.set('one hop', new RelayScenario(bin, o.busyUs, o.batch));
    for (const [name, sc] of paths) await setUp(sc, (what) => log(`  ${name}: ${what}`));

    // Per path and direction: round-trip times, TCP Mbit/s and flood pps of every round.
    const got = new Map<string, { times: number[]; mbps: number[]; pps: number[] }>();
    const of = (n: Name, d: Dir) => {
      const k = `${n} ${d}`;
      if (!got.has(k)) got.set(k, { times: [], mbps: [], pps: [] });
      return got.get(k)!;
    };
    for (let round = 0; round < o.rounds; round++) {
      for (const dir of DIRS) {
        log(`round ${round + 1}: rtt ${dir}, ${o.pings} pings a path in turns of ${RTT_BLOCK}`);
        for (let b = 0; b < o.pings / RTT_BLOCK; b++) {
          for (let i = 0; i < NAMES.length; i++) {
            const n = NAMES[(i + b) % NAMES.length];
            of(n, dir).times.push(...(await pingTimes(paths.get(n)!, dir, RTT_BLOCK)).times);
          }
        }
        for (const n of NAMES) {
          log(`round ${round + 1}: tcp ${dir} ${n}`);
          of(n, dir).mbps.push((await tcp(paths.get(n)!, dir, o.tcpSeconds)).mbps);
          await sleep(300);
        }
        for (const n of NAMES) {
          log(`round ${round + 1}: flood ${dir} ${n}`);
          of(n, dir).pps.push((await flood(paths.get(n)!, dir, 3)).rxPps);
          await sleep(300);
        }
      }
    }

    const rows: string[][] = [['figure', 'direction', ...NAMES]];
    const result: Record<string, unknown> = { options: o };
    for (const dir of DIRS) {
      const rtt = new Map(NAMES.map((n) => [n, rttSummary(o.rounds * o.pings, of(n, dir).times)]));
      const p50 = (n: Name) => rtt.get(n)!.p50;
      const p99 = (n: Name) => rtt.get(n)!.p99;
      const added = (n: Name) => p50(n) - p50('veth');
      rows.push(['rtt p50 ms', DIR_LABEL[dir], ...NAMES.map((n) => p50(n).toFixed(3))]);
      rows.push(['  added over veth, ms', DIR_LABEL[dir], '', ...TUNTAP.map((n) => added(n).toFixed(3))]);
      rows.push(['  added, of moat\'s', DIR_LABEL[dir], '', ...TUNTAP.map((n) => (added(n) / added('moat')).toFixed(2))]);
      rows.push(['rtt p99 ms', DIR_LABEL[dir], ...NAMES.map((n) => p99(n).toFixed(3))]);
      // A rate: the best round of each path, then each tuntap path as a fraction of veth.
      const rateRows = (label: string, best: (n: Name) => number) => {
        rows.push([label, DIR_LABEL[dir], ...NAMES.map((n) => best(n).toFixed(0))]);
        rows.push(['  of veth', DIR_LABEL[dir], '', ...TUNTAP.map((n) => (best(n) / best('veth')).toFixed(2))]);
      };
      rateRows('tcp Mbit/s (best)', (n) => Math.max(...of(n, dir).mbps));
      rateRows('flood rx pps (best)', (n) => Math.max(...of(n, dir).pps));
      result[dir] = Object.fromEntries(NAMES.map((n) => [n, { p50: p50(n), p99: p99(n), tcp: of(n, dir).mbps, flood: of(n, dir).pps }]));
    }
    for (const line of alignColumns(rows, 2).lines) console.log(line);
    console.log(`one hop: bench/gen/tunrelay.cc, busy polling ${o.busyUs} µs, small packets read ${o.batch ? 'through io_uring' : 'with read()'}; load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ')[0]} (2 cpus)`);
    console.log(`results: ${writeResults('one-hop', result)}`);
  } finally {
    for (const sc of paths.values()) await sc.teardown().catch(() => undefined);
    await cleanupAll();
  }
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
