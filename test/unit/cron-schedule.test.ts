// Fire times against a brute-force reference of uWSGI's rule (every minute
// checked value by value): croner's schedules for random uWSGI entries, and
// the CronScheduler driven by a fake clock through a week and a half.
process.env.TZ = 'UTC';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseCronOptions, UwsgiTime } from '../../src/plugins/cron/parse';
import { CronScheduler, CronStartEvent } from '../../src/plugins/cron/scheduler';
import { FakeClock } from '../../src/plugins/cron/clock';
import { bruteForce, ini, RecordingRunner, uwsgiMatches } from './cron-helpers';
import { captureLog } from '../helpers/log';

const iso = (t: number) => new Date(t).toISOString().slice(0, 16);

/** croner's fire times in [from, to) for a schedule, by chaining nextRun. */
function cronerTimes(e: ReturnType<typeof parseCronOptions>[0], from: Date, to: Date): number[] {
  const out: number[] = [];
  let d: Date | null = new Date(from.getTime() - 1000);
  for (;;) {
    d = e.schedule.nextRun(d);
    if (!d || d.getTime() >= to.getTime()) return out;
    out.push(d.getTime());
  }
}

const line = (t: UwsgiTime) => `${t.minute} ${t.hour} ${t.day} ${t.month} ${t.week} job`;

test('-N boundaries: minute -5 at :00 and :55, day -7 on 7..28, month -3 on 3,6,9,12, hour -24/-25 only at 0', () => {
  const cases: Array<[UwsgiTime, string, string]> = [
    [{ minute: -5, hour: -1, day: -1, month: -1, week: -1 }, '2024-03-31T23:50Z', '2024-04-01T00:10Z'],
    [{ minute: 0, hour: 0, day: -7, month: -1, week: -1 }, '2024-01-01T00:00Z', '2024-04-01T00:00Z'],
    [{ minute: 0, hour: 0, day: 1, month: -3, week: -1 }, '2024-01-01T00:00Z', '2025-01-02T00:00Z'],
    [{ minute: 0, hour: -24, day: -1, month: -1, week: -1 }, '2024-01-01T00:00Z', '2024-01-03T00:00Z'],
    [{ minute: 0, hour: -25, day: -1, month: -1, week: -1 }, '2024-01-01T00:00Z', '2024-01-03T00:00Z'],
    [{ minute: 30, hour: 12, day: 29, month: 2, week: -1 }, '2023-01-01T00:00Z', '2025-01-01T00:00Z'],
    [{ minute: 0, hour: 0, day: 31, month: -1, week: 0 }, '2024-01-01T00:00Z', '2024-04-01T00:00Z'],
  ];
  const expected = [
    ['2024-03-31T23:50', '2024-03-31T23:55', '2024-04-01T00:00', '2024-04-01T00:05'],
    ['2024-01-07T00:00', '2024-01-14T00:00', '2024-01-21T00:00', '2024-01-28T00:00', '2024-02-07T00:00', '2024-02-14T00:00',
      '2024-02-21T00:00', '2024-02-28T00:00', '2024-03-07T00:00', '2024-03-14T00:00', '2024-03-21T00:00', '2024-03-28T00:00'],
    ['2024-03-01T00:00', '2024-06-01T00:00', '2024-09-01T00:00', '2024-12-01T00:00'],
    ['2024-01-01T00:00', '2024-01-02T00:00'],
    ['2024-01-01T00:00', '2024-01-02T00:00'],
    ['2024-02-29T12:30'],
    // day 31 OR Sunday
    ['2024-01-07T00:00', '2024-01-14T00:00', '2024-01-21T00:00', '2024-01-28T00:00', '2024-01-31T00:00', '2024-02-04T00:00',
      '2024-02-11T00:00', '2024-02-18T00:00', '2024-02-25T00:00', '2024-03-03T00:00', '2024-03-10T00:00', '2024-03-17T00:00',
      '2024-03-24T00:00', '2024-03-31T00:00'],
  ];
  cases.forEach(([t, from, to], i) => {
    const [e] = parseCronOptions(ini(`cron = ${line(t)}\n`));
    const want = bruteForce(new Date(from), new Date(to), (d) => uwsgiMatches(t, d));
    assert.deepEqual(want.map(iso), expected[i], `reference for ${line(t)}`);
    assert.deepEqual(cronerTimes(e, new Date(from), new Date(to)).map(iso), expected[i], line(t));
  });
});

