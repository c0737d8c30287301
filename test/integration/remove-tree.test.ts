// remove-tree.test.ts: removeVassalDir (native/remove_tree.h) on its own,
// calm: what it removes and what it leaves. A mount point inside the tree
// (another file system, or a bind mount of the same one) is neither entered
// nor removed; a tree deeper or larger than the limits is reported, never a
// crash; a link is removed, never followed, at the top too; the parent path
// is walked without following links (the admin's symlinks above are resolved
// once in TypeScript). The race with a live tenant: tenant-remove-symlink.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { removeVassalDir, VASSAL_DIR_LIMITS } from '../../src/vassal/remove-dir';
import { addon } from '../../src/native';

const lab = new Lab();
after(() => lab.cleanup());

function mount(args: string[], at: string): void {
  execFileSync('mount', [...args, at]);
  lab.onCleanup(() => { try { execFileSync('umount', ['-l', at], { stdio: 'ignore' }); } catch { /* already */ } });
}

test('a mount point inside the tree is neither entered nor removed, tmpfs or bind mount', async () => {
  requireRoot();
  const base = tempDir(lab);
  const tree = path.join(base, 'tree');
  const src = path.join(base, 'src');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'kept'), 'bind\n');
  for (const d of ['a', 'm', 'b']) fs.mkdirSync(path.join(tree, d), { recursive: true });
  fs.writeFileSync(path.join(tree, 'a', 'f'), 'x');
  mount(['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs'], path.join(tree, 'm'));
  fs.writeFileSync(path.join(tree, 'm', 'kept'), 'tmpfs\n');
  mount(['--bind', src], path.join(tree, 'b'));
  assert.equal(fs.statSync(path.join(tree, 'b')).dev, fs.statSync(tree).dev, 'the bind mount has its parent\'s st_dev');

  const first = await removeVassalDir(tree).then(() => 'removed', (e: Error) => e.message);
  assert.match(first, /^cannot remove vassal directory .*\/tree: .*\/tree\/[mb] is a mount point: not entered, not removed/);
  assert.equal(fs.readFileSync(path.join(tree, 'm', 'kept'), 'utf8'), 'tmpfs\n', 'the tmpfs keeps its file');
  execFileSync('umount', [path.join(tree, 'm')]);
  // Whichever came first, the bind mount (same st_dev) is refused on its own.
  await assert.rejects(removeVassalDir(tree), /\/tree\/b is a mount point: not entered, not removed/);
  assert.equal(fs.readFileSync(path.join(src, 'kept'), 'utf8'), 'bind\n', 'the bind mount\'s source keeps its file');
  assert.equal(fs.readFileSync(path.join(tree, 'b', 'kept'), 'utf8'), 'bind\n');
  execFileSync('umount', [path.join(tree, 'b')]);
  const r = await removeVassalDir(tree);
  assert.equal(r.existed, true);
  assert.equal(fs.existsSync(tree), false);
  assert.deepEqual(fs.readdirSync(src), ['kept'], 'unmounted: the source stays');
});

test('limits: a tree too deep or too large is reported and left; within them it goes', async () => {
  requireRoot();
  const base = tempDir(lab);
  const deep = path.join(base, 'deep');
  fs.mkdirSync(path.join(deep, 'x/'.repeat(300)), { recursive: true });
  await assert.rejects(removeVassalDir(deep), (e: Error) => {
    assert.match(e.message, new RegExp(`^cannot remove vassal directory ${deep}: ${deep}(/x){257}: more than 256 directories deep: stopped`));
    return true;
  });
  assert.equal(fs.existsSync(path.join(deep, 'x/'.repeat(300))), true, 'what is below stays');
  assert.deepEqual(await removeVassalDir(deep, { maxDepth: 300, maxEntries: 1000 }), { existed: true, removed: 301 });

  const wide = path.join(base, 'wide');
  fs.mkdirSync(path.join(wide, 'sub'), { recursive: true });
  for (let i = 0; i < 3000; i++) fs.writeFileSync(path.join(wide, 'sub', `f${i}`), '');
  await assert.rejects(removeVassalDir(wide, { maxDepth: 8, maxEntries: 1000 }), /more than 1000 entries: stopped at .*\/wide\/sub/);
  assert.ok(fs.readdirSync(path.join(wide, 'sub')).length >= 2000, 'the rest stays');
  const t0 = process.hrtime.bigint();
  const r = await removeVassalDir(wide);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.equal(r.existed, true);
  // The first call looked at 1000 entries (sub, 999 files) and removed the files.
  assert.equal(r.removed, 3000 - 999 + 2, JSON.stringify(r));
  assert.equal(fs.existsSync(wide), false);
  console.log(JSON.stringify({ removedEntries: r.removed, ms }));

  // Native code's own ceilings on what it is handed.
  const { removeTree } = addon();
  assert.throws(() => removeTree(base, 'x', { maxDepth: 5000, maxEntries: 1 }), /removeTree: limits.maxDepth: expected an integer 0..1024, got 5000/);
  assert.throws(() => removeTree(base, 'x', { maxDepth: 1, maxEntries: 0 }), /limits.maxEntries: expected an integer 1\.\./);
  assert.ok(VASSAL_DIR_LIMITS.maxDepth <= 1024);
});

