// pty-ssh.test.ts: the sshd recipe end to end (docs/pty.md): Debian's sshd
// (package openssh-server) on 127.0.0.1 on a free port, with a config, host
// key and client key of its own in a temp dir; its ForceCommand runs
// `moat pty-uconnect SOCK`; `ssh -tt` from a real terminal logs in and lands
// in the forkpty router's shell (a child of the router, not of sshd); the
// recipe's restrict / DisableForwarding refuse a tunnel to the host's loopback.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
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

test('the recipe allows no forwarding: a -L tunnel to a loopback service of the host is refused', async () => {
  const sock = path.join(dir, 'pty2.sock');
  await startPtyRouter(lab, '--forkpty-urouter', sock);
  const sshd = await startSshd(lab, fs.mkdtempSync(path.join(dir, 'fw-')), sock);
  // A service on the host's loopback that a tenant must not reach past the firewall.
  const secret = net.createServer((c) => c.end('host-secret\n'));
  await new Promise<void>((r) => secret.listen(0, '127.0.0.1', () => r()));
  lab.onCleanup(() => secret.close());
  const target = (secret.address() as net.AddressInfo).port;
  const local = 20000 + Math.floor(Math.random() * 20000);
  const tunnel = lab.spawn('ssh', ['-N', '-L', `127.0.0.1:${local}:127.0.0.1:${target}`, ...sshd.args]);
  let err = '';
  tunnel.stderr?.on('data', (d) => { err += d; });
  // Once the client listens, a connection through it gets nothing of the service.
  const got = await waitForTunnel(local, 10000);
  assert.equal(got.includes('host-secret'), false, `the tunnel reached the host's service: ${got}`);
  await waitFor(() => /prohibited|refused|forwarding/i.test(err + sshd.log()), 5000, `sshd refusing the forward\n${err}\n${sshd.log()}`);
});

/** Connects to 127.0.0.1:port (retrying until the ssh client listens) and returns what it read before the close. */
async function waitForTunnel(port: number, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const r = await new Promise<string | undefined>((resolve) => {
      const c = net.connect(port, '127.0.0.1');
      let data = '';
      c.on('data', (d) => { data += d; });
      c.on('close', () => resolve(data));
      c.on('error', () => resolve(undefined));
      c.setTimeout(3000, () => c.destroy());
    });
    if (r !== undefined) return r;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port}`);
    await new Promise((res) => setTimeout(res, 200));
  }
}
