// sched-slice.test.ts: the router's and a device's loop threads keep the
// kernel's default slice, which measured better for round trips than a
// short one (docs/latency.md); with MOAT_SHORT_SLICE=1 in the environment
// the router's loop asks for a 0.1 ms EEVDF slice (native/sched_slice.cc).
// Read back from the kernel (/proc/self/task/TID/sched, se.slice) for the
// threads named moat-router and moat-device.
// An earlier version passed SCHED_FLAG_KEEP_PARAMS, which the kernel
// accepted without changing the slice: only reading it back shows that.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { Lab, requireRoot, uniqueName, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';
import { deviceConfigFor } from '../../src/config/router-config';
import { Device } from '../../src/device/device';

const lab = new Lab();
after(() => lab.cleanup());

/** Kernels with a settable fair-task slice (sched_attr.sched_runtime for SCHED_OTHER): 6.12 and later. */
function sliceSettable(): boolean {
  const [maj, min] = os.release().split('.').map((x) => parseInt(x, 10));
  return maj > 6 || (maj === 6 && min >= 12);
}

function threadSlices(name: string): number[] {
  const out: number[] = [];
  for (const tid of fs.readdirSync('/proc/self/task')) {
    try {
      if (fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() !== name) continue;
      const m = /se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync(`/proc/self/task/${tid}/sched`, 'utf8'));
      if (m) out.push(Number(m[1]));
    } catch { /* the thread ended */ }
  }
  return out;
}

function mainSlice(): number {
  return Number(/se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync('/proc/self/sched', 'utf8'))![1]);
}

test("the router loop thread keeps the kernel's slice; with MOAT_SHORT_SLICE=1 it asks for, and gets, 0.1 ms", async (t) => {
  requireRoot();
  if (!sliceSettable()) {
    t.diagnostic(`kernel ${os.release()} has no settable slice (6.12+): the request is refused and nothing else changes`);
    return;
  }
  assert.ok(fs.existsSync('/proc/self/sched'), 'this kernel shows scheduler details in /proc (CONFIG_SCHED_DEBUG)');
  const main = mainSlice();
  assert.notEqual(main, 100000);
  const a = startNativeRouter(lab, lab.netns('ss'), 'ss');
  await waitFor(() => threadSlices('moat-router').length === 1, 3000, 'a thread named moat-router');
  assert.deepEqual(threadSlices('moat-router'), [main], 'se.slice of moat-router by default: the main thread\'s');
  a.router.stop();
  await waitFor(() => threadSlices('moat-router').length === 0, 3000, 'the first router stopped');
  const saved = process.env.MOAT_SHORT_SLICE;
  process.env.MOAT_SHORT_SLICE = '1';
  try {
    startNativeRouter(lab, lab.netns('ss'), 'ss');
    await waitFor(() => threadSlices('moat-router').length === 1, 3000, 'a thread named moat-router');
  } finally {
    if (saved === undefined) delete process.env.MOAT_SHORT_SLICE; else process.env.MOAT_SHORT_SLICE = saved;
  }
  assert.deepEqual(threadSlices('moat-router'), [100000], 'se.slice of moat-router with MOAT_SHORT_SLICE=1');
  assert.equal(mainSlice(), main, 'the rest of the process keeps the kernel default');
});

test("a device's loop thread keeps the kernel's default slice", async (t) => {
  requireRoot();
  if (!sliceSettable()) {
    t.diagnostic(`kernel ${os.release()} has no settable slice (6.12+)`);
    return;
  }
  const ns = lab.netns('sd');
  const { sock } = startNativeRouter(lab, ns, 'sd');
  const vns = lab.netns('sv');
  const dev = new Device(deviceConfigFor(uniqueName('sdv'), sock, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false }), { netns: `/run/netns/${vns}` });
  dev.start();
  try {
    await waitFor(() => threadSlices('moat-device').length > 0, 3000, 'a thread named moat-device');
    const main = mainSlice();
    assert.deepEqual(threadSlices('moat-device'), [main], 'se.slice of moat-device: the same as the main thread\'s');
    assert.notEqual(main, 100000);
  } finally {
    dev.stop();
  }
});
