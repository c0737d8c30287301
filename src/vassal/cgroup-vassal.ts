// cgroup-vassal.ts: one vassal's cgroups, one per hierarchy used (made by
// EmperorCgroup in cgroup.ts): its limits, the cgroup.procs files its runtime
// joins, the kill that ends its whole process tree (cgroup.kill, else a
// freezer, else checked SIGKILL rounds) and the removal after it, and its
// usage for status and metrics. Swap is left as the host has it: on v1 only
// memory.limit_in_bytes is written, never memory.memsw.*; on v2
// memory.swap.max keeps its default.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CgroupLayout, Hierarchy, LimitController } from './cgroup-layout';
import { CgroupLimits, CPU_PERIOD_US, cpuQuotaUs, Limit } from './cgroup-limits';
import { cgroupTree, keyed, number, procs, readMaybe, write } from './cgroup-fs';

const V1_UNLIMITED = 2 ** 62;                // v1 reads "no limit" as PAGE_COUNTER_MAX pages: 9223372036854771712

export interface CgroupStats {
  memoryBytes?: number;           // v2 memory.current / v1 memory.usage_in_bytes
  memoryMaxBytes?: Limit;
  pids?: number;                  // tasks (processes and threads) now
  pidsMax?: Limit;
  cpuSeconds?: number;            // CPU time used since the cgroup was made (v2 cpu.stat usage_usec / v1 cpuacct.usage)
  cpuMaxCores?: Limit;
  oomKills?: number;              // processes the OOM killer killed inside the vassal
}

export type KillMethod = 'cgroup.kill' | 'cgroup.freeze' | 'freezer' | 'signal';

export interface KillReport {
  method: KillMethod;
  signalled: number;              // SIGKILLs moat sent itself (with cgroup.kill: only to a process found on another hierarchy alone)
  empty: boolean;                 // every cgroup.procs was empty before the timeout
  ms: number;
}

/** A cgroup directory and the hierarchy it is on. */
export interface Place { h: Hierarchy; dir: string }

/** One vassal's cgroups: limits, membership, kill, usage. */
export class VassalCgroup {
  /** The cgroup.procs files a process writes its pid (or 0, itself) into to join the vassal, unified first. */
  readonly procsFiles: string[];

  constructor(readonly name: string, readonly layout: CgroupLayout, readonly places: Place[],
              private readonly unavailable: Partial<Record<LimitController, string>> = {}) {
    this.procsFiles = places.map((p) => path.join(p.dir, 'cgroup.procs'));
  }

  private dirOf(h: Hierarchy | undefined): string | undefined {
    return h && this.places.find((p) => p.h === h)?.dir;
  }

  /** Writes every limit (an absent one as no limit, so a reload can lift one). Returns warnings for
   *  limits asked for that this machine cannot apply. */
  setLimits(l: CgroupLimits): string[] {
    const warnings: string[] = [];
    const asked = (v: Limit | undefined) => v !== undefined && v !== 'max';
    const dir = (c: LimitController, v: Limit | undefined): string | undefined => {
      const d = this.unavailable[c] ? undefined : this.dirOf(this.layout[c]);
      if (!d && asked(v)) warnings.push(`vassal ${this.name}: vassal-${c}-max not applied: ${this.unavailable[c] ?? `${c}: no cgroup`}`);
      return d;
    };
    const mem = dir('memory', l.memoryMax);
    if (mem) {
      if (this.layout.memory!.version === 2) write(path.join(mem, 'memory.max'), String(l.memoryMax ?? 'max'));
      else write(path.join(mem, 'memory.limit_in_bytes'), asked(l.memoryMax) ? String(l.memoryMax) : '-1');
    }
    const pids = dir('pids', l.pidsMax);
    if (pids) write(path.join(pids, 'pids.max'), String(l.pidsMax ?? 'max'));
    const cpu = dir('cpu', l.cpuMax);
    if (cpu) {
      const quota = asked(l.cpuMax) ? cpuQuotaUs(l.cpuMax as number) : undefined;
      if (this.layout.cpu!.version === 2) {
        write(path.join(cpu, 'cpu.max'), `${quota ?? 'max'} ${CPU_PERIOD_US}`);
      } else {
        write(path.join(cpu, 'cpu.cfs_period_us'), String(CPU_PERIOD_US));
        write(path.join(cpu, 'cpu.cfs_quota_us'), String(quota ?? -1));
      }
    }
    return warnings;
  }

