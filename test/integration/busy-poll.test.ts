// busy-poll.test.ts: polling after traffic (native/busy_poll.h,
// tuntap-router-busy-poll / tuntap-device-busy-poll). A moat router (the
// CLI, its tun in a gateway namespace, stats on a unix socket) and a moat device (the
// CLI, in a vassal namespace) carry real pings and a paced UDP stream. What
// an admin is promised: after moving a packet the router polls and catches
// the answer; idle it neither polls nor burns CPU; sparse one-way traffic
// cannot make it poll more than 5% of a CPU; 0 turns it off.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { tempDir, readStats, MoatProcess } from '../helpers/moat';
import { startCliDevice, startCliRouter } from '../helpers/cli-path';
import { buildFlood, FLOOD } from '../../bench/lib';

const GW = '10.77.0.1';
const VA = '10.77.0.2';

interface Pair {
  lab: Lab;
  gw: string;
  vns: string;
  stats: string;
  router: MoatProcess;
}

async function pair(routerArgs: string[], deviceArgs: string[] = []): Promise<Pair> {
  requireRoot();
  const lab = new Lab();
  try {
    const dir = tempDir(lab);
    const sock = path.join(dir, 'r.sock');
    const stats = path.join(dir, 's.sock');
    const gw = lab.netns('mbpg');
    const vns = lab.netns('mbpv');
    // IPv4 only: no IPv6 router solicitations crossing while "idle".
    for (const ns of [gw, vns]) sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns });
    const router = await startCliRouter(lab, { ns: gw, tun: uniqueName('mbpt'), sock, stats, addr: GW }, routerArgs);
    await startCliDevice(lab, vns, sock, { name: 'mbpu0', addr: VA, gw: GW, args: deviceArgs });
    return { lab, gw, vns, stats, router };
  } catch (e) {
    await lab.cleanup();
    throw e;
  }
}

function pings(p: Pair, count: number): void {
  sh('ping', ['-n', '-q', '-c', String(count), '-i', '0.01', '-W', '1', GW], { ns: p.vns, timeoutMs: 30000 });
  sh('ping', ['-n', '-q', '-c', String(count), '-i', '0.01', '-W', '1', VA], { ns: p.gw, timeoutMs: 30000 });
}

/** CPU time (user + system, ms) the process has used so far. */
function cpuMs(pid: number): number {
  const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(f[11]) + Number(f[12]);  // utime, stime (fields 14 and 15)
  return (ticks * 1000) / Number(sh('getconf', ['CLK_TCK']).trim());
}

test('after moving a packet the router polls and catches answers; idle it does not poll', async () => {
  const p = await pair([]);
  try {
    pings(p, 100);
    const s = (await readStats(p.stats)).moat.busy_poll;
    assert.equal(s.us, 100, 'default window');
    assert.ok(s.polls >= 100, `polls after 200 round trips: ${JSON.stringify(s)}`);
    assert.ok(s.caught >= 50, `answers caught while polling: ${JSON.stringify(s)}`);
    // Idle: no poll at all, and the router's CPU time hardly moves.
    const cpu0 = cpuMs(p.router.child.pid!);
    await new Promise((r) => setTimeout(r, 2000));
    const idle = (await readStats(p.stats)).moat.busy_poll;
    const cpu = cpuMs(p.router.child.pid!) - cpu0;
    assert.equal(idle.polls, s.polls, `no polls while idle: ${JSON.stringify(s)} -> ${JSON.stringify(idle)}`);
    assert.ok(cpu <= 100, `router CPU over 2 s idle: ${cpu} ms`);
  } finally {
    await p.lab.cleanup();
  }
});

test('tuntap-router-busy-poll = 0: the router never polls', async () => {
  const p = await pair(['--tuntap-router-busy-poll', '0'], ['--tuntap-device-busy-poll', '0']);
  try {
    pings(p, 50);
    const s = (await readStats(p.stats)).moat.busy_poll;
    assert.deepEqual(s, { us: 0, polls: 0, caught: 0, ms: 0 });
  } finally {
    await p.lab.cleanup();
  }
});

test('sparse one-way traffic: polling stays within 5% of a CPU', async () => {
  buildFlood();
  // 1,000 us windows, so without the budget polling would take most of the
  // time between the stream's packets (one every 0.5 ms).
  const p = await pair(['--tuntap-router-busy-poll', '1000']);
  try {
    const recv = p.lab.spawn(FLOOD, ['recv', '--bind', GW, '--port', '9', '--duration', '8', '--idle', '2', '--tag', '7'], { ns: p.gw });
    let ready = '';
    recv.stderr!.on('data', (d) => { ready += d; });
    await waitFor(() => ready.includes('ready'), 5000, 'receiver bound');
    const s0 = (await readStats(p.stats)).moat.busy_poll;
    const t0 = Date.now();
    const sent = JSON.parse(sh('ip', ['netns', 'exec', p.vns, FLOOD, 'send', '--dst', GW, '--port', '9', '--rate', '2000',
      '--batch', '1', '--duration', '3', '--tag', '7'], { timeoutMs: 20000 }));
    const elapsedMs = Date.now() - t0;
    const s1 = (await readStats(p.stats)).moat.busy_poll;
    const ms = s1.ms - s0.ms;
    const polls = s1.polls - s0.polls;
    assert.ok(sent.sent >= 5000, `stream sent: ${JSON.stringify(sent)}`);
    // 5% of the elapsed time, the 10 ms burst, and one window of slack.
    const bound = 0.05 * elapsedMs + 10 + 1;
    assert.ok(ms <= bound, `polling ${ms} ms over ${elapsedMs} ms (bound ${bound.toFixed(1)}), ${polls} polls`);
    // It did poll (the bound, not the traffic, stopped it): at least 2%.
    assert.ok(ms >= 0.02 * elapsedMs, `polling ${ms} ms over ${elapsedMs} ms, ${polls} polls`);
  } finally {
    await p.lab.cleanup();
  }
});
