// cgroup-fs.ts: the few cgroupfs operations cgroup.ts and cgroup-vassal.ts
// share: writes whose errors name the file and value, tolerant reads of
// interface files, and walks of a cgroup's descendants (a tenant with root
// may have made some). Plain synchronous fs: cgroupfs files are in memory.
import fs from 'node:fs';
import path from 'node:path';

/** Writes a cgroup file, naming the file and the value in the error (errno kept in .code). */
export function write(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    err.message = `writing '${value}' to ${file}: ${err.code ?? err.message}`;
    throw err;
  }
}

export function readMaybe(file: string): string | undefined {
  try { return fs.readFileSync(file, 'utf8'); } catch { return undefined; }
}

export const words = (file: string) => (readMaybe(file) ?? '').split(/\s+/).filter(Boolean);

/** A "key value" line of a flat-keyed file (memory.events, cpu.stat, memory.oom_control). */
export function keyed(file: string, key: string): number | undefined {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(readMaybe(file) ?? '');
  return m ? Number(m[1]) : undefined;
}

export function number(file: string): number | undefined {
  const t = readMaybe(file)?.trim();
  return t === undefined || !/^-?\d+$/.test(t) ? undefined : Number(t);
}

export function mkdir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${dir} is a cgroup file, not a cgroup: choose another name`);
    throw e;
  }
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is a cgroup file, not a cgroup: choose another name`);
}

/** dir and its descendant cgroups, deepest first (the order rmdir needs). */
export function cgroupTree(dir: string): string[] {
  let subdirs: fs.Dirent[] = [];
  try { subdirs = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()); } catch { return []; }
  return [...subdirs.flatMap((e) => cgroupTree(path.join(dir, e.name))), dir];
}

export function procs(dir: string): number[] {
  return cgroupTree(dir).flatMap((d) => (readMaybe(path.join(d, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number));
}