test('croner fires exactly when uWSGI\'s rule matches, for random entries over 10-day windows in 2023-2026', () => {
  const field = (min: number, max: number, maxN: number) =>
    fc.oneof(fc.constant(-1), fc.integer({ min: 2, max: maxN }).map((n) => -n), fc.integer({ min, max }));
  const time = fc.record({
    minute: field(0, 59, 90), hour: field(0, 23, 30), day: field(1, 31, 31), month: field(1, 12, 12), week: field(0, 7, 7),
  });
  const start = fc.integer({ min: Date.UTC(2023, 0, 1), max: Date.UTC(2027, 0, 1) }).map((t) => t - (t % 60_000));
  fc.assert(fc.property(time, start, (t, from) => {
    let entries;
    try {
      entries = parseCronOptions(ini(`cron = ${line(t)}\n`));
    } catch (e) {
      // Only schedules that can never fire are refused.
      assert.match((e as Error).message, /never fires/, line(t));
      assert.deepEqual(bruteForce(new Date(Date.UTC(2024, 0, 1)), new Date(Date.UTC(2028, 0, 1)), (d) => uwsgiMatches(t, d)), []);
      return;
    }
    const to = new Date(from + 10 * 86_400_000);
    const want = bruteForce(new Date(from), to, (d) => uwsgiMatches(t, d));
    assert.deepEqual(cronerTimes(entries[0], new Date(from), to), want, line(t));
  }), { numRuns: 200, seed: 20240601 });
});

test('the plugin on a fake clock fires each entry at the reference minutes, through ten days', () => {
  const from = new Date('2024-09-28T00:00:00Z');   // Saturday; Sep 30 -> Oct 1; Oct 7 is a Monday
  const to = new Date('2024-10-08T00:00:00Z');
  const lines: Array<[string, (d: Date) => boolean]> = [];
  const uw = (t: UwsgiTime, key = 'cron') => lines.push([`${key} = ${line(t)}`, (d) => uwsgiMatches(t, d)]);
  uw({ minute: -5, hour: -1, day: -1, month: -1, week: 6 });         // every 5 min on Saturdays
  uw({ minute: 59, hour: 23, day: -1, month: -1, week: -1 });        // 23:59 daily
  uw({ minute: 0, hour: -3, day: -1, month: -1, week: -2 });         // every 3 h on Sun, Tue, Thu, Sat
  uw({ minute: 30, hour: 12, day: 1, month: -1, week: 3 });          // OR: the 1st or Wednesdays
  uw({ minute: 0, hour: 0, day: -7, month: -1, week: 1 });           // AND: Monday the 7th
  uw({ minute: 15, hour: 6, day: -1, month: -3, week: 7 });          // Sundays in Sep/Dec..., 7 = Sunday
  uw({ minute: 45, hour: -1, day: 30, month: 9, week: -1 });         // hourly on Sep 30
  uw({ minute: -20, hour: 8, day: 2, month: 10, week: 5 }, 'unique-cron'); // OR: Oct 2 or Fridays
  lines.push(['cron2 = minute=-10,hour=-12,week=0 x', (d) => d.getMinutes() % 10 === 0 && d.getHours() % 12 === 0 && d.getDay() === 0]);
  lines.push(['cron-tab = */15 9-17 * * 1-5 x', (d) => d.getMinutes() % 15 === 0 && d.getHours() >= 9 && d.getHours() <= 17 && d.getDay() >= 1 && d.getDay() <= 5]);
  lines.push(['cron-tab = 0 0 1 * 0 x', (d) => d.getMinutes() === 0 && d.getHours() === 0 && (d.getDate() === 1 || d.getDay() === 0)]);
  lines.push(['cron-tab = @hourly x', (d) => d.getMinutes() === 0]);

  const entries = parseCronOptions(ini(lines.map((l) => l[0]).join('\n') + '\n'));
  const clock = new FakeClock(from);
  const runner = new RecordingRunner();
  const { log } = captureLog();
  const cron = new CronScheduler({ vassal: 'v1', entries, runner, clock, log });
  runner.events = cron;
  const seen: number[][] = entries.map(() => []);
  cron.on('start', (ev: CronStartEvent) => seen[entries.indexOf(ev.entry)].push(ev.at));
  let skips = 0;
  cron.on('skip', () => skips++);
  cron.start();
  clock.advanceTo(to.getTime() - 1);
  cron.stop();
  assert.equal(clock.pending, 0, 'stop() leaves no timer');
  assert.equal(skips, 0);
  lines.forEach(([text, pred], i) => {
    const want = bruteForce(from, to, pred);
    assert.ok(want.length > 0, `${text} fires in the window`);
    // Starting at 00:00:00 exactly, that minute is not run (the plugin starts from the next one).
    const expected = want.filter((t) => t > from.getTime());
    assert.deepEqual(seen[i].map(iso), expected.map(iso), text);
  });
  assert.equal(runner.runs.length, seen.reduce((n, s) => n + s.length, 0));
});
