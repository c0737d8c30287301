// tenant-escape.test.ts: the tenant tries to outlive its vassal, through the
// real emperor and runtime. An attach-daemon and a job each double-fork and
// setsid() a `sleep` that keeps the vassal's stdout and stderr (the emperor's
// pipes) open; the vassal file is removed. Once with a pid namespace (the
// runtime, pid 1, kills everything in it) and once without one (only the
// vassal's cgroup holds the escaped processes). Stopping must end well before
// the emperor's stop timeout (8 s), the escaped processes must be gone (pid
// and start time), the vassal's namespaces and cgroups too, a process outside
// the vassal must be untouched, and the emperor must deploy, reload and remove
// another vassal right after (nothing waits on the escaped pipes).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { requireRoot } from '../helpers/netns';
import { cmdline, EmperorLab, pidsInNamespaces, startTime, statFields, TestEmperor } from '../helpers/emperor-lab';

const lab = new EmperorLab();
before(async () => {
  requireRoot();
  await lab.startRouter();
});
after(async () => {
  const left = await lab.cleanup();
  assert.deepEqual(left, [], 'nothing left behind');
});

const STOP_TIMEOUT_MS = 8000;     // the emperor's default: the bound a stuck stop would hit

/** The escaped `sleep SECONDS` in the vassal's cgroup: reparented, in a session of its own. */
async function escaped(e: TestEmperor, name: string, seconds: string, daemonSession: string | undefined): Promise<number> {
  let pid = 0;
  await e.until(() => {
    pid = e.vassalPids(name).find((p) => cmdline(p) === `sleep ${seconds}`) ?? 0;
    // Its parent (the setsid'd shell) has exited: the escaped process was reparented.
    return pid > 0 && !/^sh /.test(cmdline(Number(statFields(pid)[1])));
  }, 10000, `the escaped sleep ${seconds}`);
  const session = statFields(pid)[3];
  assert.notEqual(session, daemonSession, `sleep ${seconds}: a session of its own`);
  return pid;
}

