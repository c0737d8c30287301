// emperor-pty.test.ts: the forkpty router and the shared pty INSIDE vassals
// deployed by the emperor (in-process, no router needed), served by their
// native runtime (pid 1 of the vassal's namespaces). Driven like a person
// would: moat's client `moat pty-uconnect <host path>` in a real terminal
// (tmux), the socket reached on the host at vassals-dir-root/NAME/pty.sock;
// an ssh login (sshd ForceCommand to our client) landing in a vassal; two
// viewers of a shared pty.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pino from 'pino';
import { Emperor } from '../../src/emperor/emperor';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
import { CLI, tempDir } from '../helpers/moat';
import { makeRootFs, RootFs, APP_UID, APP_GID } from '../helpers/rootfs';
import { Tmux, connectUnix, reader, sleep, stdinFrame } from '../helpers/pty';
import { pidsInPidNs } from '../helpers/vassal-runtime';
import { startSshd } from '../helpers/ssh';
import { emperorConfigFor } from '../../src/emperor/config';

const CLONE = ['fs', 'ipc', 'uts', 'net', 'pid'] as const;
const lab = new Lab();
let dir = '';
let runRoot = '';
let vassalsDir = '';
let root: RootFs;
let emperor: Emperor;
const logs: string[] = [];

before(async () => {
  requireRoot();
  dir = tempDir(lab);
  fs.chmodSync(dir, 0o755);  // the vassals' uids must reach their directories; the sockets' modes keep others out
  root = makeRootFs();
  lab.onCleanup(() => root.remove());
  // What a pty needs in a pivot-rooted vassal: /dev/pts (the runtime mounts a
  // devpts of the vassal's own there) and /dev/ptmx; plus a few more applets.
  fs.mkdirSync(path.join(root.dir, 'dev', 'pts'));
  fs.symlinkSync('pts/ptmx', path.join(root.dir, 'dev', 'ptmx'));
  fs.mkdirSync(path.join(root.dir, 'run', 'moat'), { recursive: true });
  for (const a of ['stty', 'pgrep']) fs.symlinkSync('busybox', path.join(root.dir, 'bin', a));

  vassalsDir = path.join(dir, 'vassals');
  runRoot = path.join(dir, 'run');
  fs.mkdirSync(vassalsDir);
  const log = pino({ level: 'debug' }, { write: (s: string) => { logs.push(s); } });
  emperor = new Emperor(emperorConfigFor(vassalsDir, { clone: [...CLONE], freqMs: 60_000, vassalsDirRoot: runRoot }), { log });
  await emperor.start();
});
after(async () => {
  await emperor?.stop();   // every vassal, its processes and its directory
  await lab.cleanup();
});

