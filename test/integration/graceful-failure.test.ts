// graceful-failure.test.ts: the moat program when the world breaks under it
// (issue 8, point 6). Each case runs its own router in its own gateway
// namespace with a real device in a vassal namespace:
//   - its tun device deleted: logged, clean stop, exit 1, quickly;
//   - its socket directory removed: old peers keep working, the socket is
//     bound again, new peers get in; unbindable: exit 1 with the reason;
//   - its log on a full disk: it keeps routing, counts the lost lines, says so
//     once it can write again, exits 0 on SIGTERM;
//   - out of file descriptors: no busy loop, old peers keep working, new peers
//     get in once fds are free again.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { Lab, requireRoot, sh, sleep, uniqueName, waitFor } from '../helpers/netns';
import { CLI, readStats, tempDir, MoatProcess } from '../helpers/moat';
import { CliGateway, cliRouterArgs, pings, startCliDevice, startCliRouter } from '../helpers/cli-path';

const lab = new Lab();
after(() => lab.cleanup());

const GW = '192.168.0.1';

type Gateway = CliGateway & { dir: string };

function gateway(sockRel = 'tuntap.sock'): Gateway {
  const dir = tempDir(lab);
  return { ns: lab.netns('mfg'), tun: uniqueName('mf'), dir, sock: path.join(dir, sockRel), addr: GW };
}

const startRouter = (g: Gateway, extra: string[] = []) => startCliRouter(lab, g, extra);

/** A vassal namespace with a device at addr; resolves once it pings the gateway. */
async function vassal(g: Gateway, addr: string): Promise<{ ns: string; device: MoatProcess }> {
  const ns = lab.netns('mfv');
  return { ns, device: await startCliDevice(lab, ns, g.sock, { addr, gw: GW }) };
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => { t = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms); }),
  ]);
}

test('tun device deleted under the router: logged, clean stop, exit 1', async () => {
  requireRoot();
  const g = gateway();
  const router = await startRouter(g);
  await vassal(g, '192.168.0.2');
  const t0 = Date.now();
  sh('ip', ['-n', g.ns, 'link', 'del', g.tun]);
  const code = await withTimeout(router.exited, 5000, `moat to exit after its tun was deleted\n${router.output()}`);
  const took = Date.now() - t0;
  assert.equal(code, 1, router.output());
  assert.ok(took < 3000, `exited within 3 s (took ${took} ms)`);
  assert.match(router.output(), new RegExp(`tun device ${g.tun} failed.*cannot route without its tun device`));
  assert.match(router.output(), /stopping: the router failed/);
  assert.match(router.output(), /router stopped/);
  assert.equal(fs.existsSync(g.sock), false, 'socket file removed');
});

test('socket directory removed: connected peers keep working, the socket is bound again, new peers get in', async () => {
  requireRoot();
  const g = gateway(path.join('run', 'tuntap.sock'));
  const router = await startRouter(g);
  const v1 = await vassal(g, '192.168.0.2');
  fs.rmSync(path.dirname(g.sock), { recursive: true });
  assert.ok(pings(v1.ns, GW, 2), 'the connected peer still pings the gateway');
  await waitFor(() => /socket bound again/.test(router.output()), 5000, `socket bound again\n${router.output()}`);
  assert.match(router.output(), /socket file \S+tuntap\.sock was removed: new peers cannot connect/);
  assert.ok(fs.statSync(g.sock).isSocket(), 'socket file back');
  const v2 = await vassal(g, '192.168.0.3');
  assert.ok(pings(v2.ns, GW, 2), 'a new peer pings the gateway');
  assert.ok(pings(v1.ns, GW, 2), 'the first peer still pings the gateway');
  router.child.kill('SIGTERM');
  assert.equal(await withTimeout(router.exited, 5000, 'SIGTERM'), 0, router.output());
  assert.equal(fs.existsSync(g.sock), false, 'socket file removed on SIGTERM');
});

test('socket directory removed and not re-creatable: exit 1 with the reason', async () => {
  requireRoot();
  const g = gateway(path.join('run', 'tuntap.sock'));
  const router = await startRouter(g);
  const v1 = await vassal(g, '192.168.0.2');
  // A regular file where the directory was: mkdir cannot make it again.
  fs.rmSync(path.dirname(g.sock), { recursive: true });
  fs.writeFileSync(path.dirname(g.sock), 'not a directory\n');
  const code = await withTimeout(router.exited, 5000, `moat to exit\n${router.output()}`);
  assert.equal(code, 1, router.output());
  assert.match(router.output(), /socket file \S+tuntap\.sock was removed and could not be bound again: \S+/);
  assert.match(router.output(), /router stopped/);
  assert.equal(v1.device.child.exitCode, null, 'the device keeps running (it reconnects by itself)');
});

test('stats socket removed (file, then its directory): logged, bound again, served again', async () => {
  requireRoot();
  const g = gateway();
  const stats = path.join(g.dir, 'stats', 's.sock');
  const router = await startRouter(g, ['--tuntap-router-stats', stats]);
  await waitFor(() => fs.existsSync(stats), 5000, `stats socket\n${router.output()}`);
  assert.equal((await readStats(stats)).pid, router.child.pid);
  const bound = () => (router.output().match(/stats socket bound again/g) ?? []).length;
  fs.rmSync(stats);
  await waitFor(() => bound() === 1, 5000, `stats socket bound again\n${router.output()}`);
  assert.match(router.output(), /"level":50[^\n]*stats socket file \S+s\.sock was removed: stats readers cannot connect; binding it again/);
  assert.match(router.output(), /"level":40[^\n]*stats socket bound again/);
  assert.equal((await readStats(stats)).pid, router.child.pid, 'served again');
  fs.rmSync(path.dirname(stats), { recursive: true });
  await waitFor(() => bound() === 2, 5000, `stats socket bound again (directory)\n${router.output()}`);
  assert.equal((await readStats(stats)).pid, router.child.pid, 'served again in a new directory');
  router.child.kill('SIGTERM');
  assert.equal(await withTimeout(router.exited, 5000, 'SIGTERM'), 0, router.output());
  assert.equal(fs.existsSync(stats), false, 'stats socket removed on SIGTERM');
});

