// vassal-runtime.ts: drives build/Release/moat-vassal directly, as the
// emperor would, over fd 3 (docs/runtime-protocol.md): sends set-up lines and
// commands, collects event lines, and kills what it started (the launcher and
// the runtime, by pid) in kill().
import { spawn, ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Duplex } from 'node:stream';

export const VASSAL_BIN = process.env.MOAT_VASSAL ?? path.join(__dirname, '..', '..', '..', 'build', 'Release', 'moat-vassal');

export interface VassalEvent { keyword: string; value: string; at: number }

export class VassalRuntime {
  readonly events: VassalEvent[] = [];
  readonly output: string[] = [];   // stdout and stderr lines of the vassal's processes
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  private readonly channel: Duplex;
  private partial = '';

  constructor(lines: string[], opts: { start?: boolean } = {}) {
    this.child = spawn(VASSAL_BIN, [], { stdio: ['ignore', 'pipe', 'pipe', 'pipe'] });
    this.channel = this.child.stdio[3] as Duplex;
    this.channel.on('data', (d: Buffer) => this.onData(d));
    this.channel.on('error', () => { /* seen as exit */ });
    for (const s of [this.child.stdout, this.child.stderr]) {
      s?.on('data', (d: Buffer) => this.output.push(...d.toString().split('\n').filter(Boolean)));
    }
    // 'exit' can come before the channel's last lines are read: resolve once
    // the channel has ended too (bounded, in case a leftover process holds it).
    const channelEnded = new Promise<void>((resolve) => {
      this.channel.once('close', () => resolve());
      this.channel.once('end', () => resolve());
    });
    this.exited = new Promise((resolve) => this.child.once('exit', (code, signal) => {
      this.exit = { code, signal };
      const timer = setTimeout(() => resolve(this.exit!), 1000);
      void channelEnded.then(() => { clearTimeout(timer); resolve(this.exit!); });
    }));
    // One write for all set-up lines: a runtime that refuses the first line
    // exits at once, and a later write would then fail with EPIPE, which
    // destroys the channel before its error line is read.
    const all = [...lines, ...(opts.start !== false ? ['start'] : [])];
    if (all.length > 0) this.channel.write(all.map((l) => l + '\n').join(''));
  }

  private onData(d: Buffer): void {
    this.partial += d.toString();
    let nl: number;
    while ((nl = this.partial.indexOf('\n')) >= 0) {
      const line = this.partial.slice(0, nl);
      this.partial = this.partial.slice(nl + 1);
      const sp = line.indexOf(' ');
      this.events.push({ keyword: sp < 0 ? line : line.slice(0, sp), value: sp < 0 ? '' : line.slice(sp + 1), at: Date.now() });
    }
  }

  send(line: string): void {
    this.channel.write(line + '\n');
  }

  closeChannel(): void {
    this.channel.end();
    this.channel.destroy();
  }

  /** The runtime's pid in the host's pid namespace (from the `pid` event). */
  get hostPid(): number | undefined {
    const e = this.events.find((x) => x.keyword === 'pid');
    return e ? Number(e.value) : undefined;
  }

  find(keyword: string, pred: (value: string) => boolean = () => true): VassalEvent | undefined {
    return this.events.find((e) => e.keyword === keyword && pred(e.value));
  }

  /** Waits for an event; rejects early on the runtime's exit, with what it said. */
  async waitEvent(keyword: string, pred: (value: string) => boolean = () => true, ms = 10000): Promise<VassalEvent> {
    const end = Date.now() + ms;
    for (;;) {
      const e = this.find(keyword, pred);
      if (e) return e;
      if (this.exit || Date.now() > end) {
        throw new Error(`no '${keyword}' event (${this.exit ? `exited ${JSON.stringify(this.exit)}` : 'timed out'}); events: ` +
          JSON.stringify(this.events.map((x) => `${x.keyword} ${x.value}`)) + '; output: ' + JSON.stringify(this.output.slice(-20)));
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async waitExit(ms = 10000): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error('vassal did not exit')), ms); });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL to the runtime (which ends its pid namespace) and the launcher, if still there. */
  kill(): void {
    const hp = this.hostPid;
    if (hp && !this.exit) { try { process.kill(hp, 'SIGKILL'); } catch { /* gone */ } }
    if (!this.exit) this.child.kill('SIGKILL');
  }
}

/** Host pids of the processes in the pid namespace `nsLink` (readlink of /proc/PID/ns/pid). */
export function pidsInPidNs(nsLink: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (fs.readlinkSync(`/proc/${e}/ns/pid`) === nsLink) out.push(Number(e));
    } catch { /* gone or not ours to read */ }
  }
  return out;
}

/** Sum of Pss (kB) of the given pids from /proc/PID/smaps_rollup. */
export function pssKb(pids: number[]): number {
  let sum = 0;
  for (const p of pids) {
    const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'));
    if (!m) throw new Error(`no Pss for ${p}`);
    sum += Number(m[1]);
  }
  return sum;
}
