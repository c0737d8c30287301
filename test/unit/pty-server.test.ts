// pty-server.test.ts: the pty servers' TypeScript side over the fake addon (no
// root, no pty): the options the native servers get from a config, their
// events as log lines, the pty-exec command's end reported once, and stop.
// The native servers are test/integration/pty-router.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseIni } from '../../src/config/ini';
import { ptyRouterConfigs, sharedPtyConfig } from '../../src/pty/config';
import { describeStatus, PtyRouter, SharedPtyServer } from '../../src/pty/server';
import { installFakeAddon } from '../helpers/fake-addon';
import { captureRootLog, type LogLine } from '../helpers/log';

const ini = (...lines: string[]) => parseIni(['[uwsgi]', ...lines].join('\n'), 'pty.ini');
const capture = captureRootLog();
after(() => capture.restore());

/** The log lines since `from` with msg, reduced to the given fields. */
function logged(from: number, msg: string, ...fields: string[]): LogLine[] {
  return capture.lines.slice(from).filter((l) => l.msg === msg).map((l) => Object.fromEntries(fields.map((f) => [f, l[f]])));
}

test('describeStatus: exit code, signal, unknown', () => {
  assert.equal(describeStatus(0), 'exit 0');
  assert.equal(describeStatus(3 << 8), 'exit 3');
  assert.equal(describeStatus(9), 'signal 9');
  assert.equal(describeStatus(-1), 'unknown');
});

test('PtyRouter: the config reaches the native server; its events become log lines; stop releases it', () => {
  const fake = installFakeAddon();
  const [cfg] = ptyRouterConfigs(ini(
    'forkpty-urouter = /run/moat/pty.sock', 'forkpty-router-command = top -b', 'forkpty-router-socket-mode = 0660',
    'forkpty-router-socket-owner = 1000:1001', 'forkpty-router-user = 2000:2001', 'forkpty-router-grace = 250',
    'forkpty-router-max-sessions = 3', 'forkptyrouter-rows = 40', 'forkptyrouter-cols = 120',
  ));
  const from = capture.lines.length;
  const r = new PtyRouter(cfg);
  r.start();
  assert.equal(fake.ptyServers.length, 1);
  const n = fake.ptyServers[0];
  assert.deepEqual(n.options, {
    path: '/run/moat/pty.sock', mode: 0o660, uid: 1000, gid: 1001, command: 'top -b', env: [], cwd: '',
    sessionUid: 2000, sessionGid: 2001, rows: 40, cols: 120, framed: true, maxSessions: 3, queueBytes: 65536, hangupGraceMs: 250,
  });
  assert.deepEqual(logged(from, 'pty router listening', 'component', 'socket', 'command', 'mode'),
    [{ component: 'forkpty-urouter', socket: '/run/moat/pty.sock', command: 'top -b', mode: '660' }]);

  n.emit(
    { type: 'session_start', session: 1, pid: 500, peerUid: 1000, peerPid: 77 },
    { type: 'refused', peerUid: 1002, peerPid: 78, reason: 'max-sessions' },
    { type: 'session_end', session: 1, pid: 500, status: 15, reason: 'hangup' },
    { type: 'error', message: 'accept: EMFILE' },
  );
  assert.deepEqual(logged(from, 'pty session started', 'level', 'session', 'sessionPid', 'peerUid', 'peerPid'),
    [{ level: 30, session: 1, sessionPid: 500, peerUid: 1000, peerPid: 77 }]);
  assert.deepEqual(logged(from, 'pty connection refused', 'level', 'peerUid', 'reason'), [{ level: 40, peerUid: 1002, reason: 'max-sessions' }]);
  assert.deepEqual(logged(from, 'pty session ended', 'session', 'status', 'reason'), [{ session: 1, status: 'signal 15', reason: 'hangup' }]);
  assert.deepEqual(logged(from, 'pty server error', 'level', 'err'), [{ level: 50, err: 'accept: EMFILE' }]);

  n.snapshot = { ...n.snapshot, sessionsStarted: 1, sessionsEnded: 1 };
  assert.equal(r.stats()?.sessionsEnded, 1);
  r.stop();
  r.stop();
  assert.deepEqual(n.calls, ['start', 'stop']);
  assert.equal(r.stats(), undefined, 'no stats once stopped');
});

test('PtyRouter defaults: /bin/sh (command \'\'), mode 0600, the socket\'s and sessions\' owners kept', () => {
  const fake = installFakeAddon();
  const [cfg] = ptyRouterConfigs(ini('forkpty-router = /tmp/p.sock'));
  new PtyRouter(cfg).start();
  const o = fake.ptyServers[0].options;
  assert.deepEqual([o.command, o.mode, o.uid, o.gid, o.sessionUid, o.sessionGid, o.framed, o.rows, o.cols, o.maxSessions, o.hangupGraceMs],
    ['', 0o600, -1, -1, -1, -1, false, 24, 80, 64, 1000]);
  fake.ptyServers[0].stop();
});

test('SharedPtyServer: viewers logged; the pty-exec command\'s end is reported once, with its status', () => {
  const fake = installFakeAddon();
  const cfg = sharedPtyConfig(ini('pty-socket = /tmp/shared.sock', 'pty-exec = tail -f /var/log/app.log'))!;
  const exits: number[] = [];
  const from = capture.lines.length;
  const s = new SharedPtyServer(cfg, (status) => exits.push(status));
  s.start();
  const n = fake.sharedPtys[0];
  assert.deepEqual(n.options, {
    path: '/tmp/shared.sock', mode: 0o600, uid: -1, gid: -1, command: 'tail -f /var/log/app.log', env: [], cwd: '',
    sessionUid: -1, sessionGid: -1, rows: 24, cols: 80, maxViewers: 16, queueBytes: 262144, scrollbackBytes: 16384,
  });
  assert.deepEqual(logged(from, 'shared pty listening', 'component', 'commandPid'), [{ component: 'pty-socket', commandPid: 4242 }]);
  n.emit(
    { type: 'session_start', session: 2, pid: 0, peerUid: 1000, peerPid: 90 },
    { type: 'session_end', session: 2, pid: 0, status: -1, reason: 'closed' },
  );
  assert.deepEqual(exits, [], 'a viewer leaving is not the command ending');
  assert.deepEqual(logged(from, 'pty viewer connected', 'viewer', 'peerPid'), [{ viewer: 2, peerPid: 90 }]);
  assert.deepEqual(logged(from, 'pty viewer left', 'viewer', 'reason'), [{ viewer: 2, reason: 'closed' }]);
  n.emit({ type: 'session_end', session: 0, pid: 4242, status: 2 << 8, reason: 'exited' });
  assert.deepEqual(exits, [2 << 8]);
  assert.deepEqual(logged(from, 'pty-exec command ended', 'commandPid', 'status'), [{ commandPid: 4242, status: 'exit 2' }]);
  s.stop();
  assert.deepEqual(n.calls, ['start', 'stop']);
});

test('SharedPtyServer without pty-exec runs /bin/sh', () => {
  const fake = installFakeAddon();
  const s = new SharedPtyServer(sharedPtyConfig(ini('pty-socket = /tmp/shared.sock'))!);
  s.start();
  assert.equal(fake.sharedPtys[0].options.command, '/bin/sh');
  s.stop();
});
