// tcp-cost.ts: what one TCP segment costs moat's router and device, with
// virtio-net offloads off and on (docs/offload.md).
//
//   node dist/bench/tcp-cost.js [--seconds 3]
//
// For each setting and direction: one iperf3 stream through the moat
// scenario of bench/scenarios.ts (MTU 1500), while `perf stat` counts the
// syscalls and CPU time of the router and the device processes (all their
// threads). Printed per MSS-sized segment (bytes received / 1448): syscalls
// and CPU microseconds of each process, and the throughput. The box is
// shared: read the per-segment ratios, not the Mbit/s.
import { ChildProcess } from 'node:child_process';
import { requireRoot } from '../test/helpers/netns';
import { cleanupAll, collect } from './lib';
import { Dir, DIRS, DIR_LABEL, tcp } from './measure';
import { makeScenario, TuntapScenario } from './scenarios';

const MSS = 1448;

interface Cost { syscalls: number; cpuMs: number }

function perfStat(sc: TuntapScenario, pid: number, seconds: number): { done: Promise<Cost> } {
  const p: ChildProcess = sc.lab.spawn('perf', ['stat', '-x,', '-e', 'raw_syscalls:sys_enter,task-clock', '-p', String(pid), '--', 'sleep', String(seconds)]);
  const out = collect(p);
  return {
    done: out.done.then(() => {
      const field = (ev: string) => Number(out.err().split('\n').find((l) => l.includes(ev))?.split(',')[0] ?? NaN);
      return { syscalls: field('raw_syscalls:sys_enter'), cpuMs: field('task-clock') };
    }),
  };
}

async function measure(offload: boolean, dir: Dir, seconds: number) {
  const sc = makeScenario('moat', { offload, moatDevice: 'cli' }) as TuntapScenario;   // perf stat -p follows the spawned device process: the CLI's
  await sc.setup();
  try {
    const router = perfStat(sc, sc.router!.pid!, seconds);
    const device = perfStat(sc, sc.device!.pid!, seconds);
    const t = await tcp(sc, dir, seconds);
    const [r, d] = await Promise.all([router.done, device.done]);
    const segments = (t.mbps * 1e6 / 8) * seconds / MSS;
    return {
      offload, dir, mbps: Math.round(t.mbps),
      routerSyscallsPerSeg: r.syscalls / segments, deviceSyscallsPerSeg: d.syscalls / segments,
      routerUsPerSeg: (r.cpuMs * 1000) / segments, deviceUsPerSeg: (d.cpuMs * 1000) / segments,
    };
  } finally {
    await sc.teardown();
  }
}

async function main(): Promise<void> {
  requireRoot();
  const i = process.argv.indexOf('--seconds');
  const seconds = i > 0 ? Number(process.argv[i + 1]) : 3;
  const rows = [];
  for (const dir of DIRS) for (const offload of [false, true]) rows.push(await measure(offload, dir, seconds));
  const f = (n: number) => (n >= 10 ? n.toFixed(1) : n.toFixed(3));
  console.log('direction         offload  Mbit/s  router syscalls/seg  device syscalls/seg  router us/seg  device us/seg');
  for (const r of rows) {
    console.log(`${DIR_LABEL[r.dir].padEnd(17)} ${(r.offload ? 'on' : 'off').padEnd(8)} ${String(r.mbps).padStart(6)}  ` +
      `${f(r.routerSyscallsPerSeg).padStart(19)}  ${f(r.deviceSyscallsPerSeg).padStart(19)}  ${f(r.routerUsPerSeg).padStart(13)}  ${f(r.deviceUsPerSeg).padStart(13)}`);
  }
  console.log(JSON.stringify({ seconds, rows }));
}

main().catch((err) => { console.error(err); process.exitCode = 1; }).finally(() => cleanupAll());
