// vassal.ts: the emperor's side of one vassal: spawns its native runtime
// (build/Release/moat-vassal) with the control channel on fd 3, hands it the
// config lines (docs/runtime-protocol.md), reads its events, logs each step
// with the vassal's name, and restarts it with exponential backoff when it
// dies (the backoff resets once a run stayed up long enough). stop() asks the
// runtime to stop, then kills its cgroup (every process of the vassal, pid
// namespace or not) and SIGKILLs the launcher (our own child: its pid cannot
// have been reused) after a timeout. A run is over when the launcher exits:
// the emperor never waits for the vassal's pipes to close (a process that
// escaped may hold them; the cgroup kill ends it). What the vassal prints
// reaches the log within a budget (output-budget.ts). One Vassal object lives
// as long as its file does not change.
import { ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { Writable, Readable } from 'node:stream';
import type { Logger } from '../log';
import type { CgroupStats, VassalCgroup } from './cgroup';
import { OutputBudget, OutputBudgetOptions } from './output-budget';

/** What a run's pipes may still deliver after its launcher exited. */
const PIPE_GRACE_MS = 200;

export const DEFAULT_RUNTIME = path.join(__dirname, '..', '..', '..', 'build', 'Release', 'moat-vassal');
const MAX_LINE = 65536;

export type VassalState = 'starting' | 'running' | 'backoff' | 'stopping' | 'stopped';

export interface SupervisorOptions {
  runtime: { command: string; args: string[] };   // the runtime program (tests may use a stand-in)
  backoffMinMs: number;       // first restart delay
  backoffMaxMs: number;       // cap of the doubling
  resetAfterMs: number;       // a run this long resets the backoff
  stopTimeoutMs: number;      // 'stop', then SIGKILL after this
}

export const DEFAULT_SUPERVISOR: SupervisorOptions = {
  runtime: { command: process.env.MOAT_VASSAL_RUNTIME ?? DEFAULT_RUNTIME, args: [] },
  backoffMinMs: 1000,
  backoffMaxMs: 60_000,
  resetAfterMs: 30_000,
  stopTimeoutMs: 8000,        // the runtime itself SIGKILLs its processes 5 s after 'stop'
};

export interface RuntimeEvent { keyword: string; value: string }

/** Splits channel bytes into lines (KEYWORD [SP VALUE]); a line over the limit is cut and flagged. */
export class LineReader {
  private buf = '';
  push(chunk: string): Array<RuntimeEvent | { overflow: true }> {
    this.buf += chunk;
    const out: Array<RuntimeEvent | { overflow: true }> = [];
    for (;;) {
      const nl = this.buf.indexOf('\n');
      if (nl < 0) {
        if (this.buf.length > MAX_LINE) { this.buf = ''; out.push({ overflow: true }); }
        return out;
      }
      const line = this.buf.slice(0, nl);
      this.buf = this.buf.slice(nl + 1);
      if (line.length > MAX_LINE) { out.push({ overflow: true }); continue; }
      const sp = line.indexOf(' ');
      out.push(sp < 0 ? { keyword: line, value: '' } : { keyword: line.slice(0, sp), value: line.slice(sp + 1) });
    }
  }
}

/**
 * Events: 'pid' (hostPid), 'ready', 'exit' ({code, signal, reason}),
 * 'daemon' (RuntimeEvent), 'device' (string), 'pty' (string), 'state' (VassalState).
 */
export class Vassal extends EventEmitter {
  state: VassalState = 'stopped';
  pid?: number;              // the runtime's pid in the host's pid namespace
  restarts = 0;              // runs started after the first one
  lastExit?: string;
  lastError?: string;
  startedAt?: number;
  readyAt?: number;
  private child?: ChildProcess;
  private channel?: Writable;
  private failures = 0;      // consecutive short runs (backoff exponent)
  private restartTimer?: NodeJS.Timeout;
  private exited?: Promise<void>;
  private wanted = false;

  private readonly output: OutputBudget;
  private outputPause?: NodeJS.Timeout;     // reading stopped until the next budget window

  constructor(readonly name: string, readonly lines: string[], readonly log: Logger,
              readonly opts: SupervisorOptions = DEFAULT_SUPERVISOR, readonly cgroup?: VassalCgroup,
              output: OutputBudgetOptions = { linesPerSec: 100, bytesPerSec: 65536 }) {
    super();
    this.output = new OutputBudget(output);
  }

  /** The vassal's cgroup usage and limits (undefined without a cgroup). */
  cgroupStats(): CgroupStats | undefined {
    try { return this.cgroup?.stats(); } catch { return undefined; }
  }

  /** Output lines and bytes dropped over the budget, in all. */
  get outputDropped(): { lines: number; bytes: number } {
    return { lines: this.output.totalDroppedLines, bytes: this.output.totalDroppedBytes };
  }

  /** Kills whatever is left in the vassal's cgroup (a process that escaped its runtime). */
  private async killLeftovers(): Promise<void> {
    if (!this.cgroup) return;
    try {
      const r = await this.cgroup.killAll();
      if (!r.empty) this.log.error({ method: r.method, ms: r.ms }, 'processes of the vassal survived the cgroup kill');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'cannot kill the vassal\'s cgroup');
    }
  }

  /** The pid of the process spawned for this run (the runtime's launcher)
   *  while node has not reaped it (so the number is still that process's). */
  get launcherPid(): number | undefined {
    const c = this.child;
    return c && c.exitCode === null && c.signalCode === null ? c.pid : undefined;
  }

  start(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.spawnOnce();
  }

  private setState(s: VassalState): void {
    this.state = s;
    this.emit('state', s);
  }

  private spawnOnce(): void {
    this.restartTimer = undefined;
    if (!this.wanted) return;
    this.setState('starting');
    // An earlier run's leftovers go first: the new runtime starts in an empty cgroup.
    this.killLeftovers().then(() => this.spawnNow(), () => this.spawnNow());
  }

  private spawnNow(): void {
    if (!this.wanted) { this.setState('stopped'); return; }
    this.pid = undefined;
    this.readyAt = undefined;
    this.startedAt = Date.now();
    this.log.info({ runtime: this.opts.runtime.command }, 'spawning the vassal runtime');
    let child: ChildProcess;
    try {
      child = spawn(this.opts.runtime.command, this.opts.runtime.args, { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    } catch (err) {
      this.onExit(null, null, `spawn failed: ${(err as Error).message}`);
      return;
    }
    this.child = child;
    const channel = child.stdio[3] as unknown as (Writable & Readable);
    this.channel = channel;
    let spawnError: string | undefined;
    this.exited = new Promise<void>((resolve) => {
      let done = false;
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (done) return;
        done = true;
        // Whatever still holds the pipes is a process that escaped: the cgroup kill ends it.
        void this.killLeftovers().then(() => {
          clearTimeout(this.outputPause);
          this.outputPause = undefined;
          for (const s of [child.stdout, child.stderr, channel]) s?.destroy();
          this.onExit(code, signal, spawnError);
          resolve();
        });
      };
      child.on('error', (err) => {
        spawnError = err.message;
        if (child.pid === undefined) finish(null, null);   // never started: no 'exit' comes
      });
      child.on('exit', (code, signal) => {
        // The pipes' last bytes (an error line) usually follow within moments; never wait longer.
        const t = setTimeout(() => finish(code, signal), PIPE_GRACE_MS);
        child.once('close', () => { clearTimeout(t); finish(code, signal); });
      });
    });
    const reader = new LineReader();
    channel.setEncoding('utf8');
    channel.on('data', (d: string) => {
      for (const e of reader.push(d)) {
        if ('overflow' in e) this.log.warn('runtime sent a line over 64 KiB, ignored');
        else this.onEvent(e);
      }
    });
    channel.on('error', (err) => this.log.debug({ err: err.message }, 'control channel error'));
    const streams = [child.stdout, child.stderr];
    streams.forEach((stream, i) => {
      stream?.on('data', (d: Buffer) => {
        const { lines, report } = this.output.push(d, i);
        for (const line of lines) this.log.info({ output: line }, 'vassal output');
        if (report) this.log.warn({ droppedLines: report.lines, droppedBytes: report.bytes }, 'vassal output over its budget: dropped');
        // Past the scan cap: not another byte this second (the vassal waits on its pipe, not the emperor).
        const ms = this.output.pauseMs();
        if (ms > 0 && !this.outputPause) {
          for (const s of streams) s?.pause();
          this.outputPause = setTimeout(() => {
            this.outputPause = undefined;
            for (const s of streams) s?.resume();
          }, ms);
        }
      });
      stream?.on('error', () => undefined);
    });
    const cgroups = this.cgroup ? this.cgroup.procsFiles.map((f) => `cgroup ${path.dirname(f)}`) : [];
    channel.write([...this.lines, ...cgroups].map((l) => l + '\n').join('') + 'start\n');
  }

  private onEvent(e: RuntimeEvent): void {
    switch (e.keyword) {
      case 'pid': {
        const n = Number(e.value);
        if (!Number.isSafeInteger(n) || n <= 0) { this.log.warn({ value: e.value }, 'bad pid event'); return; }
        this.pid = n;
        this.log.info({ pid: n }, 'vassal runtime started');
        this.emit('pid', n);
        break;
      }
      case 'ready':
        this.readyAt = Date.now();
        if (this.state === 'starting') this.setState('running');
        this.log.info({ ms: this.readyAt - (this.startedAt ?? this.readyAt) }, 'vassal ready');
        this.emit('ready');
        break;
      case 'hook': {
        const sp = e.value.indexOf(' ');
        const status = sp < 0 ? e.value : e.value.slice(0, sp);
        this.log[status === '0' ? 'info' : 'error']({ status, hook: sp < 0 ? '' : e.value.slice(sp + 1) }, 'hook finished');
        break;
      }
      case 'device':
        this.log[e.value === 'connected' ? 'info' : 'warn']({ device: e.value }, 'vassal device');
        this.emit('device', e.value);
        break;
      case 'daemon':
        this.log[e.value.startsWith('start') ? 'info' : 'warn']({ daemon: e.value }, 'attached daemon');
        this.emit('daemon', e);
        break;
      case 'job-start': case 'job-exit':
        this.log.info({ [e.keyword]: e.value }, 'job');
        this.emit(e.keyword, e.value);
        break;
      case 'pty':
        // start/end of a forkpty session, a shared-pty viewer, a refused connection (docs/runtime-protocol.md)
        this.log[e.value.startsWith('refused') ? 'warn' : 'info']({ pty: e.value }, 'pty');
        this.emit('pty', e.value);
        break;
      case 'error':
        this.lastError = e.value;
        this.log.error({ err: e.value }, 'vassal runtime error');
        this.emit('runtime-error', e.value);
        break;
      default:
        this.log.debug({ keyword: e.keyword, value: e.value }, 'unknown runtime event');
    }
  }

  private onExit(code: number | null, signal: NodeJS.Signals | null, spawnError?: string): void {
    const ranMs = Date.now() - (this.startedAt ?? Date.now());
    const reason = spawnError ? spawnError
      : signal ? `killed by ${signal}`
      : code !== null && code > 128 ? `exit ${code} (runtime killed by signal ${code - 128})`
      : `exit ${code}`;
    this.lastExit = reason + (this.lastError ? `: ${this.lastError}` : '');
    this.child = undefined;
    this.channel = undefined;
    const pid = this.pid;
    this.pid = undefined;
    this.emit('exit', { code, signal, reason: this.lastExit, pid });
    if (!this.wanted) {
      this.log.info({ reason: this.lastExit, ranMs }, 'vassal stopped');
      this.setState('stopped');
      return;
    }
    // A run that stayed up long enough resets the backoff.
    if (this.readyAt !== undefined && Date.now() - this.readyAt >= this.opts.resetAfterMs) this.failures = 0;
    const delay = Math.min(this.opts.backoffMaxMs, this.opts.backoffMinMs * 2 ** Math.min(this.failures, 30));
    this.failures++;
    this.log.warn({ reason: this.lastExit, ranMs, restartInMs: delay }, 'vassal died, restarting after a delay');
    this.lastError = undefined;
    this.setState('backoff');
    this.restartTimer = setTimeout(() => {
      this.restarts++;
      this.spawnOnce();
    }, delay);
  }

  /** Sends a command line to a running runtime (job, pty-router...); false if none. */
  send(line: string): boolean {
    if (!this.channel || /[\r\n]/.test(line)) return false;
    this.channel.write(line + '\n');
    return true;
  }

  /** No more runs: a pending restart is cancelled (the vassal is stopped
   *  then); the running child, now 'stopping', if there is one. */
  private unwant(): ChildProcess | undefined {
    this.wanted = false;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = undefined;
      this.setState('stopped');
      this.log.info('vassal stopped (it was waiting to restart)');
      return undefined;
    }
    if (this.child) this.setState('stopping');
    return this.child;
  }

  /** Kills the vassal now, with no grace: its cgroup (every process of it)
   *  and the launcher, and no restart. A fleet host that lost its lease does
   *  this (another host may start the vassal once the lease expires). */
  async kill(): Promise<void> {
    const child = this.unwant();
    if (!child) return;
    this.log.warn('killing the vassal now');
    const exited = this.exited!;
    await this.killLeftovers();
    child.kill('SIGKILL');
    await exited;
  }

  /** 'stop' to the runtime; SIGKILL to it (pid 1 of its namespace) and the launcher after the timeout. */
  async stop(): Promise<void> {
    const child = this.unwant();
    if (!child) return;
    this.log.info('stopping the vassal');
    try { this.channel?.write('stop\n'); } catch { /* closed */ }
    const exited = this.exited!;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      exited.then(() => false),
      new Promise<boolean>((r) => { timer = setTimeout(() => r(true), this.opts.stopTimeoutMs); }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      // The cgroup holds every process of the vassal; the launcher is our own
      // child (not reaped yet: its pid is still ours). No other pid is signalled.
      this.log.warn({ timeoutMs: this.opts.stopTimeoutMs }, 'vassal did not stop in time: killing its cgroup and the launcher');
      await this.killLeftovers();
      child.kill('SIGKILL');
      await exited;
    }
    const dropped = this.output.flushReport();
    if (dropped) this.log.warn({ droppedLines: dropped.lines, droppedBytes: dropped.bytes }, 'vassal output over its budget: dropped');
  }
}
