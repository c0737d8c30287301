// privsep.test.ts: privilege separation in `moat emperor` (the real program,
// the real vassal runtime). The emperor stays root to spawn vassals; the
// router runs in a process of its own (`moat _router-process`, a child of the
// emperor) that drops to nobody with no capability once its tun device and
// sockets exist. Checked through /proc/PID/status, packets, the stats socket,
// the metrics endpoint and signals:
//   - the router process: uid/gid 65534, CapEff = CapPrm = CapBnd = 0 and
//     no_new_privs (on every thread); the emperor:
//     root with CAP_SYS_ADMIN; a vassal's traffic flows through the router;
//   - SIGHUP to the emperor reloads the rules in the router process;
//   - `moat emperor --status` lists the vassal; metrics has both processes';
//   - SIGTERM ends both, exit 0; the router process killed: the emperor stops
//     its vassals and exits 1 with the reason; the emperor killed: the router
//     process (and the vassals) do not outlive it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Lab, requireRoot, uniqueName, waitFor } from '../helpers/netns';
import { CLI, MoatProcess, readStats, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { procStatus } from '../helpers/proc';
import { readLayout } from '../../src/vassal/cgroup-layout';
import { cgroupTree } from '../../src/vassal/cgroup-fs';

const lab = new Lab();
after(() => lab.cleanup());

const CAP_SYS_ADMIN = 21n;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

const status = procStatus;
const alive = (pid: number) => {
  try { return !/^State:\s+Z/m.test(fs.readFileSync(`/proc/${pid}/status`, 'utf8')); } catch { return false; }
};

/** The emperor's child running `moat _router-process`, by PPid. */
function routerProcessOf(parent: number): number | undefined {
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (status(Number(d)).PPid !== String(parent)) continue;
      if (fs.readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0').includes('_router-process')) return Number(d);
    } catch { /* gone */ }
  }
  return undefined;
}

function pingFrom(pid: number, dst: string): boolean {
  try {
    execFileSync('nsenter', ['-t', String(pid), '-n', 'ping', '-n', '-c', '1', '-W', '1', dst], { stdio: 'ignore', timeout: 5000 });
    return true;
  } catch { return false; }
}

function metrics(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
}

interface Emperor { gwNs: string; tun: string; moat: MoatProcess; routerPid: number; vassalPid: number; gw: string; stats: string; sock: string; rules: string; metricsPort: number }

async function startEmperor(extra: string[] = []): Promise<Emperor> {
  requireRoot();
  const tmp = tempDir(lab);
  fs.chmodSync(tmp, 0o755);     // nobody (the router process) must reach its sockets and rules
  const net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  const gw = `${net24}1`;
  const gwNs = lab.netns('psg');
  const tun = uniqueName('ps');
  const dir = path.join(tmp, 'vassals');
  fs.mkdirSync(dir);
  const sock = path.join(tmp, 't.sock');
  const stats = path.join(tmp, 's.sock');
  const rules = path.join(tmp, 'policy.rules');
  fs.writeFileSync(rules, 'out allow\nin allow\n', { mode: 0o644 });
  const metricsPort = 20000 + crypto.randomInt(30000);
  const ini = path.join(tmp, 'emperor.ini');
  fs.writeFileSync(ini, [
    '[uwsgi]',
    `emperor = ${dir}`,
    'emperor-use-clone = fs,ipc,uts,net,pid',
    'emperor-freq = 1',
    `vassals-dir-root = ${path.join(tmp, 'run')}`,
    `tuntap-router = ${tun} ${sock} ${stats}`,
    `tuntap-router-netns = /run/netns/${gwNs}`,
    `tuntap-router-firewall-file = ${rules}`,
    `metrics = 127.0.0.1:${metricsPort}`,
    `exec-as-root = ip addr add ${gw}/24 dev ${tun}`,
    `exec-as-root = ip link set ${tun} up`,
    ...extra,
    '',
  ].join('\n'));
  fs.writeFileSync(path.join(dir, 'v.yaml'), [
    'uwsgi:', `  tuntap-device: uwsgi0 ${sock}`, `  tuntap-device-address: ${net24}2/24`, `  tuntap-device-route: ${gw}`, '',
  ].join('\n'));
  const moat = startMoat(lab, ['emperor', '--ini', ini]);
  await waitForSocket(stats, moat, 15000);
  let vassalPid = 0;
  const end = Date.now() + 20000;
  for (;;) {
    const row = (await readStats(stats)).emperor?.vassals?.find((v: { name: string }) => v.name === 'v.yaml');
    if (row?.state === 'running' && row.pid) { vassalPid = row.pid; break; }
    if (Date.now() > end) throw new Error(`vassal not running\n${JSON.stringify(row)}\n${moat.output().slice(-4000)}`);
    await sleep(200);
  }
  const routerPid = routerProcessOf(moat.child.pid!);
  assert.ok(routerPid, `a _router-process child of ${moat.child.pid}`);
  return { gwNs, tun, moat, routerPid, vassalPid, gw, stats, sock, rules, metricsPort };
}

