// tenant-pty-symlink.test.ts: the tenant races root while a pty server makes
// its socket in a directory the tenant can write (a vassal's directory). A
// loop running as the tenant's uid swaps the socket's names (NAME.new, NAME)
// for symlinks to a file outside, and the socket's subdirectory for a symlink
// to a directory outside, as fast as it can, while root (re)creates the
// socket thousands of times through the addon (as src/pty/server.ts does),
// then a few hundred times through the vassal runtime (as in a vassal).
// Root must never follow the tenant's links: the file outside keeps its
// owner, mode and content, the directory outside its entries.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Lab, requireRoot } from '../helpers/netns';
import { sleep } from '../helpers/pty';
import { VassalRuntime } from '../helpers/vassal-runtime';
import { assertUntouched, makeTargets, startTenant, TENANT, Targets } from '../helpers/tenant-targets';
import { addon } from '../../src/native';

const lab = new Lab();
after(() => lab.cleanup());

// The tenant: symlink + rename (atomic replacement) over the names root
// uses, and the subdirectory moved aside with a symlink in its place, in a
// tight loop, bounded in time and rounds. A symlink at the final name only
// makes root refuse, so it is removed again at once: root gets to create the
// socket at all.
const TENANT_LOOP = `
import os, signal, sys, time
d, tfile, tdir, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
end = time.monotonic() + secs
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
def swap(target, name):
    tmp = os.path.join(d, '.link')
    try:
        os.symlink(target, tmp)
        os.rename(tmp, os.path.join(d, name))
    except OSError:
        pass
def gone(name):
    try:
        os.unlink(os.path.join(d, name))
    except OSError:
        pass
n = 0
while not stop and n < 5000000 and time.monotonic() < end:
    for name in ('pty.sock.new', 'sub/pty.sock.new'):
        swap(tfile, name)
    for name in ('pty.sock', 'sub/pty.sock'):
        swap(tfile, name)
        gone(name)
    try:
        os.rename(os.path.join(d, 'sub'), os.path.join(d, 'sub.real'))
        swap(tdir, 'sub')
        gone('sub')
        os.rename(os.path.join(d, 'sub.real'), os.path.join(d, 'sub'))
    except OSError:
        pass
    n += 1
print('rounds', n, flush=True)
`;

interface Scene extends Targets {}

/** The targets, and a subdirectory of the tenant's for the sub/ socket. */
function scene(): Scene {
  const t = makeTargets(lab);
  fs.mkdirSync(path.join(t.vassal, 'sub'), { mode: 0o755 });
  fs.chownSync(path.join(t.vassal, 'sub'), TENANT, TENANT);
  return t;
}

const untouched = assertUntouched;
const startTenantLoop = (s: Scene, secs: number) => startTenant(lab, TENANT_LOOP, [s.vassal, s.file, s.dir, String(secs)]);

/** How many rounds the tenant made (its last line); it must have raced for real. */
async function tenantRounds(t: { done: Promise<string> }): Promise<number> {
  const out = await t.done;
  const m = /rounds (\d+)/.exec(out);
  assert.ok(m, `the tenant loop ran: ${out}`);
  return Number(m![1]);
}

