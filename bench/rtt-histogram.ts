// rtt-histogram.ts: round-trip times in fixed buckets, printed for every
// path side by side (issue 19: moat's round trips beside uWSGI's and veth's),
// so a tail shows its shape: a few slow pings of one episode, or a path
// that is slow often.
import { Dir, DIR_LABEL } from './measure';

/** Upper bounds of the buckets, ms; a last bucket holds everything slower. */
export const RTT_BUCKETS_MS = [0.05, 0.1, 0.2, 0.3, 0.5, 1, 2, 5, 10];

/** Counts per bucket (RTT_BUCKETS_MS.length + 1 of them) of the given times, ms. */
export function histogram(times: number[]): number[] {
  const counts = Array<number>(RTT_BUCKETS_MS.length + 1).fill(0);
  for (const t of times) {
    const i = RTT_BUCKETS_MS.findIndex((b) => t < b);
    counts[i < 0 ? RTT_BUCKETS_MS.length : i]++;
  }
  return counts;
}

export function bucketLabel(i: number): string {
  const lo = i === 0 ? 0 : RTT_BUCKETS_MS[i - 1];
  return i === RTT_BUCKETS_MS.length ? `>= ${lo} ms` : `${lo}-${RTT_BUCKETS_MS[i]} ms`;
}

/** One table per direction: a row per bucket, a column per path ("count (percent)"). */
export function histogramText(paths: Array<{ name: string; byDir: Partial<Record<Dir, number[] | undefined>> }>, dirs: Dir[]): string {
  const out: string[] = ['rtt histogram (pings per bucket, percent of those answered):'];
  for (const dir of dirs) {
    const cols = paths.filter((p) => p.byDir[dir]);
    if (cols.length === 0) continue;
    const rows: string[][] = [[DIR_LABEL[dir], ...cols.map((c) => c.name)]];
    for (let i = 0; i <= RTT_BUCKETS_MS.length; i++) {
      rows.push([bucketLabel(i), ...cols.map((c) => {
        const h = c.byDir[dir]!;
        const total = h.reduce((s, n) => s + n, 0);
        return total === 0 ? '-' : `${h[i]} (${((100 * h[i]) / total).toFixed(1)}%)`;
      })]);
    }
    const width = rows[0].map((_, j) => Math.max(...rows.map((r) => r[j].length)));
    out.push(...rows.map((r) => r.map((cell, j) => (j === 0 ? cell.padEnd(width[j]) : cell.padStart(width[j]))).join('  ')));
  }
  return out.join('\n');
}
