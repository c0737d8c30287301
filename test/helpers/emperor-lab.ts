// emperor-lab.ts: a real Emperor (in this process) over a real Router (its
// tun device in a namespace the lab makes), with real vassals (the native
// runtime), for tests that play a hostile tenant. Each emperor gets its
// options as an emperor's config file would give them (a unique
// `emperor-cgroup` per emperor), a vassal directory of its own and a captured
// log. cleanup() stops every emperor (also after a failed test), then reports
// and removes any cgroup an emperor left behind.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Router } from '../../src/router/router';
import { Emperor, VassalStatus } from '../../src/emperor/emperor';
import { emperorConfig } from '../../src/emperor/config';
import { readLayout } from '../../src/vassal/cgroup-layout';
import type { Option, RouterConfig } from '../../src/config/types';
import { Lab, uniqueName } from './netns';
import { tempDir } from './moat';
import { captureLog, LogLine } from './log';
import { conntrackDefaults } from '../../src/config/router-config';

/** The Python interpreter itself (not a pyenv shim: the vassal's PATH has none of the host's). */
export function pythonPath(): string {
  return execFileSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).trim();
}

/** A process's start time (clock ticks since boot), or undefined once it is gone or a zombie. */
export function startTime(pid: number): string | undefined {
  try {
    const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
    return f[0] === 'Z' ? undefined : f[19];
  } catch { return undefined; }
}

/** Fields of /proc/PID/stat after the command name: [0] state, [1] ppid, [3] session, ... */
export function statFields(pid: number): string[] {
  return fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
}

export function cmdline(pid: number): string {
  try { return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' '); } catch { return ''; }
}

/** Pids of the processes whose namespace `kind` is one of `inodes` (readlink of /proc/PID/ns/KIND). */
export function pidsInNamespaces(kind: string, inodes: string[]): number[] {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try { return inodes.includes(fs.readlinkSync(`/proc/${d}/ns/${kind}`)); } catch { return false; }
  }).map(Number);
}

export class TestEmperor {
  readonly log: LogLine[];
  readonly emperor: Emperor;

  constructor(readonly dir: string, readonly runRoot: string, readonly cgroupName: string, options: Option[], router: Router) {
    const { log, lines } = captureLog();
    this.log = lines;
    this.emperor = new Emperor(emperorConfig(options), { router, log });
  }

  /** Writes a vassal file whole (through a dot-file the emperor skips, then a rename). */
  write(file: string, lines: string[]): void {
    const tmp = path.join(this.dir, `.${file}.tmp`);
    fs.writeFileSync(tmp, ['[uwsgi]', ...lines, ''].join('\n'));
    fs.renameSync(tmp, path.join(this.dir, file));
  }

  remove(file: string): void {
    fs.rmSync(path.join(this.dir, file));
  }

  row(name: string): VassalStatus | undefined {
    return this.emperor.status().find((r) => r.name === name);
  }

