// proc.ts: a process's /proc/PID/status as a record (Uid, CapEff, ...), and
// this process's threads by name (the addon's loops: moat-router, moat-device).
import fs from 'node:fs';

export function procStatus(pid: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n')) {
    const i = l.indexOf(':');
    if (i > 0) out[l.slice(0, i)] = l.slice(i + 1).trim();
  }
  return out;
}

/** The ids of this process's threads named name (/proc/self/task/TID/comm), oldest first. */
export function threadsNamed(name: string): string[] {
  return fs.readdirSync('/proc/self/task').filter((tid) => {
    try { return fs.readFileSync(`/proc/self/task/${tid}/comm`, 'utf8').trim() === name; } catch { return false; /* ended */ }
  }).sort((a, b) => Number(a) - Number(b));
}
