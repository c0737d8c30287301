// sched-slice.test.ts: the router's loop thread runs with a 0.1 ms EEVDF
// slice while it is busy and with the kernel's default while it is quiet;
// a device's loop thread keeps the default (native/sched_slice.{h,cc},
// docs/latency.md); MOAT_SHORT_SLICE=1 in the environment keeps the router's
// short from the start. Read back from the kernel
// (/proc/self/task/TID/sched, se.slice) for the threads named moat-router
// and moat-device: an earlier version passed SCHED_FLAG_KEEP_PARAMS, which
// the kernel accepted without changing the slice: only reading it back
// shows that.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import { Lab, requireRoot, uniqueName, waitFor, withEnv } from '../helpers/netns';
import { RouterLab, startNativeRouter } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';
import { threadsNamed } from '../helpers/proc';
import { ipToInt, udpPacket } from '../helpers/packets';
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
  for (const tid of threadsNamed(name)) {
    try {
      const m = /se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync(`/proc/self/task/${tid}/sched`, 'utf8'));
      if (m) out.push(Number(m[1]));
    } catch { /* the thread ended */ }
  }
  return out;
}

function mainSlice(): number {
  return Number(/se\.slice\s*:\s*(\d+)/.exec(fs.readFileSync('/proc/self/sched', 'utf8'))![1]);
}

test("the router loop thread: the kernel's slice while quiet, 0.1 ms while busy, the default again once quiet", async (t) => {
  requireRoot();
  if (!sliceSettable()) {
    t.diagnostic(`kernel ${os.release()} has no settable slice (6.12+): the request is refused and nothing else changes`);
    return;
  }
  assert.ok(fs.existsSync('/proc/self/sched'), 'this kernel shows scheduler details in /proc (CONFIG_SCHED_DEBUG)');
  const main = mainSlice();
  assert.notEqual(main, 100000);
  const r = new RouterLab();
  try {
    r.start('ss');
    await waitFor(() => threadSlices('moat-router').length === 1, 3000, 'a thread named moat-router');
    assert.deepEqual(threadSlices('moat-router'), [main], 'quiet: the kernel default');
    const addr = r.host(2);
    const p = await FramePeer.connect(r.sockPath, { keep: false });
    p.send(udpPacket(addr, r.gw, 9000, 9000, 'hello'));
    await waitFor(() => r.router.stats().peers.some((x) => x.addr === ipToInt(addr)), 5000, `router learned ${addr}`);
    // A packet now and then is not load (under 1,000 a window).
    await new Promise((res) => setTimeout(res, 300));
    assert.deepEqual(threadSlices('moat-router'), [main], 'after a hello: still the default');
    const flood = r.udpFromGateway(addr, 9000, 200000, 64);
    await waitFor(() => threadSlices('moat-router')[0] === 100000, 20000, 'the short slice while the gateway floods the peer');
    assert.equal(await flood, 0, 'the gateway sent its datagrams');
    await waitFor(() => threadSlices('moat-router')[0] === main, 3000, 'the default again once quiet');
    assert.equal(mainSlice(), main, 'the rest of the process keeps the kernel default');
    p.sock.destroy();
  } finally {
    await r.cleanup();
  }
});

test('with MOAT_SHORT_SLICE=1 the router loop thread has the 0.1 ms slice from the start', async (t) => {
  requireRoot();
  if (!sliceSettable()) {
    t.diagnostic(`kernel ${os.release()} has no settable slice (6.12+)`);
    return;
  }
  const started = withEnv({ MOAT_SHORT_SLICE: '1' }, () => startNativeRouter(lab, lab.netns('ss'), 'ss'));
  await waitFor(() => threadSlices('moat-router').length === 1, 3000, 'a thread named moat-router');
  assert.deepEqual(threadSlices('moat-router'), [100000], 'se.slice of moat-router with MOAT_SHORT_SLICE=1');
  started.router.stop();
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
