// ssh.ts: Debian's sshd for the pty recipe tests: on 127.0.0.1 on a free
// port, with a config, host key and client key of its own in `dir`; its
// ForceCommand runs `moat pty-uconnect SOCK` (docs/pty.md's recipe, with
// `Match User root` where production says `Match User customer1`).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Lab, waitFor } from './netns';
import { CLI } from './moat';

export const SSHD = '/usr/sbin/sshd';

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

export interface Sshd {
  /** The `ssh -tt ... root@127.0.0.1` command line that logs in. */
  command: string;
  /** The same login's options, for other ssh invocations (forwarding attempts). */
  args: string[];
  log(): string;
}

/** Starts sshd (killed by lab.cleanup) and resolves once it listens. */
export async function startSshd(lab: Lab, dir: string, sock: string): Promise<Sshd> {
  if (!fs.existsSync(SSHD)) throw new Error(`${SSHD} missing: apt-get install openssh-server (scripts/install-deps.sh)`);
  const at = (f: string) => path.join(dir, f);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', at('host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', at('user_key')]);
  // The README's recipe: restrict (no forwarding of any kind, no agent, no X11, no ~/.ssh/rc), a pty.
  fs.writeFileSync(at('authorized_keys'), `restrict,pty ${fs.readFileSync(at('user_key.pub'), 'utf8')}`);
  fs.mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });  // sshd's privilege separation directory
  const port = await freePort();
  const config = at('sshd_config');
  fs.writeFileSync(config, [
    `Port ${port}`, 'ListenAddress 127.0.0.1',
    `HostKey ${at('host_key')}`, `PidFile ${at('sshd.pid')}`,
    `AuthorizedKeysFile ${at('authorized_keys')}`,
    'StrictModes no', 'UsePAM no', 'UseDNS no', 'PasswordAuthentication no', 'KbdInteractiveAuthentication no',
    'PubkeyAuthentication yes', 'PermitRootLogin prohibit-password',
    'Match User root',
    `  ForceCommand ${process.execPath} ${CLI} pty-uconnect ${sock}`,
    '  DisableForwarding yes', '  PermitTunnel no', '  PermitUserRC no',
    '',
  ].join('\n'));
  execFileSync(SSHD, ['-t', '-f', config]);  // config check
  const sshd = lab.spawn(SSHD, ['-D', '-e', '-f', config]);
  let log = '';
  sshd.stderr?.on('data', (d) => { log += d; });
  await waitFor(() => {
    if (sshd.exitCode !== null) throw new Error(log);
    return /Server listening/.test(log);
  }, 10000, `sshd to listen\n${log}`);
  const args = ['-F', '/dev/null', '-i', at('user_key'), '-p', String(port),
    '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', `UserKnownHostsFile=${at('known_hosts')}`,
    '-o', 'LogLevel=ERROR', 'root@127.0.0.1'];
  return { command: ['ssh', '-tt', ...args].join(' '), args, log: () => log };
}
