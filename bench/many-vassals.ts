// many-vassals.ts: N real moat vassals (moat's runtime in a namespace each),
// one hop (the default: each vassal's tun handed to the router) and framed
// (the router started with --tuntap-router-handoff=false, so each device
// keeps its tun), in turns. Down (g2v): a 64-byte flood from the gateway
// spread round-robin over the vassals, a receiver in each; up (v2g): every
// vassal floods the gateway at once, one receiver there. Prints the
// received pps (summed), what was offered, and the router's CPU µs per
// received packet (docs/one-hop.md, "Many vassals").
//
// Each vassal in a cgroup of its own, as moat's emperor runs them (the
// router outside them all), unless --cgroups off.
//
//   node dist/bench/many-vassals.js [--vassals 10] [--rounds 2] [--seconds 3] [--direction g2v|v2g|both] [--cgroups on|off]
import { requireRoot } from '../test/helpers/netns';
import { buildFlood, cleanupAll, collect, cpuNs, FLOOD, lastJson, run, sleep } from './lib';
import { GW_ADDR, makeScenario, setUp, TuntapScenario } from './scenarios';

const PORT = '9000';

type Direction = 'g2v' | 'v2g';
interface Figures { path: string; dir: Direction; rxPps: number; offeredPps: number; routerUsPerPkt: number }

async function measure(path: 'one hop' | 'framed', n: number, rounds: number, seconds: number, dirs: Direction[], cgroups: boolean): Promise<Figures[]> {
  const moatRouterArgs = path === 'framed' ? ['--tuntap-router-handoff=false'] : [];
  const sc = makeScenario('moat', { vassals: n, cgroups, moatRouterArgs }) as TuntapScenario;
  await setUp(sc, () => undefined);
  const out: Figures[] = [];
  try {
    for (let r = 0; r < rounds; r++) {
      for (const dir of dirs) {
        const tag = String(1000 + r);
        const recvAt = dir === 'g2v' ? sc.vassals.map((v) => ({ ns: v.ns, addr: v.addr })) : [{ ns: sc.gw, addr: GW_ADDR }];
        const receivers = recvAt.map((v) => collect(sc.lab.spawn(FLOOD, ['recv', '--bind', v.addr, '--port', PORT,
          '--duration', String(seconds + 5), '--idle', '1', '--tag', tag], { ns: v.ns })));
        await sleep(800);
        const pid = sc.router!.pid!;
        const cpu0 = cpuNs(pid);
        const send = (ns: string, dst: string, count: number) => run(sc.lab, ns, FLOOD, ['send', '--dst', dst, '--dst-count', String(count), '--port', PORT,
          '--size', '64', '--duration', String(seconds), '--tag', tag], (seconds + 15) * 1000);
        const sent = dir === 'g2v' ? [await send(sc.gw, sc.vassals[0].addr, n)] : await Promise.all(sc.vassals.map((v) => send(v.ns, GW_ADDR, 1)));
        const cpu1 = cpuNs(pid);
        let received = 0;
        for (const rc of receivers) received += Number(lastJson((await rc.done).stdout)?.received ?? 0);
        const offered = sent.reduce((t, x) => t + Number(lastJson(x.stdout)?.sent ?? 0), 0);
        out.push({ path, dir, rxPps: received / seconds, offeredPps: offered / seconds, routerUsPerPkt: received > 0 ? (cpu1 - cpu0) / 1e3 / received : NaN });
      }
    }
  } finally {
    await sc.teardown();
  }
  return out;
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  let n = 10, rounds = 2, seconds = 3;
  let dirs: Direction[] = ['g2v'];
  let cgroups = true;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--vassals') n = Number(argv[++i]);
    else if (argv[i] === '--rounds') rounds = Number(argv[++i]);
    else if (argv[i] === '--seconds') seconds = Number(argv[++i]);
    else if (argv[i] === '--cgroups') {
      const v = argv[++i];
      if (v !== 'on' && v !== 'off') throw new Error('--cgroups on or off');
      cgroups = v === 'on';
    } else if (argv[i] === '--direction') {
      const d = argv[++i];
      if (d !== 'g2v' && d !== 'v2g' && d !== 'both') throw new Error('--direction g2v, v2g or both');
      dirs = d === 'both' ? ['g2v', 'v2g'] : [d];
    }
    else throw new Error(`unknown option ${argv[i]}`);
  }
  if (!(Number.isInteger(n) && n >= 1 && n <= 20)) throw new Error('--vassals must be 1..20 (the scenario\'s limit)');
  if (!(Number.isInteger(rounds) && rounds >= 1 && rounds <= 5) || !(seconds > 0 && seconds <= 30)) throw new Error('--rounds 1..5, --seconds 0..30');
  requireRoot();
  buildFlood();
  const rows = [...await measure('one hop', n, rounds, seconds, dirs, cgroups), ...await measure('framed', n, rounds, seconds, dirs, cgroups)];
  const k = (v: number) => Math.round(v).toLocaleString('en-US');
  console.log(`${n} vassals${cgroups ? ', each in a cgroup of its own' : ''}, 64 B UDP floods (g2v: the gateway's, round-robin over the vassals; v2g: every vassal's at once), ${seconds} s a round`);
  console.log('path     dir  received pps  offered pps  router µs/pkt');
  for (const r of rows) console.log(`${r.path.padEnd(7)}  ${r.dir}  ${k(r.rxPps).padStart(12)}  ${k(r.offeredPps).padStart(11)}  ${r.routerUsPerPkt.toFixed(2).padStart(13)}`);
  for (const d of dirs) {
    const best = (p: string) => Math.max(...rows.filter((r) => r.path === p && r.dir === d).map((r) => r.rxPps));
    console.log(`${d}: one hop / framed (best of each): ${(best('one hop') / best('framed')).toFixed(2)}`);
  }
}

main().catch(async (e) => {
  process.stderr.write(`many-vassals: ${(e as Error).stack ?? e}\n`);
  await cleanupAll();
  process.exit(1);
});
