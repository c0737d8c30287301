// accounting-log.ts: the billing log. Every accounting interval the emperor
// appends one JSON line per vassal (docs/accounting.md):
//
//   {"vassal":"web","start":"2025-01-01T00:00:00.000Z","end":"2025-01-01T00:01:00.000Z",
//    "bytes_in":1200,"bytes_out":3400,"packets_in":10,"packets_out":20,"drops":{"rate_limit":2},
//    "total":{"bytes_in":...,"bytes_out":...,"packets_in":...,"packets_out":...,"drops":{...}}}
//
// (one line in the file). start/end: ISO 8601 UTC with ms; the counters are
// the interval's, "total" the vassal's cumulative counters at its end.
//
// Guarantees: all lines of one interval go out in one write() on an O_APPEND
// fd, then fsync; a write that fails or comes up short is cut off again
// (ftruncate to the size before it) and reported, so a line is whole or
// absent. A crash can still leave a torn tail (the kernel wrote part of the
// data): open() cuts the file back to its last complete line.
//
// Restart: the totals and each vassal's last interval end are kept in a small
// state file beside the log (<log>.state, replaced atomically after each
// append). open() reads it, then only the log's lines past state.offset (those
// appended before a crash stopped the state write) — or the whole log once if
// there is no usable state. Each line carries its cumulative totals, so
// recovering replaces rather than adds: a line read twice cannot count twice.
import fs from 'node:fs';
import path from 'node:path';
import type { IntervalRecord, Usage } from './accounting';

/** The file operations used, replaceable in tests (failing writes, counting fsyncs). */
export type LogFs = Pick<typeof fs, 'openSync' | 'closeSync' | 'writeSync' | 'readSync' | 'fsyncSync' | 'ftruncateSync' |
  'fstatSync' | 'statSync' | 'fchmodSync' | 'renameSync' | 'readFileSync' | 'unlinkSync'>;

export type AccountingLogOptions = {
  fs?: Partial<LogFs>;
  /** Called for what open/append recovered from or could not do without failing (default: ignored; open also returns them). */
  warn?: (message: string) => void;
};

/** What open() recovered: each vassal's totals and the end of its last interval in the log. */
export type Recovered = { totals: Map<string, Usage>; lastEnd: Map<string, string>; warnings: string[] };

const MODE = 0o640;
const CHUNK = 1 << 20;

type CountersJson = { bytes_in: number; bytes_out: number; packets_in: number; packets_out: number; drops: Record<string, number> };
type LineJson = CountersJson & { vassal: string; start: string; end: string; total: CountersJson };
type StateJson = { version: 1; ino: number; offset: number; totals: Record<string, CountersJson>; lastEnd: Record<string, string> };

function sortedDrops(d: Record<string, number>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of Object.keys(d).sort()) out[k] = d[k];
  return out;
}

