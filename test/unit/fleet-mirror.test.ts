// fleet-mirror.test.ts: the directory that copies etcd values for the
// emperor and the router (src/fleet/mirror.ts): whole-file replacement,
// modes, and reset of what an earlier run left.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { MirrorDir } from '../../src/fleet/mirror';

test('writes a value whole with its mode, reports changes only, removes, lists no dot-files, resets', () => {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-mirror-'));
  try {
    const m = new MirrorDir(path.join(root, 'h1', 'vassals'), 0o600);
    fs.mkdirSync(m.dir, { recursive: true });
    fs.writeFileSync(m.path('left-by-a-crash.ini'), 'x');
    m.reset();
    assert.deepEqual(m.names(), [], 'reset empties what an earlier run left');
    assert.equal(m.write('a.ini', '[uwsgi]\n'), true);
    assert.equal(m.write('a.ini', '[uwsgi]\n'), false, 'the same text: no change, no rename (the emperor sees nothing)');
    assert.equal(fs.statSync(m.path('a.ini')).mode & 0o777, 0o600);
    assert.equal(m.write('a.ini', '[uwsgi]\nenv = A=1\n'), true);
    assert.equal(fs.readFileSync(m.path('a.ini'), 'utf8'), '[uwsgi]\nenv = A=1\n');
    fs.writeFileSync(path.join(m.dir, '.tmp'), '');
    assert.deepEqual(m.names(), ['a.ini']);
    assert.equal(m.remove('a.ini'), true);
    assert.equal(m.remove('a.ini'), false);
    const r = new MirrorDir(path.join(root, 'h1', 'rules'), 0o644);
    r.reset();
    r.write('10.rules', 'out deny 0.0.0.0/0 10.0.0.0/8\n');
    assert.equal(fs.statSync(r.path('10.rules')).mode & 0o777, 0o644, 'rules: readable by the router\'s user');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});
