// netns.ts: network namespaces and processes for integration tests. Names are
// unique per run; everything made here is removed by cleanup(), also when a
// test fails (call it from t.after / after).
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';

export function sh(cmd: string, args: string[], opts: { ns?: string; input?: string; timeoutMs?: number } = {}): string {
  const argv = opts.ns ? ['netns', 'exec', opts.ns, cmd, ...args] : args;
  const bin = opts.ns ? 'ip' : cmd;
  return execFileSync(bin, argv, { encoding: 'utf8', input: opts.input, timeout: opts.timeoutMs ?? 20000, stdio: ['pipe', 'pipe', 'pipe'] });
}

export interface LinkCounters { packets: number; bytes: number; dropped: number }

/** A link's kernel counters in ns (`ip -s -j link`): rx is what was written to
 *  a tun (sent into the namespace's stack), tx what it queued for the reader. */
export function linkStats(ns: string, dev: string): { rx: LinkCounters; tx: LinkCounters } {
  return (JSON.parse(sh('ip', ['-s', '-j', '-n', ns, 'link', 'show', 'dev', dev])) as Array<{ stats64: { rx: LinkCounters; tx: LinkCounters } }>)[0].stats64;
}

/** True when this process may create namespaces and tun devices. Under CI a
 *  missing privilege is a failure, never a silent skip. */
export function canRunIntegration(): boolean {
  return process.getuid?.() === 0;
}

export function requireRoot(): void {
  if (!canRunIntegration()) throw new Error('integration tests need root and CAP_NET_ADMIN');
}

/** fn's result, with env set in process.env while it runs (for what reads
 *  the environment as it starts: a router's loop thread), restored after. */
export function withEnv<T>(env: Record<string, string>, fn: () => T): T {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  try {
    return fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) { if (v === undefined) delete process.env[k]; else process.env[k] = v; }
  }
}

export function uniqueName(prefix: string): string {
  // ip link names are at most 15 characters
  return (prefix + crypto.randomBytes(3).toString('hex')).slice(0, 15);
}

export class Lab {
  readonly namespaces: string[] = [];
  readonly children: ChildProcess[] = [];
  readonly cleanups: Array<() => void> = [];
  /** Called with each process spawn() starts (e.g. to put it in a cgroup). */
  readonly spawnHooks: Array<(child: ChildProcess, ns: string | undefined) => void> = [];

  netns(prefix = 'mt'): string {
    const name = uniqueName(prefix);
    sh('ip', ['netns', 'add', name]);
    this.namespaces.push(name);
    sh('ip', ['link', 'set', 'lo', 'up'], { ns: name });
    return name;
  }

  /** Starts a process inside ns (or the current one) and remembers it;
   *  `fd3`: a fourth pipe (child.stdio[3]), e.g. moat-vassal's control channel. */
  spawn(cmd: string, args: string[], opts: { ns?: string; env?: NodeJS.ProcessEnv; fd3?: boolean } = {}): ChildProcess {
    const argv = opts.ns ? ['netns', 'exec', opts.ns, cmd, ...args] : args;
    const stdio: Array<'pipe'> = opts.fd3 ? ['pipe', 'pipe', 'pipe', 'pipe'] : ['pipe', 'pipe', 'pipe'];
    const child = spawn(opts.ns ? 'ip' : cmd, argv, { stdio, env: opts.env ?? process.env });
    this.children.push(child);
    for (const hook of this.spawnHooks) hook(child, opts.ns);
    return child;
  }

  onCleanup(fn: () => void): void {
    this.cleanups.push(fn);
  }

  async cleanup(): Promise<void> {
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) {
        c.kill('SIGINT');
      }
    }
    await new Promise((r) => setTimeout(r, 100));
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    for (const fn of this.cleanups.splice(0).reverse()) {
      try { fn(); } catch { /* best effort */ }
    }
    for (const ns of this.namespaces.splice(0)) {
      // Kill whatever is left inside the namespace (processes we started there), then remove it.
      try {
        const pids = sh('ip', ['netns', 'pids', ns]).split('\n').filter(Boolean);
        for (const p of pids) { try { process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ } }
      } catch { /* no pids */ }
      try { sh('ip', ['netns', 'del', ns]); } catch { /* already gone */ }
    }
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** waitFor for an async predicate (a stats socket, a command); a timed-out
 *  wait says what the test saw last (`seen`). */
export async function waitForAsync(pred: () => Promise<boolean>, timeoutMs: number, what: string,
  seen: () => Promise<string> = async () => ''): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    let ok = false;
    try { ok = await pred(); } catch { ok = false; }
    if (ok) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}\n${await seen().catch((e: Error) => e.message)}`);
    await sleep(100);
  }
}

export function waitFor(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const start = Date.now();
  return new Promise((resolve, reject) => {
    const tick = () => {
      let ok = false;
      try { ok = pred(); } catch { ok = false; }
      if (ok) return resolve();
      if (Date.now() - start > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 50);
    };
    tick();
  });
}
