// run.ts: runs the test files with node's built-in runner. Node 20's runner
// takes file paths, not globs, so the files are listed here.
// Usage: node dist/test/run.js [unit|integration|interop|fuzz ...]
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const suites = process.argv.slice(2);
const root = __dirname;
const dirs = (suites.length ? suites : ['unit', 'integration', 'interop', 'fuzz']).map((s) => path.join(root, s));

function collect(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return collect(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  }).sort();
}

const files = dirs.flatMap(collect);
if (files.length === 0) {
  console.error('no test files found in', dirs.join(', '));
  process.exit(1);
}
// Integration tests share the host's tun and netns namespace: run files one at a time.
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
