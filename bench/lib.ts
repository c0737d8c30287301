// lib.ts: the bench's plumbing: the C generator (built at bench time), running
// bounded commands inside namespaces, and cleanup of everything the bench made,
// also on Ctrl-C. All traffic stays between namespaces the bench creates.
import { execFileSync, ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Lab } from '../test/helpers/netns';

export const ROOT = path.resolve(__dirname, '..', '..');
export const FLOOD = path.join(ROOT, 'bench', 'bin', 'flood');
export const MOAT_CLI = path.join(ROOT, 'dist', 'src', 'cli.js');

/** Compiles bench/gen/NAME.c (cc) or NAME.cc (c++, native/ on the include path) into binDir/NAME (default bench/bin); returns its path. */
export function buildGen(name: string, binDir = path.join(ROOT, 'bench', 'bin')): string {
  const bin = path.join(binDir, name);
  fs.mkdirSync(binDir, { recursive: true });
  const c = path.join(ROOT, 'bench', 'gen', `${name}.c`);
  const [cc, src, std] = fs.existsSync(c) ? ['cc', c, []] : ['c++', path.join(ROOT, 'bench', 'gen', `${name}.cc`), ['-std=c++17', '-I', path.join(ROOT, 'native')]];
  execFileSync(cc, ['-O2', '-Wall', '-Wextra', '-Werror', ...std, '-o', bin, src], { stdio: 'inherit', timeout: 60000 });
  return bin;
}

/** Compiles bench/gen/flood.c into bench/bin/flood (FLOOD). */
export function buildFlood(): void {
  buildGen('flood');
}

/**
 * Rows as aligned text columns: the first `left` columns padded on the
 * right, the rest (figures) on the left, joined by sep. Returns the lines and
 * a rule of dashes as wide as each column.
 */
export function alignColumns(rows: string[][], left: number, sep = '  '): { lines: string[]; rule: string } {
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return {
    lines: rows.map((r) => r.map((c, i) => (i < left ? c.padEnd(w[i]) : c.padStart(w[i]))).join(sep)),
    rule: w.map((n) => '-'.repeat(n)).join(sep),
  };
}

/** Writes data as bench/results/<prefix>-<timestamp>.json; returns the path. */
export function writeResults(prefix: string, data: unknown): string {
  const dir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `${prefix}-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
  return file;
}

// ---- cleanup of everything alive, also on SIGINT/SIGTERM ----

const liveLabs = new Set<Lab>();
const liveDirs = new Set<string>();
let handlersInstalled = false;

export function trackLab(lab: Lab): Lab {
  liveLabs.add(lab);
  installHandlers();
  return lab;
}

export async function releaseLab(lab: Lab): Promise<void> {
  try { await lab.cleanup(); } finally { liveLabs.delete(lab); }
}

export function trackDir(dir: string): string {
  liveDirs.add(dir);
  installHandlers();
  return dir;
}

export function releaseDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true });
  liveDirs.delete(dir);
}

export async function cleanupAll(): Promise<void> {
  for (const lab of [...liveLabs]) await releaseLab(lab).catch(() => undefined);
  for (const d of [...liveDirs]) releaseDir(d);
}

function installHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const onSignal = (sig: NodeJS.Signals) => {
    process.stderr.write(`\nbench: ${sig}, removing namespaces and processes...\n`);
    cleanupAll().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

// ---- running things ----

export interface Ran { code: number | null; signal: string | null; stdout: string; stderr: string; timedOut: boolean }

/** Collects a child's output (last 64 KiB of each stream). */
export function collect(child: ChildProcess): { out: () => string; err: () => string; done: Promise<Ran> } {
  let out = '';
  let err = '';
  const cap = (s: string) => (s.length > 65536 ? s.slice(-65536) : s);
  child.stdout?.on('data', (d: Buffer) => { out = cap(out + d.toString()); });
  child.stderr?.on('data', (d: Buffer) => { err = cap(err + d.toString()); });
  const done = new Promise<Ran>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal, stdout: out, stderr: err, timedOut: false }));
    child.on('error', (e) => resolve({ code: -1, signal: null, stdout: out, stderr: err + String(e), timedOut: false }));
  });
  return { out: () => out, err: () => err, done };
}

/** Runs cmd in ns to completion, killing it (by its pid) after timeoutMs. */
export async function run(lab: Lab, ns: string | undefined, cmd: string, args: string[], timeoutMs: number): Promise<Ran> {
  const child = lab.spawn(cmd, args, ns ? { ns } : {});
  child.stdin?.end();
  const c = collect(child);
  let timedOut = false;
  const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, timeoutMs);
  const r = await c.done;
  clearTimeout(timer);
  return { ...r, timedOut };
}

/** CPU time (ns) so far of every thread of pid, or of those named comm
 *  (/proc/PID/task/TID/schedstat, .../comm); NaN if pid is gone. */
export function cpuNs(pid: number, comm?: string): number {
  try {
    let sum = 0;
    for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        if (comm !== undefined && fs.readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim() !== comm) continue;
        sum += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
      } catch { /* the thread ended */ }
    }
    return sum;
  } catch {
    return NaN;
  }
}

/** The machine's busy CPU time so far, in ns, all CPUs (/proc/stat: user,
 *  nice, system, irq, softirq, steal; ticks of USER_HZ = 100). */
export function machineBusyNs(): number {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const [user, nice, system, , , irq, softirq, steal] = f;
  return (user + nice + system + irq + softirq + (steal || 0)) * 1e7;
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** rounds rounds in which each of ks takes a turn, the order rotating each
 *  round, so that every kind samples the same states of the machine. */
export async function inTurns<K>(ks: K[], rounds: number, turn: (k: K, round: number) => Promise<void>): Promise<void> {
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < ks.length; i++) await turn(ks[(i + r) % ks.length], r);
  }
}

/** Waits until pred() is true, polling every 50 ms, at most timeoutMs. */
export async function until(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    let ok = false;
    try { ok = pred(); } catch { ok = false; }
    if (ok) return;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

export function lastJson(text: string): Record<string, unknown> | null {
  const lines = text.trim().split('\n').reverse();
  for (const l of lines) {
    const s = l.trim();
    if (s.startsWith('{')) {
      try { return JSON.parse(s) as Record<string, unknown>; } catch { /* next */ }
    }
  }
  return null;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

/** The median of xs, unsorted: the lower of the two middle values for an even count (a figure measured, never an average of two); NaN for none. */
export const median = (xs: number[]): number => percentile([...xs].sort((a, b) => a - b), 50);
