// scheduler.ts: CronScheduler, one per vassal, living in the emperor. It keeps one
// timer, asks croner when each entry fires next, and hands due runs to a
// JobRunner (the vassal runtime's `job` command in production).
//
// Rules, beyond uWSGI's:
//   - an entry whose previous run is still going is not started again; the
//     time is logged and counted as skipped (uWSGI starts a second copy);
//   - like uWSGI, an entry never starts twice within 60 s (a clock set back);
//   - the timer sleeps at most 60 s, so a wall clock that jumps is noticed
//     within a minute; a fire time more than a minute in the past (the clock
//     jumped forward, the process was stopped) is skipped as missed, as
//     uWSGI's once-a-minute check would miss it;
//   - harakiri = N kills a run (its process group) N seconds after it started.
import { EventEmitter } from 'node:events';
import { logger, Logger } from '../../log';
import type { Clock, TimerHandle } from './clock';
import { systemClock } from './clock';
import type { CronMetrics, CronResult, SkipReason } from './metrics';
import type { CronEntry } from './parse';
import { formatJobStatus, JobEvents, JobRunner, JobStatus } from './runner';

export interface CronSchedulerOptions {
  vassal: string;               // name, for logs and the metrics' vassal label
  entries: readonly CronEntry[];
  runner: JobRunner;
  clock?: Clock;                // default systemClock
  metrics?: CronMetrics;        // one per registry, shared by all vassals
  log?: Logger;                 // default: moat's logger
}

/** Events (for tests and the emperor's status page); logs and metrics do not depend on listeners. */
export interface CronStartEvent { entry: CronEntry; id: string; at: number }
export interface CronSkipEvent { entry: CronEntry; reason: SkipReason; at: number; due: number }
export interface CronExitEvent { entry: CronEntry; id: string; status: JobStatus; ms: number; result: CronResult; at: number }

interface Run {
  id: string;
  state: EntryState;
  started: number;
  pid?: number;
  harakiriTimer?: TimerHandle;
  harakiri: boolean;
}

interface EntryState {
  entry: CronEntry;
  index: number;                // 1-based, in file order
  due: number | null;           // next fire time (ms), null: never again
  lastStart?: number;
  run?: Run;
}

const MINUTE = 60_000;

export class CronScheduler extends EventEmitter implements JobEvents {
  private readonly clock: Clock;
  private readonly log: Logger;
  private readonly states: EntryState[];
  private readonly runs = new Map<string, Run>();
  private timer?: TimerHandle;
  private lastTick?: number;
  private seq = 0;
  private started = false;

