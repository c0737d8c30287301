// router-busy-tick.test.ts: while the router's loop is busy and waits for
// its CPU (behind other processes), a thread of the router (moat-tick)
// wakes every 0.5 ms on the loop's CPU, so that the kernel looks at that
// CPU between its ticks; otherwise it sleeps (native/busy_tick.h,
// native/sched_slice.h; docs/latency.md, "The busy loop waits a tick", has
// the traces and the neighbour's p99 with and without it). Here a flood
// keeps the loop busy and a shell loop that never sleeps on each CPU makes
// it wait. Read back from the kernel: the thread exists only once the
// router is busy, its CPU follows the loop's when the loop moves, it wakes
// about 2,000 times a second while the flood lasts and not at all once the
// router is quiet, and MOAT_BUSY_TICK=0 starts none.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { Lab, requireRoot, sh, sleep, waitFor, withEnv } from '../helpers/netns';
import { threadsNamed } from '../helpers/proc';
import { RouterLab } from '../helpers/native-router';
import { buildFrameFlood, startFrameFlood } from '../helpers/frame-flood';

const lab = new Lab();     // owns the flooder binary, built once
let flooder = '';   // bench/gen/frame-flood.c, compiled
after(() => lab.cleanup());

const allowedCpus = (tid: string) => /Cpus_allowed_list:\s*(\S+)/.exec(fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8'))?.[1];
/** Times the thread has been switched in (/proc/self/task/TID/schedstat, third field). */
const switchIns = (tid: string) => Number(fs.readFileSync(`/proc/self/task/${tid}/schedstat`, 'utf8').trim().split(/\s+/)[2]);

/** A router with env set, flooded by a framed peer for secs; body runs while it floods. */
async function whileFlooded(env: Record<string, string>, secs: number, body: (router: string, ticksBefore: Set<string>, flooded: Promise<void>) => Promise<void>): Promise<void> {
  const L = new RouterLab();
  try {
    const ticksBefore = new Set(threadsNamed('moat-tick'));
    withEnv(env, () => L.start('bt', { maxFrame: 8188, queueBytes: 1 << 20 }));   // the loop thread reads env as it starts
    sh('ip', ['-n', L.ns, 'link', 'set', L.tun, 'up']);
    const [router] = threadsNamed('moat-router').slice(-1);
    // Bounded: they end by themselves after secs + 4 s, and are killed by PID with the lab.
    for (const cpu of ['0', '1']) L.lab.spawn('timeout', [String(secs + 4), 'taskset', '-c', cpu, 'sh', '-c', 'while :; do :; done']);
    // The gateway drops the flood before its UDP stack: the router's work is the test's load.
    sh('nft', ['-f', '-'], { ns: L.ns, input: `table ip btflood {\n chain pre {\n  type filter hook prerouting priority -300;\n  ip saddr ${L.host(2)} udp dport 9001 drop\n }\n}\n` });
    const f = await startFrameFlood(L.lab, flooder, { sock: L.sockPath, addr: L.host(2), gw: L.gw, port: 9001, size: 64, secs });
    const done = f.go();
    try {
      await body(router, ticksBefore, done);
    } finally {
      await done;
    }
  } finally {
    await L.cleanup();
  }
}

test('while the router is busy a tick thread wakes about every 0.5 ms on the CPU its loop runs on, and stops once it is quiet', async () => {
  requireRoot();
  assert.ok(os.cpus().length >= 2, 'two CPUs: the loop is moved from one to the other');
  flooder = buildFrameFlood(lab);
  // 5 s: the tick follows the loop only while the flood keeps it busy, and
  // the waits before the move to CPU 1 take 1-2 s, more under ASan (a 3 s
  // flood ran out once there).
  await whileFlooded({}, 5, async (router, before, flooded) => {
    sh('taskset', ['-p', '-c', '0', router]);
    let tick = '';
    await waitFor(() => (tick = threadsNamed('moat-tick').find((t) => !before.has(t)) ?? '') !== '', 3000, 'a moat-tick thread once the router is busy');
    await waitFor(() => allowedCpus(tick) === '0', 2000, `moat-tick on CPU 0 with the loop (it has ${allowedCpus(tick)})`);
    const n0 = switchIns(tick);
    await sleep(500);
    const woke = switchIns(tick) - n0;
    // 1,000 in 500 ms at 0.5 ms; fewer when it waits for the CPU (its own tick).
    assert.ok(woke >= 300 && woke <= 1300, `moat-tick ran ${woke} times in 500 ms of flood`);
    sh('taskset', ['-p', '-c', '1', router]);
    await waitFor(() => allowedCpus(tick) === '1', 2000, `moat-tick follows the loop to CPU 1 (it has ${allowedCpus(tick)})`);
    await flooded;
    await sleep(400);   // a quiet 100 ms window, and the thread back in its wait
    const q0 = switchIns(tick);
    await sleep(500);
    assert.ok(switchIns(tick) - q0 <= 2, `quiet: moat-tick ran ${switchIns(tick) - q0} times in 500 ms`);
  });
});

test('MOAT_BUSY_TICK=0: a busy router starts no tick thread', async () => {
  requireRoot();
  await whileFlooded({ MOAT_BUSY_TICK: '0' }, 1, async (_router, before) => {
    await sleep(700);   // busy for several 100 ms windows
    assert.deepEqual(threadsNamed('moat-tick').filter((t) => !before.has(t)), [], 'no moat-tick thread');
  });
});

test('the tick thread starts only once the router is busy', async () => {
  requireRoot();
  const before = new Set(threadsNamed('moat-tick'));
  const L = new RouterLab();
  try {
    L.start('bq');
    sh('ip', ['-n', L.ns, 'link', 'set', L.tun, 'up']);
    await L.deviceVassal(L.host(4), 'bqv');
    await waitFor(() => threadsNamed('moat-router').length > 0, 3000, 'a router loop');
    // A quiet router (a device's hello, no traffic) has no tick thread.
    await sleep(300);
    assert.deepEqual(threadsNamed('moat-tick').filter((t) => !before.has(t)), [], 'quiet: no moat-tick thread');
  } finally {
    await L.cleanup();
  }
});