/** RSS and PSS in KiB (smaps_rollup). */
function memory(pid: number): { rss: number; pss: number } {
  const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  return { rss: Number(/^Rss:\s+(\d+)/m.exec(t)![1]), pss: Number(/^Pss:\s+(\d+)/m.exec(t)![1]) };
}

test('the router process runs as nobody with no capability; the emperor keeps root; traffic, reload, status, metrics; SIGTERM ends both', async (t) => {
  const e = await startEmperor();
  const r = status(e.routerPid);
  assert.match(r.Uid, /^65534\s+65534\s+65534\s+65534$/, 'router process: every uid is nobody');
  assert.match(r.Gid, /^65534\s+65534\s+65534\s+65534$/, 'router process: every gid is nogroup');
  assert.equal(r.CapEff, '0000000000000000', 'router process: no effective capability');
  assert.equal(r.CapPrm, '0000000000000000', 'router process: no permitted capability');
  assert.equal(r.Groups, '', 'router process: no supplementary group');
  // Hardened (issue 15): nothing it runs can gain privilege through execve.
  assert.equal(r.CapBnd, '0000000000000000', 'router process: empty capability bounding set');
  assert.equal(r.NoNewPrivs, '1', 'router process: no_new_privs');
  const threads = fs.readdirSync(`/proc/${e.routerPid}/task`);
  assert.ok(threads.length > 1, `the router process has threads (${threads.length})`);
  for (const tid of threads) {
    assert.equal(status(Number(tid)).NoNewPrivs, '1', `router process thread ${tid}: no_new_privs`);
  }
  const p = status(e.moat.child.pid!);
  assert.match(p.Uid, /^0\s+0\s+0\s+0$/, 'the emperor stays root');
  assert.ok((BigInt('0x' + p.CapEff) >> CAP_SYS_ADMIN) & 1n, `the emperor keeps CAP_SYS_ADMIN (CapEff ${p.CapEff})`);
  // The stats document is the router process's.
  const doc = await readStats(e.stats);
  assert.equal(doc.pid, e.routerPid);
  assert.equal(doc.uid, 65534);

  await waitFor(() => pingFrom(e.vassalPid, e.gw), 10000, 'the vassal pings the gateway through the router process');

  // SIGHUP to the emperor: the router process reloads (as nobody).
  const reloadsBefore = (e.moat.output().match(/"why":"SIGHUP"[^\n]*"msg":"rules reloaded"/g) ?? []).length;
  e.moat.child.kill('SIGHUP');
  await waitFor(() => (e.moat.output().match(/"why":"SIGHUP"[^\n]*"msg":"rules reloaded"/g) ?? []).length > reloadsBefore, 5000, `reload on SIGHUP\n${e.moat.output().slice(-2000)}`);
  const line = e.moat.output().split('\n').filter((l) => /"why":"SIGHUP".*"msg":"rules reloaded"/.test(l)).pop()!;
  assert.equal(JSON.parse(line).pid, e.routerPid, 'reloaded by the router process');
  // The new rules take effect there: deny all, then allow again.
  fs.writeFileSync(e.rules, 'out deny\nin deny\n');
  e.moat.child.kill('SIGHUP');
  await waitFor(() => !pingFrom(e.vassalPid, e.gw), 5000, 'deny rules in force');
  fs.writeFileSync(e.rules, 'out allow\nin allow\n');
  e.moat.child.kill('SIGHUP');
  await waitFor(() => pingFrom(e.vassalPid, e.gw), 5000, 'allow rules in force again');

  // moat emperor --status reads the router process's stats socket, with the emperor's section.
  const out = execFileSync(process.execPath, [CLI, 'emperor', '--status', '--stats', e.stats], { encoding: 'utf8', timeout: 10000 });
  assert.match(out, new RegExp(`^v\\.yaml\\s+running\\s+${e.vassalPid}\\s+`, 'm'), out);
  const rows = JSON.parse(execFileSync(process.execPath, [CLI, 'emperor', '--status', '--json', '--stats', e.stats], { encoding: 'utf8', timeout: 10000 }));
  assert.ok(rows.vassals[0].traffic.tx_packets > 0, 'the vassal row carries the router process\'s peer counters');

  // Metrics: the router's and the emperor's, from one endpoint.
  const m = await metrics(e.metricsPort);
  assert.match(m, /^moat_tun_packets_total\{direction="rx"\} \d+/m);
  assert.match(m, /^moat_emperor_log_dropped_total \d+/m);
  const rm = memory(e.routerPid);
  const pm = memory(e.moat.child.pid!);
  t.diagnostic(`memory (KiB): router process RSS ${rm.rss} PSS ${rm.pss}; emperor RSS ${pm.rss} PSS ${pm.pss}`);

  e.moat.child.kill('SIGTERM');
  const code = await Promise.race([e.moat.exited, sleep(30000).then(() => 'timeout')]);
  assert.equal(code, 0, e.moat.output().slice(-3000));
  assert.equal(alive(e.routerPid), false, 'the router process is gone');
  assert.equal(alive(e.vassalPid), false, 'the vassal is gone');
  assert.equal(fs.existsSync(e.sock), false, 'the router socket is removed');
  assert.equal(fs.existsSync(e.stats), false, 'the stats socket is removed');
  assert.match(e.moat.output(), /emperor stopped[\s\S]*router stopped/);
});

