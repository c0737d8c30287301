// pty-router.test.ts: moat's forkpty router and pty client as a person uses
// them: the client in a real terminal (a tmux pane), keys typed, the screen
// read back. Also: raw mode, the end of a session, socket permissions and the
// session's user, hostile frames, and the shared pty (pty-socket).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lab, requireRoot } from '../helpers/netns';
import { CLI, MoatProcess, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { Tmux, connectUnix, frame, parentOf, reader, running, sleep, startPtyRouter, stdinFrame, waitGone } from '../helpers/pty';

const lab = new Lab();
let dir = '';

before(() => {
  requireRoot();
  dir = tempDir(lab);
  fs.chmodSync(dir, 0o755);  // so that only the socket's own mode keeps other users out
});
after(() => lab.cleanup());

const router = (flag: string, sock: string, extra: string[] = []): Promise<MoatProcess> => startPtyRouter(lab, flag, sock, extra);

/** A shell line for tmux: run the client, report whether the terminal was restored and its exit code, stay. */
function clientLine(word: string, sock: string): string {
  return `before=$(stty -g); ${process.execPath} ${CLI} ${word} ${sock}; rc=$?; ` +
    `[ "$(stty -g)" = "$before" ] && echo TERMINAL-RESTORED; echo CLIENT-EXIT=$rc; sleep 600`;
}

function closed(s: net.Socket, ms: number): Promise<void> {
  if (s.closed) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`connection still open after ${ms} ms`)), ms);
    s.on('close', () => { clearTimeout(t); resolve(); });
  });
}

test('framed: hostname, $$, resize, Ctrl-C, and a disconnect leaves nothing behind', async () => {
  const sock = path.join(dir, 'u.sock');
  const moat = await router('--forkpty-urouter', sock);
  assert.equal(fs.statSync(sock).mode & 0o777, 0o600, 'socket mode 0600 by default');

  const t = Tmux.start(lab, clientLine('pty-uconnect', sock), 90, 20);
  t.line('echo "host=$(hostname) pid=$$"');
  const m = await t.waitScreen(/host=(\S+) pid=(\d+)/);
  assert.equal(m[1], os.hostname());
  const shell = Number(m[2]);
  assert.equal(parentOf(shell), moat.child.pid, 'the shell is a child of the pty router');

  t.line('echo "size=$(stty size)"');
  await t.waitScreen(/size=20 90/);   // the client's window size, sent at start
  t.resize(100, 30);
  await sleep(200);
  t.line('echo "resized=$(stty size)"');
  await t.waitScreen(/resized=30 100/);  // SIGWINCH -> rows/cols frames -> TIOCSWINSZ

  await ctrlC(t, shell, 77);

  // Leftovers: a background job, and one that ignores SIGHUP.
  t.line('sleep 1001 & echo "bg=$!"');
  const bg = Number((await t.waitScreen(/bg=(\d+)/))[1]);
  t.line(`sh -c 'trap "" HUP; exec sleep 1002' & echo "hupproof=$!"`);
  const hupproof = Number((await t.waitScreen(/hupproof=(\d+)/))[1]);
  await sleep(200);
  assert.ok(running(shell) && running(bg) && running(hupproof));

  t.kill();  // the terminal goes away: the client gets SIGHUP, the connection closes
  await waitGone([shell, bg, hupproof], 5000);
  await waitForLog(moat, /pty session ended.*|"reason":"client closed"/);
  assert.match(moat.output(), /"reason":"client closed"/);
});

/** Ctrl-C typed at the terminal interrupts a foreground `sleep` of the session. */
async function ctrlC(t: Tmux, sid: number, secs: number): Promise<void> {
  t.line(`sleep ${secs}`);
  let pid = 0;
  const end = Date.now() + 5000;
  while (!pid && Date.now() < end) {
    const r = spawnSync('pgrep', ['-s', String(sid), '-x', 'sleep'], { encoding: 'utf8' });
    pid = Number(r.stdout.trim().split('\n')[0]) || 0;
    if (!pid) await sleep(50);
  }
  assert.ok(pid > 0, 'the sleep runs in the session');
  t.keys('C-c');
  await waitGone([pid], 3000);
  t.line('echo "after-ctrl-c=$?"');
  await t.waitScreen(/after-ctrl-c=130/);
}

async function waitForLog(p: MoatProcess, re: RegExp, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!re.test(p.output())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${re} in moat's log:\n${p.output()}`);
    await sleep(50);
  }
}

test('framed: the session ending ends the client with 0 and restores the terminal; so does SIGTERM (143)', async () => {
  const sock = path.join(dir, 'end.sock');
  await router('--forkpty-urouter', sock);
  const t = Tmux.start(lab, clientLine('pty-uconnect', sock));
  t.line('echo "pid=$$"');
  const shell = Number((await t.waitScreen(/pid=(\d+)/))[1]);
  t.line('exit 3');
  await t.waitScreen(/TERMINAL-RESTORED\s+CLIENT-EXIT=0/);
  await waitGone([shell], 3000);

  const t2 = Tmux.start(lab, clientLine('pty-uconnect', sock));
  t2.line('echo "pid=$$"');
  const shell2 = Number((await t2.waitScreen(/pid=(\d+)/))[1]);
  const client = execFileSync('pgrep', ['-f', `pty-uconnect ${sock}$`], { encoding: 'utf8' }).trim().split('\n').map(Number);
  assert.equal(client.length, 1, 'one client process');
  process.kill(client[0], 'SIGTERM');
  await t2.waitScreen(/TERMINAL-RESTORED\s+CLIENT-EXIT=143/);
  await waitGone([shell2], 3000);
});

