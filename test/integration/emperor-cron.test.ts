// emperor-cron.test.ts: cron entries of a real vassal (namespaces, pivot-root
// into a busybox root, tmpfs /tmp) scheduled by the emperor on a clock the
// test drives, each run started inside the vassal by its runtime. A job writes
// a file in the vassal's own /tmp (invisible to the host) and copies what it
// saw into the vassal's host directory; a slow job is never started twice.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Router } from '../../src/router/router';
import { Emperor } from '../../src/emperor/emperor';
import { FakeClock } from '../../src/plugins/cron';
import type { RouterConfig } from '../../src/config/types';
import { Lab, requireRoot, uniqueName, waitFor } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { makeRootFs } from '../helpers/rootfs';
import { emperorConfigFor } from '../../src/emperor/config';
import { conntrackDefaults } from '../../src/config/router-config';

const lab = new Lab();
after(() => lab.cleanup());

test('cron jobs run inside the vassal, on the emperor\'s schedule, never overlapping', async () => {
  requireRoot();
  const dir = tempDir(lab);
  const root = makeRootFs();
  lab.onCleanup(() => root.remove());
  fs.mkdirSync(path.join(root.dir, 'run', 'moat'), { recursive: true });
  const ns = lab.netns('mcr');
  const cfg: RouterConfig = {
    device: uniqueName('mcr'), socket: path.join(dir, 'r.sock'), socketMode: 0o666, maxFrame: 8188, queueBytes: 1 << 18,
    offload: false, handoff: false, holdMs: 50, tunQueues: 8, busyPollUs: 100, sndbuf: 0, sndbufBusy: 524288, sndbufBudget: 67108864, conntrack: conntrackDefaults(),
    rules: [], ruleFiles: [], bindings: [], peerLimits: [], useCredentials: false, netns: `/run/netns/${ns}`, warnings: [],
  };
  const router = new Router(cfg);
  await router.start();
  lab.onCleanup(() => { void router.stop(); });

  const vassals = path.join(dir, 'vassals');
  const runRoot = path.join(dir, 'run');
  fs.mkdirSync(vassals);
  const clock = new FakeClock(new Date('2026-11-27T10:00:30Z'));
  const emperor = new Emperor(emperorConfigFor(vassals, { clone: ['fs', 'ipc', 'uts', 'net', 'pid'], freqMs: 60_000, vassalsDirRoot: runRoot }), { cronClock: clock, router });
  await emperor.start();
  lab.onCleanup(() => { void emperor.stop(); });

  fs.writeFileSync(path.join(vassals, 'cronbox.ini'), [
    '[uwsgi]',
    `pivot-root = ${root.dir} ${path.join(root.dir, root.putOld)}`,
    'exec-as-root = hostname cronbox',
    '; every minute: write in the vassal\'s own /tmp, copy what the job saw to the host directory',
    'cron = -1 -1 -1 -1 -1 hostname > /tmp/proof; echo "$(cat /tmp/proof) $$" >> /run/moat/seen',
    '; every minute too, but slow: never two runs at once',
    'cron = -1 -1 -1 -1 -1 echo start >> /run/moat/slow; sleep 3; echo end >> /run/moat/slow',
    '',
  ].join('\n'));
  const hostDir = path.join(runRoot, 'cronbox');
  // Ready: the emperor logs it; the vassal's host directory exists and the runtime is up.
  await waitFor(() => emperor.status().some((v) => v.name === 'cronbox.ini' && v.state === 'running'), 20000, 'vassal running');

  clock.advanceTo(new Date('2026-11-27T10:01:00Z').getTime());
  await waitFor(() => fs.existsSync(path.join(hostDir, 'seen')), 10000, 'first run of the quick job');
  const [host, pid] = fs.readFileSync(path.join(hostDir, 'seen'), 'utf8').trim().split(' ');
  assert.equal(host, 'cronbox', 'the job ran in the vassal\'s uts namespace');
  assert.ok(Number(pid) > 1 && Number(pid) < 100, `the job has a pid of the vassal's pid namespace (${pid})`);
  assert.equal(fs.existsSync('/tmp/proof'), false, 'the job\'s /tmp is the vassal\'s own');

  // The next minute comes while the slow job still runs: it is skipped.
  await waitFor(() => fs.existsSync(path.join(hostDir, 'slow')), 10000, 'slow job started');
  clock.advanceTo(new Date('2026-11-27T10:02:00Z').getTime());
  await waitFor(() => fs.readFileSync(path.join(hostDir, 'seen'), 'utf8').trim().split('\n').length === 2, 10000, 'second run of the quick job');
  await waitFor(() => fs.readFileSync(path.join(hostDir, 'slow'), 'utf8').includes('end'), 10000, 'slow job ended');
  assert.deepEqual(fs.readFileSync(path.join(hostDir, 'slow'), 'utf8').trim().split('\n'), ['start', 'end'], 'one run of the slow job, not two');
  const metrics = await router.metricsText();   // what the router's `metrics` serves: its own and the emperor's
  assert.match(metrics, /moat_cron_skipped_total\{vassal="cronbox\.ini",reason="running"\} 1/);
  assert.match(metrics, /moat_cron_runs_total\{vassal="cronbox\.ini",result="ok"\} [23]/);

  await emperor.stop();
  await router.stop();
});
