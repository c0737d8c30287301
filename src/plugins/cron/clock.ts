// clock.ts: where the cron scheduler gets its time and its timers, so that
// tests can drive a week in milliseconds (FakeClock) and the emperor uses the
// real one (systemClock).

export type TimerHandle = { readonly id: number };

export interface Clock {
  /** Wall-clock time, ms since the epoch (cron matches local time of day). */
  now(): number;
  /** Calls fn once, ms from now. */
  setTimer(fn: () => void, ms: number): TimerHandle;
  clearTimer(h: TimerHandle): void;
}

const systemTimers = new Map<number, NodeJS.Timeout>();
let systemSeq = 0;

/** Date.now and setTimeout (monotonic: a stepped wall clock does not move a timer). */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(fn, ms) {
    const id = ++systemSeq;
    systemTimers.set(id, setTimeout(() => { systemTimers.delete(id); fn(); }, Math.max(0, Math.min(ms, 2 ** 31 - 1))));
    return { id };
  },
  clearTimer(h) {
    clearTimeout(systemTimers.get(h.id));
    systemTimers.delete(h.id);
  },
};

/**
 * A clock that moves only when told. advance()/advanceTo() fire the timers
 * that fall due on the way, in time order, each seeing now() equal to its due
 * time; a timer set by a timer fires in the same advance if it is due.
 */
export class FakeClock implements Clock {
  private t: number;
  private seq = 0;
  private timers = new Map<number, { at: number; fn: () => void }>();

  constructor(start: Date | number) {
    this.t = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.t;
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return { id };
  }

  clearTimer(h: TimerHandle): void {
    this.timers.delete(h.id);
  }

  /** Pending timers (tests check that stop() leaves none). */
  get pending(): number {
    return this.timers.size;
  }

  /**
   * Steps the wall clock (NTP, an admin) without firing anything. Timers are
   * monotonic, as node's are: each still fires after the time it was set for,
   * so its due time moves with the step.
   */
  set(to: Date | number): void {
    const t = typeof to === 'number' ? to : to.getTime();
    for (const timer of this.timers.values()) timer.at += t - this.t;
    this.t = t;
  }

  advance(ms: number): void {
    this.advanceTo(this.t + ms);
  }

  advanceTo(to: Date | number): void {
    const end = typeof to === 'number' ? to : to.getTime();
    for (;;) {
      let next: [number, { at: number; fn: () => void }] | undefined;
      for (const e of this.timers) {
        if (e[1].at <= end && (!next || e[1].at < next[1].at || (e[1].at === next[1].at && e[0] < next[0]))) next = e;
      }
      if (!next) break;
      this.timers.delete(next[0]);
      this.t = Math.max(this.t, next[1].at);
      next[1].fn();
    }
    this.t = Math.max(this.t, end);
  }
}
