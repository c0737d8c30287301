// many-vassals.ts: a 64-byte flood from the gateway spread round-robin over
// N real moat vassals (moat's runtime in a namespace each, a receiver in
// each), one hop (the default: each vassal's tun handed to the router) and
// framed (the router started with --tuntap-router-handoff=false, so each
// device keeps its tun), in turns. Prints the received pps summed over the
// vassals, what was offered, and the router's CPU µs per received packet
// (docs/one-hop.md, "Many vassals").
//
//   node dist/bench/many-vassals.js [--vassals 10] [--rounds 2] [--seconds 3]
import { requireRoot } from '../test/helpers/netns';
import { buildFlood, cleanupAll, collect, cpuNs, FLOOD, lastJson, run, sleep } from './lib';
import { makeScenario, setUp, TuntapScenario } from './scenarios';

const PORT = '9000';

interface Figures { path: string; rxPps: number; offeredPps: number; routerUsPerPkt: number }

async function measure(path: 'one hop' | 'framed', n: number, rounds: number, seconds: number): Promise<Figures[]> {
  // The scenario reads its extra router options when it builds the router.
  const saved = process.env.MOAT_BENCH_ROUTER_ARGS;
  process.env.MOAT_BENCH_ROUTER_ARGS = [saved ?? '', path === 'framed' ? '--tuntap-router-handoff=false' : ''].join(' ');
  const sc = makeScenario('moat', { vassals: n }) as TuntapScenario;
  try {
    await setUp(sc, () => undefined);
  } finally {
    if (saved === undefined) delete process.env.MOAT_BENCH_ROUTER_ARGS;
    else process.env.MOAT_BENCH_ROUTER_ARGS = saved;
  }
  const out: Figures[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      const tag = String(1000 + r);
      const receivers = sc.vassals.map((v) => collect(sc.lab.spawn(FLOOD, ['recv', '--bind', v.addr, '--port', PORT,
        '--duration', String(seconds + 5), '--idle', '1', '--tag', tag], { ns: v.ns })));
      await sleep(800);
      const pid = sc.router!.pid!;
      const cpu0 = cpuNs(pid);
      const sent = await run(sc.lab, sc.gw, FLOOD, ['send', '--dst', sc.vassals[0].addr, '--dst-count', String(n), '--port', PORT,
        '--size', '64', '--duration', String(seconds), '--tag', tag], (seconds + 15) * 1000);
      const cpu1 = cpuNs(pid);
      let received = 0;
      for (const rc of receivers) received += Number(lastJson((await rc.done).stdout)?.received ?? 0);
      const offered = Number(lastJson(sent.stdout)?.sent ?? 0);
      out.push({ path, rxPps: received / seconds, offeredPps: offered / seconds, routerUsPerPkt: received > 0 ? (cpu1 - cpu0) / 1e3 / received : NaN });
    }
  } finally {
    await sc.teardown();
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let n = 10, rounds = 2, seconds = 3;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--vassals') n = Number(argv[++i]);
    else if (argv[i] === '--rounds') rounds = Number(argv[++i]);
    else if (argv[i] === '--seconds') seconds = Number(argv[++i]);
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!(Number.isInteger(n) && n >= 1 && n <= 20)) throw new Error('--vassals must be 1..20 (the scenario\'s limit)');
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 5) || !(seconds > 0 && seconds <= 30)) throw new Error('--rounds 1..5, --seconds 0..30');
  requireRoot();
  buildFlood();
  const rows = [...await measure('one hop', n, rounds, seconds), ...await measure('framed', n, rounds, seconds)];
  const k = (v: number) => Math.round(v).toLocaleString('en-US');
  console.log(`${n} vassals, 64 B UDP flood gateway->vassals round-robin, ${seconds} s a round`);
  console.log('path      received pps  offered pps  router µs/pkt');
  for (const r of rows) console.log(`${r.path.padEnd(8)}  ${k(r.rxPps).padStart(12)}  ${k(r.offeredPps).padStart(11)}  ${r.routerUsPerPkt.toFixed(2).padStart(13)}`);
  const best = (p: string) => Math.max(...rows.filter((r) => r.path === p).map((r) => r.rxPps));
  console.log(`one hop / framed (best of each): ${(best('one hop') / best('framed')).toFixed(2)}`);
}

main().catch(async (e) => {
  process.stderr.write(`many-vassals: ${(e as Error).stack ?? e}\n`);
  await cleanupAll();
  process.exit(1);
});
