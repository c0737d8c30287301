// tenant-limits.test.ts: the tenant against its limits, through the real
// emperor and runtime: a fork bomb under vassal-pids-max, a memory hog under
// vassal-memory-max (as an attach-daemon, restarted by the runtime, and as a
// job, which ends with a signal while the vassal stays up), a CPU hog under
// vassal-cpu-max. Each time the host and a neighbouring vassal keep working,
// and status() and the emperor's metrics show what the cgroup saw. The
// tenant's programs are Python scripts in a host directory (the vassals have
// no pivot-root, so they see the host's files; the busybox root has no Python).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { requireRoot } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { cmdline, EmperorLab, pythonPath, TestEmperor } from '../helpers/emperor-lab';
import type { LogLine } from '../helpers/log';
import { readLayout } from '../../src/vassal/cgroup-layout';

const MiB = 2 ** 20;
const lab = new EmperorLab();
let scripts = '';
let PYTHON = '';

before(async () => {
  requireRoot();
  PYTHON = pythonPath();
  scripts = tempDir(lab.lab);
  fs.chmodSync(scripts, 0o755);
  // Forks N times as fast as it can (bounded, should the limit not hold), keeping every child.
  fs.writeFileSync(path.join(scripts, 'bomb.py'), [
    'import os, sys, time',
    'kids = refused = 0',
    'for i in range(int(sys.argv[1])):',
    '    try: pid = os.fork()',
    '    except OSError: refused += 1; continue',
    '    if pid == 0: time.sleep(120); os._exit(0)',
    '    kids += 1',
    'print("bomb", kids, refused, flush=True)',
    'time.sleep(120)',
  ].join('\n'));
  // Touches 1 MiB at a time, up to 1 GiB (bounded, should the limit not hold).
  fs.writeFileSync(path.join(scripts, 'hog.py'), 'b = []\nfor i in range(1024): b.append(b"x" * (1 << 20))\nprint("survived", flush=True)\n');
  await lab.startRouter();
});
after(async () => {
  const left = await lab.cleanup();
  assert.deepEqual(left, [], 'nothing left behind');
});

/** One sample of the emperor's metrics, as /metrics renders them. */
async function metric(e: TestEmperor, name: string, vassal: string): Promise<number | undefined> {
  const text = await e.emperor.registry.metrics();
  const m = new RegExp(`^${name}\\{vassal="${vassal.replace(/\./g, '\\.')}"\\} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : undefined;
}

/** The runtime's events for a vassal as the emperor logged them (e.g. 'daemon', 'job-exit'). */
function events(e: TestEmperor, vassal: string, field: string): string[] {
  return e.log.filter((l: LogLine) => l.vassal === vassal && typeof l[field] === 'string').map((l) => l[field] as string);
}

/** Runs a job in a vassal and resolves with its job-exit value (ID STATUS MS). */
async function job(e: TestEmperor, vassal: string, id: string, cmd: string, ms = 10000): Promise<string> {
  assert.ok(e.emperor.vassal(vassal)!.send(`job ${id} ${cmd}`), `${vassal} takes a job`);
  let exit = '';
  await e.until(() => (exit = events(e, vassal, 'job-exit').find((v) => v.startsWith(id + ' ')) ?? '') !== '', ms, `job ${id} of ${vassal}`);
  return exit;
}

test('a fork bomb under vassal-pids-max holds the limit; the host and a neighbouring vassal keep working', async (t) => {
  const e = await lab.emperor('fork');
  e.write('bomb.ini', ['vassal-pids-max = 32', `attach-daemon = ${PYTHON} ${scripts}/bomb.py 400`]);
  await e.until(() => e.running('bomb.ini'), 15000, 'bomb.ini running');
  let peak = 0;
  let result = '';
  await e.until(() => {
    peak = Math.max(peak, e.row('bomb.ini')?.cgroup?.pids ?? 0);
    result = e.outputLines('bomb.ini').find((l) => l.output.startsWith('bomb '))?.output ?? '';
    return result !== '';
  }, 20000, 'the fork loop\'s end');
  const [kids, refused] = result.split(' ').slice(1).map(Number);
  const row = e.row('bomb.ini')!;
  const events = fs.readFileSync(path.join(e.vassalCgroupDir('bomb.ini', 'pids'), 'pids.events'), 'utf8');
  t.diagnostic(`fork bomb under pids-max 32: ${kids} forks kept, ${refused} refused; pids ${row.cgroup!.pids} (peak seen ${peak}); pids.events ${events.trim()}`);
  assert.equal(kids + refused, 400);
  assert.ok(kids < 32 && refused >= 400 - 32, `${kids} kept, ${refused} refused`);
  assert.equal(row.cgroup!.pids, 32, 'the vassal holds exactly its limit');
  assert.equal(row.cgroup!.pidsMax, 32);
  assert.ok(peak <= 32, `peak ${peak}`);
  assert.ok(Number(/^max (\d+)$/m.exec(events)?.[1]) >= refused, `pids.events counts the refused forks: ${events}`);
  assert.equal(row.state, 'running');
  assert.equal(row.limits, 'memory max, pids 32, cpu max');

  // The host forks; the emperor deploys a neighbour, whose job runs.
  assert.equal(spawnSync('true').status, 0, 'the host still forks');
  const deployMs = await e.timed('deployed', 'calm.ini', () => e.write('calm.ini', ['attach-daemon = sleep 3600']), 3000);
  await e.until(() => e.running('calm.ini'), 5000, 'the neighbour running');
  assert.match(await job(e, 'calm.ini', 'n1', 'echo neighbour job ran'), /^n1 0 \d+$/);
  assert.ok(e.outputLines('calm.ini').some((l) => l.output === 'neighbour job ran'));
  assert.equal(e.row('bomb.ini')!.cgroup!.pids, 32, 'the bomb still at its limit');

  assert.equal(await metric(e, 'moat_vassal_pids', 'bomb.ini'), e.row('bomb.ini')!.cgroup!.pids);
  assert.equal(await metric(e, 'moat_vassal_pids_max', 'bomb.ini'), 32);
  assert.equal(await metric(e, 'moat_vassal_pids_max', 'calm.ini'), -1, 'the neighbour has no limit');

  const stopMs = await e.timed('retired', 'bomb.ini', () => e.remove('bomb.ini'), 5000);
  t.diagnostic(`neighbour deployed in ${deployMs} ms during the bomb; the bomb's 32 tasks stopped in ${stopMs} ms`);
  assert.ok(stopMs < 3000, `stopped in ${stopMs} ms`);
  assert.deepEqual(await lab.stopEmperor(e), []);
});

