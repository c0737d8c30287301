// output-budget.ts: what a vassal prints reaches the emperor's log only
// within a budget of lines and bytes per second; the rest is counted and
// dropped, and one line per second says how much. Past the budget the
// emperor only counts newlines in the raw bytes (a memchr per line, no
// string, no allocation), and past a scan cap (SCAN_FACTOR times the byte
// budget, at least 4 MiB/s) it stops reading until the next second: a vassal
// printing as fast as it can then waits on its own full pipe, and costs the
// emperor a few milliseconds a second instead of a core. The emperor never
// waits on a vassal's pipe.
const MAX_LINE = 2000;   // characters of one line kept in the log
const SCAN_FACTOR = 64;
const SCAN_MIN = 4 << 20;        // bytes per second the emperor reads, whatever the budget
const EMPTY = Buffer.alloc(0);   // no unfinished line (shared: an allocation per dropped line cost 40x the scan)

export interface OutputBudgetOptions {
  linesPerSec: number;
  bytesPerSec: number;
}

export interface DroppedReport { lines: number; bytes: number }

/** One vassal's output: push() raw chunks, get back the lines to log. */
export class OutputBudget {
  private lines: number;
  private bytes: number;
  private windowStart: number;
  private scanned = 0;             // bytes read in this window
  private readonly scanCap: number;
  private readonly partial: Buffer[] = [];   // an unfinished line per stream (stdout, stderr)
  /** Dropped since the last report, and in all. */
  droppedLines = 0;
  droppedBytes = 0;
  totalDroppedLines = 0;
  totalDroppedBytes = 0;

  constructor(readonly opts: OutputBudgetOptions, private readonly now: () => number = Date.now) {
    this.lines = opts.linesPerSec;
    this.bytes = opts.bytesPerSec;
    this.windowStart = now();
    this.scanCap = Math.max(SCAN_MIN, SCAN_FACTOR * opts.bytesPerSec);
  }

  /** How long to stop reading (ms) because this window's scan cap is spent; 0: read on. */
  pauseMs(): number {
    if (this.scanned < this.scanCap) return 0;
    return Math.max(1, 1000 - (this.now() - this.windowStart));
  }

  /** The whole lines of `chunk` that fit the budget (a line cut at MAX_LINE
   *  characters); `report` is set once a second when something was dropped. */
  push(chunk: Buffer, stream = 0): { lines: string[]; report?: DroppedReport } {
    const out: string[] = [];
    this.refill();
    this.scanned += chunk.length;
    let partial = this.partial[stream] ?? EMPTY;
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(10, start);
      if (nl < 0) break;
      const size = partial.length + nl - start + 1;
      if (this.lines > 0 && this.bytes >= size) {
        this.lines--;
        this.bytes -= size;
        const head = partial.length ? Buffer.concat([partial, chunk.subarray(start, nl)]) : chunk.subarray(start, nl);
        out.push(head.toString('utf8', 0, Math.min(head.length, MAX_LINE * 4)).slice(0, MAX_LINE));
      } else {
        this.drop(1, size);
      }
      partial = EMPTY;
      start = nl + 1;
    }
    // Keep at most one line's worth of an unfinished line; the rest of it is dropped.
    if (start < chunk.length) {
      const rest = chunk.subarray(start);
      const room = MAX_LINE * 4 - partial.length;
      if (room > 0) partial = Buffer.concat([partial, rest.subarray(0, room)]);
      if (rest.length > room) this.drop(0, rest.length - Math.max(room, 0));
    }
    this.partial[stream] = partial;
    return { lines: out, report: this.takeReport() };
  }

  private drop(lines: number, bytes: number): void {
    this.droppedLines += lines;
    this.droppedBytes += bytes;
    this.totalDroppedLines += lines;
    this.totalDroppedBytes += bytes;
  }

  private refill(): void {
    const t = this.now();
    if (t - this.windowStart >= 1000) {
      this.windowStart = t;
      this.scanned = 0;
      this.lines = this.opts.linesPerSec;
      this.bytes = this.opts.bytesPerSec;
    }
  }

  private lastReport = 0;
  private takeReport(): DroppedReport | undefined {
    if (this.droppedLines === 0 && this.droppedBytes === 0) return undefined;
    const t = this.now();
    if (t - this.lastReport < 1000) return undefined;
    this.lastReport = t;
    const r = { lines: this.droppedLines, bytes: this.droppedBytes };
    this.droppedLines = 0;
    this.droppedBytes = 0;
    return r;
  }

  /** What is still unreported (at stop). */
  flushReport(): DroppedReport | undefined {
    if (this.droppedLines === 0 && this.droppedBytes === 0) return undefined;
    const r = { lines: this.droppedLines, bytes: this.droppedBytes };
    this.droppedLines = 0;
    this.droppedBytes = 0;
    return r;
  }
}
