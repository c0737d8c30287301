// log.ts: the one pino logger. JSON lines to stderr by default (systemd's
// journal keeps them); MOAT_LOG_LEVEL or --log-level sets the level.
//
// A log that cannot be written must not stop the router: stderr may be a file
// on a full disk (ENOSPC), a pipe nobody reads (EPIPE) or a broken device
// (EIO). Lines are written synchronously; a line that cannot be written is
// dropped and counted (moat_log_dropped_total), and once writing works again
// one line says how many were lost and why. pino's own sync destination
// (sonic-boom) would throw, or retry forever in flushSync at exit.
import fs from 'node:fs';
import os from 'node:os';
import pino from 'pino';

export type Logger = pino.Logger;

/** EAGAIN (stderr a non-blocking pipe whose reader is slow): retried this long, then the line is dropped. */
const EAGAIN_WAIT_MS = 100;

class StderrDestination {
  dropped = 0;                 // lines lost since start
  private unreported = 0;      // lines lost since the last report
  private lastError = '';
  private midLine = false;     // a partial line was written before a failure
  private readonly sleeper = new Int32Array(new SharedArrayBuffer(4));

  constructor(private readonly fd: number) {}

  write(line: string): void {
    if (this.unreported > 0) {
      const note = JSON.stringify({
        level: 40, time: Date.now(), pid: process.pid, hostname: os.hostname(), name: 'moat',
        dropped: this.unreported, err: this.lastError, msg: 'log lines were dropped: the log could not be written',
      });
      if (!this.writeAll((this.midLine ? '\n' : '') + note + '\n')) return this.lost();
      this.unreported = 0;
      this.midLine = false;
    }
    if (!this.writeAll(line)) this.lost();
  }

  private lost(): void {
    this.dropped++;
    this.unreported++;
  }

  /** true if all of s was written; on failure remembers why. */
  private writeAll(s: string): boolean {
    let buf = Buffer.from(s, 'utf8');
    let waited = 0;
    while (buf.length > 0) {
      try {
        const n = fs.writeSync(this.fd, buf);
        if (n < buf.length) this.midLine = true;
        buf = buf.subarray(n);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        if ((code === 'EAGAIN' || code === 'EINTR') && waited < EAGAIN_WAIT_MS) {
          Atomics.wait(this.sleeper, 0, 0, 1);
          waited++;
          continue;
        }
        this.lastError = code;
        return false;
      }
    }
    this.midLine = false;
    return true;
  }
}

let root: Logger | undefined;
let dest: StderrDestination | undefined;

export function logger(): Logger {
  if (!root) {
    // fd 2 directly: process.stderr is left alone (for a pipe it would make
    // the fd non-blocking). Node's own warnings go through console, which
    // ignores write errors.
    dest = new StderrDestination(2);
    root = pino({ name: 'moat', level: process.env.MOAT_LOG_LEVEL ?? 'info' }, dest);
  }
  return root;
}

/** Log lines that could not be written since start (moat_log_dropped_total). */
export function logDropped(): number {
  return dest?.dropped ?? 0;
}

export function setLogLevel(level: string): void {
  logger().level = level;
}