test('a memory hog under vassal-memory-max is OOM-killed inside its vassal: a daemon is restarted, a job ends, the vassal stays up', async (t) => {
  const e = await lab.emperor('mem');
  e.write('calm.ini', ['attach-daemon = sleep 3600']);
  e.write('hogd.ini', ['vassal-memory-max = 64M', `attach-daemon = ${PYTHON} ${scripts}/hog.py`]);
  e.write('hogjob.ini', ['vassal-memory-max = 64M', 'attach-daemon = sleep 3600']);
  await e.until(() => ['calm.ini', 'hogd.ini', 'hogjob.ini'].every((n) => e.running(n)), 15000, 'three vassals running');
  const runtimes = Object.fromEntries(['calm.ini', 'hogd.ini', 'hogjob.ini'].map((n) => [n, e.row(n)!.pid]));
  const sleeper = (n: string) => e.vassalPids(n).find((p) => cmdline(p) === 'sleep 3600');
  await e.until(() => sleeper('calm.ini') !== undefined && sleeper('hogjob.ini') !== undefined, 5000, 'the sleeping daemons');
  const calmDaemon = sleeper('calm.ini');
  const jobDaemon = sleeper('hogjob.ini');

  // The daemon (/bin/sh -c CMD: the shell reports its child's SIGKILL as 137): killed by the OOM
  // killer, restarted by the runtime, killed again.
  const killed = /^exit \d+ (signal 9|137) /;
  await e.until(() => events(e, 'hogd.ini', 'daemon').filter((d) => killed.test(d)).length >= 2, 15000, 'two OOM kills of the daemon');
  const daemonEvents = events(e, 'hogd.ini', 'daemon');
  assert.ok(daemonEvents.filter((d) => d.startsWith('start ')).length >= 2, `the runtime restarted it: ${daemonEvents.join(' | ')}`);
  // The job: killed, reported with its signal; the vassal and its daemon stay.
  const jobExit = await job(e, 'hogjob.ini', 'hog1', `${PYTHON} ${scripts}/hog.py`);
  assert.match(jobExit, /^hog1 (signal 9|137) \d+$/);

  const rows = Object.fromEntries(e.emperor.status().map((r) => [r.name, r]));
  t.diagnostic(`OOM kills: daemon hog ${rows['hogd.ini'].cgroup!.oomKills} (daemon events: ${daemonEvents.length}), job hog ${rows['hogjob.ini'].cgroup!.oomKills}, neighbour ${rows['calm.ini'].cgroup!.oomKills}; ` +
    `memory after: ${(rows['hogd.ini'].cgroup!.memoryBytes! / MiB).toFixed(1)} MiB and ${(rows['hogjob.ini'].cgroup!.memoryBytes! / MiB).toFixed(1)} MiB of 64`);
  for (const n of ['hogd.ini', 'hogjob.ini']) {
    const r = rows[n];
    assert.ok(r.cgroup!.oomKills! >= (n === 'hogd.ini' ? 2 : 1), `${n}: ${r.cgroup!.oomKills} OOM kills`);
    assert.equal(r.cgroup!.memoryMaxBytes, 64 * MiB);
    assert.ok(r.cgroup!.memoryBytes! <= 64 * MiB);
    assert.equal(r.state, 'running', `${n} stays up`);
    assert.equal(r.restarts, 0, `${n}: the vassal itself never restarted`);
    assert.equal(r.pid, runtimes[n], `${n}: the same runtime`);
    assert.equal(r.limits, 'memory 64M, pids max, cpu max');
  }
  assert.ok(!e.outputLines('hogd.ini').some((l) => l.output === 'survived') && !e.outputLines('hogjob.ini').some((l) => l.output === 'survived'), 'no hog reached 1 GiB');
  assert.equal(sleeper('hogjob.ini'), jobDaemon, 'the job hog\'s vassal keeps its daemon');
  assert.equal(rows['calm.ini'].cgroup!.oomKills, 0);
  assert.equal(sleeper('calm.ini'), calmDaemon, 'the neighbour untouched');
  assert.equal(lab.router.running, true, 'the router runs');
  assert.ok(Array.isArray(lab.router.stats().peers), 'and answers');
  assert.match(await job(e, 'calm.ini', 'n1', 'echo still here'), /^n1 0 /, 'the neighbour still runs jobs');

  const before = e.row('hogd.ini')!.cgroup!.oomKills!;
  const m = await metric(e, 'moat_vassal_oom_kills_total', 'hogd.ini');
  const after = e.row('hogd.ini')!.cgroup!.oomKills!;
  assert.ok(m !== undefined && m >= before && m <= after, `metric ${m}, status ${before}..${after}`);
  assert.equal(await metric(e, 'moat_vassal_oom_kills_total', 'hogjob.ini'), e.row('hogjob.ini')!.cgroup!.oomKills);
  assert.equal(await metric(e, 'moat_vassal_oom_kills_total', 'calm.ini'), 0);
  assert.equal(await metric(e, 'moat_vassal_memory_max_bytes', 'hogd.ini'), 64 * MiB);
  assert.deepEqual(await lab.stopEmperor(e), []);
});