test('the router process killed: the emperor logs why, stops its vassals and exits 1', async () => {
  const e = await startEmperor();
  process.kill(e.routerPid, 'SIGKILL');
  const code = await Promise.race([e.moat.exited, sleep(30000).then(() => 'timeout')]);
  assert.equal(code, 1, e.moat.output().slice(-3000));
  assert.match(e.moat.output(), new RegExp(`the router process \\(pid ${e.routerPid}\\) killed by SIGKILL`));
  assert.match(e.moat.output(), /stopping: the router failed/);
  assert.equal(alive(e.vassalPid), false, 'no vassal left behind');
  assert.equal(fs.existsSync(e.sock), false, 'the router socket is removed by the emperor');
});

test('the router fails (its tun device deleted): the emperor gets its reason, stops its vassals, exits 1', async () => {
  const e = await startEmperor();
  execFileSync('ip', ['-n', e.gwNs, 'link', 'del', e.tun]);
  const code = await Promise.race([e.moat.exited, sleep(30000).then(() => 'timeout')]);
  assert.equal(code, 1, e.moat.output().slice(-3000));
  const stopLine = e.moat.output().split('\n').find((l) => /stopping: the router failed/.test(l));
  assert.ok(stopLine, e.moat.output().slice(-3000));
  assert.equal(JSON.parse(stopLine).pid, e.moat.child.pid, 'logged by the emperor');
  assert.match(JSON.parse(stopLine).reason, new RegExp(`tun device ${e.tun} failed`), 'with the router process\'s reason');
  assert.equal(alive(e.routerPid), false);
  assert.equal(alive(e.vassalPid), false, 'no vassal left behind');
});

test('the emperor killed: the router process does not outlive it', async () => {
  const e = await startEmperor();
  e.moat.child.kill('SIGKILL');
  await e.moat.exited;
  await waitFor(() => !alive(e.routerPid), 5000, 'router process exit');
  await waitFor(() => !alive(e.vassalPid), 5000, 'vassal exit');
  assert.match(e.moat.output(), /the emperor process is gone: stopping the router/);
  // A killed emperor cannot remove its cgroups (empty now): the test removes them.
  for (const h of readLayout().used) {
    for (const dir of cgroupTree(path.join(h.mountPoint, h.self, `moat-emperor-${e.moat.child.pid}`))) {
      try { fs.rmdirSync(dir); } catch { /* not there, or not empty: left for a look */ }
    }
  }
});

test('uid/gid in the emperor\'s config name the router process\'s user', async () => {
  const e = await startEmperor(['uid = daemon', 'gid = daemon']);
  const r = status(e.routerPid);
  assert.match(r.Uid, /^1\s+1\s+1\s+1$/, 'router process: daemon');
  assert.match(r.Gid, /^1\s+1\s+1\s+1$/);
  assert.equal(r.CapEff, '0000000000000000');
  assert.match(status(e.moat.child.pid!).Uid, /^0\s/, 'the emperor stays root');
  e.moat.child.kill('SIGTERM');
  assert.equal(await e.moat.exited, 0, e.moat.output().slice(-2000));
});

test('uid/gid in an emperor config without tuntap-router: refused (the emperor itself keeps root)', () => {
  requireRoot();
  const dir = tempDir(lab);
  let err = '';
  try {
    execFileSync(process.execPath, [CLI, 'emperor', '--emperor', dir, '--uid', 'nobody'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 });
  } catch (e) {
    const x = e as { status: number; stderr: string };
    assert.equal(x.status, 2);
    err = x.stderr;
  }
  assert.match(err, /uid\/gid in the emperor's config name the router process's user, and this emperor runs no router/);
});