/** Deploys a vassal file and waits until its runtime is ready; returns its host directory. */
async function deploy(name: string, lines: string[]): Promise<string> {
  fs.writeFileSync(path.join(vassalsDir, name), ['[uwsgi]', ...lines, ''].join('\n'));
  try {
    await waitFor(() => emperor.status().some((v) => v.name === name && v.state === 'running'), 20000, `${name} running`);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n${JSON.stringify(emperor.status())}\n${logs.slice(-30).join('')}`);
  }
  return path.join(runRoot, name.replace(/\.(ini|json|ya?ml|xml)$/, ''));
}

/** The runtime's host pid and its pid namespace. */
function runtimeOf(name: string): { pid: number; pidNs: string } {
  const pid = emperor.status().find((v) => v.name === name)!.pid!;
  return { pid, pidNs: fs.readlinkSync(`/proc/${pid}/ns/pid`) };
}

const comm = (pid: number) => { try { return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(); } catch { return ''; } };

async function waitOnly(pidNs: string, runtime: number, ms: number): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const left = pidsInPidNs(pidNs).filter((p) => p !== runtime);
    if (!left.length) return;
    if (Date.now() > end) throw new Error(`processes left in the vassal: ${left.map((p) => `${p}(${comm(p)})`).join(', ')}`);
    await sleep(50);
  }
}

test('forkpty-urouter in a pivot-rooted vassal: the client lands inside, as the vassal\'s uid; resize, Ctrl-C, hang-up', async () => {
  const name = 'ptybox.ini';
  const hostDir = await deploy(name, [
    `pivot-root = ${root.dir} ${path.join(root.dir, root.putOld)}`,
    'exec-as-root = hostname ptybox',
    `uid = ${APP_UID}`,
    `gid = ${APP_GID}`,
    'forkpty-urouter = /run/moat/pty.sock',
    'forkpty-router-grace = 300',
  ]);
  const sock = path.join(hostDir, 'pty.sock');
  const st = fs.statSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600, 'mode 0600');
  assert.equal(st.uid, APP_UID, 'owned by the vassal\'s uid');
  assert.equal(st.gid, APP_GID, 'and gid');
  const { pid: runtime, pidNs } = runtimeOf(name);

  const t = Tmux.start(lab, `${process.execPath} ${CLI} pty-uconnect ${sock}; echo CLIENT-EXIT=$?; sleep 600`, 90, 20);
  t.line('echo "host=$(hostname) pid=$$ uid=$(id -u) gid=$(id -g) root=$(ls / | tr "\\n" ,)"');
  const m = await t.waitScreen(/host=(\S+) pid=(\d+) uid=(\d+) gid=(\d+) root=(\S+)/);
  assert.equal(m[1], 'ptybox', 'the vassal\'s hostname');
  assert.ok(Number(m[2]) > 1 && Number(m[2]) < 100, `a pid of the vassal's pid namespace (${m[2]})`);
  assert.equal(Number(m[3]), APP_UID, 'the vassal\'s uid');
  assert.equal(Number(m[4]), APP_GID, 'the vassal\'s gid');
  assert.equal(m[5], root.entries.filter((e) => !e.startsWith('.')).concat('run').sort().join(',') + ',', 'the vassal\'s root');
  const shell = pidsInPidNs(pidNs).find((p) => p !== runtime && comm(p) === 'sh');
  assert.ok(shell, 'the shell runs in the vassal\'s pid namespace');
  assert.equal(fs.readFileSync(`/proc/${shell}/status`, 'utf8').match(/^PPid:\s+(\d+)/m)![1], String(runtime), 'a child of the runtime');

  t.line('echo "size=$(stty size)"');
  await t.waitScreen(/size=20 90/);
  t.resize(100, 30);
  await sleep(200);
  t.line('echo "resized=$(stty size)"');
  await t.waitScreen(/resized=30 100/);

  // Ctrl-C interrupts a foreground sleep.
  t.line('sleep 77');
  await waitFor(() => pidsInPidNs(pidNs).some((p) => comm(p) === 'sleep'), 5000, 'the sleep to run in the vassal');
  t.keys('C-c');
  await waitFor(() => !pidsInPidNs(pidNs).some((p) => comm(p) === 'sleep'), 3000, 'the sleep to be interrupted');
  t.line('echo "after-ctrl-c=$?"');
  await t.waitScreen(/after-ctrl-c=130/);

  // Leftovers a disconnect must take: a background job and one that ignores SIGHUP.
  t.line('sleep 1001 & sh -c \'trap "" HUP; exec sleep 1002\' & echo "jobs-started"');
  await t.waitScreen(/jobs-started/);
  await waitFor(() => pidsInPidNs(pidNs).filter((p) => comm(p) === 'sleep').length === 2, 5000, 'two background sleeps');
  t.kill();  // the terminal goes away: the client gets SIGHUP, its connection closes
  await waitOnly(pidNs, runtime, 5000);
  await waitFor(() => logs.some((l) => /"pty":"end \/run\/moat\/pty\.sock 1 .*client closed"/.test(l)), 3000, 'the session\'s end reported');

  // Only the intended user can connect: another uid is refused, the vassal's uid gets in.
  const other = spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups', process.execPath, CLI, 'pty-uconnect', sock],
    { encoding: 'utf8', input: 'id -u\nexit\n', timeout: 10000 });
  assert.notEqual(other.status, 0, 'uid 65534 cannot connect');
  assert.match(other.stderr + other.stdout, /EACCES|permission denied/i);
  const own = spawnSync('setpriv', ['--reuid', String(APP_UID), '--regid', String(APP_GID), '--clear-groups', process.execPath, CLI, 'pty-uconnect', sock],
    { encoding: 'utf8', input: 'echo "me=$(id -u)@$(hostname)"\nexit\n', timeout: 10000 });
  assert.equal(own.status, 0, own.stderr);
  assert.match(own.stdout, new RegExp(`me=${APP_UID}@ptybox`));

  // `stop` (the file removed) closes an open session and the socket.
  const c = await connectUnix(sock);
  const r = reader(c);
  c.write(stdinFrame('echo "open-$((2*21))"\n'));
  await r.wait(/open-42/);
  const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
  fs.rmSync(path.join(vassalsDir, name));
  await Promise.race([closed, sleep(8000).then(() => { throw new Error('the session survived the vassal\'s stop'); })]);
  await waitFor(() => !emperor.status().some((v) => v.name === name), 10000, 'vassal gone');
  assert.equal(fs.existsSync(`/proc/${runtime}`), false, 'runtime gone');
  assert.deepEqual(pidsInPidNs(pidNs), [], 'nothing left of the vassal');
  assert.equal(fs.existsSync(sock), false, 'socket gone');
});


