// tenant-cgroup.test.ts: the hostile tenant against its cgroup
// (src/vassal/cgroup.ts), on this machine's real hierarchies: a fork bomb
// under a pids limit, a memory hog under a memory limit, a CPU hog under a
// CPU limit, a setsid'd double-forked process that tries to outlive its
// vassal (with cgroup.kill and with each fallback: cgroup.freeze, the v1
// freezer, SIGKILL rounds), two emperors side by side, cgroup v2 delegation
// (with the controller this machine's v2 has), and what a vassal's cgroup
// costs in kernel memory. Every cgroup is made under emperor cgroups named
// uniquely for this run and removed in after(), also when a test fails.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { EmperorCgroup, EMPEROR_OOM_SCORE_ADJ, KillMethod, setOomScoreAdj, VassalCgroup, VASSAL_OOM_SCORE_ADJ } from '../../src/vassal/cgroup';
import { CgroupLayout, detectLayout, Hierarchy, LIMIT_CONTROLLERS, readLayout, readLayoutInput } from '../../src/vassal/cgroup-layout';
import { requireRoot, uniqueName, waitFor } from '../helpers/netns';
import { procStatus } from '../helpers/proc';

const RUN = uniqueName('moat-t-');
const MiB = 2 ** 20;
const emperors: EmperorCgroup[] = [];
const children: ChildProcess[] = [];
const ownDirs: string[] = [];                 // cgroups the delegation tests make themselves
const restores: Array<() => void> = [];       // settings the delegation tests change, put back
// The interpreter itself, not a shim script that would start more processes inside the vassal.
const PYTHON = execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const e of emperors) {
    const left = await e.destroy();
    if (left.length) console.error('left behind:', left.join('; '));
  }
  if (V2_LIMITS) for (const h of readLayout().used) ownDirs.unshift(path.join(h.mountPoint, RUN));
  for (const dir of ownDirs.reverse()) rmTree(dir);
  for (const f of restores.reverse()) {
    try { f(); } catch (e) { console.error((e as Error).message); }
  }
});

function rmTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) rmTree(path.join(dir, d.name));
  try { fs.rmdirSync(dir); } catch (e) { console.error(`${dir}: ${(e as Error).message}`); }
}

/**
 * The v2 controller this machine has (hugetlb, no limit set: it changes nothing), enabled in the
 * unified root for the children the test makes, as a service manager delegates one; put back after.
 */
function delegateHugetlb(t: { skip: (m: string) => void }): Hierarchy | undefined {
  const unified = readLayout().unified;
  if (!unified?.controllers.includes('hugetlb')) { t.skip('no controller on this machine\'s v2 hierarchy'); return undefined; }
  const file = path.join(unified.mountPoint, unified.self, 'cgroup.subtree_control');
  if (!/\bhugetlb\b/.test(fs.readFileSync(file, 'utf8'))) {
    fs.writeFileSync(file, '+hugetlb');
    restores.push(() => fs.writeFileSync(file, '-hugetlb'));
  }
  return unified;
}

// Here (v1 limits) each test emperor is a child of this process's own cgroups. On a v2 machine
// this process shares its cgroup with the test runner, which would keep v2 from handing
// controllers down (the no-internal-process rule): there the emperors live below the root.
const V2_LIMITS = LIMIT_CONTROLLERS.some((c) => readLayout()[c]?.version === 2);

function emperor(suffix: string, layout?: CgroupLayout): EmperorCgroup {
  const e = EmperorCgroup.create({ ...(V2_LIMITS ? { path: `${RUN}/${suffix}` } : { name: `${RUN}-${suffix}` }), layout });
  emperors.push(e);
  return e;
}

/** Runs argv, held at a read until it is in the vassal's cgroups, so all it starts is inside. */
function startIn(v: VassalCgroup, argv: string[]): ChildProcess {
  const c = spawn('sh', ['-c', 'read _ && exec "$@"', 'sh', ...argv], { stdio: ['pipe', 'pipe', 'ignore'] });
  children.push(c);
  v.join(c.pid!);
  c.stdin!.end('\n');
  return c;
}

