// sched-slice.test.ts: the router's loop thread runs with a 0.1 ms EEVDF
// slice (native/sched_slice.cc; docs/latency.md): read back from the kernel
// (/proc/self/task/TID/sched, se.slice) for the thread named moat-router.
// An earlier version passed SCHED_FLAG_KEEP_PARAMS, which the kernel
// accepted without changing the slice: only reading it back shows that.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';

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

test('the router loop thread asks for, and gets, a 0.1 ms slice', async (t) => {
  requireRoot();
  if (!sliceSettable()) {
    t.diagnostic(`kernel ${os.release()} has no settable slice (6.12+): the request is refused and nothing else changes`);
    return;
  }
  assert.ok(fs.existsSync('/proc/self/sched'), 'this kernel shows scheduler details in /proc (CONFIG_SCHED_DEBUG)');
  const ns = lab.netns('ss');
  startNativeRouter(lab, ns, 'ss');
  await waitFor(() => threadSlices('moat-router').length > 0, 3000, 'a thread named moat-router');
  assert.deepEqual(threadSlices('moat-router'), [100000], 'se.slice of moat-router, in ns');
  // The rest of the process keeps the kernel's default.
  const main = Number(/se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync('/proc/self/sched', 'utf8'))![1]);
  assert.notEqual(main, 100000);
});