test('ssh -tt with ForceCommand moat pty-uconnect vassals-dir-root/NAME/pty.sock lands inside the vassal', async () => {
  const name = 'sshbox.ini';
  // No pivot-root: the host's files, but the vassal's namespaces (and its own /proc).
  const hostDir = await deploy(name, [
    'exec-as-root = hostname sshbox',
    'uid = 65534',
    'gid = 65534',
    'forkpty-urouter = /run/moat/pty.sock',
    'forkpty-router-grace = 300',
  ]);
  const sock = path.join(hostDir, 'pty.sock');
  const { pid: runtime, pidNs } = runtimeOf(name);

  const keys = path.join(dir, 'ssh');
  fs.mkdirSync(keys);
  const sshd = await startSshd(lab, keys, sock);
  const ssh = sshd.command;
  const t = Tmux.start(lab, `${ssh}; echo SSH-EXIT=$?; sleep 600`, 90, 20);
  t.line('echo "host=$(hostname) pid=$$ uid=$(id -u) size=$(stty size) procs=$(ls /proc | grep -c "^[0-9]")"');
  let m: RegExpMatchArray;
  try {
    m = await t.waitScreen(/host=(\S+) pid=(\d+) uid=(\d+) size=(\d+ \d+) procs=(\d+)/, 15000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nsshd:\n${sshd.log()}\nemperor:\n${logs.slice(-20).join('')}`);
  }
  assert.equal(m[1], 'sshbox', 'the login landed in the vassal');
  assert.ok(Number(m[2]) > 1 && Number(m[2]) < 100, `a pid of the vassal's pid namespace (${m[2]})`);
  assert.equal(m[3], '65534', 'as the vassal\'s uid');
  assert.equal(m[4], '20 90', 'the window size crossed ssh and the client');
  assert.ok(Number(m[5]) < 10, `the vassal's /proc shows the vassal's processes only (${m[5]})`);
  t.line('sleep 1003 & echo started');
  await t.waitScreen(/started/);
  t.line('exit');
  await t.waitScreen(/SSH-EXIT=0/);
  await waitOnly(pidNs, runtime, 5000);
});

test('pty-socket: one pty in the vassal, two viewers see its output, input from either', async () => {
  const name = 'sharebox.ini';
  const hostDir = await deploy(name, [
    'exec-as-root = hostname sharebox',
    'uid = 65534',
    'gid = 65534',
    'pty-socket = /run/moat/shared.sock',
    'pty-exec = /bin/sh',
  ]);
  const sock = path.join(hostDir, 'shared.sock');
  assert.equal(fs.statSync(sock).uid, 65534, 'owned by the vassal\'s uid');
  const a = await connectUnix(sock);
  const b = await connectUnix(sock);
  lab.onCleanup(() => { a.destroy(); b.destroy(); });
  const ra = reader(a);
  const rb = reader(b);
  a.write('echo "from-a $((6*7)) $(hostname) $(id -u) $$"\n');
  await ra.wait(/from-a 42 sharebox 65534 \d+/);
  await rb.wait(/from-a 42 sharebox 65534 \d+/);
  b.write('echo "from-b $((7*7))"\n');
  await ra.wait(/from-b 49/);
  await rb.wait(/from-b 49/);
  const pid = Number(/from-a 42 sharebox 65534 (\d+)/.exec(ra.text())![1]);
  assert.ok(pid > 1 && pid < 100, `the daemon runs in the vassal's pid namespace (${pid})`);
  // A viewer leaving does not end the pty for the other.
  a.destroy();
  await sleep(200);
  b.write('echo "still-$((50+5))"\n');
  await rb.wait(/still-55/);
  b.destroy();
  assert.ok(logs.some((l) => /"pty":"viewer \/run\/moat\/shared\.sock 2 0"/.test(l)), 'viewers logged');
});