test('a CPU hog under vassal-cpu-max 0.5 uses half a core (two spinning processes on a 2-CPU machine)', async (t) => {
  const e = await lab.emperor('cpu');
  // Other work on this machine competes for the CPUs: a large weight for this emperor's cgroup lets
  // the hog have what its quota allows, so the test measures the cap, not the contention.
  const cpu = readLayout().cpu!;
  const emperorCpu = path.join(cpu.mountPoint, e.cgroupName);
  if (cpu.version === 1) fs.writeFileSync(path.join(emperorCpu, 'cpu.shares'), '16384');
  else fs.writeFileSync(path.join(emperorCpu, 'cpu.weight'), '1600');
  e.write('spin.ini', ['vassal-cpu-max = 0.5', "attach-daemon = sh -c 'while :; do :; done & while :; do :; done'"]);
  await e.until(() => e.running('spin.ini'), 15000, 'spin.ini running');
  await sleep(300);
  const cpuStat = () => fs.readFileSync(path.join(e.vassalCgroupDir('spin.ini', 'cpu'), 'cpu.stat'), 'utf8');
  const throttled = () => Number(/^nr_throttled (\d+)$/m.exec(cpuStat())?.[1]);
  const th0 = throttled();
  const t0 = performance.now();
  const a = e.row('spin.ini')!.cgroup!.cpuSeconds!;
  await sleep(2000);
  const b = e.row('spin.ini')!.cgroup!.cpuSeconds!;
  const cores = (b - a) / ((performance.now() - t0) / 1000);
  const periods = throttled() - th0;
  t.diagnostic(`two spinners under vassal-cpu-max 0.5 used ${cores.toFixed(3)} cores over 2 s, throttled in ${periods} periods`);
  assert.equal(e.row('spin.ini')!.cgroup!.cpuMaxCores, 0.5);
  assert.ok(periods >= 10, `throttled in ${periods} periods`);
  assert.ok(cores > 0.35 && cores < 0.65, `used ${cores.toFixed(3)} cores`);
  assert.equal(await metric(e, 'moat_vassal_cpu_max_cores', 'spin.ini'), 0.5);
  const m = await metric(e, 'moat_vassal_cpu_seconds_total', 'spin.ini');
  assert.ok(m !== undefined && m >= b && m <= e.row('spin.ini')!.cgroup!.cpuSeconds!, `cpu seconds metric ${m}`);
  const stopMs = await e.timed('retired', 'spin.ini', () => e.remove('spin.ini'), 5000);
  assert.ok(stopMs < 3000, `stopped in ${stopMs} ms`);
  assert.deepEqual(await lab.stopEmperor(e), []);
});