  /** Polls pred every 20 ms; on timeout the error shows the status rows and the log's tail. */
  async until(pred: () => boolean, ms: number, what: string): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      let ok = false;
      try { ok = pred(); } catch { ok = false; }
      if (ok) return Date.now() - t0;
      if (Date.now() - t0 > ms) {
        throw new Error(`timed out after ${ms} ms waiting for ${what}\n${JSON.stringify(this.emperor.status(), null, 1)}\n` +
          `--- log (tail) ---\n${this.log.slice(-40).map((l) => JSON.stringify(l)).join('\n')}`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  running(name: string): boolean {
    const r = this.row(name);
    return r?.state === 'running' && r.pid !== null;
  }

  /** Runs action, then waits (bounded) for the emperor's `event` ('deployed', 'reloaded', 'retired') for name; ms taken. */
  async timed(event: string, name: string, action: () => void, ms: number): Promise<number> {
    const t0 = Date.now();
    let timer: NodeJS.Timeout | undefined;
    let listener: ((n: string) => void) | undefined;
    const seen = new Promise<void>((resolve, reject) => {
      listener = (n: string) => { if (n === name) resolve(); };
      this.emperor.on(event, listener);
      timer = setTimeout(() => reject(new Error(`no '${event}' for ${name} within ${ms} ms\n` +
        `${this.log.slice(-40).map((l) => JSON.stringify(l)).join('\n')}`)), ms);
    });
    try {
      action();
      await seen;
      return Date.now() - t0;
    } finally {
      clearTimeout(timer);
      this.emperor.off(event, listener!);
    }
  }

  /** The emperor's cgroup directory on every hierarchy moat uses here. */
  cgroupDirs(): string[] {
    return readLayout().used.map((h) => path.join(h.mountPoint, this.cgroupName));
  }

  /** A vassal's cgroup directory on the hierarchy of `controller` ('unified' for v2's tree). */
  vassalCgroupDir(name: string, controller: 'unified' | 'memory' | 'pids' | 'cpu'): string {
    const layout = readLayout();
    const h = layout[controller]!;
    return path.join(h.mountPoint, this.cgroupName, 'vassals', name);
  }

  /** Every pid in the vassal's cgroups (the emperor's own view of it). */
  vassalPids(name: string): number[] {
    return this.emperor.vassal(name)?.cgroup?.pids() ?? [];
  }

  /** Vassal output lines of `name` the emperor logged (the budget's survivors), with their time. */
  outputLines(name: string): Array<{ time: number; output: string }> {
    return this.log.filter((l) => l.vassal === name && l.msg === 'vassal output')
      .map((l) => ({ time: l.time as number, output: l.output as string }));
  }
}

export class EmperorLab {
  readonly lab = new Lab();
  router!: Router;
  private readonly emperors: TestEmperor[] = [];
  private readonly run = uniqueName('mtn');     // part of every emperor cgroup's name

  /** The router every emperor of the file uses: its tun device in a namespace of the lab's. */
  async startRouter(): Promise<Router> {
    const dir = tempDir(this.lab);
    fs.chmodSync(dir, 0o755);
    const ns = this.lab.netns('mtn');
    const cfg: RouterConfig = {
      device: uniqueName('mtn'), socket: path.join(dir, 'r.sock'), socketMode: 0o666, maxFrame: 8188, queueBytes: 1 << 18,
      offload: false, handoff: false, holdMs: 50, tunQueues: 8, busyPollUs: 100, sndbuf: 0, sndbufBusy: 524288, sndbufBudget: 67108864, conntrack: conntrackDefaults(),
      rules: [], ruleFiles: [], bindings: [], peerLimits: [], useCredentials: false, netns: `/run/netns/${ns}`, warnings: [],
    };
    this.router = new Router(cfg, captureLog().log);
    await this.router.start();
    return this.router;
  }

  /** A started emperor: `options` as in its config file (emperor, vassals-dir-root and a unique
   *  emperor-cgroup are added), an empty vassal directory. */
  async emperor(suffix: string, options: Record<string, string> = {}): Promise<TestEmperor> {
    const tmp = tempDir(this.lab);
    fs.chmodSync(tmp, 0o755);
    const dir = path.join(tmp, 'vassals');
    const runRoot = path.join(tmp, 'run');
    fs.mkdirSync(dir);
    const cgroupName = `${this.run}-${suffix}`;
    const all: Record<string, string> = {
      emperor: dir, 'vassals-dir-root': runRoot, 'emperor-cgroup': cgroupName, 'emperor-freq': '60', ...options,
    };
    const opts: Option[] = Object.entries(all).map(([key, value]) => ({ key, value, source: { file: '<test>' } }));
    const e = new TestEmperor(dir, runRoot, cgroupName, opts, this.router);
    this.emperors.push(e);
    await e.emperor.start();
    return e;
  }

  /** Stops one emperor and checks what it must leave: no cgroup, no vassal directory. Returns what is left. */
  async stopEmperor(e: TestEmperor): Promise<string[]> {
    await e.emperor.stop();
    const left = e.cgroupDirs().filter((d) => fs.existsSync(d));
    if (fs.existsSync(e.runRoot) && fs.readdirSync(e.runRoot).length) left.push(`${e.runRoot}: ${fs.readdirSync(e.runRoot).join(', ')}`);
    return left;
  }

  /** After every test (also failed ones): every emperor stopped, any cgroup left killed and removed. */
  async cleanup(): Promise<string[]> {
    const left: string[] = [];
    for (const e of this.emperors.splice(0)) {
      try { left.push(...await this.stopEmperor(e)); } catch (err) { left.push(`${e.cgroupName}: ${(err as Error).message}`); }
      for (const d of e.cgroupDirs()) removeCgroupTree(d);
    }
    if (this.router?.running) await this.router.stop();
    await this.lab.cleanup();
    return left;
  }
}

/** Last resort after a failed test: kill (cgroup.kill where it exists) and remove, deepest first. */
function removeCgroupTree(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const d of fs.readdirSync(dir, { withFileTypes: true })) if (d.isDirectory()) removeCgroupTree(path.join(dir, d.name));
  try { fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1'); } catch { /* v1, or none */ }
  for (let i = 0; i < 100; i++) {
    try { fs.rmdirSync(dir); return; } catch { Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 20); }
  }
  console.error(`cgroup ${dir} could not be removed`);
}