  constructor(private readonly opts: CronSchedulerOptions) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.log = (opts.log ?? logger()).child({ plugin: 'cron', vassal: opts.vassal });
    this.states = opts.entries.map((entry, i) => ({ entry, index: i + 1, due: null }));
  }

  /** Starts scheduling (runs fire from the next matching minute on). */
  start(): void {
    if (this.started) return;
    this.started = true;
    const now = this.clock.now();
    for (const s of this.states) s.due = this.next(s.entry, now);
    this.lastTick = now;
    for (const s of this.states) {
      this.log.info({ entry: s.entry.where, command: s.entry.command, pattern: s.entry.pattern, next: s.due === null ? null : new Date(s.due).toISOString() }, 'cron entry scheduled');
    }
    this.arm();
  }

  /**
   * Stops scheduling: no new run starts. Runs still going are still reported
   * (onExit) and still killed by their harakiri; the vassal runtime's `stop`
   * ends them with the vassal.
   */
  stop(): void {
    this.started = false;
    if (this.timer) this.clock.clearTimer(this.timer);
    this.timer = undefined;
  }

  /**
   * stop(), and ends the runs still going as `{ error: reason }` (their
   * exits will never come: the vassal is gone). Leaves no timer behind.
   */
  close(reason = 'vassal stopped'): void {
    this.stop();
    for (const id of [...this.runs.keys()]) this.onExit(id, { error: reason }, this.clock.now() - (this.runs.get(id)?.started ?? 0));
  }

  /** IDs of the runs still going. */
  get running(): string[] {
    return [...this.runs.keys()];
  }

  /** The next fire time of each entry (null: never), in entry order. */
  get nextTimes(): Array<number | null> {
    return this.states.map((s) => s.due);
  }

  onStart(id: string, pid: number): void {
    const run = this.runs.get(id);
    if (!run) return;
    run.pid = pid;
    this.log.debug({ entry: run.state.entry.where, id, pid }, 'cron run has a process');
  }

  onExit(id: string, status: JobStatus, ms: number): void {
    const run = this.runs.get(id);
    if (!run) {
      this.log.warn({ id, status: formatJobStatus(status) }, 'exit of an unknown cron run ignored');
      return;
    }
    this.runs.delete(id);
    if (run.harakiriTimer) this.clock.clearTimer(run.harakiriTimer);
    const s = run.state;
    if (s.run === run) s.run = undefined;
    const result: CronResult = run.harakiri ? 'harakiri'
      : 'code' in status ? (status.code === 0 ? 'ok' : 'failed')
      : 'signal' in status ? 'signal' : 'error';
    const fields = { entry: s.entry.where, id, command: s.entry.command, status: formatJobStatus(status), ms, result };
    if (result === 'ok') this.log.info(fields, 'cron run ended');
    else this.log.warn(fields, 'cron run ended');
    this.opts.metrics?.runs.inc({ vassal: this.opts.vassal, result });
    this.opts.metrics?.duration.observe({ vassal: this.opts.vassal }, ms / 1000);
    this.emit('exit', { entry: s.entry, id, status, ms, result, at: this.clock.now() } satisfies CronExitEvent);
  }

  private next(entry: CronEntry, after: number): number | null {
    return entry.schedule.nextRun(new Date(after))?.getTime() ?? null;
  }

  private arm(): void {
    if (!this.started) return;
    const now = this.clock.now();
    let due = Infinity;
    for (const s of this.states) if (s.due !== null && s.due < due) due = s.due;
    // Wake at least once a minute: the wall clock may jump under a long timer.
    const wait = Math.max(0, Math.min(due - now, MINUTE));
    this.timer = this.clock.setTimer(() => this.tick(), wait);
  }

  private tick(): void {
    this.timer = undefined;
    if (!this.started) return;
    const now = this.clock.now();
    if (this.lastTick !== undefined && now < this.lastTick - 1000) {
      // The clock was set back: fire times computed before are too far ahead.
      this.log.warn({ by_ms: this.lastTick - now }, 'clock went back; cron times recomputed');
      for (const s of this.states) s.due = this.next(s.entry, now);
    }
    this.lastTick = now;
    for (const s of this.states) {
      if (s.due === null || s.due > now) continue;
      const due = s.due;
      s.due = this.next(s.entry, now);
      if (now - due >= MINUTE) this.skip(s, 'missed', now, due);
      else this.fire(s, now, due);
    }
    this.arm();
  }

  private skip(s: EntryState, reason: SkipReason, now: number, due: number): void {
    const why = reason === 'running' ? `previous run ${s.run?.id} still going`
      : reason === 'too-soon' ? 'it started less than 60 s ago' : 'its time passed while the clock jumped or the process stood still';
    this.log.warn({ entry: s.entry.where, command: s.entry.command, reason, due: new Date(due).toISOString() }, `cron run skipped: ${why}`);
    this.opts.metrics?.skipped.inc({ vassal: this.opts.vassal, reason });
    this.emit('skip', { entry: s.entry, reason, at: now, due } satisfies CronSkipEvent);
  }

  private fire(s: EntryState, now: number, due: number): void {
    if (s.run) return this.skip(s, 'running', now, due);
    if (s.lastStart !== undefined && Math.abs(now - s.lastStart) < MINUTE) return this.skip(s, 'too-soon', now, due);
    const id = `c${s.index}.${++this.seq}`;
    const run: Run = { id, state: s, started: now, harakiri: false };
    s.run = run;
    s.lastStart = now;
    this.runs.set(id, run);
    const h = s.entry.harakiri;
    if (h > 0) {
      run.harakiriTimer = this.clock.setTimer(() => {
        run.harakiriTimer = undefined;
        if (!this.runs.has(id)) return;
        run.harakiri = true;
        this.log.warn({ entry: s.entry.where, id, command: s.entry.command, harakiri: h }, `cron run killed: still going after harakiri ${h} s`);
        this.opts.runner.kill(id);
      }, h * 1000);
    }
    this.log.info({ entry: s.entry.where, id, command: s.entry.command }, 'cron run started');
    this.emit('start', { entry: s.entry, id, at: now } satisfies CronStartEvent);
    try {
      this.opts.runner.run(id, s.entry.command);
    } catch (e) {
      if (this.runs.has(id)) this.onExit(id, { error: (e as Error).message }, 0);
    }
  }
}
