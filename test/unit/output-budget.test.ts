// The vassal output budget: lines within it pass whole, the excess is
// counted and dropped, a report comes at most once a second, and the budget
// refills each second. A fake clock drives it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { OutputBudget } from '../../src/vassal/output-budget';

test('lines within the budget pass, the rest is counted and reported once a second', () => {
  let now = 10_000;
  const b = new OutputBudget({ linesPerSec: 3, bytesPerSec: 1000 }, () => now);
  const first = b.push(Buffer.from('a\nbb\nccc\ndddd\neeeee\n'));
  assert.deepEqual(first.lines, ['a', 'bb', 'ccc']);
  assert.deepEqual(first.report, { lines: 2, bytes: 11 });
  // Within the same second: dropped, not reported again yet.
  const second = b.push(Buffer.from('f\n'));
  assert.deepEqual(second, { lines: [], report: undefined });
  now += 1000;
  const third = b.push(Buffer.from('g\n'));
  assert.deepEqual(third.lines, ['g']);
  assert.deepEqual(third.report, { lines: 1, bytes: 2 });
  assert.equal(b.totalDroppedLines, 3);
});

test('the byte budget counts too; a line split over chunks is one line; long lines are cut', () => {
  const now = 0;
  const b = new OutputBudget({ linesPerSec: 100, bytesPerSec: 10 }, () => now);
  assert.deepEqual(b.push(Buffer.from('hel')).lines, []);
  assert.deepEqual(b.push(Buffer.from('lo\nworld!!\n')).lines, ['hello']);
  assert.equal(b.flushReport()?.bytes, 8);
  const c = new OutputBudget({ linesPerSec: 10, bytesPerSec: 1e6 }, () => now);
  const [line] = c.push(Buffer.from('x'.repeat(5000) + '\n')).lines;
  assert.equal(line.length, 2000);
});

test('a flood costs a scan, not a log write: 100 MB in 64 KiB chunks, a few lines logged', () => {
  const b = new OutputBudget({ linesPerSec: 100, bytesPerSec: 65536 });
  const chunk = Buffer.from('spam spam spam spam spam spam\n'.repeat(2184));
  let logged = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 1600; i++) logged += b.push(chunk).lines.length;
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  assert.ok(logged <= 200, `logged ${logged}`);
  assert.ok(b.totalDroppedLines > 3_000_000, `dropped ${b.totalDroppedLines}`);
  assert.ok(ms < 600, `100 MB scanned in ${ms} ms`);   // ~110 ms here; an allocation per dropped line made it ~1.2 s
});

test('past the scan cap the reader is told to pause until the next second', () => {
  let now = 0;
  const b = new OutputBudget({ linesPerSec: 10, bytesPerSec: 65536 }, () => now);
  const chunk = Buffer.alloc(65536, 0x41);
  for (let i = 0; i < 63; i++) b.push(chunk);
  assert.equal(b.pauseMs(), 0, 'under 64 x the byte budget: read on');
  b.push(chunk);
  now = 250;
  assert.equal(b.pauseMs(), 750, 'the rest of the window');
  now = 1000;
  b.push(Buffer.from('x\n'));
  assert.equal(b.pauseMs(), 0, 'a new window');
});
