// runner.ts: how a cron run becomes a process. The scheduler only says
// run(id, cmd) and kill(id); a JobRunner starts the process and reports its
// end. In production the emperor's runner sends the vassal runtime
// `job ID CMD` / `job-kill ID` and turns its `job-start` / `job-exit` events
// into onStart / onExit (docs/runtime-protocol.md), so the job runs inside the
// vassal's namespaces as its uid. LocalJobRunner spawns /bin/sh -c here
// (optionally in a named netns), for tests and for a standalone moat.
import { spawn, ChildProcess } from 'node:child_process';
import os from 'node:os';

/** How a run ended: an exit code, a signal, or a failure to start it. */
export type JobStatus = { code: number } | { signal: number } | { error: string };

/** What a runner reports back; CronScheduler implements it. */
export interface JobEvents {
  onStart(id: string, pid: number): void;
  /** Exactly once per run(), also when the process could not be started. */
  onExit(id: string, status: JobStatus, ms: number): void;
}

export interface JobRunner {
  /** Starts CMD (/bin/sh -c CMD) as run ID; IDs never contain blanks. */
  run(id: string, cmd: string): void;
  /** SIGKILLs run ID's process group (harakiri); unknown or ended IDs are ignored. */
  kill(id: string): void;
}

/** The runtime's job-exit STATUS field: '0', '1', ... or 'signal 9'. */
export function parseJobStatus(text: string): JobStatus {
  const t = text.trim();
  if (/^[0-9]+$/.test(t)) return { code: Number(t) };
  const m = /^signal ([0-9]+)$/.exec(t);
  if (m) return { signal: Number(m[1]) };
  return { error: t };
}

/**
 * The value of the runtime's `job-exit ID STATUS MILLISECONDS` event; STATUS
 * may hold a blank ('signal 9'), so ID is the first word and MILLISECONDS the
 * last. Undefined when the value has not that shape.
 */
export function parseJobExit(value: string): { id: string; status: JobStatus; ms: number } | undefined {
  const m = /^(\S+) (.+) ([0-9]+)$/.exec(value.trim());
  return m ? { id: m[1], status: parseJobStatus(m[2]), ms: Number(m[3]) } : undefined;
}

export function formatJobStatus(s: JobStatus): string {
  if ('code' in s) return `exit ${s.code}`;
  if ('signal' in s) return `signal ${s.signal}`;
  return `error: ${s.error}`;
}

export interface LocalJobRunnerOptions {
  netns?: string;               // run inside `ip netns exec NAME`
  env?: NodeJS.ProcessEnv;      // default: this process's environment
  cwd?: string;
  uid?: number;
  gid?: number;
}

/** Spawns each run here, in its own process group; output is discarded. */
export class LocalJobRunner implements JobRunner {
  private events?: JobEvents;
  private readonly running = new Map<string, ChildProcess>();

  constructor(private readonly opts: LocalJobRunnerOptions = {}) {}

  /** Where onStart/onExit go (the CronScheduler). */
  attach(events: JobEvents): void {
    this.events = events;
  }

  run(id: string, cmd: string): void {
    const started = performance.now();
    const argv = this.opts.netns ? ['ip', 'netns', 'exec', this.opts.netns, '/bin/sh', '-c', cmd] : ['/bin/sh', '-c', cmd];
    let done = false;
    const finish = (status: JobStatus) => {
      if (done) return;
      done = true;
      this.running.delete(id);
      this.events?.onExit(id, status, Math.round(performance.now() - started));
    };
    const child = spawn(argv[0], argv.slice(1), {
      stdio: 'ignore', detached: true, env: this.opts.env ?? process.env, cwd: this.opts.cwd, uid: this.opts.uid, gid: this.opts.gid,
    });
    this.running.set(id, child);
    child.once('spawn', () => this.events?.onStart(id, child.pid ?? 0));
    child.once('error', (e) => finish({ error: e.message }));
    child.once('exit', (code, signal) => finish(signal ? { signal: os.constants.signals[signal] } : { code: code ?? 0 }));
  }

  kill(id: string): void {
    const pid = this.running.get(id)?.pid;
    if (!pid) return;
    try { process.kill(-pid, 'SIGKILL'); } catch { /* already gone */ }
  }

  /** Runs still going (tests, shutdown). */
  get ids(): string[] {
    return [...this.running.keys()];
  }

  killAll(): void {
    for (const id of this.ids) this.kill(id);
  }
}
