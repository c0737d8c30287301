// privileges.ts: a standalone router or device gives up root once its tun
// device, sockets and hooks exist (uWSGI's `uid`/`gid` for the instance); so
// does the router process of `moat emperor`. The data path needs no privilege
// after that: the tun fd and the listening socket stay open. Dropping from
// root to another uid clears every capability (no keep-caps), for all threads
// (glibc applies set*id to the whole process). As a component it comes last:
// everything before it starts as root.
import fs from 'node:fs';
import type { Component } from './lifecycle/component';
import type { Logger } from './log';

export interface DropTo { uid: number; gid: number }

/** setgroups([]), setgid, setuid, then proves root cannot come back. */
export function dropPrivileges(to: DropTo, log: Logger): void {
  const { setgroups, setgid, setuid } = process;
  if (!setgroups || !setgid || !setuid) throw new Error('this platform cannot change user');
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
  const capEff = /CapEff:\s*([0-9a-f]+)/.exec(fs.readFileSync('/proc/self/status', 'utf8'))?.[1];
  log.info({ uid: to.uid, gid: to.gid, capEff }, 'privileges dropped');
}

/** Lets `to` remove the files moat made in dir on exit (the router's socket). */
export function handOver(paths: string[], to: DropTo): void {
  for (const p of paths) fs.chownSync(p, to.uid, to.gid);
}

/** The drop as the last component of a process: hands `handed()` (what the
 *  components before it made, e.g. the router's socket directories) to the
 *  user, then drops. Stopping undoes nothing: root does not come back. */
export function privilegeDrop(to: DropTo, handed: () => string[], log: Logger): Component {
  return {
    name: 'privilege drop',
    start() {
      handOver(handed(), to);
      dropPrivileges(to, log);
    },
    stop() { /* for good */ },
  };
}
