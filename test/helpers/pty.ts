// pty.ts: driving terminal programs like a person would, for the pty tests: a
// tmux server of the test's own (its own -L socket, no config file) whose one
// pane runs the program; keys go in with send-keys, the screen comes back
// with capture-pane. Everything is removed at the Lab's cleanup.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { Lab, sleep, uniqueName } from './netns';
import { MoatProcess, startMoat, waitForSocket } from './moat';
import { frameHeader } from './packets';

export class Tmux {
  private constructor(readonly server: string, readonly session: string) {}

  /** A detached tmux session of cols x rows running `command` (a shell line). */
  static start(lab: Lab, command: string, cols = 80, rows = 24): Tmux {
    const t = new Tmux(uniqueName('moatpty'), 'main');
    lab.onCleanup(() => t.kill());
    t.tmux('new-session', '-d', '-s', t.session, '-x', String(cols), '-y', String(rows), command);
    t.tmux('set-option', '-t', t.session, 'history-limit', '5000');
    return t;
  }

  tmux(...args: string[]): string {
    return execFileSync('tmux', ['-L', this.server, '-f', '/dev/null', ...args], { encoding: 'utf8', timeout: 10000 });
  }

  /** Types text literally, then Enter. */
  line(text: string): void {
    this.tmux('send-keys', '-t', this.session, '-l', text);
    this.tmux('send-keys', '-t', this.session, 'Enter');
  }

  /** Named keys (C-c, Enter, ...). */
  keys(...keys: string[]): void {
    this.tmux('send-keys', '-t', this.session, ...keys);
  }

  /** The pane's text, history included, wrapped lines joined. */
  screen(): string {
    return this.tmux('capture-pane', '-p', '-J', '-S', '-5000', '-t', this.session);
  }

  resize(cols: number, rows: number): void {
    this.tmux('resize-window', '-t', this.session, '-x', String(cols), '-y', String(rows));
  }

  /** Waits until the screen matches re; the error shows the screen. */
  async waitScreen(re: RegExp, timeoutMs = 8000): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    let s = '';
    for (;;) {
      s = this.screen();
      const m = s.match(re);
      if (m) return m;
      if (Date.now() > end) throw new Error(`timed out waiting for ${re} on the screen:\n${s.replace(/\n+$/, '')}`);
      await sleep(50);
    }
  }

  /** Ends the tmux server (its panes' processes get SIGHUP). Idempotent. */
  kill(): void {
    try { this.tmux('kill-server'); } catch { /* already gone */ }
  }
}

export { sleep };

/** moat's pty router (flag: --forkpty-router or --forkpty-urouter) on sock,
 *  hanging up sessions 300 ms after SIGHUP; resolves once it listens. */
export async function startPtyRouter(lab: Lab, flag: string, sock: string, extra: string[] = []): Promise<MoatProcess> {
  const p = startMoat(lab, [flag, sock, '--forkpty-router-grace', '300', ...extra]);
  await waitForSocket(sock, p);
  return p;
}

/** A process that exists and is not a zombie (a zombie has exited already). */
export function running(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

/** The parent pid of pid (from /proc), or -1. */
export function parentOf(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return -1;
  }
}

export async function waitGone(pids: number[], timeoutMs: number): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (pids.some(running)) {
    if (Date.now() > end) throw new Error(`still running after ${timeoutMs} ms: ${pids.filter(running).join(', ')}`);
    await sleep(50);
  }
}

/** A uwsgi frame header announcing size bytes, then payload if given (it may differ from size). */
export function frame(mod2: number, size: number, payload?: Buffer): Buffer {
  const h = frameHeader(size, mod2);
  return payload ? Buffer.concat([h, payload]) : h;
}

export function stdinFrame(text: string): Buffer {
  const b = Buffer.from(text);
  return frame(0, b.length, b);
}

/** Connects to a unix socket (resolves once connected). */
export function connectUnix(p: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(p, () => resolve(s));
    s.on('error', reject);
  });
}

/** Text a process reads from a socket until it has seen re (or the timeout). */
export function reader(sock: net.Socket): { text(): string; wait(re: RegExp, ms?: number): Promise<void> } {
  let buf = '';
  sock.on('data', (d) => { buf += d.toString('utf8'); });
  return {
    text: () => buf,
    async wait(re, ms = 5000) {
      const end = Date.now() + ms;
      while (!re.test(buf)) {
        if (Date.now() > end) throw new Error(`timed out waiting for ${re}; got ${JSON.stringify(buf)}`);
        await sleep(30);
      }
    },
  };
}