  /** Moves a process (and its threads) into every one of the vassal's cgroups. */
  join(pid: number): void {
    for (const f of this.procsFiles) write(f, String(pid));
  }

  /** Every pid in the vassal's cgroups (and cgroups a tenant made below them), on any hierarchy. */
  pids(): number[] {
    return [...new Set(this.places.flatMap((p) => procs(p.dir)))].sort((a, b) => a - b);
  }

  /** The best way this machine offers to kill the vassal's whole tree. */
  killMethod(): KillMethod {
    const unified = this.dirOf(this.layout.unified) !== undefined;
    return unified && this.layout.kill ? 'cgroup.kill' : unified && this.layout.freeze === 'v2' ? 'cgroup.freeze'
      : this.layout.freeze === 'v1' && this.dirOf(this.layout.freezer) ? 'freezer' : 'signal';
  }

  /**
   * Kills every process of the vassal and waits (bounded) until every cgroup.procs is empty.
   * With a freezer, pids are read and signalled while frozen, so none can exit and be reused in
   * between; with the signal method each pid is checked to still be in the vassal just before.
   * Never signals a pid read from anywhere else. `method` forces a fallback (tests).
   */
  async killAll(opts: { timeoutMs?: number; method?: KillMethod } = {}): Promise<KillReport> {
    const start = Date.now();
    const deadline = start + (opts.timeoutMs ?? 5000);
    const method = opts.method ?? this.killMethod();
    const report: KillReport = { method, signalled: 0, empty: false, ms: 0 };
    const unified = this.dirOf(this.layout.unified);
    const freezer = this.dirOf(this.layout.freezer);
    if ((method === 'cgroup.kill' || method === 'cgroup.freeze') && !unified) throw new Error(`${method}: no unified cgroup`);
    if (method === 'freezer' && !freezer) throw new Error('freezer: no v1 freezer cgroup');

    // One round: the method's own (the kernel's kill, or a frozen kill) over the hierarchy it covers,
    // then SIGKILL, checked, to what is only on another hierarchy (e.g. a process a root tenant moved).
    const covered = method === 'freezer' ? freezer : method === 'signal' ? undefined : unified;
    const round = async () => {
      if (method === 'cgroup.kill') write(path.join(unified!, 'cgroup.kill'), '1');
      else if (method === 'cgroup.freeze') {
        report.signalled += await this.frozenKill(unified!, 'cgroup.freeze', '1', '0',
          () => /^frozen 1$/m.test(readMaybe(path.join(unified!, 'cgroup.events')) ?? ''), deadline);
      } else if (method === 'freezer') {
        report.signalled += await this.frozenKill(freezer!, 'freezer.state', 'FROZEN', 'THAWED',
          () => readMaybe(path.join(freezer!, 'freezer.state'))?.trim() === 'FROZEN', deadline);
      }
    };
    await round();
    // Rounds until every cgroup.procs is empty: right away with the signal method; else after a
    // grace, since a killed process may take a moment to exit (a process forked while a freeze
    // was settling is caught by the next round).
    let last = Date.now();
    for (;;) {
      const left = this.places.flatMap((p) => procs(p.dir).map((pid) => ({ pid, p })));
      if (left.length === 0) { report.empty = true; break; }
      if (Date.now() >= deadline) break;
      if (method === 'signal' || Date.now() - last >= 100) {
        last = Date.now();
        const inside = new Set(covered ? procs(covered) : []);
        if (inside.size) await round();
        for (const { pid, p } of left) if (!inside.has(pid) && this.signalIfInside(pid, p)) report.signalled++;
      }
      await sleep(5);
    }
    report.ms = Date.now() - start;
    return report;
  }

  private async frozenKill(dir: string, file: string, freeze: string, thaw: string, frozen: () => boolean, deadline: number): Promise<number> {
    write(path.join(dir, file), freeze);
    try {
      const settle = Math.min(deadline, Date.now() + 1000);   // a task in D state may never freeze
      while (!frozen() && Date.now() < settle) await sleep(2);
      let n = 0;
      for (const pid of procs(dir)) {
        try { process.kill(pid, 'SIGKILL'); n++; } catch { /* already gone */ }
      }
      return n;
    } finally {
      write(path.join(dir, file), thaw);    // the SIGKILLs take effect once thawed
    }
  }