function toJson(u: Usage): CountersJson {
  return { bytes_in: u.bytesIn, bytes_out: u.bytesOut, packets_in: u.packetsIn, packets_out: u.packetsOut, drops: sortedDrops(u.drops) };
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

function fromJson(j: unknown): Usage | undefined {
  if (typeof j !== 'object' || j === null) return undefined;
  const c = j as Record<string, unknown>;
  if (!isCount(c.bytes_in) || !isCount(c.bytes_out) || !isCount(c.packets_in) || !isCount(c.packets_out)) return undefined;
  if (typeof c.drops !== 'object' || c.drops === null || Array.isArray(c.drops)) return undefined;
  const drops: Record<string, number> = {};
  for (const [k, v] of Object.entries(c.drops)) {
    if (!isCount(v)) return undefined;
    drops[k] = v;
  }
  return { bytesIn: c.bytes_in, bytesOut: c.bytes_out, packetsIn: c.packets_in, packetsOut: c.packets_out, drops };
}

/** One line of the log, as written (no trailing newline). */
export function formatLine(r: IntervalRecord): string {
  const line: LineJson = {
    vassal: r.vassal, start: new Date(r.start).toISOString(), end: new Date(r.end).toISOString(),
    ...toJson(r.usage), total: toJson(r.total),
  };
  return JSON.stringify(line);
}

/** A line of the log read back, or undefined if it is not one. */
export function parseLine(text: string): { vassal: string; start: string; end: string; usage: Usage; total: Usage } | undefined {
  let j: unknown;
  try { j = JSON.parse(text); } catch { return undefined; }
  if (typeof j !== 'object' || j === null) return undefined;
  const l = j as Record<string, unknown>;
  if (typeof l.vassal !== 'string' || typeof l.start !== 'string' || typeof l.end !== 'string') return undefined;
  const usage = fromJson(l), total = fromJson(l.total);
  if (!usage || !total) return undefined;
  return { vassal: l.vassal, start: l.start, end: l.end, usage, total };
}

export class AccountingLog {
  readonly statePath: string;
  private readonly fs: LogFs;
  private readonly warn: (m: string) => void;
  private fd = -1;
  private ino = 0;
  private size = 0;                                  // the log's size as we wrote it
  private readonly totals = new Map<string, Usage>();
  private readonly lastEnd = new Map<string, string>();

  constructor(readonly logPath: string, options: AccountingLogOptions = {}) {
    this.statePath = `${logPath}.state`;
    this.fs = { ...fs, ...options.fs } as LogFs;
    this.warn = options.warn ?? (() => {});
  }

  /** Opens (creating, mode 0640) the log, repairs a torn tail and recovers
   *  the totals. Throws if the log's directory does not exist. */
  open(): Recovered {
    const warnings: string[] = [];
    const warn = (m: string) => { warnings.push(m); this.warn(m); };
    const dir = path.dirname(path.resolve(this.logPath));
    let dirStat: fs.Stats;
    try {
      dirStat = this.fs.statSync(dir);
    } catch (e) {
      throw new Error(`accounting-log ${this.logPath}: its directory ${dir} cannot be used (${(e as Error).message})`);
    }
    if (!dirStat.isDirectory()) throw new Error(`accounting-log ${this.logPath}: ${dir} is not a directory`);

    this.openFd();
    this.repairTail(warn);

    const state = this.readState(warn);
    let from = 0;
    if (state && state.ino === this.ino && state.offset <= this.size) {
      this.load(state);
      from = state.offset;
    } else if (state) {
      // The log was replaced (rotated) or cut since the state was written:
      // the state's totals stand; lines of the new log count if newer.
      warn(`accounting-log ${this.logPath}: the log is not the one its state describes (rotated or truncated); ` +
        'totals are taken from the state and the log is read whole');
      this.load(state);
    }
    const n = this.replay(from, state !== undefined && from === 0, warn);
    if (n > 0 && from > 0) warn(`accounting-log ${this.logPath}: ${n} line(s) after the saved state recovered (a crash before the state was saved)`);
    if (n > 0 || !state || from === 0) this.writeState(warn);
    return { totals: this.copyTotals(), lastEnd: new Map(this.lastEnd), warnings };
  }

  /** Appends one interval's records (one line each) in one write, then
   *  fsyncs. On any failure the log is cut back to its size before and the
   *  error is thrown: the records are then not in the log (write them again
   *  later). The state file is updated after; its failure is only warned
   *  (open() recovers from the log). */
  append(records: IntervalRecord[]): void {
    if (this.fd < 0) throw new Error(`accounting-log ${this.logPath}: not open`);
    if (records.length === 0) return;
    this.followRotation();
    const data = Buffer.from(records.map((r) => formatLine(r) + '\n').join(''));
    const before = this.fs.fstatSync(this.fd).size;
    try {
      const written = this.fs.writeSync(this.fd, data);
      if (written !== data.length) throw new Error(`short write (${written} of ${data.length} bytes)`);
      this.fs.fsyncSync(this.fd);
    } catch (e) {
      let cut = '';
      try {
        this.fs.ftruncateSync(this.fd, before);
        this.fs.fsyncSync(this.fd);
      } catch (e2) {
        cut = `; cutting it back to ${before} bytes failed too (${(e2 as Error).message}): reopening will repair the tail`;
      }
      throw new Error(`accounting-log ${this.logPath}: ${records.length} record(s) not written: ${(e as Error).message}${cut}`);
    }
    this.size = before + data.length;
    for (const r of records) {
      this.totals.set(r.vassal, { ...r.total, drops: { ...r.total.drops } });
      this.lastEnd.set(r.vassal, new Date(r.end).toISOString());
    }
    this.writeState(this.warn);
  }

  /** A vassal removed for good (after its last interval was appended): its
   *  totals leave the state file (the log keeps its lines). */
  forget(name: string): void {
    this.totals.delete(name);
    this.lastEnd.delete(name);
    if (this.fd >= 0) this.writeState(this.warn);
  }

  close(): void {
    if (this.fd >= 0) this.fs.closeSync(this.fd);
    this.fd = -1;
  }

  private openFd(): void {
    const flags = fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT;
    let created = false;
    try {
      this.fd = this.fs.openSync(this.logPath, flags | fs.constants.O_EXCL, MODE);
      created = true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      this.fd = this.fs.openSync(this.logPath, flags, MODE);
    }
    if (created) this.fs.fchmodSync(this.fd, MODE);   // whatever the umask
    const st = this.fs.fstatSync(this.fd);
    this.ino = st.ino;
    this.size = st.size;
  }

  /** The log path now names another file (rotated away): append to the new one. */
  private followRotation(): void {
    let ino = -1;
    try { ino = this.fs.statSync(this.logPath).ino; } catch { /* moved away, not replaced yet */ }
    if (ino === this.ino) return;
    this.fs.closeSync(this.fd);
    this.fd = -1;
    this.openFd();
    this.repairTail(this.warn);
  }

  /** Cuts the log back to its last '\n' (a write torn by a crash). */
  private repairTail(warn: (m: string) => void): void {
    const size = this.fs.fstatSync(this.fd).size;
    if (size === 0) return;
    const rfd = this.fs.openSync(this.logPath, fs.constants.O_RDONLY);
    try {
      const last = Buffer.alloc(1);
      if (this.fs.readSync(rfd, last, 0, 1, size - 1) === 1 && last[0] === 0x0a) return;
      const buf = Buffer.alloc(Math.min(CHUNK, size));
      let end = size;
      let keep = 0;
      search: while (end > 0) {
        const start = Math.max(0, end - buf.length);
        const n = this.fs.readSync(rfd, buf, 0, end - start, start);
        for (let i = n - 1; i >= 0; i--) {
          if (buf[i] === 0x0a) { keep = start + i + 1; break search; }
        }
        end = start;
      }
      if (keep === size) return;
      this.fs.ftruncateSync(this.fd, keep);
      this.fs.fsyncSync(this.fd);
      this.size = keep;
      warn(`accounting-log ${this.logPath}: a torn last line (${size - keep} bytes, no newline) was cut off`);
    } finally {
      this.fs.closeSync(rfd);
    }
  }

  private readState(warn: (m: string) => void): StateJson | undefined {
    let text: string;
    try {
      text = this.fs.readFileSync(this.statePath, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') warn(`accounting-log ${this.statePath}: unreadable (${(e as Error).message}); the log is read whole`);
      return undefined;
    }
    try {
      const s = JSON.parse(text) as StateJson;
      if (s.version !== 1 || !isCount(s.ino) || !isCount(s.offset) || typeof s.totals !== 'object' || typeof s.lastEnd !== 'object') throw new Error('unknown shape');
      for (const v of Object.values(s.totals)) if (!fromJson(v)) throw new Error('bad totals');
      return s;
    } catch (e) {
      warn(`accounting-log ${this.statePath}: not a state file (${(e as Error).message}); the log is read whole`);
      return undefined;
    }
  }

  private load(s: StateJson): void {
    for (const [name, j] of Object.entries(s.totals)) this.totals.set(name, fromJson(j)!);
    for (const [name, end] of Object.entries(s.lastEnd)) if (typeof end === 'string') this.lastEnd.set(name, end);
  }

  /** Reads the log's lines from offset on, each setting its vassal's totals
   *  and last end. onlyNewer: skip a line not after the vassal's known last
   *  end (a rotated log's lines the state already holds). Lines that are not
   *  records (a crash can leave NULs where data never reached the disk) are
   *  skipped with a warning; if they are the log's last lines, the log is cut
   *  back to the last good one, so appends never follow garbage. Returns how
   *  many lines were taken. */
  private replay(offset: number, onlyNewer: boolean, warn: (m: string) => void): number {
    if (offset >= this.size) return 0;
    const rfd = this.fs.openSync(this.logPath, fs.constants.O_RDONLY);
    let taken = 0, bad = 0, badAtEnd = 0;
    let goodEnd = offset;                            // just after the last good line
    try {
      const buf = Buffer.alloc(CHUNK);
      let pos = offset;                              // file position of buf's first byte
      let rest = Buffer.alloc(0);
      let lineStart = offset;                        // file position of the line being read
      const take = (lineBytes: Buffer, lineEnd: number) => {
        if (lineBytes.length === 0) {             // an empty line: harmless
          if (badAtEnd === 0) goodEnd = lineEnd;
          return;
        }
        const l = parseLine(lineBytes.toString('utf8'));
        if (!l) { bad++; badAtEnd++; return; }
        badAtEnd = 0;
        goodEnd = lineEnd;
        const known = this.lastEnd.get(l.vassal);
        if (onlyNewer && known !== undefined && Date.parse(l.end) <= Date.parse(known)) return;
        this.totals.set(l.vassal, l.total);
        this.lastEnd.set(l.vassal, l.end);
        taken++;
      };
      while (pos < this.size) {
        const n = this.fs.readSync(rfd, buf, 0, Math.min(buf.length, this.size - pos), pos);
        if (n === 0) break;
        pos += n;
        let data = rest.length ? Buffer.concat([rest, buf.subarray(0, n)]) : buf.subarray(0, n);
        let nl: number;
        while ((nl = data.indexOf(0x0a)) >= 0) {
          take(data.subarray(0, nl), lineStart + nl + 1);
          lineStart += nl + 1;
          data = data.subarray(nl + 1);
        }
        rest = Buffer.from(data);
      }
    } finally {
      this.fs.closeSync(rfd);
    }
    if (badAtEnd > 0) {
      this.fs.ftruncateSync(this.fd, goodEnd);
      this.fs.fsyncSync(this.fd);
      warn(`accounting-log ${this.logPath}: ${badAtEnd} line(s) at the end that are not accounting records (${this.size - goodEnd} bytes) were cut off`);
      this.size = goodEnd;
    }
    if (bad > badAtEnd) warn(`accounting-log ${this.logPath}: ${bad - badAtEnd} line(s) that are not accounting records were skipped`);
    return taken;
  }

  /** Replaces the state file: temp file, fsync, rename, fsync the directory. */
  private writeState(warn: (m: string) => void): void {
    const state: StateJson = {
      version: 1, ino: this.ino, offset: this.size,
      totals: Object.fromEntries([...this.totals].map(([n, u]) => [n, toJson(u)])),
      lastEnd: Object.fromEntries(this.lastEnd),
    };
    const tmp = `${this.statePath}.tmp`;
    try {
      const fd = this.fs.openSync(tmp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_TRUNC, MODE);
      try {
        this.fs.fchmodSync(fd, MODE);
        const data = Buffer.from(JSON.stringify(state) + '\n');
        if (this.fs.writeSync(fd, data) !== data.length) throw new Error('short write');
        this.fs.fsyncSync(fd);
      } finally {
        this.fs.closeSync(fd);
      }
      this.fs.renameSync(tmp, this.statePath);
      const dfd = this.fs.openSync(path.dirname(path.resolve(this.statePath)), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      try { this.fs.fsyncSync(dfd); } finally { this.fs.closeSync(dfd); }
    } catch (e) {
      try { this.fs.unlinkSync(tmp); } catch { /* already gone */ }
      warn(`accounting-log ${this.statePath}: not saved (${(e as Error).message}); the next start reads the log past the old state`);
    }
  }

  private copyTotals(): Map<string, Usage> {
    return new Map([...this.totals].map(([n, u]) => [n, { ...u, drops: { ...u.drops } }]));
  }
}
