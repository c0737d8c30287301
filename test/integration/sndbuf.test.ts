// sndbuf.test.ts: the send buffer of router <-> device connections
// (native/sndbuf.h, tuntap-router-sndbuf / tuntap-device-sndbuf). A moat
// router and a moat device (the CLI, each with its tun in its own namespace)
// connect; `ss` shows the send buffer (skmem tb) of the process's connected
// socket (both ends show in the device's namespace: an accepted unix socket
// belongs to the connecting side's): the device asks 4 MiB by default, the
// router the kernel's default unless configured (the kernel keeps double, as
// for any SO_SNDBUF), the kernel's default with 0. (A router's peer buffer
// grows later once the peer streams: router-sndbuf-growth.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { startCliDevice, startCliRouter } from '../helpers/cli-path';

/** The largest send buffer (tb) of a connected unix stream socket of pid, in netns ns. */
function sendBuffer(ns: string, pid: number): number | undefined {
  const out = sh('ss', ['-N', ns, '-x', '-m', '-p', '-n', 'state', 'established']);
  // One socket a line: "u_str ESTAB ... users:(("node",pid=N,fd=M)) skmem:(...,tb212992,...)"
  const entries = out.split('\n');
  let best: number | undefined;
  for (const e of entries) {
    if (!e.includes(`pid=${pid},`)) continue;
    const m = /tb(\d+)/.exec(e);
    if (m) best = Math.max(best ?? 0, Number(m[1]));
  }
  return best;
}

async function pair(routerArgs: string[], deviceArgs: string[]): Promise<{ router?: number; device?: number }> {
  requireRoot();
  const lab = new Lab();
  try {
    const dir = tempDir(lab);
    const sock = path.join(dir, 'r.sock');
    const gw = lab.netns('msb');
    const vns = lab.netns('msv');
    const router = await startCliRouter(lab, { ns: gw, tun: uniqueName('msbt'), sock }, routerArgs);
    const device = await startCliDevice(lab, vns, sock, { name: uniqueName('msbu'), args: deviceArgs });
    const seen: { router?: number; device?: number } = {};
    await waitFor(() => {
      seen.router = sendBuffer(vns, router.child.pid!);
      seen.device = sendBuffer(vns, device.child.pid!);
      return seen.router !== undefined && seen.device !== undefined;
    }, 15000, `both ends connected (router: ${router.output().slice(-500)} device: ${device.output().slice(-500)})`);
    return seen;
  } finally {
    await lab.cleanup();
  }
}

test('by default the device asks 4 MiB; the router keeps the kernel default', async () => {
  const dflt = Number(sh('sysctl', ['-n', 'net.core.wmem_default']).trim());
  const tb = await pair([], []);
  assert.equal(tb.router, dflt, `router's peer socket: the kernel's default (${dflt})`);
  assert.ok(tb.device! >= 4 << 20, `device's socket: tb ${tb.device} >= 4 MiB`);
});

test('tuntap-router-sndbuf / tuntap-device-sndbuf: 1 MiB asked, and 0 keeps the kernel default', async () => {
  const dflt = Number(sh('sysctl', ['-n', 'net.core.wmem_default']).trim());
  const tb = await pair(['--tuntap-router-sndbuf', String(1 << 20)], ['--tuntap-device-sndbuf', '0']);
  assert.equal(tb.router, 2 << 20, 'router: 1 MiB asked, doubled by the kernel');
  assert.equal(tb.device, dflt, `device: the kernel's default (${dflt})`);
});