/** moat_log_dropped_total from the metrics endpoint. */
function loggedDropped(port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    http.get(`http://127.0.0.1:${port}/metrics`, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => {
        const m = /^moat_log_dropped_total (\d+)$/m.exec(b);
        if (m) resolve(Number(m[1])); else reject(new Error(`no moat_log_dropped_total in\n${b}`));
      });
    }).on('error', reject);
  });
}

test('log on a full disk: moat keeps routing, counts the lost lines, exits 0 on SIGTERM', async () => {
  requireRoot();
  const g = gateway();
  // A 64 KiB tmpfs of our own, filled up.
  const logs = path.join(g.dir, 'logs');
  fs.mkdirSync(logs);
  sh('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', logs]);
  lab.onCleanup(() => sh('umount', ['-l', logs]));
  const fill = path.join(logs, 'fill');
  try { sh('dd', ['if=/dev/zero', `of=${fill}`, 'bs=4096']); } catch { /* ENOSPC: full */ }
  const logFile = path.join(logs, 'moat.log');
  const fd = fs.openSync(logFile, 'w');
  assert.throws(() => fs.writeSync(fd, 'x'), /ENOSPC/, 'the log disk is full');

  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn(process.execPath, [CLI, ...cliRouterArgs(g, ['--metrics', `127.0.0.1:${port}`])], {
    stdio: ['ignore', 'ignore', fd], env: { ...process.env, MOAT_LOG_LEVEL: 'debug' },
  });
  lab.children.push(child);
  fs.closeSync(fd);
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(`moat exited: ${child.exitCode}`);
    return fs.existsSync(g.sock);
  }, 10000, 'socket');
  const v1 = await vassal(g, '192.168.0.2');  // peer connected, address learned: more lines lost
  assert.ok(pings(v1.ns, GW, 3), 'pings through the router answer');
  const lost = await loggedDropped(port);
  assert.ok(lost >= 3, `lost lines counted (${lost})`);
  assert.equal(child.exitCode, null, 'still running');
  assert.equal(fs.statSync(logFile).size, 0, 'nothing was written');

  // Space again: the next line is preceded by the report of the loss.
  fs.rmSync(fill);
  child.kill('SIGHUP');  // logs "rules reloaded"
  await waitFor(() => /log lines were dropped/.test(fs.readFileSync(logFile, 'utf8')), 5000, 'the loss reported');
  const report = JSON.parse(fs.readFileSync(logFile, 'utf8').split('\n')[0]);
  assert.equal(report.err, 'ENOSPC');
  assert.ok(report.dropped >= lost, `report counts ${report.dropped} lines`);

  child.kill('SIGTERM');
  assert.equal(await withTimeout(exited, 5000, 'SIGTERM'), 0);
});

function cpuTicks(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]);  // utime + stime (fields 14, 15)
}

test('out of file descriptors: no busy loop, connected peers keep working, new peers get in later', async () => {
  requireRoot();
  const g = gateway();
  const router = await startRouter(g);
  const pid = router.child.pid!;
  const v1 = await vassal(g, '192.168.0.2');
  // Room for 4 more fds, then 40 raw connections: most wait in the backlog.
  const open = fs.readdirSync(`/proc/${pid}/fd`).length;
  sh('prlimit', ['--pid', String(pid), `--nofile=${open + 4}:${open + 4}`]);
  const conns: net.Socket[] = [];
  for (let i = 0; i < 40; i++) {
    const s = net.createConnection(g.sock);
    s.on('error', () => { /* closed by the router or us */ });
    conns.push(s);
  }
  try {
    await waitFor(() => /out of file descriptors \(accept on [^)]*Too many open files\): not accepting for 200 ms/.test(router.output()),
      5000, `out of fds logged\n${router.output()}`);
    const c0 = cpuTicks(pid);
    await sleep(3000);
    const used = (cpuTicks(pid) - c0) / 100;  // USER_HZ
    assert.ok(used < 0.3, `moat used ${used.toFixed(2)} s of CPU in 3 s while out of fds`);
    assert.ok(pings(v1.ns, GW, 3), 'the connected peer still pings the gateway');
    const reports = router.output().match(/out of file descriptors/g)?.length ?? 0;
    assert.ok(reports <= 2, `reported once per window, not per retry (${reports} lines)`);
  } finally {
    for (const s of conns) s.destroy();
  }
  // fds free again: the raw peers go, a real one gets in.
  await waitFor(() => /accepting peers on \S+ again/.test(router.output()), 5000, `accepting again\n${router.output()}`);
  const v2 = await vassal(g, '192.168.0.3');
  assert.ok(pings(v2.ns, GW, 2), 'a later peer pings the gateway');
  router.child.kill('SIGTERM');
  assert.equal(await withTimeout(router.exited, 5000, 'SIGTERM'), 0, router.output());
});
