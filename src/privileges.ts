// privileges.ts: a standalone router or device gives up root once its tun
// device, sockets and hooks exist (uWSGI's `uid`/`gid` for the instance); so
// does the router process of `moat emperor`. The data path needs no privilege
// after that: the tun fd and the listening socket stay open. Dropping from
// root to another uid clears every capability (no keep-caps), for all threads
// (glibc applies set*id to the whole process). Hardened (the router process;
// a standalone instance that starts no pty sessions), it first sets
// no_new_privs on every thread and empties the capability bounding set
// (native/harden.h), so no program it ever runs gains privilege through
// execve either. Not with pty servers: their sessions are the admin's
// shells, where sudo must keep working. As a component it comes last:
// everything before it starts as root.
import fs from 'node:fs';
import type { Component } from './lifecycle/component';
import type { Logger } from './log';
import { addon } from './native';

export interface DropTo { uid: number; gid: number }

export interface DropOptions {
  harden: boolean;    // no_new_privs and an empty bounding set before the drop
}

/** (hardenProcess,) setgroups([]), setgid, setuid, then proves root cannot come back. */
export function dropPrivileges(to: DropTo, log: Logger, opts: DropOptions): void {
  const { setgroups, setgid, setuid } = process;
  if (!setgroups || !setgid || !setuid) throw new Error('this platform cannot change user');
  let allThreads = false;
  if (opts.harden) {
    const h = addon().hardenProcess();
    allThreads = h.allThreads;
    if (!allThreads) log.warn({ note: h.note }, `no_new_privs could not be set on every thread: ${h.note}`);
  }
  setgroups([]);
  setgid(to.gid);
  setuid(to.uid);
  let regained = false;
  try {
    setuid(0);
    regained = true;
  } catch { /* expected: EPERM */ }
  if (regained || process.getuid?.() !== to.uid || process.getegid?.() !== to.gid) {
    throw new Error(`privilege drop to ${to.uid}:${to.gid} did not hold`);
  }
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(status)?.[1];
  const capBnd = /CapBnd:\s*([0-9a-f]+)/.exec(status)?.[1];
  const noNewPrivs = /NoNewPrivs:\s*(\d)/.exec(status)?.[1] === '1';
  if (opts.harden) checkHardened(capBnd, noNewPrivs, allThreads);
  log.info({ uid: to.uid, gid: to.gid, capEff, capBnd, noNewPrivs, threads: threadCount() }, 'privileges dropped');
}

/** The bounding set is empty and no_new_privs set here; no_new_privs on
 *  every thread too unless the kernel could not (warned above). */
function checkHardened(capBnd: string | undefined, noNewPrivs: boolean, allThreads: boolean): void {
  if (capBnd === undefined || BigInt('0x' + capBnd) !== 0n || !noNewPrivs) {
    throw new Error(`hardening did not hold: CapBnd ${capBnd}, NoNewPrivs ${noNewPrivs ? 1 : 0}`);
  }
  if (!allThreads) return;
  for (const tid of fs.readdirSync('/proc/self/task')) {
    let st: string;
    try { st = fs.readFileSync(`/proc/self/task/${tid}/status`, 'utf8'); } catch { continue; /* ended */ }
    if (!/^NoNewPrivs:\s*1$/m.test(st)) throw new Error(`hardening did not hold: thread ${tid} has no no_new_privs`);
  }
}

function threadCount(): number {
  try { return fs.readdirSync('/proc/self/task').length; } catch { return 0; }
}

/** Lets `to` remove the files moat made in dir on exit (the router's socket). */
export function handOver(paths: string[], to: DropTo): void {
  for (const p of paths) fs.chownSync(p, to.uid, to.gid);
}

/** The drop as the last component of a process: hands `handed()` (what the
 *  components before it made, e.g. the router's socket directories) to the
 *  user, then drops. Stopping undoes nothing: root does not come back. */
export function privilegeDrop(to: DropTo, handed: () => string[], log: Logger, opts: DropOptions): Component {
  return {
    name: 'privilege drop',
    start() {
      handOver(handed(), to);
      dropPrivileges(to, log, opts);
    },
    stop() { /* for good */ },
  };
}
