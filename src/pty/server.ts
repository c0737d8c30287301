// server.ts: the pty servers of a standalone moat process (forkpty-router,
// forkpty-urouter, pty-socket) over the addon's native servers, which run on
// threads of their own; this class only logs their events. Inside a vassal
// the same native code runs in the vassal runtime instead (docs/pty.md).
import { addon, NativePtyServer, NativeSharedPty, PtyEvent } from '../native';
import { Logger, logger } from '../log';
import { PtyRouterConfig, SharedPtyConfig } from './config';

/** A wait status as text: 'exit 0', 'signal 9', 'unknown'. */
export function describeStatus(status: number): string {
  if (status < 0) return 'unknown';
  return (status & 0x7f) === 0 ? `exit ${(status >> 8) & 0xff}` : `signal ${status & 0x7f}`;
}

function logEvents(log: Logger, events: PtyEvent[]): void {
  for (const e of events) {
    switch (e.type) {
      case 'session_start':
        log.info({ session: e.session, sessionPid: e.pid, peerUid: e.peerUid, peerPid: e.peerPid }, 'pty session started');
        break;
      case 'session_end':
        log.info({ session: e.session, sessionPid: e.pid, status: describeStatus(e.status), reason: e.reason }, 'pty session ended');
        break;
      case 'refused':
        log.warn({ peerUid: e.peerUid, peerPid: e.peerPid, reason: e.reason }, 'pty connection refused');
        break;
      case 'error':
        log.error({ err: e.message }, 'pty server error');
        break;
    }
  }
}

export class PtyRouter {
  private native?: NativePtyServer;
  private readonly log: Logger;

  constructor(readonly cfg: PtyRouterConfig) {
    this.log = logger().child({ component: cfg.framed ? 'forkpty-urouter' : 'forkpty-router', socket: cfg.path });
  }

  start(): void {
    const c = this.cfg;
    this.native = new (addon().PtyServer)({
      path: c.path, mode: c.socketMode, uid: c.socketOwner?.uid ?? -1, gid: c.socketOwner?.gid ?? -1,
      command: c.command, env: [], cwd: '', sessionUid: c.session?.uid ?? -1, sessionGid: c.session?.gid ?? -1,
      rows: c.rows, cols: c.cols, framed: c.framed, maxSessions: c.maxSessions, queueBytes: 65536, hangupGraceMs: c.graceMs,
    });
    this.native.start((events) => logEvents(this.log, events));
    this.log.info({ command: c.command || '/bin/sh', mode: c.socketMode.toString(8) }, 'pty router listening');
  }

  stop(): void {
    this.native?.stop();
    this.native = undefined;
  }

  stats() { return this.native?.stats(); }
}

export class SharedPtyServer {
  private native?: NativeSharedPty;
  private readonly log: Logger;

  /** onExit: the pty-exec command ended (status: a wait status). */
  constructor(readonly cfg: SharedPtyConfig, private readonly onExit: (status: number) => void = () => {}) {
    this.log = logger().child({ component: 'pty-socket', socket: cfg.path });
  }

  start(): void {
    const c = this.cfg;
    this.native = new (addon().SharedPty)({
      path: c.path, mode: c.socketMode, uid: c.socketOwner?.uid ?? -1, gid: c.socketOwner?.gid ?? -1,
      command: c.command || '/bin/sh', env: [], cwd: '', sessionUid: c.session?.uid ?? -1, sessionGid: c.session?.gid ?? -1,
      rows: c.rows, cols: c.cols, maxViewers: 16, queueBytes: 262144, scrollbackBytes: 16384,
    });
    this.native.start((events) => {
      for (const e of events) {
        if (e.type === 'session_start') this.log.info({ viewer: e.session, peerUid: e.peerUid, peerPid: e.peerPid }, 'pty viewer connected');
        else if (e.type === 'session_end' && e.pid === 0) this.log.info({ viewer: e.session, reason: e.reason }, 'pty viewer left');
        else if (e.type === 'session_end') {
          this.log.info({ commandPid: e.pid, status: describeStatus(e.status) }, 'pty-exec command ended');
          this.onExit(e.status);
        } else logEvents(this.log, [e]);
      }
    });
    this.log.info({ command: c.command || '/bin/sh', commandPid: this.native.stats().commandPid }, 'shared pty listening');
  }

  stop(): void {
    this.native?.stop();
    this.native = undefined;
  }
}