test('links are removed, never followed: at the top, inside, and on the way to the parent', async () => {
  requireRoot();
  const base = tempDir(lab);
  const outside = path.join(base, 'outside');
  fs.mkdirSync(outside);
  fs.writeFileSync(path.join(outside, 'keep'), 'keep\n');
  // The vassal's directory itself a link: the link goes, its target stays.
  const top = path.join(base, 'top');
  fs.symlinkSync(outside, top);
  assert.deepEqual(await removeVassalDir(top), { existed: true, removed: 1 });
  assert.equal(fs.existsSync(top), false);
  // Links inside, to a directory and a file: removed as links.
  const tree = path.join(base, 'tree');
  fs.mkdirSync(path.join(tree, 'd'), { recursive: true });
  fs.symlinkSync(outside, path.join(tree, 'd', 'dirlink'));
  fs.symlinkSync(path.join(outside, 'keep'), path.join(tree, 'filelink'));
  fs.symlinkSync('/nonexistent', path.join(tree, 'dangling'));
  fs.writeFileSync(path.join(tree, 'd', 'f'), 'x');
  assert.deepEqual(await removeVassalDir(tree), { existed: true, removed: 6 });
  assert.deepEqual(fs.readdirSync(outside), ['keep']);
  assert.equal(fs.readFileSync(path.join(outside, 'keep'), 'utf8'), 'keep\n');
  // A plain file, and nothing at all.
  fs.writeFileSync(path.join(base, 'file'), 'x');
  assert.deepEqual(await removeVassalDir(path.join(base, 'file')), { existed: true, removed: 1 });
  assert.deepEqual(await removeVassalDir(path.join(base, 'none')), { existed: false, removed: 0 });
  assert.deepEqual(await removeVassalDir(path.join(base, 'none', 'deeper')), { existed: false, removed: 0 });
  await assert.rejects(removeVassalDir('/'), /cannot remove vassal directory \/: it is the root directory/);

  // The admin's symlink above the vassal's directory is resolved once (TS);
  // the native walk itself follows none.
  const real = path.join(base, 'real');
  fs.mkdirSync(path.join(real, 'v', 'sub'), { recursive: true });
  fs.symlinkSync(real, path.join(base, 'alias'));
  assert.deepEqual(await removeVassalDir(path.join(base, 'alias', 'v')), { existed: true, removed: 2 });
  assert.deepEqual(fs.readdirSync(real), []);
  const { removeTree } = addon();
  fs.mkdirSync(path.join(real, 'v'));
  await assert.rejects(removeTree(path.join(base, 'alias'), 'v', { maxDepth: 4, maxEntries: 10 }),
    /\/alias is a symlink or not a directory \(refused: the path is walked without following links\)/);
  await assert.rejects(removeTree(`${real}/../real`, 'v', { maxDepth: 4, maxEntries: 10 }), /'\.\.' is refused/);
  await assert.rejects(removeTree(real, '..', { maxDepth: 4, maxEntries: 10 }), /'\.\.' is not one file name/);
  await assert.rejects(removeTree(real, 'v/x', { maxDepth: 4, maxEntries: 10 }), /is not one file name/);
  await assert.rejects(removeTree('relative', 'v', { maxDepth: 4, maxEntries: 10 }), /is not an absolute path/);
  assert.equal(fs.existsSync(path.join(real, 'v')), true, 'refused: nothing removed');
});
