// pty-ssh.test.ts: the sshd recipe end to end (docs/pty.md): Debian's sshd
// (package openssh-server) on 127.0.0.1 on a free port, with a config, host
// key and client key of its own in a temp dir; its ForceCommand runs
// `moat pty-uconnect SOCK`; `ssh -tt` from a real terminal logs in and lands
// in the forkpty router's shell (a child of the router, not of sshd).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
import { CLI, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { Tmux, parentOf, waitGone } from '../helpers/pty';

const SSHD = '/usr/sbin/sshd';
const lab = new Lab();
let dir = '';

before(() => {
  requireRoot();
  if (!fs.existsSync(SSHD)) throw new Error(`${SSHD} missing: apt-get install openssh-server (scripts/install-deps.sh)`);
  dir = tempDir(lab);
});
after(() => lab.cleanup());

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

test('ssh -tt with ForceCommand moat pty-uconnect lands in the pty router', async () => {
  const sock = path.join(dir, 'pty.sock');
  const moat = startMoat(lab, ['--forkpty-urouter', sock, '--forkpty-router-grace', '300']);
  await waitForSocket(sock, moat);

  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'user_key')]);
  fs.copyFileSync(path.join(dir, 'user_key.pub'), path.join(dir, 'authorized_keys'));
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });  // sshd's privilege separation directory
  const port = await freePort();
  const config = path.join(dir, 'sshd_config');
  fs.writeFileSync(config, [
    `Port ${port}`,
    'ListenAddress 127.0.0.1',
    `HostKey ${path.join(dir, 'host_key')}`,
    `PidFile ${path.join(dir, 'sshd.pid')}`,
    `AuthorizedKeysFile ${path.join(dir, 'authorized_keys')}`,
    'StrictModes no',
    'UsePAM no',
    'UseDNS no',
    'PasswordAuthentication no',
    'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes',
    'PermitRootLogin prohibit-password',
    'Match User root',
    `  ForceCommand ${process.execPath} ${CLI} pty-uconnect ${sock}`,
    '',
  ].join('\n'));
  execFileSync(SSHD, ['-t', '-f', config]);  // config check
  const sshd = lab.spawn(SSHD, ['-D', '-e', '-f', config]);
  let sshdLog = '';
  sshd.stderr?.on('data', (d) => { sshdLog += d; });
  await waitFor(() => {
    if (sshd.exitCode !== null) throw new Error(sshdLog);
    return /Server listening/.test(sshdLog);
  }, 10000, `sshd to listen\n${sshdLog}`);

  const ssh = ['ssh', '-tt', '-F', '/dev/null', '-i', path.join(dir, 'user_key'), '-p', String(port),
    '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${path.join(dir, 'known_hosts')}`,
    '-o', 'LogLevel=ERROR', 'root@127.0.0.1'].join(' ');
  const t = Tmux.start(lab, `${ssh}; echo SSH-EXIT=$?; sleep 600`, 90, 20);
  t.line('echo "pid=$$ size=$(stty size) via=${SSH_CONNECTION:-none}"');
  let m: RegExpMatchArray;
  try {
    m = await t.waitScreen(/pid=(\d+) size=(\d+ \d+) via=(\S+)/, 15000);
  } catch (e) {
    throw new Error(`${(e as Error).message}\nsshd:\n${sshdLog}\nmoat:\n${moat.output()}`);
  }
  const shell = Number(m[1]);
  assert.equal(parentOf(shell), moat.child.pid, "the login's shell is the pty router's child");
  assert.equal(m[2], '20 90', 'the terminal size crossed ssh and the framed client');
  assert.equal(m[3], 'none', "the router's shell, not one sshd started");
  t.line('exit');
  await t.waitScreen(/SSH-EXIT=0/);
  await waitGone([shell], 3000);
});
