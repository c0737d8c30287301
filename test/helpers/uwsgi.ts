// uwsgi.ts: the real uWSGI 2.0 (Debian uwsgi-core, tuntap plugin) as a peer in
// interop tests: its tuntap router (to test our device) and its tuntap device
// (to test our router). Processes are started through a Lab (netns.ts), inside
// namespaces the test made, and stopped by PID.
//
// uWSGI quirks these helpers work around (2.0.21-debian, measured here):
// - SIGTERM reloads, it does not exit; a reloaded tuntap router then loops
//   respawning on "epoll_ctl(): Invalid argument". Stop it with SIGINT.
// - The router creates its tun device but leaves the link down, without an
//   address: the helper adds the address and sets the link up (ip -n NS).
// - The router's socket file appears shortly after start, and uWSGI leaves it
//   behind on exit (it replaces a stale one on the next start): the helper
//   removes the old file first, then waits for the new one.
// - The router's socket is created mode 0755 root: only root can connect.
// - A device run as root sets its tun up twice (EBUSY): run it --jailed with
//   --uid/--gid 65534 and a --socket of its own, in a directory that uid may
//   write to (else "bind(): Permission denied" and uWSGI exits).
// - uWSGI takes an inherited fd 0 that is a socket for one of its own uwsgi
//   sockets ("uwsgi socket 0 inherited UNIX address @ fd 0"): with node's
//   default stdio (socketpairs) it spawns a worker serving stdin and runs in
//   another mode. The helpers give it /dev/null as stdin.
// - uWSGI's device leaves its link down too, and the IPv6 router solicitation
//   the kernel sends when the link comes up makes uWSGI's ROUTER drop the
//   peer; its device then exits ("tuntap server disconnected"). The device
//   helper disables IPv6 in the device's namespace unless told otherwise.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { Lab, sh, waitFor } from './netns';

export const UWSGI = process.env.UWSGI_BIN ?? 'uwsgi';

export interface UwsgiProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  /** Everything uWSGI printed so far (stdout + stderr). */
  log(): string;
  exited(): boolean;
  /** SIGINT, then SIGKILL after graceMs; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

function track(child: ChildProcess): UwsgiProcess {
  let out = '';
  child.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
  child.stderr?.on('data', (b: Buffer) => { out += b.toString(); });
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.pid === undefined) throw new Error(`could not start ${UWSGI}`);
  const pid = child.pid;
  const exited = () => child.exitCode !== null || child.signalCode !== null;
  return {
    child,
    pid,
    log: () => out,
    exited,
    async stop(graceMs = 3000) {
      if (exited()) return;
      try { process.kill(pid, 'SIGINT'); } catch { /* already gone */ }
      const timer = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, graceMs);
      await gone;
      clearTimeout(timer);
    },
  };
}

/** Runs uWSGI in ns with stdin on /dev/null (see above); the Lab kills it at cleanup. */
function spawnUwsgi(lab: Lab, ns: string, args: string[]): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', ns, UWSGI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  lab.children.push(child);
  return child;
}

function linkExists(ns: string, dev: string): boolean {
  try {
    sh('ip', ['-n', ns, 'link', 'show', 'dev', dev]);
    return true;
  } catch {
    return false;
  }
}

async function waitStarted(p: UwsgiProcess, pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  try {
    await waitFor(() => {
      if (p.exited()) throw new Error('exited');
      return pred();
    }, timeoutMs, what);
  } catch (e) {
    const tail = p.log().split('\n').filter((l) => !/WARNING|you can use --uid/.test(l)).slice(-15).join('\n');
    await p.stop(500);
    throw new Error(`${(e as Error).message}; uWSGI ${p.exited() ? 'exited' : 'running'}; its log ends:\n${tail}`);
  }
}

export interface RouterOpts {
  ns: string;               // the gateway's netns (made by the test)
  tun: string;              // the router's tun device
  socket: string;           // unix socket path (its directory must exist)
  addr?: string;            // e.g. '192.168.0.1/24', assigned to the tun in ns; the link is set up
  stats?: string;           // third field of tuntap-router
  extra?: string[];         // more uWSGI options (firewall rules...)
  timeoutMs?: number;
}

export interface UwsgiRouter extends UwsgiProcess { readonly opts: RouterOpts }

/** uWSGI's tuntap router in ns: ready once its socket exists and its tun has the address. */
export async function startUwsgiRouter(lab: Lab, opts: RouterOpts): Promise<UwsgiRouter> {
  fs.rmSync(opts.socket, { force: true });
  const spec = [opts.tun, opts.socket, ...(opts.stats ? [opts.stats] : [])].join(' ');
  const args = ['--plugin', 'tuntap', '--tuntap-router', spec, '--master', ...(opts.extra ?? [])];
  const p = track(spawnUwsgi(lab, opts.ns, args));
  const timeoutMs = opts.timeoutMs ?? 10000;
  await waitStarted(p, () => fs.existsSync(opts.socket) && fs.statSync(opts.socket).isSocket() && linkExists(opts.ns, opts.tun),
    timeoutMs, `uWSGI router socket ${opts.socket} and tun ${opts.tun}`);
  if (opts.addr) sh('ip', ['-n', opts.ns, 'addr', 'add', opts.addr, 'dev', opts.tun]);
  sh('ip', ['-n', opts.ns, 'link', 'set', opts.tun, 'up']);
  return { ...p, opts };
}

export interface DeviceOpts {
  ns: string;               // the vassal's netns (made by the test)
  tun: string;              // uWSGI's device name
  router: string;           // the router's socket path
  socket: string;           // the device instance's own --socket (its directory must be writable by uid 65534)
  addr?: string;            // e.g. '192.168.0.2/24', assigned to the tun in ns; the link is set up
  keepIpv6?: boolean;       // leave IPv6 on in ns (uWSGI's router then drops this peer when the link comes up)
  extra?: string[];
  timeoutMs?: number;
}

/** A directory uWSGI's jailed device (uid 65534) can bind its --socket in. */
export function jailSocketDir(lab: Lab, prefix = 'moat-uwsgi-'): string {
  const dir = fs.mkdtempSync(path.join('/tmp', prefix));
  fs.chmodSync(dir, 0o1777);
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

export interface UwsgiDevice extends UwsgiProcess { readonly opts: DeviceOpts }

/** uWSGI's tuntap device in ns, connected to the router at opts.router: ready once its tun exists. */
export async function startUwsgiDevice(lab: Lab, opts: DeviceOpts): Promise<UwsgiDevice> {
  if (!opts.keepIpv6) {
    sh('ip', ['netns', 'exec', opts.ns, 'sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  }
  fs.rmSync(opts.socket, { force: true });
  const args = ['--plugin', 'tuntap', '--tuntap-device', `${opts.tun} ${opts.router}`,
    '--jailed', '--uid', '65534', '--gid', '65534', '--socket', opts.socket, '--master', ...(opts.extra ?? [])];
  const p = track(spawnUwsgi(lab, opts.ns, args));
  await waitStarted(p, () => linkExists(opts.ns, opts.tun) && fs.existsSync(opts.socket) && /spawned uWSGI worker/.test(p.log()),
    opts.timeoutMs ?? 10000, `uWSGI device ${opts.tun}`);
  if (opts.addr) sh('ip', ['-n', opts.ns, 'addr', 'add', opts.addr, 'dev', opts.tun]);
  sh('ip', ['-n', opts.ns, 'link', 'set', opts.tun, 'up']);
  return { ...p, opts };
}