test('addon pty servers: thousands of socket set-ups while the tenant swaps names and directories for symlinks', async () => {
  requireRoot();
  const s = scene();
  const { PtyServer } = addon();
  const tenant = startTenantLoop(s, 60);
  await sleep(300);   // the loop is running
  const made = { top: 0, sub: 0 }, refused = { top: 0, sub: 0 };
  const reasons = new Map<string, number>();
  const end = Date.now() + 30000;
  let rounds = 0;
  for (; rounds < 10000 && Date.now() < end; rounds++) {
    const where = rounds % 2 ? 'sub' : 'top';
    const sock = where === 'sub' ? path.join(s.vassal, 'sub', 'pty.sock') : path.join(s.vassal, 'pty.sock');
    const srv = new PtyServer({
      path: sock, mode: 0o600, uid: TENANT, gid: TENANT, command: 'true', env: [], cwd: '', sessionUid: -1,
      sessionGid: -1, rows: 24, cols: 80, framed: false, maxSessions: 1, queueBytes: 65536, hangupGraceMs: 100,
    });
    try {
      srv.start(() => {});
      made[where]++;
    } catch (e) {
      refused[where]++;
      const why = String((e as Error).message).replace(/\/\S+/g, 'PATH');
      reasons.set(why, (reasons.get(why) ?? 0) + 1);
    } finally {
      srv.stop();
    }
    if (rounds % 200 === 199) await sleep(1);   // let the event loop breathe (exit events)
  }
  tenant.child.kill('SIGTERM');
  const tenantN = await tenantRounds(tenant);
  const summary = JSON.stringify({ rounds, made, refused, tenantRounds: tenantN, reasons: Object.fromEntries(reasons) });
  console.log(summary);
  untouched(s);
  assert.ok(rounds >= 3000, `thousands of set-ups: ${summary}`);
  assert.ok(tenantN >= 1000, `the tenant raced: ${summary}`);
  assert.ok(made.top > 0 && made.sub > 0, `sockets were made in both places despite the race: ${summary}`);

  // Calm again: the socket is made with its owner and mode, and serves.
  fs.rmSync(path.join(s.vassal, 'sub'), { recursive: true, force: true });
  fs.mkdirSync(path.join(s.vassal, 'sub'));
  fs.chownSync(path.join(s.vassal, 'sub'), TENANT, TENANT);
  for (const n of ['pty.sock', 'pty.sock.new', 'sub.real', '.link']) fs.rmSync(path.join(s.vassal, n), { recursive: true, force: true });
  const sock = path.join(s.vassal, 'sub', 'pty.sock');
  const srv = new PtyServer({
    path: sock, mode: 0o640, uid: TENANT, gid: 0, command: 'echo calm-$((6*7))', env: [], cwd: '', sessionUid: -1,
    sessionGid: -1, rows: 24, cols: 80, framed: false, maxSessions: 1, queueBytes: 65536, hangupGraceMs: 100,
  });
  lab.onCleanup(() => srv.stop());
  srv.start(() => {});
  const st = fs.lstatSync(sock);
  assert.equal(st.isSocket(), true);
  assert.deepEqual({ uid: st.uid, gid: st.gid, mode: (st.mode & 0o777).toString(8) }, { uid: TENANT, gid: 0, mode: '640' });
  assert.deepEqual(fs.readdirSync(path.join(s.vassal, 'sub')), ['pty.sock'], 'no temporary name left');
  let out = '';
  const c = net.connect(sock);
  c.on('data', (d) => { out += d; });
  await new Promise<void>((resolve, reject) => { c.on('close', () => resolve()); c.on('error', reject); });
  assert.match(out, /calm-42/);
  srv.stop();
  assert.equal(fs.existsSync(sock), false, 'stop removed the socket');
  untouched(s);
});

test('vassal runtime: root sets up the pty socket in the vassal directory while the tenant swaps it for symlinks', async () => {
  requireRoot();
  const s = scene();
  const tenant = startTenantLoop(s, 60);
  await sleep(300);
  let made = 0, refused = 0, rounds = 0;
  const reasons = new Map<string, number>();
  const end = Date.now() + 20000;
  for (; rounds < 200 && Date.now() < end; rounds++) {
    const sock = rounds % 2 ? path.join(s.vassal, 'sub', 'pty.sock') : path.join(s.vassal, 'pty.sock');
    const v = new VassalRuntime(['name tenantpty', 'clone fs,uts,pid', `vassal-dir ${s.vassal} ${s.vassal}`,
      `gid ${TENANT}`, `uid ${TENANT}`, `pty-router raw ${sock} 0600 ${TENANT} ${TENANT}`, 'pty-grace 100']);
    lab.onCleanup(() => v.kill());
    try {
      const wait = Date.now() + 10000;
      while (!v.find('ready') && !v.find('error') && !v.exit && Date.now() < wait) await sleep(5);
      const error = v.find('error');
      if (v.find('ready')) made++;
      else if (error) {
        refused++;
        const why = error.value.replace(/\/\S+/g, 'PATH');
        reasons.set(why, (reasons.get(why) ?? 0) + 1);
      }
      else throw new Error(`the runtime neither started nor refused: ${JSON.stringify(v.events)} ${v.output.join('\n')}`);
      v.send('stop');
      await v.waitExit();
    } finally {
      v.kill();
    }
  }
  tenant.child.kill('SIGTERM');
  const tenantN = await tenantRounds(tenant);
  const summary = JSON.stringify({ rounds, made, refused, tenantRounds: tenantN, reasons: Object.fromEntries(reasons) });
  console.log(summary);
  untouched(s);
  assert.ok(rounds >= 100 && made > 0, `the runtime made sockets despite the race: ${summary}`);
});
