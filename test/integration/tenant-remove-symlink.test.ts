// tenant-remove-symlink.test.ts: the tenant races root while root removes a
// tree the tenant can write (a retired vassal's directory, with a tenant
// process still alive). A loop running as the tenant's uid moves the tree's
// subdirectories and files aside and puts symlinks in their place (to a
// directory and a file outside, both root's), as fast as it can, while root
// builds a tree there and removes it with removeVassalDir, thousands of
// times. Root must never follow the tenant's links: the file outside keeps
// its owner, mode and content, the directory outside its entries.
// MOAT_TEST_REMOVE_WITH=rmSync runs the same race against fs.rmSync (what
// the emperor used before): it fails, the directory outside loses entries.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot } from '../helpers/netns';
import { sleep } from '../helpers/pty';
import { removeVassalDir } from '../../src/vassal/remove-dir';
import { assertUntouched, makeTargets, startTenant, TENANT, Targets } from '../helpers/tenant-targets';

const lab = new Lab();
after(() => lab.cleanup());

// The tree root builds each round, relative to the tenant's directory.
const DIRS = ['tree', 'tree/d0', 'tree/d1', 'tree/d2', 'tree/d0/s', 'tree/d1/s', 'tree/d2/s', 'tree/d0/s/t', 'tree/d1/s/t'];
const FILES = ['tree/f0', 'tree/d0/f0', 'tree/d1/f0', 'tree/d2/f0', 'tree/d0/s/f0', 'tree/d1/s/f0', 'tree/d0/s/t/f0', 'tree/d1/s/t/f0'];

// The tenant: each name moved aside (it stays in the tree) and a symlink put
// in its place (made under a temporary name, renamed over), deepest first,
// the tree itself last; bounded in time and rounds.
const TENANT_LOOP = `
import os, signal, sys, time
d, tfile, tdir, secs = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
dirs = sys.argv[5].split(',')
files = sys.argv[6].split(',')
names = [(n, tdir) for n in sorted(dirs, key=lambda n: -n.count('/'))] + [(n, tfile) for n in files]
names = [x for x in names if x[0] != 'tree'] + [('tree', tdir)]
end = time.monotonic() + secs
stop = []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
def swap(name, target):
    p = os.path.join(d, name)
    try:
        os.rename(p, p + '.x')
    except OSError:
        return 0
    link = os.path.join(os.path.dirname(p), '.l')
    try:
        os.symlink(target, link)
        os.rename(link, p)
        return 1
    except OSError:
        return 0
n = swaps = 0
while not stop and n < 5000000 and time.monotonic() < end:
    for name, target in names:
        swaps += swap(name, target)
    n += 1
print('rounds', n, 'swaps', swaps, flush=True)
`;

interface Scene extends Targets {
  stage: string;               // root's, where each round's tree is built
}

function scene(): Scene {
  const t = makeTargets(lab);
  const stage = path.join(t.base, 'stage');
  fs.mkdirSync(stage, { mode: 0o700 });
  return { ...t, stage };
}

const untouched = assertUntouched;

/** The round's tree, built in root's stage (the tenant cannot reach it) and
 *  moved into the tenant's directory at once, owned by the tenant. */
function buildTree(s: Scene): void {
  const staged = path.join(s.stage, 'tree');
  for (const d of DIRS) {
    fs.mkdirSync(path.join(s.stage, d), { mode: 0o755 });
    fs.chownSync(path.join(s.stage, d), TENANT, TENANT);
  }
  for (const f of FILES) {
    fs.writeFileSync(path.join(s.stage, f), 'tenant\n', { mode: 0o644 });
    fs.chownSync(path.join(s.stage, f), TENANT, TENANT);
  }
  fs.renameSync(staged, path.join(s.vassal, 'tree'));
}

const startTenantLoop = (s: Scene, secs: number) =>
  startTenant(lab, TENANT_LOOP, [s.vassal, s.file, s.dir, String(secs), DIRS.join(','), FILES.join(',')]);

type Remover = (p: string) => Promise<unknown>;
const remover: Remover = process.env.MOAT_TEST_REMOVE_WITH === 'rmSync'
  ? async (p) => fs.rmSync(p, { recursive: true, force: true })
  : (p) => removeVassalDir(p);

test('root removes the tenant\'s tree thousands of times while the tenant swaps its entries for symlinks', async () => {
  requireRoot();
  const s = scene();
  const tenant = startTenantLoop(s, 90);
  await sleep(300);   // the loop is running
  let rounds = 0, removed = 0, refused = 0, built = 0, unbuilt = 0;
  const reasons = new Map<string, number>();
  const refuse = (e: unknown) => {
    refused++;
    const why = String((e as Error).message).replace(/\/\S+/g, 'PATH');
    reasons.set(why, (reasons.get(why) ?? 0) + 1);
  };
  const started = Date.now();
  const end = started + 45000;
  for (; rounds < 6000 && Date.now() < end; rounds++) {
    // What the last round left (entries the tenant moved aside, its links) goes first.
    for (const n of fs.readdirSync(s.vassal)) await remover(path.join(s.vassal, n)).catch(refuse);
    fs.rmSync(path.join(s.stage, 'tree'), { recursive: true, force: true });   // root's own: nobody else writes there
    try {
      buildTree(s);
      built++;
    } catch {
      unbuilt++;   // the tenant got a link in at 'tree' first: the rename is refused, the next round cleans up
      continue;
    }
    try {
      await remover(path.join(s.vassal, 'tree'));
      removed++;
    } catch (e) {
      refuse(e);
    }
    if (rounds % 500 === 499) {   // fail early, and say when
      try { untouched(s); } catch (e) {
        (e as Error).message += ` (found after ${rounds + 1} rounds, ${(Date.now() - started) / 1000} s)`;
        throw e;
      }
    }
  }
  const secs = (Date.now() - started) / 1000;
  tenant.child.kill('SIGTERM');
  const out = await tenant.done;
  const m = /rounds (\d+) swaps (\d+)/.exec(out);
  assert.ok(m, `the tenant loop ran: ${out}`);
  const summary = JSON.stringify({
    remover: process.env.MOAT_TEST_REMOVE_WITH ?? 'removeVassalDir', rounds, built, unbuilt, removed, refused, secs,
    tenantRounds: Number(m![1]), tenantSwaps: Number(m![2]), reasons: Object.fromEntries(reasons),
  });
  console.log(summary);
  untouched(s);
  assert.ok(rounds >= 2000, `thousands of rounds: ${summary}`);
  assert.ok(Number(m![2]) >= 5000, `the tenant raced: ${summary}`);
  assert.ok(removed >= built / 2, `most trees were removed despite the race: ${summary}`);

  // Calm again: everything left goes, and nothing outside with it.
  for (const n of fs.readdirSync(s.vassal)) await removeVassalDir(path.join(s.vassal, n));
  assert.deepEqual(fs.readdirSync(s.vassal), []);
  untouched(s);
});
