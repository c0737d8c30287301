// addr-table.test.ts: native/addr_table.h (the router's address -> peer map,
// looked up once per packet down) against std::unordered_map, built here
// with ASan and UBSan: test/native/addr_table_test.cc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');

test('AddrTable finds, replaces and erases as std::unordered_map does', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-addr-table-'));
  try {
    const bin = path.join(dir, 'addr_table_test');
    const cc = spawnSync(process.env.CXX ?? 'g++', ['-std=c++17', '-O1', '-g', '-fsanitize=address,undefined',
      '-fno-sanitize-recover=all', '-I', path.join(ROOT, 'native'), path.join(ROOT, 'test', 'native', 'addr_table_test.cc'),
      '-o', bin], { encoding: 'utf8' });
    assert.equal(cc.status, 0, `compile failed: ${cc.stderr}`);
    const r = spawnSync(bin, [], { encoding: 'utf8', timeout: 60000 });
    assert.equal(r.status, 0, `addr_table_test failed: ${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /^ok 600000$/m);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
