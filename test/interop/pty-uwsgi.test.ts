// pty-uwsgi.test.ts: moat's pty router and client with Debian's uWSGI 2.0
// (plugins pty and forkptyrouter): uWSGI's --pty-uconnect client in a real
// terminal against moat's forkpty-urouter, and moat's client against uWSGI's
// --forkpty-urouter. uWSGI gets stdin /dev/null and is stopped with SIGINT
// (../shared/uwsgi-compat.md).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
import { CLI, tempDir } from '../helpers/moat';
import { Tmux, parentOf, startPtyRouter, running, sleep, waitGone } from '../helpers/pty';
import { UWSGI } from '../helpers/uwsgi';

const lab = new Lab();
let dir = '';

before(() => {
  requireRoot();
  dir = tempDir(lab);
});
after(() => lab.cleanup());

test("uWSGI's --pty-uconnect client against moat's forkpty-urouter", async () => {
  const sock = path.join(dir, 'moat.sock');
  const moat = await startPtyRouter(lab, '--forkpty-urouter', sock);
  const t = Tmux.start(lab, `${UWSGI} --plugin pty --pty-uconnect ${sock}; echo CLIENT-EXIT=$?; sleep 600`, 90, 20);
  await t.waitScreen(/\[pty\] connected/);
  t.line('echo "pid=$$ size=$(stty size)"');
  const m = await t.waitScreen(/pid=(\d+) size=(\d+ \d+)/);
  const shell = Number(m[1]);
  assert.equal(parentOf(shell), moat.child.pid);
  assert.equal(m[2], '20 90', "uWSGI's rows (100) and cols (101) frames");
  t.resize(100, 30);
  await sleep(200);
  t.line('echo "resized=$(stty size)"');
  await t.waitScreen(/resized=30 100/);
  t.line('sleep 1003 & echo "bg=$!"');
  const bg = Number((await t.waitScreen(/bg=(\d+)/))[1]);
  t.line('exit');
  await t.waitScreen(/CLIENT-EXIT=0/);
  // The session's end takes its background job with it (uWSGI's own router leaves it).
  await waitGone([shell, bg], 3000);
  await waitFor(() => /"reason":"process exited"/.test(moat.output()), 3000, `the session's end in moat's log:\n${moat.output()}`);
});

test("moat's pty-uconnect against uWSGI's --forkpty-urouter", async () => {
  const sock = path.join(dir, 'uwsgi.sock');
  const child = spawn(UWSGI, ['--plugin', 'forkptyrouter', '--forkpty-urouter', sock, '--master'], { stdio: ['ignore', 'pipe', 'pipe'] });
  lab.children.push(child);
  let log = '';
  child.stdout?.on('data', (d) => { log += d; });
  child.stderr?.on('data', (d) => { log += d; });
  lab.onCleanup(() => fs.rmSync(sock, { force: true }));  // uWSGI leaves its socket behind
  await waitFor(() => {
    if (child.exitCode !== null) throw new Error(log);
    return fs.existsSync(sock);
  }, 10000, `uWSGI's socket\n${log}`);
  await sleep(300);

  const t = Tmux.start(lab, `${process.execPath} ${CLI} pty-uconnect ${sock}; echo CLIENT-EXIT=$?; sleep 600`, 90, 20);
  t.line('echo "pid=$$ size=$(stty size)"');
  const m = await t.waitScreen(/pid=(\d+) size=(\d+ \d+)/);
  assert.equal(m[2], '20 90');
  const shell = Number(m[1]);
  assert.ok(running(shell));
  t.resize(100, 30);
  await sleep(200);
  t.line('echo "resized=$(stty size)"');
  await t.waitScreen(/resized=30 100/);
  t.line('sleep 79');
  await sleep(400);
  t.keys('C-c');
  t.line('echo "after-ctrl-c=$?"');
  await t.waitScreen(/after-ctrl-c=130/);
  t.line('exit');
  await t.waitScreen(/CLIENT-EXIT=0/);

  process.kill(child.pid!, 'SIGINT');
  await waitFor(() => child.exitCode !== null || child.signalCode !== null, 5000, 'uWSGI to stop');
});