  /** SIGKILLs pid if /proc/pid/cgroup still places it in this vassal's cgroup on p's hierarchy. */
  private signalIfInside(pid: number, p: Place): boolean {
    const rel = p.dir.slice(p.h.mountPoint.length);
    const lines = (readMaybe(`/proc/${pid}/cgroup`) ?? '').split('\n');
    const mine = lines.some((l) => {
      const m = /^(\d+):([^:]*):(.*)$/.exec(l);
      if (!m) return false;
      const sameHierarchy = p.h.version === 2 ? m[1] === '0' && m[2] === '' : m[2].split(',').includes(p.h.controllers[0]);
      return sameHierarchy && (m[3].endsWith(rel) || m[3].includes(rel + '/'));
    });
    if (!mine) return false;
    try { process.kill(pid, 'SIGKILL'); return true; } catch { return false; }
  }

  /** Removes the vassal's cgroups (deepest first), waiting (bounded) for the last exits. */
  async remove(timeoutMs = 2000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (const p of this.places) {
      for (const dir of cgroupTree(p.dir)) {
        for (;;) {
          try { fs.rmdirSync(dir); break; } catch (e) {
            const code = (e as NodeJS.ErrnoException).code;
            if (code === 'ENOENT') break;
            if (code !== 'EBUSY' || Date.now() >= deadline) throw new Error(`removing ${dir}: ${code}`);
            await sleep(5);
          }
        }
      }
    }
  }

  /** killAll, then remove: what a vassal's stop ends with. */
  async destroy(timeoutMs = 5000): Promise<KillReport> {
    const r = await this.killAll({ timeoutMs });
    if (r.empty) await this.remove();
    return r;
  }

  /** Usage and limits, for status, the stats document and metrics (absent: not measured here). */
  stats(): CgroupStats {
    const s: CgroupStats = {};
    const mem = this.dirOf(this.layout.memory);
    const unlimited = (n: number | undefined) => n === undefined ? undefined : n >= V1_UNLIMITED || n < 0 ? 'max' as const : n;
    const limit = (file: string): Limit | undefined => {
      const t = readMaybe(file)?.trim();
      return t === 'max' ? 'max' : t && /^\d+$/.test(t) ? Number(t) : undefined;
    };
    if (mem && this.layout.memory!.version === 2) {
      s.memoryBytes = number(path.join(mem, 'memory.current'));
      s.memoryMaxBytes = limit(path.join(mem, 'memory.max'));
      s.oomKills = keyed(path.join(mem, 'memory.events'), 'oom_kill');
    } else if (mem) {
      s.memoryBytes = number(path.join(mem, 'memory.usage_in_bytes'));
      s.memoryMaxBytes = unlimited(number(path.join(mem, 'memory.limit_in_bytes')));
      s.oomKills = keyed(path.join(mem, 'memory.oom_control'), 'oom_kill');
    }
    const pids = this.dirOf(this.layout.pids);
    if (pids) {
      s.pids = number(path.join(pids, 'pids.current'));
      s.pidsMax = limit(path.join(pids, 'pids.max'));
    }
    const unified = this.dirOf(this.layout.unified);
    const acct = this.dirOf(this.layout.cpuacct) ?? (this.layout.cpu?.controllers.includes('cpuacct') ? this.dirOf(this.layout.cpu) : undefined);
    const usec = unified ? keyed(path.join(unified, 'cpu.stat'), 'usage_usec') : undefined;
    const nsec = usec === undefined && acct ? number(path.join(acct, 'cpuacct.usage')) : undefined;
    s.cpuSeconds = usec !== undefined ? usec / 1e6 : nsec !== undefined ? nsec / 1e9 : undefined;
    const cpu = this.dirOf(this.layout.cpu);
    if (cpu && this.layout.cpu!.version === 2) {
      const [q, p] = (readMaybe(path.join(cpu, 'cpu.max')) ?? '').trim().split(' ');
      s.cpuMaxCores = q === 'max' ? 'max' : q && p ? Number(q) / Number(p) : undefined;
    } else if (cpu) {
      const q = number(path.join(cpu, 'cpu.cfs_quota_us'));
      const p = number(path.join(cpu, 'cpu.cfs_period_us'));
      s.cpuMaxCores = q === undefined || p === undefined ? undefined : q < 0 ? 'max' : q / p;
    }
    for (const k of Object.keys(s) as Array<keyof CgroupStats>) if (s[k] === undefined) delete s[k];
    return s;
  }
}
