// log.ts: loggers whose lines a test reads, to check what moat tells an admin.
// captureLog() makes one to hand to a class that takes a logger (Router,
// CronPlugin); captureRootLog() sends the root logger's children into the
// same kind of list, for classes that log through logger().child(...)
// (src/pty/server.ts).
import pino from 'pino';
import { logger, type Logger } from '../../src/log';

/** One JSON log line: pino's level (30 info, 40 warn, 50 error, 60 fatal), msg and bindings. */
export type LogLine = Record<string, unknown>;

export function captureLog(): { log: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const log = pino({ level: 'debug', base: null }, { write: (s: string) => { lines.push(JSON.parse(s) as LogLine); } });
  return { log, lines };
}

/** Until restore(), every logger().child(...) writes into `lines` (its bindings kept). */
export function captureRootLog(): { lines: LogLine[]; restore(): void } {
  const { log, lines } = captureLog();
  const root = logger();
  const child = root.child;
  root.child = ((bindings, options) => log.child(bindings, options)) as Logger['child'];
  return { lines, restore: () => { root.child = child; } };
}
