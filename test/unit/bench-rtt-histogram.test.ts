import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bucketLabel, histogram, histogramText, RTT_BUCKETS_MS } from '../../bench/rtt-histogram';
import { rttSummary } from '../../bench/measure';

test('histogram: each time in the bucket below its upper bound; the slowest in the last', () => {
  const h = histogram([0.01, 0.05, 0.099, 0.35, 0.35, 1.5, 9.99, 10, 250]);
  assert.equal(h.length, RTT_BUCKETS_MS.length + 1);
  assert.deepEqual(h, [1, 2, 0, 0, 2, 0, 1, 0, 1, 2]);
  assert.equal(h.reduce((s, n) => s + n, 0), 9);
  assert.equal(bucketLabel(0), '0-0.05 ms');
  assert.equal(bucketLabel(RTT_BUCKETS_MS.length), '>= 10 ms');
});

test('rttSummary: p50, p90, p99, max and the histogram of what answered', () => {
  const times = Array.from({ length: 100 }, (_, i) => (i + 1) / 100);   // 0.01 .. 1.00 ms
  const r = rttSummary(100, times);
  assert.equal(r.p50, 0.5);
  assert.equal(r.p90, 0.9);
  assert.equal(r.p99, 0.99);
  assert.equal(r.max, 1);
  assert.equal(r.histogram.reduce((s, n) => s + n, 0), 100);
  assert.equal(rttSummary(10, []).error, 'no reply');
});

test('histogramText: a column per path that has figures, counts with percents', () => {
  const t = histogramText([
    { name: 'veth', byDir: { v2g: histogram([0.04, 0.06]) } },
    { name: 'moat', byDir: { v2g: histogram([0.3, 3]), g2v: histogram([0.2]) } },
  ], ['v2g', 'g2v']);
  assert.match(t, /vassal->gateway\s+veth\s+moat/);
  assert.match(t, /0-0\.05 ms\s+1 \(50\.0%\)\s+0 \(0\.0%\)/);
  assert.match(t, /2-5 ms\s+0 \(0\.0%\)\s+1 \(50\.0%\)/);
  assert.match(t, /gateway->vassal\s+moat\n/);
});
