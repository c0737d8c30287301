// lifecycle.test.ts: the one component model every moat process runs by
// (src/lifecycle/): components start in order and stop in reverse; a failed
// start stops the failing one and what had started, in reverse, and names
// the failure; an end request (a failed router, an ended pty-exec command)
// or a signal stops everything with the right exit code; SIGHUP reloads.
// Signals are real: the test process sends them to itself while a runner's
// handlers are installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import type { Component, End } from '../../src/lifecycle/component';
import { Lifecycle, StartError } from '../../src/lifecycle/lifecycle';
import { runLifecycle } from '../../src/lifecycle/runner';

/** A logger whose lines the test reads. */
function recordingLog() {
  const lines: Array<{ msg: string; level: number; [k: string]: unknown }> = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => { lines.push(JSON.parse(s)); } });
  return { log, lines };
}

/** A component that records what happens to it in `calls`. While it runs it
 *  holds a timer, as a real one holds its sockets: signal handlers alone do
 *  not keep node's event loop alive. */
function recorder(calls: string[], name: string, opts: { failStart?: boolean; failStop?: boolean; slowStartMs?: number } = {}) {
  let end: End | undefined;
  let handle: NodeJS.Timeout | undefined;
  const c: Component & { end(code: number, why?: string): void } = {
    name,
    async start() {
      calls.push(`start ${name}`);
      handle = setInterval(() => {}, 60_000);
      if (opts.slowStartMs) await new Promise((r) => setTimeout(r, opts.slowStartMs));
      if (opts.failStart) throw new Error(`${name} cannot start`);
    },
    stop() {
      clearInterval(handle);
      calls.push(`stop ${name}`);
      if (opts.failStop) throw new Error(`${name} cannot stop`);
    },
    reload(why) { calls.push(`reload ${name} ${why}`); },
    onEnd(e) { end = e; },
    end(code, why) { end!({ code, why, error: code !== 0, fields: { from: name } }); },
  };
  return c;
}

const nextTick = () => new Promise((r) => setImmediate(r));

test('components start in order and stop in reverse', async () => {
  const calls: string[] = [];
  const life = new Lifecycle(['a', 'b', 'c'].map((n) => recorder(calls, n)), recordingLog().log);
  await life.start();
  assert.deepEqual(calls, ['start a', 'start b', 'start c']);
  assert.equal(await life.stop(), true);
  assert.deepEqual(calls.slice(3), ['stop c', 'stop b', 'stop a']);
  assert.equal(await life.stop(), true, 'a second stop stops nothing');
  assert.equal(calls.length, 6);
});

test('a failed start stops the failing component, then what started, in reverse; the rest never starts', async () => {
  const calls: string[] = [];
  const life = new Lifecycle([
    recorder(calls, 'router'), recorder(calls, 'hooks'), recorder(calls, 'emperor', { failStart: true }), recorder(calls, 'device'),
  ], recordingLog().log);
  const err = await life.start().then(() => undefined, (e: unknown) => e);
  assert.ok(err instanceof StartError, String(err));
  assert.equal(err.component, 'emperor');
  assert.equal(err.message, 'emperor cannot start');
  assert.deepEqual(err.started, ['router', 'hooks']);
  assert.deepEqual(calls, ['start router', 'start hooks', 'start emperor', 'stop emperor', 'stop hooks', 'stop router']);
  await assert.rejects(life.start(), /already/, 'a lifecycle starts once');
});

test('a component that fails to stop is logged; the others still stop', async () => {
  const calls: string[] = [];
  const { log, lines } = recordingLog();
  const life = new Lifecycle([recorder(calls, 'a'), recorder(calls, 'b', { failStop: true }), recorder(calls, 'c')], log);
  await life.start();
  assert.equal(await life.stop(), false);
  assert.deepEqual(calls.slice(3), ['stop c', 'stop b', 'stop a']);
  const line = lines.find((l) => l.msg === 'stop failed');
  assert.ok(line, JSON.stringify(lines));
  assert.equal(line.component, 'b');
  assert.equal(line.err, 'b cannot stop');
});

test('an end requested while starting: nothing more starts; the first request wins', async () => {
  const calls: string[] = [];
  const a = recorder(calls, 'a', { slowStartMs: 30 });
  const life = new Lifecycle([a, recorder(calls, 'b'), recorder(calls, 'c')], recordingLog().log);
  const starting = life.start();
  a.end(1, 'a failed');
  a.end(0, 'too late');
  await starting;
  assert.deepEqual(calls, ['start a'], 'b and c never start');
  assert.deepEqual(await life.ended, { code: 1, why: 'a failed', error: true, fields: { from: 'a' } });
  await life.stop();
  assert.deepEqual(calls, ['start a', 'stop a']);
});