function output(c: ChildProcess): () => string {
  let out = '';
  c.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  return () => out;
}

const exited = (c: ChildProcess) => new Promise<{ code: number | null; signal: string | null }>((resolve) => {
  if (c.exitCode !== null || c.signalCode !== null) resolve({ code: c.exitCode, signal: c.signalCode });
  else c.once('exit', (code, signal) => resolve({ code, signal }));
});

const alive = (pid: number) => {
  try { return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
};

const dirOn = (v: VassalCgroup, h: CgroupLayout['pids']) => v.places.find((p) => p.h === h)!.dir;

test('a fork bomb under vassal-pids-max stays at the limit; the host still forks; killAll ends it', async () => {
  requireRoot();
  const e = emperor('fork');
  const { cgroup: v, warnings } = await e.createVassal('bomb', { pidsMax: 32 });
  assert.deepEqual(warnings, []);
  // Forks 400 times as fast as it can (bounded, should the limit not hold), keeping every child.
  const c = startIn(v, [PYTHON, '-c', [
    'import os, time',
    'kids = refused = 0',
    'for i in range(400):',
    '    try: pid = os.fork()',
    '    except OSError: refused += 1; continue',
    '    if pid == 0: time.sleep(120); os._exit(0)',
    '    kids += 1',
    'print(kids, refused, flush=True)',
    'time.sleep(120)',
  ].join('\n')]);
  const out = output(c);
  let peak = 0;
  await waitFor(() => { peak = Math.max(peak, v.stats().pids ?? 0); return out().includes('\n'); }, 20000, 'the fork loop');
  assert.equal(out().trim(), '31 369', 'the bomb itself and 31 children; 369 forks refused');
  assert.ok(peak <= 32, `peak ${peak}`);
  const s = v.stats();
  assert.equal(s.pids, 32);
  assert.equal(s.pidsMax, 32);
  assert.match(fs.readFileSync(path.join(dirOn(v, e.layout.pids), 'pids.events'), 'utf8'), /^max 369$/m);
  assert.equal(v.pids().length, 32);
  assert.equal(spawnSync('true').status, 0, 'the host still forks');

  const r = await v.killAll();
  assert.deepEqual([r.method, r.empty, r.signalled], ['cgroup.kill', true, 0]);
  assert.deepEqual(v.pids(), []);
  assert.equal((await exited(c)).signal, 'SIGKILL');
});

test('a memory hog under vassal-memory-max is OOM-killed inside its vassal; the neighbour and the host are fine', async (t) => {
  requireRoot();
  const e = emperor('mem');
  const { cgroup: v } = await e.createVassal('hog', { memoryMax: 64 * MiB });
  const { cgroup: calm } = await e.createVassal('calm');
  const neighbour = startIn(calm, ['sleep', '60']);
  assert.equal(v.stats().oomKills, 0);
  // Touches 1 MiB at a time, up to 1 GiB (bounded, should the limit not hold).
  const hog = startIn(v, [PYTHON, '-c', 'b = []\nfor i in range(1024): b.append(b"x" * (1 << 20))\nprint("survived", flush=True)']);
  const out = output(hog);
  const end = await exited(hog);
  assert.deepEqual([end.signal, out()], ['SIGKILL', ''], 'killed before it reached 1 GiB');
  const s = v.stats();
  t.diagnostic(`after the OOM kill: ${JSON.stringify(s)}`);
  assert.equal(s.memoryMaxBytes, 64 * MiB);
  assert.ok((s.oomKills ?? 0) >= 1, `oom kills: ${s.oomKills}`);
  assert.ok((s.memoryBytes ?? Infinity) < 64 * MiB);
  assert.equal(calm.stats().oomKills, 0);
  assert.ok(alive(neighbour.pid!), 'the neighbouring vassal is untouched');
  assert.ok(!v.pids().includes(process.pid));
  await calm.killAll();
});

test('a CPU hog under vassal-cpu-max 0.5 uses half a CPU (two spinning processes on a 2-CPU machine)', async (t) => {
  requireRoot();
  const e = emperor('cpu');
  // On a shared test machine other work would compete for the CPUs: a large weight for this
  // emperor's cgroup lets the hog have what its quota allows, so the test measures the cap.
  const cpuPlace = e.places.find((p) => p.h === e.layout.cpu)!;
  if (cpuPlace.h.version === 1) fs.writeFileSync(path.join(cpuPlace.dir, 'cpu.shares'), '16384');
  else fs.writeFileSync(path.join(cpuPlace.dir, 'cpu.weight'), '1600');
  const { cgroup: v } = await e.createVassal('spin', { cpuMax: 0.5 });
  startIn(v, ['sh', '-c', 'while :; do :; done & while :; do :; done']);
  await sleep(300);
  const t0 = performance.now();
  const a = v.stats().cpuSeconds!;
  await sleep(2000);
  const used = v.stats().cpuSeconds! - a;
  const cores = used / ((performance.now() - t0) / 1000);
  t.diagnostic(`two spinners under 0.5 cores used ${cores.toFixed(3)} cores over 2 s`);
  assert.equal(v.stats().cpuMaxCores, 0.5);
  const throttled = Number(/^nr_throttled (\d+)$/m.exec(fs.readFileSync(path.join(dirOn(v, e.layout.cpu), 'cpu.stat'), 'utf8'))?.[1]);
  assert.ok(throttled >= 10, `throttled in ${throttled} periods`);
  assert.ok(cores > 0.35 && cores < 0.65, `used ${cores.toFixed(3)} cores`);
  const r = await v.killAll();
  assert.ok(r.empty);
});

// cgroup.kill with this machine's layout; the fallbacks with the layout of a kernel without cgroup.kill
// (which adds the v1 freezer hierarchy), each forced.
const methods: KillMethod[] = ['cgroup.kill', 'cgroup.freeze', 'freezer', 'signal'];
for (const method of methods) {
  test(`stop by ${method}: a setsid'd, double-forked process dies with its vassal; the cgroup is removed`, async () => {
    requireRoot();
    const layout = method === 'cgroup.kill' ? readLayout() : detectLayout({ ...readLayoutInput(), unifiedKill: false, unifiedFreeze: false });
    const e = emperor(`stop-${method.replace('.', '-')}`, layout);
    const { cgroup: v } = await e.createVassal('escape', { pidsMax: 16 });
    const bystander = spawn('sleep', ['60']);      // outside every vassal cgroup
    children.push(bystander);
    const c = startIn(v, ['sh', '-c', 'setsid sh -c \'sleep 300 & echo $!\'; exec sleep 300']);
    const out = output(c);
    await waitFor(() => /^\d+\n/.test(out()), 5000, 'the escaped pid');
    const escaped = Number(out().trim());
    const stat = (pid: number) => fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    // Its parent (the setsid'd shell) exits: it is orphaned, its new parent outside the vassal.
    await waitFor(() => v.pids().length === 2, 5000, 'the setsid\'d shell gone');
    assert.deepEqual(v.pids(), [c.pid!, escaped].sort((x, y) => x - y));
    assert.ok(!v.pids().includes(Number(stat(escaped)[1])), `reparented to ${stat(escaped)[1]}`);
    assert.notEqual(stat(escaped)[3], stat(c.pid!)[3], 'a session of its own');

    const r = await v.killAll({ method });
    assert.equal(r.method, method);
    assert.ok(r.empty, `${method}: empty`);
    assert.ok(method === 'cgroup.kill' ? r.signalled === 0 : r.signalled >= 2, `${method}: ${r.signalled} signalled`);
    await waitFor(() => !alive(escaped), 2000, 'the escaped process gone');
    assert.equal((await exited(c)).signal, 'SIGKILL');
    assert.ok(alive(bystander.pid!), 'a process outside the vassal is untouched');
    if (method === 'freezer') assert.equal(fs.readFileSync(path.join(dirOn(v, layout.freezer), 'freezer.state'), 'utf8').trim(), 'THAWED');
    await v.remove();
    for (const f of v.procsFiles) assert.equal(fs.existsSync(path.dirname(f)), false, path.dirname(f));
    bystander.kill('SIGKILL');
  });
}

test('the runtime\'s first act: a process writes 0 into each of procsFiles and is in the vassal everywhere', async () => {
  requireRoot();
  const e = emperor('self');
  const { cgroup: v } = await e.createVassal('rt');
  const c = spawn('sh', ['-c', 'for f; do echo 0 > "$f" || exit 1; done; echo in; exec sleep 60', 'sh', ...v.procsFiles],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(c);
  const out = output(c);
  await waitFor(() => out() === 'in\n', 5000, 'the process in its cgroups');
  for (const f of v.procsFiles) assert.deepEqual(fs.readFileSync(f, 'utf8').trim().split('\n').map(Number), [c.pid], f);
  assert.deepEqual((await v.killAll()).empty, true);
});

test('two emperors side by side: same vassal name, neither sees nor stops the other\'s', async () => {
  requireRoot();
  const e1 = emperor('e1');
  const e2 = emperor('e2');
  const { cgroup: a1 } = await e1.createVassal('app');
  const { cgroup: a2 } = await e2.createVassal('app');
  const p1 = startIn(a1, ['sleep', '60']);
  const p2 = startIn(a2, ['sleep', '60']);
  assert.deepEqual(a1.pids(), [p1.pid]);
  assert.deepEqual(a2.pids(), [p2.pid]);
  for (const f of a1.procsFiles) assert.ok(!a2.procsFiles.includes(f));
  assert.deepEqual(await e1.destroy(), []);
  assert.equal((await exited(p1)).signal, 'SIGKILL');
  assert.ok(alive(p2.pid!), 'the other emperor\'s vassal still runs');
  assert.deepEqual(e2.vassalNames(), ['app']);
  assert.deepEqual(e1.vassalNames(), []);
  for (const p of e1.places) assert.equal(fs.existsSync(p.dir), false, p.dir);
  assert.deepEqual(await e2.destroy(), []);
});

test('emperor-cgroup = PATH: the emperor\'s cgroup below each hierarchy\'s root', async () => {
  requireRoot();
  // Without the memory hierarchy: this machine's session lives in a memory cgroup of its own,
  // and the test's processes stay inside it.
  const layout = readLayout();
  layout.used = layout.used.filter((h) => h !== layout.memory);
  layout.memory = undefined;
  const e = EmperorCgroup.create({ path: `/${RUN}/fixed//edge1/`, layout });
  emperors.push(e);
  for (const h of layout.used) ownDirs.push(path.join(h.mountPoint, RUN), path.join(h.mountPoint, RUN, 'fixed'));
  assert.deepEqual(e.places.map((p) => p.dir), layout.used.map((h) => path.join(h.mountPoint, RUN, 'fixed', 'edge1')));
  assert.match(e.unavailable.memory ?? '', /^memory: no hierarchy has it$/);
  const { cgroup: v, warnings } = await e.createVassal('app', { memoryMax: 64 * MiB, pidsMax: 5 });
  assert.deepEqual(warnings, ['vassal app: vassal-memory-max not applied: memory: no hierarchy has it']);
  const c = startIn(v, ['sleep', '60']);
  assert.deepEqual(v.pids(), [c.pid]);
  assert.equal(v.stats().pidsMax, 5);
  assert.deepEqual(await e.destroy(), []);
  assert.equal((await exited(c)).signal, 'SIGKILL');
  for (const p of e.places) assert.equal(fs.existsSync(p.dir), false);
  assert.throws(() => EmperorCgroup.create({ path: '/', layout }), /'\/' is the root cgroup: name one below it/);
  assert.throws(() => EmperorCgroup.create({ path: 'a/../b', layout }), /'\.\.' is not allowed/);
});

test('a leftover vassal cgroup (an emperor that died) is emptied when the vassal is made again', async () => {
  requireRoot();
  const e = emperor('left');
  const { cgroup: old } = await e.createVassal('app');
  const p = startIn(old, ['sleep', '60']);
  const again = await e.createVassal('app', { pidsMax: 8 });
  assert.match(again.warnings.join('\n'), /^vassal cgroup app was left over: 0 process\(es\) killed by cgroup\.kill, removed$/m);
  assert.equal((await exited(p)).signal, 'SIGKILL');
  assert.deepEqual(again.cgroup.pids(), []);
  assert.equal(again.cgroup.stats().pidsMax, 8);
});

test('cgroup v2 delegation (hugetlb, the controller this machine\'s v2 has): the emperor leaves its busy cgroup to hand it down, and comes back', async (t) => {
  requireRoot();
  const unified = delegateHugetlb(t);
  if (!unified) return;
  // A stand-in for a service's cgroup: the emperor (a child node process) alone in it.
  const host = path.join(unified.mountPoint, unified.self, `${RUN}-host`);
  fs.mkdirSync(host);
  ownDirs.push(host);
  const script = `
    const { EmperorCgroup } = require(${JSON.stringify(path.join(__dirname, '..', '..', 'src', 'vassal', 'cgroup.js'))});
    const fs = require('fs');
    const lines = require('readline').createInterface({ input: process.stdin });
    const self = () => fs.readFileSync('/proc/self/cgroup', 'utf8').split('\\n').find((l) => l.startsWith('0::'));
    let e;
    lines.on('line', async (cmd) => {
      if (cmd === 'create') {
        e = EmperorCgroup.create({ name: 'emp', v2Controllers: ['hugetlb'] });
        const { cgroup } = await e.createVassal('a');
        const dir = cgroup.places.find((p) => p.h.version === 2).dir;
        console.log(JSON.stringify({ unavailable: e.unavailable, notes: e.notes, self: self(), files: fs.readdirSync(dir) }));
      } else {
        console.log(JSON.stringify({ left: await e.destroy(), self: self() }));
        process.exit(0);
      }
    });`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(child);
  fs.writeFileSync(path.join(host, 'cgroup.procs'), String(child.pid));
  const out = output(child);
  child.stdin!.write('create\n');
  await waitFor(() => out().includes('\n'), 10000, 'the emperor\'s cgroups');
  const made = JSON.parse(out());
  const rel = path.join(unified.self, `${RUN}-host`);
  assert.deepEqual(made.unavailable, {});
  assert.match(made.notes.join('\n'), new RegExp(`^moved the emperor's processes ${child.pid} from ${host} to ${host}/emp/emperor`));
  assert.equal(made.self, `0::${rel}/emp/emperor`);
  assert.ok(made.files.some((f: string) => f.startsWith('hugetlb.')), 'the vassal got the controller');
  assert.match(fs.readFileSync(path.join(host, 'cgroup.subtree_control'), 'utf8'), /hugetlb/);

  child.stdin!.write('destroy\n');
  await exited(child);
  const gone = JSON.parse(out().split('\n')[1]);
  assert.deepEqual(gone, { left: [], self: `0::${rel}` });
  assert.doesNotMatch(fs.readFileSync(path.join(host, 'cgroup.subtree_control'), 'utf8'), /hugetlb/);
  assert.deepEqual(fs.readdirSync(host, { withFileTypes: true }).filter((d) => d.isDirectory()), []);
});

test('cgroup v2 delegation from a cgroup other processes share: the limit is unavailable, and the reason says why', async (t) => {
  requireRoot();
  const input = readLayoutInput();
  const unified = delegateHugetlb(t);
  if (!unified) return;
  const busy = path.join(unified.mountPoint, unified.self, `${RUN}-busy`);
  fs.mkdirSync(busy);
  ownDirs.push(busy);
  const other = spawn('sleep', ['60']);
  children.push(other);
  fs.writeFileSync(path.join(busy, 'cgroup.procs'), String(other.pid));
  // This process as if it lived in that cgroup: the other process is not the emperor's to move.
  const rel = path.join(unified.self, `${RUN}-busy`);
  const layout = detectLayout({ ...input, selfCgroup: input.selfCgroup.replace(/^0::.*$/m, `0::${rel}`) });
  const e = EmperorCgroup.create({ name: `${RUN}-busy-e`, layout, v2Controllers: ['hugetlb'] });
  emperors.push(e);
  assert.match((e.unavailable as Record<string, string>).hugetlb,
    /^hugetlb: writing '\+hugetlb' to .*-busy\/cgroup\.subtree_control: EBUSY \(.*holds processes other than the emperor's.*Delegate=yes/);
  assert.deepEqual(e.notes, []);
  assert.deepEqual(await e.destroy(), []);
  other.kill('SIGKILL');
  await exited(other);
});

test('OOM preference: oom_score_adj for the emperor (-900, with CAP_SYS_RESOURCE) and a vassal (+500), checked bounds', async () => {
  requireRoot();
  const p = spawn('sleep', ['60']);
  children.push(p);
  const read = () => Number(fs.readFileSync(`/proc/${p.pid}/oom_score_adj`, 'utf8'));
  // CAP_SYS_RESOURCE (bit 24) lowers it; this machine's root may run without it.
  const sysResource = (BigInt('0x' + procStatus(process.pid).CapEff) >> 24n) & 1n;
  if (sysResource) {
    setOomScoreAdj(p.pid!, EMPEROR_OOM_SCORE_ADJ);
    assert.equal(read(), -900);
  } else {
    assert.throws(() => setOomScoreAdj(p.pid!, EMPEROR_OOM_SCORE_ADJ), /EACCES \(lowering oom_score_adj needs CAP_SYS_RESOURCE\)$/);
    assert.equal(read(), 0);
  }
  setOomScoreAdj(p.pid!, VASSAL_OOM_SCORE_ADJ);
  assert.equal(read(), 500);
  assert.throws(() => setOomScoreAdj(p.pid!, 1001), /oom_score_adj 1001: an integer from -1000 to 1000/);
  p.kill('SIGKILL');
  await exited(p);
});

test('what a vassal\'s cgroup costs: kernel memory per vassal, on every hierarchy used', async (t) => {
  requireRoot();
  const e = emperor('cost');
  const meminfo = () => Object.fromEntries(fs.readFileSync('/proc/meminfo', 'utf8').split('\n').filter(Boolean)
    .map((l) => [l.slice(0, l.indexOf(':')), parseInt(l.slice(l.indexOf(':') + 1), 10)]));
  const N = 100;
  await sleep(200);
  const before = meminfo();
  for (let i = 0; i < N; i++) await e.createVassal(`v${i}`, { memoryMax: 64 * MiB, pidsMax: 64, cpuMax: 0.5 });
  await sleep(200);
  const now = meminfo();
  const slab = (now.Slab - before.Slab) / N;
  const percpu = (now.Percpu - before.Percpu) / N;
  t.diagnostic(`${N} vassal cgroups on ${e.places.length} hierarchies: ${slab.toFixed(1)} kB slab + ${percpu.toFixed(1)} kB percpu per vassal`);
  assert.ok(slab + percpu > 0 && slab + percpu < 256, `${slab} + ${percpu} kB per vassal`);
  assert.equal(e.vassalNames().length, N);
  assert.deepEqual(await e.destroy(), []);
});
