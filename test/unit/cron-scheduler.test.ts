// CronScheduler's rules: no overlapping runs (a real slow job), harakiri (fake
// and real), uWSGI's 60 s rule, missed times, logs and metrics.
process.env.TZ = 'UTC';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import client from 'prom-client';
import { parseCronOptions } from '../../src/plugins/cron/parse';
import { CronScheduler, CronExitEvent, CronSkipEvent } from '../../src/plugins/cron/scheduler';
import { CronMetrics } from '../../src/plugins/cron/metrics';
import { FakeClock, systemClock } from '../../src/plugins/cron/clock';
import { LocalJobRunner, parseJobExit, parseJobStatus, formatJobStatus } from '../../src/plugins/cron/runner';
import { ini, RecordingRunner } from './cron-helpers';
import { captureLog } from '../helpers/log';

const T0 = Date.parse('2024-05-01T12:00:30Z');
const at = (hhmmss: string) => Date.parse(`2024-05-01T${hhmmss}Z`);

function setup(lines: string, runner: RecordingRunner | LocalJobRunner = new RecordingRunner()) {
  const entries = parseCronOptions(ini(lines));
  const clock = new FakeClock(T0);
  const reg = new client.Registry();
  const metrics = new CronMetrics(reg);
  const { log, lines: logLines } = captureLog();
  const cron = new CronScheduler({ vassal: 'v1', entries, runner, clock, metrics, log });
  if (runner instanceof RecordingRunner) runner.events = cron;
  else runner.attach(cron);
  const exits: CronExitEvent[] = [];
  const skips: CronSkipEvent[] = [];
  cron.on('exit', (e: CronExitEvent) => exits.push(e));
  cron.on('skip', (e: CronSkipEvent) => skips.push(e));
  return { cron, clock, reg, logLines, exits, skips, entries };
}

async function metric(reg: client.Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await reg.getMetricsAsJSON()).find((x) => x.name === name);
  const v = m?.values.find((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val));
  return Number(v?.value ?? 0);
}

const waitExit = (cron: CronScheduler, ms = 10_000) => new Promise<CronExitEvent>((resolve, reject) => {
  const t = setTimeout(() => reject(new Error('no job exit')), ms);
  cron.once('exit', (e: CronExitEvent) => { clearTimeout(t); resolve(e); });
});