async function outliveTheVassal(t: { diagnostic: (m: string) => void }, clone: string): Promise<void> {
  const pidNs = clone.split(',').includes('pid');
  const e = await lab.emperor(pidNs ? 'escpid' : 'escnopid', { 'emperor-use-clone': clone });
  // A process outside every vassal, in a session of its own (as an escaped one is).
  const bystander = spawn('sleep', ['120'], { detached: true, stdio: 'ignore' });
  const bystanderStart = startTime(bystander.pid!);
  try {
    // The daemon: a setsid'd shell backgrounds `sleep 3601` and exits; the daemon itself stays.
    e.write('esc.ini', [
      "attach-daemon = sh -c 'setsid sh -c \"sleep 3601 & echo escaped from the daemon\"; exec sleep 3600'",
    ]);
    await e.until(() => e.running('esc.ini'), 15000, 'esc.ini running');
    const v = e.emperor.vassal('esc.ini')!;
    const runtime = v.pid!;
    const daemon = await (async () => {
      let d = 0;
      await e.until(() => (d = e.vassalPids('esc.ini').find((p) => cmdline(p) === 'sleep 3600') ?? 0) > 0, 10000, 'the daemon');
      return d;
    })();
    const fromDaemon = await escaped(e, 'esc.ini', '3601', statFields(daemon)[3]);
    // The same from a job: its shell setsid's `sleep 3602` away and the job ends.
    let jobExit = '';
    v.on('job-exit', (value: string) => { jobExit = value; });
    assert.ok(v.send("job esc1 setsid sh -c 'sleep 3602 & echo escaped from a job'"));
    await e.until(() => jobExit.startsWith('esc1 0 '), 10000, 'the job\'s end');
    const fromJob = await escaped(e, 'esc.ini', '3602', undefined);
    const escapees = [fromDaemon, fromJob];
    // They hold the emperor's pipes: their stdout and stderr are the runtime's.
    for (const p of escapees) {
      for (const fd of [1, 2]) assert.equal(fs.readlinkSync(`/proc/${p}/fd/${fd}`), fs.readlinkSync(`/proc/${runtime}/fd/${fd}`), `pid ${p} fd ${fd}`);
    }
    if (!pidNs) assert.equal(fs.readlinkSync(`/proc/${fromDaemon}/ns/pid`), fs.readlinkSync('/proc/self/ns/pid'), 'no pid namespace');
    const starts = escapees.map((p) => startTime(p)!);
    const ns = ['net', 'mnt', ...(pidNs ? ['pid'] : [])].map((k) => ({ k, inode: fs.readlinkSync(`/proc/${runtime}/ns/${k}`) }));
    assert.equal(e.row('esc.ini')!.cgroup!.pids, e.vassalPids('esc.ini').length, 'status counts the cgroup\'s tasks');

    const stopMs = await e.timed('retired', 'esc.ini', () => e.remove('esc.ini'), STOP_TIMEOUT_MS + 4000);
    t.diagnostic(`clone=${clone}: stop with two escaped processes took ${stopMs} ms (from removing the file)`);
    assert.ok(stopMs < STOP_TIMEOUT_MS / 2, `stopped in ${stopMs} ms, well under the ${STOP_TIMEOUT_MS} ms stop timeout`);
    escapees.forEach((p, i) => assert.notEqual(startTime(p), starts[i], `escaped pid ${p} is gone`));
    assert.equal(startTime(runtime), undefined, 'the runtime is gone');
    for (const { k, inode } of ns) assert.deepEqual(pidsInNamespaces(k, [inode]), [], `no process left in the vassal's ${k} namespace`);
    assert.deepEqual(fs.readdirSync(e.runRoot), [], 'the vassal\'s directory removed');
    for (const c of ['unified', 'memory', 'pids', 'cpu'] as const) {
      assert.equal(fs.existsSync(e.vassalCgroupDir('esc.ini', c)), false, `the vassal's ${c} cgroup removed`);
    }
    assert.equal(startTime(bystander.pid!), bystanderStart, 'the process outside the vassal is untouched');
    assert.doesNotMatch(JSON.stringify(e.log.filter((l) => l.vassal === 'esc.ini')), /did not stop in time|survived the cgroup kill/);

    // Nothing is frozen: another vassal is deployed, reloaded and removed right away.
    const t0 = Date.now();
    e.write('next.ini', ['attach-daemon = sleep 3600']);
    await e.until(() => e.running('next.ini'), 3000, 'next.ini deployed and running');
    const deployed = Date.now() - t0;
    const first = e.row('next.ini')!.pid;
    const reloadMs = await e.timed('reloaded', 'next.ini', () => e.write('next.ini', ['attach-daemon = sleep 3599']), 3000);
    await e.until(() => e.running('next.ini') && e.row('next.ini')!.pid !== first, 3000, 'next.ini running again');
    const removeMs = await e.timed('retired', 'next.ini', () => e.remove('next.ini'), 3000);
    t.diagnostic(`clone=${clone}: then another vassal deployed in ${deployed} ms, reloaded in ${reloadMs} ms, removed in ${removeMs} ms`);
    assert.equal(await lab.stopEmperor(e).then((l) => l.length), 0, 'the emperor leaves no cgroup and no directory');
    assert.equal(startTime(bystander.pid!), bystanderStart, 'still untouched after the emperor stopped');
  } finally {
    bystander.kill('SIGKILL');
  }
}

test('a setsid\'d, double-forked process cannot outlive its vassal (pid namespace)', async (t) => {
  await outliveTheVassal(t, 'fs,ipc,uts,net,pid');
});

test('a setsid\'d, double-forked process cannot outlive its vassal (no pid namespace: only the cgroup holds it)', async (t) => {
  await outliveTheVassal(t, 'fs,net');
});
