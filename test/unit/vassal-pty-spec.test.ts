// vassal-pty-spec.test.ts: a vassal file's forkpty-router / forkpty-urouter /
// pty-socket options -> the runtime's pty lines (src/vassal/spec.ts,
// docs/runtime-protocol.md): paths inside the vassal, socket owner defaulting
// to the vassal's uid/gid, uWSGI's spellings, errors with file:line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { vassalSpec } from '../../src/vassal/spec';
import { parseIni } from '../../src/config/ini';
import { ConfigError } from '../../src/config/types';

type Clone = Array<'fs' | 'ipc' | 'uts' | 'net' | 'pid'>;
const spec = (text: string, clone: Clone = ['fs', 'uts', 'pid']) =>
  vassalSpec('c1.ini', parseIni('[uwsgi]\n' + text, 'c1.ini'), { clone, hostDir: '/run/moat/vassals/c1.ini' });
const ptyLines = (text: string, clone?: Clone) => spec(text, clone).lines.filter((l) => l.startsWith('pty-'));

test('forkpty-urouter: the socket is owned by the vassal\'s uid/gid, mode 0600', () => {
  assert.deepEqual(ptyLines('uid = 1000\ngid = 1000\nforkpty-urouter = /run/moat/pty.sock\n'),
    ['pty-router framed /run/moat/pty.sock 0600 1000 1000']);
  // No uid: the runtime keeps root, and so does the socket (-1: keep).
  assert.deepEqual(ptyLines('forkpty-router = /run/moat/raw.sock\n'), ['pty-router raw /run/moat/raw.sock 0600 -1 -1']);
});

test('uWSGI spellings and moat\'s extras', () => {
  const lines = ptyLines([
    'uid = 1000', 'gid = 1000',
    'forkptyurouter = /run/moat/u.sock', 'forkptyrouter = /run/moat/r.sock',
    'forkptyrouter-command = /bin/bash -l', 'forkptyrouter-rows = 40', 'forkptyrouter-cols = 132',
    'forkpty-router-socket-mode = 0660', 'forkpty-router-socket-owner = 0:1000',
    'forkpty-router-grace = 250', 'forkpty-router-max-sessions = 4', 'forkpty-router-user = 1000:1000', '',
  ].join('\n'));
  assert.deepEqual(lines.sort(), [
    'pty-cols 132', 'pty-command /bin/bash -l', 'pty-grace 250', 'pty-max-sessions 4',
    'pty-router framed /run/moat/u.sock 0660 0 1000', 'pty-router raw /run/moat/r.sock 0660 0 1000', 'pty-rows 40',
  ]);
  // A root runtime starts its sessions as forkpty-router-user.
  assert.deepEqual(ptyLines('forkpty-urouter = /run/moat/u.sock\nforkpty-router-user = 1000:1000\n'),
    ['pty-router framed /run/moat/u.sock 0600 -1 -1', 'pty-user 1000 1000']);
});

test('pty-socket: pty-exec, else the first attach-daemon moves onto the shared pty', () => {
  const a = spec('uid = 1000\ngid = 1000\npty-socket = /run/moat/shared.sock\nattach-daemon = /app/run\nattach-daemon = /app/other\n');
  assert.deepEqual(a.lines.filter((l) => /^(pty-|attach-daemon)/.test(l)),
    ['pty-socket /run/moat/shared.sock 0600 1000 1000', 'pty-daemon /app/run', 'attach-daemon /app/other']);
  const b = spec('pty-socket = /run/moat/shared.sock\npty-exec = top\nattach-daemon = /app/run\n');
  assert.deepEqual(b.lines.filter((l) => /^(pty-|attach-daemon)/.test(l)),
    ['pty-socket /run/moat/shared.sock 0600 -1 -1', 'pty-daemon top', 'attach-daemon /app/run']);
  assert.deepEqual(ptyLines('pty-socket = /run/moat/s.sock\n'), ['pty-socket /run/moat/s.sock 0600 -1 -1', 'pty-daemon /bin/sh']);
});

test('a path the host cannot reach is a warning; bad values are errors with file:line', () => {
  const w = spec('forkpty-urouter = /tmp/pty.sock\n');
  assert.ok(w.warnings.some((x) => /c1\.ini:2: .*\/tmp\/pty\.sock is not under \/run\/moat/.test(x)), w.warnings.join('\n'));
  const bad = (text: string, re: RegExp, clone?: Clone) => assert.throws(() => spec(text, clone),
    (e: unknown) => e instanceof ConfigError && re.test(e.message), text);
  bad('forkpty-urouter = pty.sock\n', /^c1\.ini:2: forkpty-urouter: .*absolute path/);
  bad('forkpty-urouter = 127.0.0.1:2222\n', /^c1\.ini:2: forkpty-urouter: .*TCP/);
  bad('forkpty-urouter = /run/moat/p.sock\n', /^c1\.ini:2: .*needs emperor-use-clone with fs/, ['pid']);
  bad('uid = 1000\ngid = 1000\nforkpty-urouter = /run/moat/p.sock\nforkpty-router-user = 0:0\n', /^c1\.ini:5: forkpty-router-user: .*vassal's uid/);
  bad('forkpty-urouter = /run/moat/p.sock\nforkpty-router-socket-mode = 9\n', /forkpty-router-socket-mode: bad mode/);
});