test('a slow job still running at its next time is not started again (real processes), and that is logged and counted', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-cron-'));
  const runner = new LocalJobRunner();
  try {
    const marks = path.join(dir, 'marks');
    const { cron, clock, reg, logLines, exits, skips } = setup(`cron = -1 -1 -1 -1 -1 echo start >> ${marks}; sleep 1.5; echo end >> ${marks}\n`, runner);
    cron.start();
    const first = waitExit(cron);
    clock.advanceTo(at('12:01:00'));                 // first run starts
    assert.equal(cron.running.length, 1);
    clock.advanceTo(at('12:02:00'));                 // still sleeping: skipped
    clock.advanceTo(at('12:03:00'));                 // and again
    assert.equal(skips.length, 2);
    assert.deepEqual(skips.map((s) => s.reason), ['running', 'running']);
    const e1 = await first;
    assert.equal(e1.result, 'ok');
    assert.ok(e1.ms >= 1400 && e1.ms < 8000, `duration ${e1.ms} ms`);
    const second = waitExit(cron);
    clock.advanceTo(at('12:04:00'));                 // free again: runs
    assert.equal((await second).result, 'ok');
    cron.stop();
    assert.deepEqual(fs.readFileSync(marks, 'utf8').split('\n').filter(Boolean), ['start', 'end', 'start', 'end']);
    assert.equal(exits.length, 2);
    assert.deepEqual(exits.map((e) => e.id), ['c1.1', 'c1.2']);
    assert.equal(await metric(reg, 'moat_cron_skipped_total', { vassal: 'v1', reason: 'running' }), 2);
    assert.equal(await metric(reg, 'moat_cron_runs_total', { vassal: 'v1', result: 'ok' }), 2);
    const text = await reg.metrics();
    assert.match(text, /^moat_cron_duration_seconds_count\{vassal="v1"\} 2$/m);
    assert.match(text, /^moat_cron_duration_seconds_bucket\{le="1",vassal="v1"\} 0$/m);   // both took 1.5 s
    assert.match(text, /^moat_cron_duration_seconds_bucket\{le="5",vassal="v1"\} 2$/m);
    const skipped = logLines.filter((l) => String(l.msg).startsWith('cron run skipped'));
    assert.equal(skipped.length, 2);
    assert.match(String(skipped[0].msg), /previous run c1\.1 still going/);
    assert.equal(skipped[0].entry, 'v.ini:2');
    assert.equal(skipped[0].vassal, 'v1');
    const ended = logLines.filter((l) => l.msg === 'cron run ended');
    assert.equal(ended.length, 2);
    assert.match(String(ended[0].command), /sleep 1\.5/);
    assert.equal(ended[0].status, 'exit 0');
    assert.equal(typeof ended[0].ms, 'number');
  } finally {
    runner.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('harakiri kills a real run (its process group) N seconds after it started', async () => {
  const runner = new LocalJobRunner();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-cron-'));
  const pidFile = path.join(dir, 'pid');
  try {
    // The shell's child (sleep) is in the run's process group and dies with it.
    const { cron, clock, reg, logLines } = setup(`cron2 = harakiri=2 sleep 30 & echo $! > ${pidFile}; wait\n`, runner);
    cron.start();
    const exit = waitExit(cron);
    clock.advanceTo(at('12:01:00'));
    await new Promise((r) => setTimeout(r, 200));    // the process exists
    assert.equal(cron.running.length, 1);
    clock.advanceTo(at('12:01:01.900'));
    assert.equal(cron.running.length, 1, 'not before harakiri');
    clock.advanceTo(at('12:01:02'));
    const e = await exit;
    assert.equal(e.result, 'harakiri');
    assert.deepEqual(e.status, { signal: 9 });
    assert.ok(e.ms < 5000, `killed after ${e.ms} ms`);
    assert.equal(await metric(reg, 'moat_cron_runs_total', { vassal: 'v1', result: 'harakiri' }), 1);
    assert.ok(logLines.some((l) => /killed: still going after harakiri 2 s/.test(String(l.msg))));
    const sleepPid = Number(fs.readFileSync(pidFile, 'utf8'));
    assert.ok(sleepPid > 0);
    const gone = () => { try { process.kill(sleepPid, 0); return fs.readFileSync(`/proc/${sleepPid}/stat`, 'utf8').split(' ')[2] === 'Z'; } catch { return true; } };
    for (let i = 0; i < 40 && !gone(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(gone(), `the job's child ${sleepPid} was killed too`);
    cron.stop();
    assert.equal(clock.pending, 0);
  } finally {
    runner.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('harakiri on a fake runner: kill(id) at exactly N s; a run that ends first is not killed', () => {
  const runner = new RecordingRunner();
  runner.hold = true;
  const { cron, clock, exits } = setup('cron2 = minute=-2,harakiri=90 slow\ncron-harakiri = 10\ncron = -1 -1 -1 -1 -1 quick\n', runner);
  cron.start();
  clock.advanceTo(at('12:01:00'));                   // quick (c2.1)
  assert.deepEqual(runner.runs.map((r) => r.id), ['c2.1']);
  runner.finish('c2.1', { code: 3 }, 5);             // ends before its 10 s
  clock.advanceTo(at('12:02:00'));                   // slow c1.2, quick c2.3
  assert.deepEqual(runner.runs.map((r) => r.id), ['c2.1', 'c1.2', 'c2.3']);
  clock.advanceTo(at('12:02:10'));
  assert.deepEqual(runner.kills, ['c2.3']);          // cron-harakiri = 10 for quick
  runner.finish('c2.3', { signal: 9 }, 10_000);
  clock.advanceTo(at('12:03:10'));                   // quick c2.4 started at 12:03
  assert.deepEqual(runner.kills, ['c2.3', 'c2.4']);
  runner.finish('c2.4', { signal: 9 }, 10_000);
  clock.advanceTo(at('12:03:29.999'));
  assert.deepEqual(runner.kills, ['c2.3', 'c2.4']);
  clock.advanceTo(at('12:03:30'));                   // slow: harakiri=90 from 12:02:00
  assert.deepEqual(runner.kills, ['c2.3', 'c2.4', 'c1.2']);
  runner.finish('c1.2', { signal: 9 }, 90_000);
  assert.deepEqual(exits.map((e) => [e.id, e.result]), [['c2.1', 'failed'], ['c2.3', 'harakiri'], ['c2.4', 'harakiri'], ['c1.2', 'harakiri']]);
  clock.advanceTo(at('12:04:00'));                   // c1.5, c2.6 still going
  cron.close('vassal died');                         // their exits will never come
  assert.deepEqual(exits.slice(-2).map((e) => [e.id, e.result, e.status]),
    [['c1.5', 'error', { error: 'vassal died' }], ['c2.6', 'error', { error: 'vassal died' }]]);
  assert.equal(cron.running.length, 0);
  assert.equal(clock.pending, 0, 'no schedule or harakiri timer left');
});

test('uWSGI\'s 60 s rule: a clock set back does not start an entry again within a minute', () => {
  const runner = new RecordingRunner();
  const { cron, clock, skips, logLines } = setup('cron = 1 12 -1 -1 -1 x\n', runner);
  cron.start();
  clock.advanceTo(at('12:01:00'));
  assert.equal(runner.runs.length, 1);
  clock.set(at('11:59:30'));                         // the wall clock is stepped back 90 s
  clock.advanceTo(at('12:01:30'));                   // 12:01 comes round again: not run twice
  assert.equal(runner.runs.length, 1);
  assert.deepEqual(skips.map((s) => s.reason), ['too-soon']);
  assert.ok(logLines.some((l) => l.msg === 'clock went back; cron times recomputed'));
  clock.advanceTo(Date.parse('2024-05-02T12:01:00Z'));  // tomorrow's 12:01 runs
  assert.equal(runner.runs.length, 2);
  cron.stop();
});

test('a time that passed unseen (clock jumped forward) is counted as missed, and scheduling goes on', async () => {
  const runner = new RecordingRunner();
  const { cron, clock, skips, reg } = setup('cron = -1 -1 -1 -1 -1 x\n', runner);
  cron.start();
  clock.advanceTo(at('12:01:00'));
  assert.equal(runner.runs.length, 1);
  clock.set(at('12:30:10'));                         // the wall clock jumps 29 minutes ahead
  clock.advanceTo(at('12:31:09'));
  assert.equal(runner.runs.length, 1);
  assert.equal(skips.length, 0);
  clock.advanceTo(at('12:31:10'));                   // the minute timer wakes: 12:02 was missed
  assert.equal(runner.runs.length, 1);
  clock.advanceTo(at('12:32:00'));
  assert.equal(runner.runs.length, 2);
  assert.deepEqual(skips.map((s) => s.reason), ['missed']);
  assert.equal(await metric(reg, 'moat_cron_skipped_total', { vassal: 'v1', reason: 'missed' }), 1);
  cron.stop();
});

test('the timer sleeps at most a minute (a jumping wall clock is noticed), and stop() stops it', () => {
  const { cron, clock } = setup('cron = 0 0 1 1 -1 x\n');    // once a year
  cron.start();
  assert.equal(cron.nextTimes[0], Date.parse('2025-01-01T00:00:00Z'));
  assert.equal(clock.pending, 1);
  let wakes = 0;
  const orig = clock.setTimer.bind(clock);
  clock.setTimer = (fn, ms) => { wakes++; assert.ok(ms <= 60_000, `sleeps ${ms} ms`); return orig(fn, ms); };
  clock.advance(10 * 60_000);
  assert.equal(wakes, 10);
  cron.stop();
  assert.equal(clock.pending, 0);
});

test('a runner that fails to start a job: result error; unknown exits are ignored; job statuses parse', async () => {
  const runner = new RecordingRunner();
  runner.throwOnRun = new Error('channel closed');
  const { cron, clock, exits, reg, logLines } = setup('cron = -1 -1 -1 -1 -1 x\n', runner);
  cron.start();
  clock.advanceTo(at('12:01:00'));
  assert.deepEqual(exits.map((e) => [e.result, e.status]), [['error', { error: 'channel closed' }]]);
  assert.equal(cron.running.length, 0);
  assert.equal(await metric(reg, 'moat_cron_runs_total', { vassal: 'v1', result: 'error' }), 1);
  cron.onExit('c9.9', { code: 0 }, 1);
  assert.ok(logLines.some((l) => l.msg === 'exit of an unknown cron run ignored' && l.id === 'c9.9'));
  assert.equal(exits.length, 1);
  cron.stop();
  assert.deepEqual(parseJobStatus('0'), { code: 0 });
  assert.deepEqual(parseJobStatus('127'), { code: 127 });
  assert.deepEqual(parseJobStatus('signal 9'), { signal: 9 });
  assert.deepEqual(parseJobStatus('exec failed: ENOENT'), { error: 'exec failed: ENOENT' });
  assert.equal(formatJobStatus({ signal: 15 }), 'signal 15');
  assert.deepEqual(parseJobExit('c1.2 signal 9 1234'), { id: 'c1.2', status: { signal: 9 }, ms: 1234 });
  assert.deepEqual(parseJobExit('c3.1 0 17'), { id: 'c3.1', status: { code: 0 }, ms: 17 });
  assert.equal(parseJobExit('c3.1 0'), undefined);
});

test('LocalJobRunner: exit codes, signals, the environment given, a missing cwd is an error', async () => {
  const results: Array<[string, unknown]> = [];
  const runner = new LocalJobRunner({ env: { PATH: '/usr/bin:/bin', MOAT_X: '7' } });
  const done = new Promise<void>((resolve) => {
    runner.attach({ onStart: () => {}, onExit: (id, status) => { results.push([id, status]); if (results.length === 3) resolve(); } });
  });
  runner.run('a', 'exit $MOAT_X');
  runner.run('b', 'kill -TERM $$');
  runner.run('c', 'sleep 20');
  setTimeout(() => runner.kill('c'), 100);
  await done;
  assert.deepEqual(new Map(results), new Map<string, unknown>([['a', { code: 7 }], ['b', { signal: 15 }], ['c', { signal: 9 }]]));
  const bad = new LocalJobRunner({ cwd: '/nonexistent-moat-dir' });
  const err = await new Promise<unknown>((resolve) => { bad.attach({ onStart: () => {}, onExit: (_id, s) => resolve(s) }); bad.run('d', 'true'); });
  assert.ok(err && typeof err === 'object' && 'error' in err, JSON.stringify(err));
});

test('systemClock: a timer fires after its time, a cleared one never', async () => {
  const start = Date.now();
  const fired: string[] = [];
  systemClock.setTimer(() => fired.push('a'), 30);
  const b = systemClock.setTimer(() => fired.push('b'), 10);
  systemClock.clearTimer(b);
  await new Promise((r) => setTimeout(r, 80));
  assert.deepEqual(fired, ['a']);
  assert.ok(systemClock.now() - start >= 30);
});