test('raw: forkpty-router with pty-connect (default 24x80, Ctrl-C, exit)', async () => {
  const sock = path.join(dir, 'raw.sock');
  const moat = await router('--forkptyrouter', sock);  // uWSGI's other spelling
  const t = Tmux.start(lab, clientLine('pty-connect', sock), 90, 20);
  t.line('echo "host=$(hostname) pid=$$ size=$(stty size)"');
  const m = await t.waitScreen(/host=(\S+) pid=(\d+) size=(\d+ \d+)/);
  assert.equal(m[1], os.hostname());
  assert.equal(parentOf(Number(m[2])), moat.child.pid);
  assert.equal(m[3], '24 80', 'raw mode carries no window size: the router default');
  await ctrlC(t, Number(m[2]), 78);
  t.line('exit');
  await t.waitScreen(/TERMINAL-RESTORED\s+CLIENT-EXIT=0/);
});

test('--pty-uconnect is the client too (uWSGI spelling), and a missing socket is exit 1', async () => {
  const sock = path.join(dir, 'flag.sock');
  await router('--forkpty-urouter', sock);
  const r = spawnSync(process.execPath, [CLI, '--pty-uconnect', sock], { input: 'echo "flag-$((40+2))"; exit\n', encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /flag-42/);
  const bad = spawnSync(process.execPath, [CLI, 'pty-uconnect', path.join(dir, 'none.sock')], { input: '', encoding: 'utf8', timeout: 10000 });
  assert.equal(bad.status, 1);
  assert.match(bad.stderr, /No such file/);
});

test('socket permissions keep other users out; the owner gets in; sessions run as the configured user', async () => {
  const closed = path.join(dir, 'closed.sock');
  await router('--forkpty-router', closed);
  const asNobody = (sock: string) => spawnSync('setpriv', ['--reuid', '65534', '--regid', '65534', '--clear-groups',
    process.execPath, CLI, 'pty-connect', sock], { input: 'echo "uid=$(id -u)"; exit\n', encoding: 'utf8', timeout: 10000 });
  const denied = asNobody(closed);
  assert.equal(denied.status, 1);
  assert.match(denied.stderr, /Permission denied/);

  const open = path.join(dir, 'owned.sock');
  await router('--forkpty-router', open, ['--forkpty-router-socket-owner', '65534:65534', '--forkpty-router-user', '65534:65534']);
  const st = fs.statSync(open);
  assert.equal(st.uid, 65534);
  assert.equal(st.mode & 0o777, 0o600);
  const ok = asNobody(open);
  assert.equal(ok.status, 0, ok.stderr);
  assert.match(ok.stdout, /uid=65534/);
});

test('framed: hostile and odd frames do not hurt the router', async () => {
  const sock = path.join(dir, 'fuzz.sock');
  const moat = await router('--forkpty-urouter', sock);
  // A frame announcing 65535 bytes that never come, then the connection drops.
  const a = await connectUnix(sock);
  a.write(frame(0, 65535, Buffer.from('echo partial')));
  await sleep(100);
  a.destroy();
  // Unknown modifier2, rows 0, a signal number out of range, a header split byte by byte.
  const b = await connectUnix(sock);
  const out = reader(b);
  b.write(Buffer.concat([frame(200, 7), frame(100, 0), frame(101, 0), frame(99, 0), frame(100, 40), frame(101, 132)]));
  const f = stdinFrame('echo "alive-$((6*7)) $(stty size)"\n');
  for (const byte of f) { b.write(Buffer.from([byte])); await sleep(2); }
  await out.wait(/alive-42 40 132/);
  b.destroy();
  await sleep(100);
  assert.equal(moat.child.exitCode, null, 'router still running');
  const c = await connectUnix(sock);
  const out2 = reader(c);
  c.write(stdinFrame('echo "again-$((1+1))"; exit\n'));
  await out2.wait(/again-2/);
  await closed(c, 5000);  // the session's end closes the connection
});

test('pty-socket: one shared pty, every viewer sees it, input from any; pty-exec ending stops moat', async () => {
  const sock = path.join(dir, 'shared.sock');
  const moat = startMoat(lab, ['--pty-socket', sock, '--pty-exec', '/bin/sh']);
  await waitForSocket(sock, moat);
  const a = await connectUnix(sock);
  const b = await connectUnix(sock);
  const ra = reader(a);
  const rb = reader(b);
  await sleep(100);
  a.write('echo "from-a-$((40+2))"\n');
  await ra.wait(/from-a-42/);
  await rb.wait(/from-a-42/);
  b.write('echo "from-b-$((2*3))"\n');
  await ra.wait(/from-b-6/);
  const c = await connectUnix(sock);
  const rc = reader(c);
  await rc.wait(/from-a-42[\s\S]*from-b-6/);  // a new viewer gets the recent output
  b.destroy();
  a.write('exit 5\n');
  const code = await Promise.race([moat.exited, sleep(5000).then(() => 'still running')]);
  assert.equal(code, 5, moat.output());
  assert.ok(!fs.existsSync(sock), 'socket removed');
});
