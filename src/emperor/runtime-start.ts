// runtime-start.ts: a vassal runtime's start time (/proc/PID/stat field 22,
// clock ticks since boot), with which the emperor's bindings name the
// runtime. The router matches a peer by its pid and start time, so a new
// process that reuses a dead runtime's pid number never inherits its binding
// (native/peer_identity.h says why the pair cannot repeat).
//
// The emperor reads it when the runtime reports its pid, and trusts it only
// if that process is the launcher it spawned (a stand-in runtime) or the
// launcher's child (moat-vassal forks the runtime once): the launcher is the
// emperor's child and not yet reaped, so the number cannot have passed to
// another process yet.
import fs from 'node:fs';

/** pid's parent and start time, or undefined if it is gone. */
export function processStat(pid: number): { ppid: number; start: number } | undefined {
  let text: string;
  try { text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8'); } catch { return undefined; }
  // "pid (comm) state ppid ...": comm may hold blanks and ')'; fields count from the last ')'.
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const ppid = Number(f[1]);     // field 4
  const start = Number(f[19]);   // field 22
  return Number.isSafeInteger(ppid) && Number.isSafeInteger(start) && start > 0 ? { ppid, start } : undefined;
}

/** The runtime's start time, if pid is launcherPid or its child (launcherPid: the emperor's unreaped child). */
export function runtimeStartTime(pid: number, launcherPid: number | undefined): number | undefined {
  if (launcherPid === undefined) return undefined;
  const s = processStat(pid);
  if (!s || (pid !== launcherPid && s.ppid !== launcherPid)) return undefined;
  return s.start;
}
