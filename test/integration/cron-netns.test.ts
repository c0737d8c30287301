// A cron entry scheduled on a fake clock runs a real job inside a test-made
// network namespace (LocalJobRunner with `ip netns exec`): the job sees that
// namespace, not the host's. (Inside a real vassal the runtime's `job`
// command does this; see the emperor's tests.)
process.env.TZ = 'UTC';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, requireRoot, sh } from '../helpers/netns';
import { parseCronOptions } from '../../src/plugins/cron/parse';
import { CronScheduler, CronExitEvent } from '../../src/plugins/cron/scheduler';
import { FakeClock } from '../../src/plugins/cron/clock';
import { LocalJobRunner } from '../../src/plugins/cron/runner';
import { parseIni } from '../../src/config/ini';
import pino from 'pino';

test('a cron job runs inside the given netns', async (t) => {
  requireRoot();
  const lab = new Lab();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-cron-'));
  t.after(async () => { await lab.cleanup(); fs.rmSync(dir, { recursive: true, force: true }); });
  const ns = lab.netns('mcron');
  const out = path.join(dir, 'out');
  const entries = parseCronOptions(parseIni(`[uwsgi]\ncron2 = minute=-5,harakiri=20 readlink /proc/self/ns/net > ${out}; ip -o link show | wc -l >> ${out}\n`, 'v.ini'));
  const runner = new LocalJobRunner({ netns: ns });
  const clock = new FakeClock(Date.parse('2024-05-01T12:03:00Z'));
  const cron = new CronScheduler({ vassal: 'v1', entries, runner, clock, log: pino({ level: 'silent' }) });
  runner.attach(cron);
  t.after(() => runner.killAll());
  cron.start();
  const exit = new Promise<CronExitEvent>((resolve) => cron.once('exit', resolve));
  clock.advanceTo(Date.parse('2024-05-01T12:04:59Z'));
  assert.equal(cron.running.length, 0, 'not before :05');
  clock.advanceTo(Date.parse('2024-05-01T12:05:00Z'));
  assert.deepEqual(cron.running, ['c1.1']);
  const e = await exit;
  cron.stop();
  assert.equal(e.result, 'ok', JSON.stringify(e.status));
  const [nsId, links] = fs.readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(nsId, sh('readlink', ['/proc/self/ns/net'], { ns }).trim());
  assert.notEqual(nsId, fs.readlinkSync('/proc/self/ns/net'));
  assert.equal(links.trim(), '1', 'only lo in a fresh namespace');
});
