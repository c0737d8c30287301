// pty-ssh.test.ts: the sshd recipe end to end (docs/pty.md): Debian's sshd
// (package openssh-server) on 127.0.0.1 on a free port, with a config, host
// key and client key of its own in a temp dir; its ForceCommand runs
// `moat pty-uconnect SOCK`; `ssh -tt` from a real terminal logs in and lands
// in the forkpty router's shell (a child of the router, not of sshd).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab, requireRoot } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { Tmux, parentOf, startPtyRouter, waitGone } from '../helpers/pty';
import { startSshd } from '../helpers/ssh';

const lab = new Lab();
let dir = '';

before(() => {
  requireRoot();
  dir = tempDir(lab);
});
after(() => lab.cleanup());


test('ssh -tt with ForceCommand moat pty-uconnect lands in the pty router', async () => {
  const sock = path.join(dir, 'pty.sock');
  const moat = await startPtyRouter(lab, '--forkpty-urouter', sock);

  const sshd = await startSshd(lab, dir, sock);
  const ssh = sshd.command;
  const t = Tmux.start(lab, `${ssh}; echo SSH-EXIT=$?; sleep 600`, 90, 20);
  t.line('echo "pid=$$ size=$(stty size) via=${SSH_CONNECTION:-none}"');
  let m: RegExpMatchArray;
  try {
    m = await t.waitScreen(/pid=(\d+) size=(\d+ \d+) via=(\S+)/, 15000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nsshd:\n${sshd.log()}\nmoat:\n${moat.output()}`);
  }
  const shell = Number(m[1]);
  assert.equal(parentOf(shell), moat.child.pid, "the login's shell is the pty router's child");
  assert.equal(m[2], '20 90', 'the terminal size crossed ssh and the framed client');
  assert.equal(m[3], 'none', "the router's shell, not one sshd started");
  t.line('exit');
  await t.waitScreen(/SSH-EXIT=0/);
  await waitGone([shell], 3000);
});
