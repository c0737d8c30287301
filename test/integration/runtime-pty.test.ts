// runtime-pty.test.ts: the vassal runtime's pty lines driven directly over
// its control channel (docs/runtime-protocol.md): set-up validation, the
// socket's mode and owner, session events with the first process's exit
// status, a pivot root without /dev/pts, a socket that cannot be bound.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Lab, requireRoot } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { makeRootFs } from '../helpers/rootfs';
import { sleep } from '../helpers/pty';
import { pidsInPidNs, VassalRuntime } from '../helpers/vassal-runtime';

const lab = new Lab();
after(() => lab.cleanup());

function vassal(lines: string[]): VassalRuntime {
  const v = new VassalRuntime(lines);
  lab.onCleanup(() => v.kill());
  return v;
}

test('pty set-up lines are validated before anything starts', async () => {
  requireRoot();
  const cases: Array<[string[], RegExp]> = [
    [['pty-router tcp /run/moat/p.sock'], /bad 'pty-router' value.*raw\|framed/],
    [['pty-router framed run/p.sock'], /absolute/],
    [['pty-router framed /' + 'p'.repeat(120)], /at most 107 bytes/],
    [['pty-router framed /p.sock 0999 1 1'], /octal/],
    [['pty-router framed /p.sock 0600 1'], /PATH \[MODE UID GID\]/],
    [['pty-router framed /p.sock 0600 x 1'], /UID and GID are numbers/],
    [['pty-router framed /a.sock', 'pty-router framed /b.sock'], /one raw and one framed/],
    [['pty-router framed /a.sock', 'pty-router raw /a.sock'], /same path/],
    [['pty-rows 0'], /bad 'pty-rows'/],
    [['pty-grace 600001'], /bad 'pty-grace'/],
    [['pty-command a', 'pty-command b'], /'pty-command' given twice/],
    [['pty-socket /s.sock'], /pty-socket and pty-daemon go together/],
    [['clone pid', 'pty-router raw /p.sock'], /needs the fs namespace too/],
    [['gid 1', 'uid 1', 'pty-user 2 2', 'pty-router raw /p.sock'], /pty-user differs/],
  ];
  for (const [lines, re] of cases) {
    const v = vassal(lines);
    const ex = await v.waitExit();
    assert.equal(ex.code, 2, lines.join(' | '));
    assert.match(v.find('error')?.value ?? '', re, lines.join(' | '));
    assert.equal(v.find('pid'), undefined, 'nothing was started');
  }
});

test('a forkpty session: socket mode and owner, start and end events with the exit status, stop removes the socket', async () => {
  requireRoot();
  const dir = tempDir(lab);
  const sock = path.join(dir, 'r.sock');
  fs.chownSync(dir, 65534, 65534);  // the runtime, once dropped to 65534, removes its socket there (as in a vassal's own directory)
  const v = vassal(['name ptyrt', 'clone fs,uts,pid', `vassal-dir ${dir} ${dir}`, 'gid 65534', 'uid 65534',
    `pty-router raw ${sock} 0640 65534 0`, 'pty-command echo "hi-$((1+1)) $(id -u) $$"; exit 7', 'pty-rows 33', 'pty-cols 99']);
  await v.waitEvent('ready');
  const st = fs.statSync(sock);
  assert.equal(st.mode & 0o777, 0o640);
  assert.equal(st.uid, 65534);
  assert.equal(st.gid, 0);
  let out = '';
  const c = net.connect(sock);
  c.on('data', (d) => { out += d; });
  await new Promise<void>((resolve, reject) => { c.on('close', () => resolve()); c.on('error', reject); });
  assert.match(out, /hi-2 65534 \d+/, 'the session ran as the vassal\'s uid, and its end closed the connection');
  const start = await v.waitEvent('pty', (x) => x.startsWith('start '));
  assert.match(start.value, new RegExp(`^start ${sock} 1 \\d+ 0$`));
  const end = await v.waitEvent('pty', (x) => x.startsWith('end '));
  // The exit status comes through the session's pidfd, unless pid 1's reaper took it first.
  assert.match(end.value, new RegExp(`^end ${sock} 1 (7|unknown) process exited$`));
  const pidNs = fs.readlinkSync(`/proc/${v.hostPid}/ns/pid`);
  assert.deepEqual(pidsInPidNs(pidNs), [v.hostPid], 'only the runtime is left');

  // A session open at stop is hung up; the socket goes.
  const v2 = vassal(['name ptyrt2', 'clone fs,uts,pid', `vassal-dir ${dir} ${dir}`, `pty-router framed ${path.join(dir, 'f.sock')}`, 'pty-grace 200']);
  await v2.waitEvent('ready');
  const c2 = net.connect(path.join(dir, 'f.sock'));
  c2.resume();  // read, so that the end is seen
  const closed = new Promise<void>((resolve) => c2.on('close', () => resolve()));
  await v2.waitEvent('pty', (x) => x.startsWith('start '));
  v2.send('stop');
  await Promise.race([closed, sleep(5000).then(() => { throw new Error('session open after stop'); })]);
  assert.equal((await v2.waitExit()).code, 0);
  assert.match((await v2.waitEvent('pty', (x) => x.startsWith('end '))).value, /server stopped/);
  assert.equal(fs.existsSync(path.join(dir, 'f.sock')), false, 'socket removed');

  v.send('pty-router raw /x.sock');
  await v.waitEvent('error', (x) => x.startsWith("pty-router: a set-up line (before 'start')"));
  v.send('stop');
  assert.equal((await v.waitExit()).code, 0);
  assert.equal(fs.existsSync(sock), false, 'socket removed');
});

test('set-up failures: no /dev in the new root, a socket that cannot be bound', async () => {
  requireRoot();
  const root = makeRootFs();
  lab.onCleanup(() => root.remove());
  // With a /dev the runtime mounts a /dev of its own (pts/ included); without one there is nowhere for devpts.
  fs.rmSync(path.join(root.dir, 'dev'), { recursive: true, force: true });
  const a = vassal(['name nopts', 'clone fs,uts,pid', `pivot-root ${root.dir} ${root.putOld}`, 'pty-router framed /tmp/p.sock']);
  assert.equal((await a.waitExit()).code, 1);
  assert.match(a.find('error')?.value ?? '', /mount devpts on .*\/dev\/pts/);
  const b = vassal(['name nobind', 'clone fs,uts,pid', 'pty-router framed /nonexistent-dir-moat/p.sock']);
  assert.equal((await b.waitExit()).code, 1);
  assert.match(b.find('error')?.value ?? '', /^pty-router \/nonexistent-dir-moat\/p\.sock: bind .*No such file/);
});
