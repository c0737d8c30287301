// log.ts: the one pino logger. JSON lines to stderr by default (systemd's
// journal keeps them); MOAT_LOG_LEVEL or --log-level sets the level.
import pino from 'pino';

export type Logger = pino.Logger;

let root: Logger | undefined;

export function logger(): Logger {
  if (!root) {
    root = pino({ name: 'moat', level: process.env.MOAT_LOG_LEVEL ?? 'info' }, pino.destination({ fd: 2, sync: true }));
  }
  return root;
}

export function setLogLevel(level: string): void {
  logger().level = level;
}
