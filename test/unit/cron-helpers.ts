// cron-helpers.ts: a brute-force reference of uWSGI's cron rule, and a runner
// that records.
import { parseIni } from '../../src/config/ini';
import type { JobEvents, JobRunner, JobStatus } from '../../src/plugins/cron/runner';
import type { UwsgiTime } from '../../src/plugins/cron/parse';

export const ini = (body: string) => parseIni('[uwsgi]\n' + body, 'v.ini');

/**
 * uWSGI's uwsgi_cron_task_needs_execution(), restated value by value: the
 * minute d (local time) matches t. -N: value % N == 0; plain weekday 7 is 0;
 * day and weekday ORed only when both are >= 0.
 */
export function uwsgiMatches(t: UwsgiTime, d: Date): boolean {
  const is = (spec: number, v: number) => (spec < 0 ? v % -spec === 0 : spec === v);
  const week = t.week === 7 ? 0 : t.week;
  const base = is(t.minute, d.getMinutes()) && is(t.hour, d.getHours()) && is(t.month, d.getMonth() + 1);
  if (t.day >= 0 && t.week >= 0) return base && (d.getDate() === t.day || d.getDay() === week);
  return base && is(t.day, d.getDate()) && is(week, d.getDay());
}

/** Every minute in [from, to) for which pred holds. */
export function bruteForce(from: Date, to: Date, pred: (d: Date) => boolean): number[] {
  const out: number[] = [];
  for (let t = from.getTime(); t < to.getTime(); t += 60_000) if (pred(new Date(t))) out.push(t);
  return out;
}

/** Records runs; exits at once (sync) unless `hold` is set, then waits for finish(). */
export class RecordingRunner implements JobRunner {
  events?: JobEvents;
  hold = false;
  readonly runs: Array<{ id: string; cmd: string }> = [];
  readonly kills: string[] = [];
  readonly live = new Set<string>();
  throwOnRun?: Error;

  run(id: string, cmd: string): void {
    if (this.throwOnRun) throw this.throwOnRun;
    this.runs.push({ id, cmd });
    this.live.add(id);
    this.events?.onStart(id, 1000 + this.runs.length);
    if (!this.hold) this.finish(id, { code: 0 }, 1);
  }

  kill(id: string): void {
    this.kills.push(id);
  }

  finish(id: string, status: JobStatus, ms: number): void {
    this.live.delete(id);
    this.events?.onExit(id, status, ms);
  }
}
