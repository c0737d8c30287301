// runtime.test.ts: the native vassal runtime (build/Release/moat-vassal)
// driven directly over its control channel, in real namespaces: a router from
// the addon in a gateway netns made here, a busybox root made here, vassals
// with clone fs,ipc,uts,net,pid + pivot-root + a device. Results of commands
// run inside a vassal are written to its vassal-dir, which the test reads on
// the host.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, LEARN_ANYWHERE, NativeRouter, RouterEvent, RouterOptions } from '../../src/native';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { APP_GID, APP_UID, makeRootFs, RootFs } from '../helpers/rootfs';
import { pidsInPidNs, VassalRuntime } from '../helpers/vassal-runtime';
import { deviceConfigFor } from '../../src/config/router-config';
import { deviceRuntimeLines } from '../../src/vassal/spec';

const { Router } = addon();

const lab = new Lab();
const vassals: VassalRuntime[] = [];
let ns = '';
let tun = '';
let sockPath = '';
let net24 = '';
let gw = '';
let root: RootFs;
let router: NativeRouter | undefined;
const routerEvents: RouterEvent[] = [];

const host = (n: number): string => net24 + n;

function routerOptions(): RouterOptions {
  return {
    tunName: tun, netns: `/run/netns/${ns}`, socketPath: sockPath, socketMode: 0o666, socketUid: -1, socketGid: -1,
    maxFrame: 1500, queueBytes: 64 * 1024, acceptRuleBlocks: false, offload: false, handoff: false, holdUs: 0, tunQueues: 1, sndbuf: 0, sndbufBusy: 0, sndbufBudget: 0, busyPollUs: 0, bindings: [], learn: LEARN_ANYWHERE,
  };
}

function startRouter(): void {
  router = new Router(routerOptions());
  router.start((evs) => { routerEvents.push(...evs); });
  sh('ip', ['-n', ns, 'addr', 'add', `${gw}/24`, 'dev', tun]);
}

function stopRouter(): void {
  router?.stop();
  router = undefined;
}

