// tenant-targets.ts: what a hostile tenant aims root at in the symlink-race
// tests (tenant-pty-symlink, tenant-remove-symlink): a root-owned file and a
// root-owned directory tree outside the tenant's directory, the check that
// root left them exactly as they were, and the tenant's loop run as an
// unprivileged uid.
import assert from 'node:assert/strict';
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { tempDir } from './moat';
import type { Lab } from './netns';

export const TENANT = 65534;
const PASSWD = 'root:x:0:0:root:/root:/bin/sh\n';

export interface Targets {
  base: string;                // root's, 0755: holds the rest
  vassal: string;              // the tenant's directory (owned by TENANT)
  file: string;                // a root-owned file outside it
  dir: string;                 // a root-owned directory outside it (keep, deep/inner)
}

export function makeTargets(lab: Lab): Targets {
  const base = tempDir(lab);
  fs.chmodSync(base, 0o755);   // the tenant reaches its directory through it
  const outside = path.join(base, 'outside');
  fs.mkdirSync(outside, { mode: 0o755 });
  const file = path.join(outside, 'passwd');
  fs.writeFileSync(file, PASSWD, { mode: 0o644 });
  const dir = path.join(outside, 'etc');
  fs.mkdirSync(path.join(dir, 'deep'), { recursive: true, mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'keep'), 'keep\n', { mode: 0o644 });
  fs.writeFileSync(path.join(dir, 'deep', 'inner'), 'inner\n', { mode: 0o644 });
  const vassal = path.join(base, 'vassal');
  fs.mkdirSync(vassal, { mode: 0o755 });
  fs.chownSync(vassal, TENANT, TENANT);
  return { base, vassal, file, dir };
}

export function assertUntouched(t: Targets): void {
  const st = fs.lstatSync(t.file);
  assert.equal(st.isFile(), true, 'the file outside is still a file');
  assert.deepEqual({ uid: st.uid, gid: st.gid, mode: (st.mode & 0o7777).toString(8) }, { uid: 0, gid: 0, mode: '644' },
    'the file outside keeps its owner and mode');
  assert.equal(fs.readFileSync(t.file, 'utf8'), PASSWD, 'the file outside keeps its content');
  assert.deepEqual(fs.readdirSync(path.dirname(t.file)).sort(), ['etc', 'passwd'], 'the directory of the file outside keeps its entries');
  assert.deepEqual(fs.readdirSync(t.dir).sort(), ['deep', 'keep'], 'nothing created in or removed from the directory outside');
  assert.deepEqual(fs.readdirSync(path.join(t.dir, 'deep')), ['inner'], 'nor below it');
  assert.equal(fs.readFileSync(path.join(t.dir, 'keep'), 'utf8'), 'keep\n');
  for (const d of [t.dir, path.join(t.dir, 'deep')]) {
    const dst = fs.lstatSync(d);
    assert.deepEqual({ dir: dst.isDirectory(), uid: dst.uid, mode: (dst.mode & 0o7777).toString(8) }, { dir: true, uid: 0, mode: '755' });
  }
}

/** A python3 loop (`script`, its argv after it) run as uid/gid TENANT; done resolves with its output. */
export function startTenant(lab: Lab, script: string, args: string[]): { child: ChildProcess; done: Promise<string> } {
  const child = lab.spawn('setpriv', ['--reuid', String(TENANT), '--regid', String(TENANT), '--clear-groups',
    '/usr/bin/python3', '-c', script, ...args]);
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d; });
  child.stderr?.on('data', (d: Buffer) => { out += d; });
  const done = new Promise<string>((resolve) => child.once('exit', () => resolve(out)));
  return { child, done };
}