test('reload reaches only the components that run', async () => {
  const calls: string[] = [];
  const life = new Lifecycle([recorder(calls, 'a'), recorder(calls, 'b', { failStart: true })], recordingLog().log);
  life.reload('early');
  await life.start().catch(() => undefined);
  life.reload('after');
  assert.ok(!calls.some((c) => c.startsWith('reload')), calls.join(', '));
  const ok = new Lifecycle([recorder(calls, 'x'), { name: 'no reload', start() {}, stop() {} }], recordingLog().log);
  await ok.start();
  ok.reload('SIGHUP');
  assert.ok(calls.includes('reload x SIGHUP'));
  await ok.stop();
});

for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  test(`runner: ${signal} stops everything in reverse, exit 0; the handlers go with the run`, async () => {
    const calls: string[] = [];
    const { log, lines } = recordingLog();
    const before = process.listenerCount(signal);
    let started = false;
    const run = runLifecycle(new Lifecycle([recorder(calls, 'a'), recorder(calls, 'b')], log), { log, started: () => { started = true; } });
    while (!started) await nextTick();
    assert.equal(process.listenerCount(signal), before + 1);
    process.kill(process.pid, signal);
    assert.equal(await run, 0);
    assert.deepEqual(calls, ['start a', 'start b', 'stop b', 'stop a']);
    assert.ok(lines.some((l) => l.msg === 'stopping' && l.signal === signal), JSON.stringify(lines));
    assert.equal(process.listenerCount(signal), before, 'handlers removed');
  });
}

test('runner: SIGHUP reloads and keeps running', async () => {
  const calls: string[] = [];
  const log = recordingLog().log;
  const a = recorder(calls, 'a');
  let started = false;
  const run = runLifecycle(new Lifecycle([a], log), { log, started: () => { started = true; } });
  while (!started) await nextTick();
  process.kill(process.pid, 'SIGHUP');
  while (!calls.includes('reload a SIGHUP')) await nextTick();
  assert.ok(!calls.includes('stop a'), 'still running');
  a.end(0);
  assert.equal(await run, 0);
});

test('runner: a component\'s end request (a failed router) stops everything with its code and logs why', async () => {
  const calls: string[] = [];
  const { log, lines } = recordingLog();
  const router = recorder(calls, 'router');
  let started = false;
  const run = runLifecycle(new Lifecycle([router, recorder(calls, 'emperor')], log), { log, started: () => { started = true; } });
  while (!started) await nextTick();
  router.end(1, 'stopping: the router failed');
  assert.equal(await run, 1);
  assert.deepEqual(calls, ['start router', 'start emperor', 'stop emperor', 'stop router']);
  const line = lines.find((l) => l.msg === 'stopping: the router failed');
  assert.ok(line && line.level === 50 && line.from === 'router', JSON.stringify(lines));
});

test('runner: an end with a status (pty-exec) is the exit code; a failed stop makes it 1', async () => {
  const calls: string[] = [];
  const log = recordingLog().log;
  const pty = recorder(calls, 'pty-socket');
  let started = false;
  const run = runLifecycle(new Lifecycle([pty], log), { log, started: () => { started = true; } });
  while (!started) await nextTick();
  pty.end(5);
  assert.equal(await run, 5);

  const bad = recorder(calls, 'bad', { failStop: true });
  started = false;
  const run2 = runLifecycle(new Lifecycle([bad], log), { log, started: () => { started = true; } });
  while (!started) await nextTick();
  bad.end(0);
  assert.equal(await run2, 1);
});

test('runner: a failed start is exit 1, reported once, nothing left running', async () => {
  const calls: string[] = [];
  const { log, lines } = recordingLog();
  assert.equal(await runLifecycle(new Lifecycle([recorder(calls, 'a'), recorder(calls, 'b', { failStart: true })], log), { log }), 1);
  assert.deepEqual(calls, ['start a', 'start b', 'stop b', 'stop a']);
  const line = lines.find((l) => l.msg === 'start failed');
  assert.ok(line && line.component === 'b' && line.err === 'b cannot start', JSON.stringify(lines));
  let reported: StartError | undefined;
  assert.equal(await runLifecycle(new Lifecycle([recorder(calls, 'c', { failStart: true })], log), { log, startFailed: (e) => { reported = e; } }), 1);
  assert.equal(reported?.component, 'c');
  assert.equal(lines.filter((l) => l.msg === 'start failed').length, 1, 'startFailed replaces the log line');
});

test('runner, child mode (the router process): SIGINT and SIGHUP are the parent\'s; SIGTERM does not stop at once', async () => {
  const calls: string[] = [];
  const { log, lines } = recordingLog();
  const a = recorder(calls, 'a');
  let started = false;
  const run = runLifecycle(new Lifecycle([a], log), { log, signals: 'child', started: () => { started = true; } });
  while (!started) await nextTick();
  process.kill(process.pid, 'SIGINT');
  process.kill(process.pid, 'SIGHUP');
  process.kill(process.pid, 'SIGTERM');
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(calls, ['start a'], 'no reload, no stop');
  assert.ok(lines.some((l) => /SIGTERM: the emperor stops this process/.test(l.msg)), JSON.stringify(lines));
  a.end(0);   // the parent's 'stop'
  assert.equal(await run, 0);
  assert.deepEqual(calls, ['start a', 'stop a']);
});