/** A host directory for one vassal, owned by the vassal's user, removed afterwards. */
function vassalDir(): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-vdir-'));
  fs.chownSync(d, APP_UID, APP_GID);
  lab.onCleanup(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

function vassal(lines: string[], opts: { start?: boolean } = {}): VassalRuntime {
  const v = new VassalRuntime(lines, opts);
  vassals.push(v);
  return v;
}

/** The lines of a jailed vassal: namespaces, device at host(n), pivot-root, vassal-dir. */
function jailed(n: number, dir: string, extra: string[]): string[] {
  return [
    `name rt${n}`,
    ...extra,   // hooks first: the runtime must still run them after the device and pivot-root
    'clone fs,ipc,uts,net,pid',
    `device vt${n} ${sockPath}`,
    ...deviceRuntimeLines(deviceConfigFor(`vt${n}`, sockPath)),
    `device-address ${host(n)}/24`,
    `device-route ${gw}`,
    `vassal-dir ${dir} ${root.vassalMount}`,
    `pivot-root ${root.dir} ${path.join(root.dir, root.putOld)}`,
  ];
}

const read = (dir: string, f: string): string => fs.readFileSync(path.join(dir, f), 'utf8').trim();
const waitFile = (dir: string, f: string, ms = 8000): Promise<void> => waitFor(() => fs.existsSync(path.join(dir, f)), ms, `${f} in the vassal-dir`);

async function stopAndCheckGone(v: VassalRuntime): Promise<void> {
  const hp = v.hostPid;
  assert.ok(hp, 'pid event');
  const pidNs = fs.readlinkSync(`/proc/${hp}/ns/pid`);
  assert.notEqual(pidNs, fs.readlinkSync('/proc/self/ns/pid'), 'the runtime lives in a pid namespace of its own');
  assert.ok(pidsInPidNs(pidNs).length >= 1);
  v.send('stop');
  const ex = await v.waitExit(10000);
  assert.deepEqual(ex, { code: 0, signal: null });
  assert.deepEqual(pidsInPidNs(pidNs), [], 'no process of the vassal left');
  assert.equal(fs.existsSync(`/proc/${hp}`), false, 'runtime gone');
}

before(() => {
  requireRoot();
  ns = lab.netns('rtg');
  tun = uniqueName('rtt');
  sockPath = path.join(os.tmpdir(), `moat-rt-${crypto.randomBytes(4).toString('hex')}.sock`);
  lab.onCleanup(() => { try { fs.unlinkSync(sockPath); } catch { /* gone */ } });
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  gw = host(1);
  root = makeRootFs();
  lab.onCleanup(() => root.remove());
  lab.onCleanup(() => stopRouter());
  startRouter();
});

after(async () => {
  for (const v of vassals) v.kill();
  await Promise.all(vassals.map((v) => v.waitExit(3000).catch(() => undefined)));
  await lab.cleanup();
});

test('a jailed vassal: namespaces, pivot-root, read-only root, device, hooks in uWSGI order, privilege drop', async () => {
  const dir = vassalDir();
  const name = `v${crypto.randomBytes(3).toString('hex')}`;
  const v = vassal([
    ...jailed(2, dir, [
      `exec-as-root hostname ${name}`,
      'exec-as-root hostname > /vassal/hostname; echo $PPID > /vassal/ppid; cat /proc/1/comm > /vassal/pid1',
      // the device exists and is addressed although its lines come later
      'exec-as-root ip -o link > /vassal/links; ip -o -4 addr > /vassal/addrs; ip route > /vassal/routes',
      'exec-as-root ls -a / > /vassal/ls; cat /proc/mounts > /vassal/mounts',
      'exec-as-root touch /x 2>/dev/null; echo $? > /vassal/touch-root; touch /tmp/y && echo ok > /vassal/touch-tmp',
      `exec-as-root ping -c 1 -W 3 ${gw} > /vassal/ping.out; echo $? > /vassal/ping`,
      'exec-as-root touch /vassal/root-only && chmod 600 /vassal/root-only',
      `gid ${APP_GID}`,
      `uid ${APP_UID}`,
      'exec-as-user id -u > /vassal/user-id; id -g > /vassal/user-gid',
      // a process of the vassal tries to get root back, and to reach pid 1's fds
      'attach-daemon echo evil > /vassal/root-only; echo $? > /vassal/d-write; hostname evil; echo $? > /vassal/d-hostname; ' +
        'ls /proc/1/fd >/dev/null 2>&1; echo $? > /vassal/d-fd; chroot / true 2>/dev/null; echo $? > /vassal/d-chroot; ' +
        'grep CapEff /proc/self/status > /vassal/d-caps; echo done > /vassal/d-done; exec sleep 1000',
      'env GREETING=hello world',
    ]),
  ]);
  await v.waitEvent('ready');
  await waitFile(dir, 'd-done');
  const hookEvents = v.events.filter((e) => e.keyword === 'hook').map((e) => e.value);
  assert.equal(hookEvents.length, 8, JSON.stringify(hookEvents));
  assert.ok(hookEvents.every((h) => h.startsWith('0 ')), 'every hook exited 0');
  assert.ok(v.find('device', (x) => x === 'connected'), 'device connected');
  // namespaces
  assert.equal(read(dir, 'hostname'), name);
  assert.equal(os.hostname() === name, false, 'the host keeps its hostname');
  assert.equal(read(dir, 'ppid'), '1', 'hooks are children of pid 1');
  assert.equal(read(dir, 'pid1'), 'moat-vassal', 'pid 1 is the runtime');
  const links = read(dir, 'links').split('\n').map((l) => l.split(':')[1].trim().split('@')[0]);
  assert.deepEqual(links.sort(), ['lo', 'vt2'].sort());
  assert.match(read(dir, 'addrs'), new RegExp(`vt2\\s+inet ${host(2).replace(/\./g, '\\.')}/24`));
  assert.match(read(dir, 'routes'), new RegExp(`default via ${gw.replace(/\./g, '\\.')} dev vt2`));
  // the root
  assert.deepEqual(read(dir, 'ls').split('\n').filter((e) => e !== '.' && e !== '..').sort(), root.entries);
  const mounts = read(dir, 'mounts').split('\n').map((l) => l.split(' '));
  const rootMount = mounts.find((m) => m[1] === '/');
  assert.ok(rootMount && rootMount[3].split(',').includes('ro'), `root mounted read-only: ${rootMount}`);
  assert.ok(mounts.some((m) => m[1] === '/proc' && m[2] === 'proc'), 'fresh /proc');
  assert.ok(mounts.some((m) => m[1] === '/tmp' && m[2] === 'tmpfs'), 'tmpfs /tmp');
  assert.ok(!mounts.some((m) => m[1].startsWith('/.old_root')), 'old root detached');
  assert.ok(mounts.filter((m) => !m[1].startsWith('/dev')).length <= 6, `own small mount table: ${read(dir, 'mounts')}`);
  assert.ok(['nosuid', 'nodev'].every((f) => rootMount![3].split(',').includes(f)), `root nosuid, nodev: ${rootMount}`);
  const devMount = mounts.find((m) => m[1] === '/dev');
  assert.ok(devMount && devMount[2] === 'tmpfs' && devMount[3].split(',').includes('ro'), `a read-only /dev of the vassal's own: ${devMount}`);
  assert.ok(mounts.some((m) => m[1] === '/dev/null'), '/dev/null bound from the host');
  assert.notEqual(read(dir, 'touch-root'), '0', 'touch / fails');
  assert.equal(read(dir, 'touch-tmp'), 'ok', '/tmp is writable');
  // the network: ping through the device, the router and the gateway's kernel
  assert.equal(read(dir, 'ping'), '0', `ping to the gateway: ${read(dir, 'ping.out')}`);
  // the privilege drop
  assert.equal(read(dir, 'user-id'), String(APP_UID));
  assert.equal(read(dir, 'user-gid'), String(APP_GID));
  assert.notEqual(read(dir, 'd-write'), '0', 'a root-only file stays closed');
  assert.equal(fs.readFileSync(path.join(dir, 'root-only'), 'utf8'), '');
  assert.notEqual(read(dir, 'd-hostname'), '0', 'no CAP_SYS_ADMIN');
  assert.notEqual(read(dir, 'd-chroot'), '0', 'no CAP_SYS_CHROOT');
  assert.notEqual(read(dir, 'd-fd'), '0', "pid 1's fds (the router directory) are out of reach");
  assert.match(read(dir, 'd-caps'), /CapEff:\s+0+$/);
  // the host's files: a marker made now on the host is not in the vassal's /tmp
  const marker = path.join(os.tmpdir(), `moat-marker-${crypto.randomBytes(3).toString('hex')}`);
  fs.writeFileSync(marker, 'host');
  lab.onCleanup(() => fs.rmSync(marker, { force: true }));
  v.send(`job j1 test -e /tmp/${path.basename(marker)} || test -e /work || test -e /usr; echo $? > /vassal/host-files; echo $GREETING > /vassal/env`);
  const exit = await v.waitEvent('job-exit', (x) => x.startsWith('j1 '));
  assert.match(exit.value, /^j1 0 \d+$/);
  assert.equal(read(dir, 'host-files'), '1', "the host's files are invisible");
  assert.equal(read(dir, 'env'), 'hello world');
  await stopAndCheckGone(v);
});

test('the router restarts under a pivot-rooted vassal: the device reconnects through its directory fd', async () => {
  // A TCP listener on the gateway (busybox's ping needs root; the vassal's uid uses nc).
  const port = 20000 + crypto.randomInt(20000);
  const server = lab.spawn(process.execPath, ['-e',
    `require('node:net').createServer((c) => c.end('pong\\n')).listen(${port}, '${gw}', () => console.log('up'))`], { ns });
  await new Promise((r) => server.stdout?.once('data', r));
  const dir = vassalDir();
  const v = vassal(jailed(3, dir, [`gid ${APP_GID}`, `uid ${APP_UID}`]));
  await v.waitEvent('ready');
  const talk = async (id: string): Promise<string> => {
    v.send(`job ${id} nc -w 2 ${gw} ${port} < /dev/null > /vassal/${id}`);
    const e = await v.waitEvent('job-exit', (x) => x.startsWith(id + ' '));
    return `${e.value.split(' ')[1]} ${fs.readFileSync(path.join(dir, id), 'utf8').trim()}`;
  };
  assert.equal(await talk('t1'), '0 pong', 'TCP to the gateway before the restart');
  const n0 = v.events.length;
  stopRouter();
  await v.waitEvent('device', (x) => x.startsWith('disconnected'));
  assert.notEqual((await talk('t2')).split(' ')[0], '0', 'nothing gets through while the router is down');
  startRouter();
  await waitFor(() => v.events.slice(n0).some((e) => e.keyword === 'device' && e.value === 'connected'), 10000, 'reconnected');
  assert.equal(await talk('t3'), '0 pong', 'traffic resumes');
  await stopAndCheckGone(v);
});

test('a failing hook stops the vassal with the hook named; later hooks do not run', async () => {
  const dir = vassalDir();
  const v = vassal(jailed(4, dir, [
    'exec-as-root true',
    'exec-as-root echo partial > /vassal/first; exit 3',
    'exec-as-root touch /vassal/never',
    'attach-daemon touch /vassal/never-daemon',
  ]));
  const ex = await v.waitExit();
  assert.deepEqual(ex, { code: 1, signal: null });
  const err = v.find('error');
  assert.ok(err, 'error event');
  assert.match(err.value, /exec-as-root hook failed \(exit 3\): echo partial > \/vassal\/first; exit 3/);
  assert.ok(v.find('hook', (x) => x === '3 echo partial > /vassal/first; exit 3'));
  assert.equal(v.find('ready'), undefined);
  assert.equal(read(dir, 'first'), 'partial');
  assert.equal(fs.existsSync(path.join(dir, 'never')), false);
  assert.equal(fs.existsSync(path.join(dir, 'never-daemon')), false);
});

test('jobs: start/exit with status and duration, job-kill, duplicate IDs refused', async () => {
  const v = vassal(['name jobs', 'clone fs,ipc,uts,pid', 'gid 65534', 'uid 65534']);
  await v.waitEvent('ready');
  v.send('job a sleep 0.3; exit 4');
  const start = await v.waitEvent('job-start', (x) => x.startsWith('a '));
  assert.match(start.value, /^a \d+$/);
  const exit = await v.waitEvent('job-exit', (x) => x.startsWith('a '));
  const [, status, ms] = exit.value.split(' ');
  assert.equal(status, '4');
  assert.ok(Number(ms) >= 250 && Number(ms) < 5000, `duration ${ms}`);
  v.send('job b sleep 30');
  await v.waitEvent('job-start', (x) => x.startsWith('b '));
  v.send('job b true');
  await v.waitEvent('error', (x) => x.includes('job b: a job with this ID is running'));
  v.send('job-kill b');
  assert.match((await v.waitEvent('job-exit', (x) => x.startsWith('b '))).value, /^b signal 9 \d+$/);
  v.send('job-kill nothing');
  await v.waitEvent('error', (x) => x.includes("no running job 'nothing'"));
  v.send('job bad/id true');
  await v.waitEvent('error', (x) => x.startsWith('job: expected'));
  v.send('frobnicate');
  await v.waitEvent('error', (x) => x.includes("unknown command 'frobnicate'"));
  v.send('pty-router raw /tmp/pty.sock');
  await v.waitEvent('error', (x) => x.startsWith("pty-router: a set-up line (before 'start')"));
  v.send('job c ' + 'x'.repeat(70000));
  await v.waitEvent('error', (x) => x.includes('above 65536 bytes'));
  v.send('job d true');
  assert.match((await v.waitEvent('job-exit', (x) => x.startsWith('d '))).value, /^d 0 /, 'still answering after a too long line');
  // orphans (a job's background child outliving the job) are reaped by pid 1: no zombie stays
  v.send('job e sleep 0.3 & sleep 0.3 & exit 0');
  await v.waitEvent('job-exit', (x) => x.startsWith('e '));
  const pidNs = fs.readlinkSync(`/proc/${v.hostPid}/ns/pid`);
  await waitFor(() => pidsInPidNs(pidNs).length === 1, 3000, 'only the runtime left');
  const zombies = pidsInPidNs(pidNs).filter((p) => / Z /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8')));
  assert.deepEqual(zombies, []);
  await stopAndCheckGone(v);
});

test('attached daemons are restarted with growing backoff; stop ends them', async () => {
  const dir = vassalDir();
  const v = vassal(['name daemons', 'clone fs,ipc,uts,pid', `vassal-dir ${dir} ${dir}`, `attach-daemon echo run >> ${dir}/runs; exit 7`]);
  await v.waitEvent('ready');
  await waitFor(() => v.events.filter((e) => e.keyword === 'daemon' && e.value.startsWith('start')).length >= 3, 8000, 'three starts');
  const starts = v.events.filter((e) => e.keyword === 'daemon' && e.value.startsWith('start')).map((e) => e.at);
  const exits = v.events.filter((e) => e.keyword === 'daemon' && e.value.startsWith('exit'));
  assert.match(exits[0].value, /^exit \d+ 7 echo run/);
  const gap1 = starts[1] - starts[0];
  const gap2 = starts[2] - starts[1];
  assert.ok(gap1 >= 900 && gap1 < 2500, `first restart after ~1 s: ${gap1}`);
  assert.ok(gap2 >= 1800 && gap2 < 4500 && gap2 > gap1 * 1.5, `second after ~2 s, doubled: ${gap1} ${gap2}`);
  assert.ok(read(dir, 'runs').split('\n').length >= 3);
  await stopAndCheckGone(v);
});

test('SIGTERM to the launcher and the end of the channel both stop the vassal and everything in it', async () => {
  const a = vassal(['name term', 'clone fs,ipc,uts,net,pid', 'attach-daemon sleep 1000', 'attach-daemon sh -c "trap \\"\\" TERM; sleep 1000"']);
  await a.waitEvent('ready');
  const nsA = fs.readlinkSync(`/proc/${a.hostPid}/ns/pid`);
  await waitFor(() => pidsInPidNs(nsA).length >= 4, 5000, 'runtime, sleep, sh and its sleep');
  // SIGTERM only once the second daemon ignores it (its trap ran), or the test races the shell.
  const ignoresTerm = (pid: number) => {
    try { return (BigInt('0x' + /SigIgn:\s*([0-9a-f]+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) & 0x4000n) !== 0n; } catch { return false; }
  };
  await waitFor(() => pidsInPidNs(nsA).some(ignoresTerm), 5000, 'the daemon\'s trap');
  const t0 = Date.now();
  a.child.kill('SIGTERM');
  assert.deepEqual(await a.waitExit(10000), { code: 0, signal: null });
  assert.ok(Date.now() - t0 >= 4500, 'the daemon ignoring SIGTERM was killed after the timeout');
  assert.deepEqual(pidsInPidNs(nsA), []);

  const b = vassal(['name eof', 'clone fs,ipc,uts,net,pid', 'attach-daemon sleep 1000']);
  await b.waitEvent('ready');
  const nsB = fs.readlinkSync(`/proc/${b.hostPid}/ns/pid`);
  b.closeChannel();
  assert.deepEqual(await b.waitExit(10000), { code: 0, signal: null });
  assert.deepEqual(pidsInPidNs(nsB), []);
});

test('set-up errors: unknown keyword, bad values, too long line, pivot-root without fs', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['nonsense 1'], /unknown keyword 'nonsense'/],
    [['clone fs,user'], /bad 'clone' value/],
    [['device-address 10.0.0.300/24'], /bad 'device-address'/],
    [['uid 12x'], /bad 'uid'/],
    [['device u0 /tmp/x.sock', 'device-busy-poll 1001'], /bad 'device-busy-poll'.*0\.\.1000/],
    [['device u0 /tmp/x.sock', 'device-offload on'], /device without device-handoff/],
    [['device u0 /tmp/x.sock', 'device-offload on', 'device-handoff on'], /device without device-busy-poll/],
    [['device-busy-poll 100'], /device options .* need a device/],
    [['uid 5'], /uid without gid/],
    [['name a', 'name b'], /'name' given twice/],
    [['pivot-root /a /a/b'], /pivot-root needs the fs namespace/],
    [['exec-as-root ' + 'y'.repeat(70000)], /longer than 65536/],
  ];
  for (const [lines, re] of cases) {
    const v = vassal(lines);
    const ex = await v.waitExit();
    assert.equal(ex.code, 2, lines[0].slice(0, 40));
    assert.match(v.find('error')?.value ?? '', re);
    assert.equal(v.find('pid'), undefined, 'nothing was started');
  }
  const v = vassal(['name x'], { start: false });
  v.closeChannel();
  assert.equal((await v.waitExit()).code, 2);
});
