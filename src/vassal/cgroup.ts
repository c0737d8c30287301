// cgroup.ts: a cgroup per vassal, under its emperor's own cgroup, on every
// hierarchy cgroup-layout.ts chose (v2, v1 controllers, or both). It limits
// the vassal's memory, tasks and CPU, tracks every process the vassal starts
// (setsid'd and double-forked ones included), kills them all when it stops,
// and reads the vassal's usage for status and metrics.
//
// Shape, the same relative path on every hierarchy used:
//   <emperor>/vassals/<vassal>   one cgroup per vassal
//   <emperor>/emperor            (v2, only when needed) the emperor's own processes
// <emperor> is `emperor-cgroup = PATH` below each hierarchy's root, else a
// child (moat-emperor-<pid>) of the emperor's own cgroup, so emperors side by
// side never see each other's vassals. cgroup v2 gives controllers to children
// only from a cgroup without processes of its own (the no-internal-process
// rule): when the emperor's cgroup must enable one and holds only the
// emperor's own processes, they move into <emperor>/emperor; the vassals sit
// one level down, in <emperor>/vassals, whichever way it went.
//
// A vassal's runtime joins its cgroups as its first act (procsFiles: write 0,
// meaning "the writer", into each), so everything it starts is inside before
// any vassal code runs. Swap is left as the host has it: on v1 only
// memory.limit_in_bytes is set, never memory.memsw.*; on v2 memory.swap.max
// keeps its default. Every operation is synchronous file I/O on cgroupfs
// except the waits in killAll/remove, which poll with a bound.
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { CgroupLayout, explainLayout, Hierarchy, LIMIT_CONTROLLERS, LimitController, readLayout } from './cgroup-layout';
import { CgroupLimits, CPU_PERIOD_US, cpuQuotaUs, Limit } from './cgroup-limits';

export const VASSALS_DIR = 'vassals';
export const EMPEROR_LEAF = 'emperor';
export const EMPEROR_OOM_SCORE_ADJ = -900;   // the emperor and the router process: the last a host-wide OOM picks
export const VASSAL_OOM_SCORE_ADJ = 500;     // a vassal's runtime sets this for itself before it starts anything (its processes inherit it)

const NAME = /^[A-Za-z0-9_.@:-]+$/;
const V1_UNLIMITED = 2 ** 62;                // v1 reads "no limit" as PAGE_COUNTER_MAX pages: 9223372036854771712

/** `emperor-cgroup = PATH`: a cgroup below each hierarchy's root, e.g. moat/edge1 -> /moat/edge1. */
export function parseEmperorCgroupPath(value: string): string {
  const parts = value.trim().split('/').filter((p) => p !== '');
  if (parts.length === 0) throw new RangeError(`'${value}' is the root cgroup: name one below it, e.g. moat/edge1`);
  for (const p of parts) {
    if (p === '.' || p === '..') throw new RangeError(`'${value}': '${p}' is not allowed (a path below each hierarchy's root)`);
    if (!NAME.test(p)) throw new RangeError(`'${value}': '${p}' is not a cgroup name (letters, digits, and _ . @ : - only)`);
  }
  return '/' + parts.join('/');
}

/** Writes a cgroup file, naming the file and the value in the error (errno kept in .code). */
function write(file: string, value: string): void {
  try {
    fs.writeFileSync(file, value);
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    err.message = `writing '${value}' to ${file}: ${err.code ?? err.message}`;
    throw err;
  }
}

function readMaybe(file: string): string | undefined {
  try { return fs.readFileSync(file, 'utf8'); } catch { return undefined; }
}

const words = (file: string) => (readMaybe(file) ?? '').split(/\s+/).filter(Boolean);

/** A "key value" line of a flat-keyed file (memory.events, cpu.stat, memory.oom_control). */
function keyed(file: string, key: string): number | undefined {
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(readMaybe(file) ?? '');
  return m ? Number(m[1]) : undefined;
}

function number(file: string): number | undefined {
  const t = readMaybe(file)?.trim();
  return t === undefined || !/^-?\d+$/.test(t) ? undefined : Number(t);
}

function mkdir(dir: string): void {
  try {
    fs.mkdirSync(dir, { recursive: true });
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw new Error(`${dir} is a cgroup file, not a cgroup: choose another name`);
    throw e;
  }
  if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is a cgroup file, not a cgroup: choose another name`);
}

/** dir and its descendant cgroups, deepest first (the order rmdir needs). */
function cgroupTree(dir: string): string[] {
  let subdirs: fs.Dirent[] = [];
  try { subdirs = fs.readdirSync(dir, { withFileTypes: true }).filter((e) => e.isDirectory()); } catch { return []; }
  return [...subdirs.flatMap((e) => cgroupTree(path.join(dir, e.name))), dir];
}

function procs(dir: string): number[] {
  return cgroupTree(dir).flatMap((d) => (readMaybe(path.join(d, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number));
}

/**
 * Sets /proc/PID/oom_score_adj (-1000..1000): lower is picked later by a host-wide OOM kill.
 * Lowering it below what the process inherited needs CAP_SYS_RESOURCE (a container's root may
 * lack it: the error says so); raising it never does, and a write with CAP_SYS_RESOURCE also
 * becomes the floor the process and its children cannot go below without it.
 */
export function setOomScoreAdj(pid: number | 'self', value: number): void {
  if (!Number.isInteger(value) || value < -1000 || value > 1000) throw new RangeError(`oom_score_adj ${value}: an integer from -1000 to 1000`);
  try {
    write(`/proc/${pid}/oom_score_adj`, String(value));
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    if (err.code === 'EACCES') err.message += ' (lowering oom_score_adj needs CAP_SYS_RESOURCE)';
    throw err;
  }
}

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

interface Place { h: Hierarchy; dir: string }

export interface EmperorCgroupOptions {
  layout?: CgroupLayout;          // default: readLayout()
  path?: string;                  // emperor-cgroup: below each hierarchy's root
  name?: string;                  // else this child of the emperor's own cgroup (default moat-emperor-<pid>)
  movable?: number[];             // v2: the pids that may move into <emperor>/emperor (default: this process)
  v2Controllers?: string[];       // v2: the controllers handed down to the vassals (default: those of memory,
                                  // pids, cpu the layout puts on v2; tests use hugetlb, the one this machine's v2 has)
}

/** The emperor's cgroup on every hierarchy used, and the factory of its vassals' cgroups. */
export class EmperorCgroup {
  /** Limits that cannot be applied here, and why (a vassal asking for one gets a warning). */
  readonly unavailable: Partial<Record<LimitController, string>> = {};
  readonly notes: string[] = [];
  private moved?: { pids: number[]; from: string };
  private readonly enabled: Array<{ dir: string; c: string }> = [];   // subtree_control entries moat wrote, in order

  private constructor(readonly layout: CgroupLayout, readonly places: Place[]) {}

  static create(opts: EmperorCgroupOptions = {}): EmperorCgroup {
    const layout = opts.layout ?? readLayout();
    const fixed = opts.path === undefined ? undefined : parseEmperorCgroupPath(opts.path);
    const name = opts.name ?? `moat-emperor-${process.pid}`;
    if (!fixed && !NAME.test(name)) throw new RangeError(`'${name}' is not a cgroup name`);
    const rel = (h: Hierarchy) => fixed ?? path.posix.join(h.self, name);
    const places = layout.used.map((h) => ({ h, dir: path.join(h.mountPoint, rel(h)) }));
    const e = new EmperorCgroup(layout, places);
    for (const c of LIMIT_CONTROLLERS) {
      if (!layout[c]) e.unavailable[c] = layout.notes.find((n) => n.startsWith(`${c}:`)) ?? `${c}: no hierarchy has it`;
    }
    for (const p of places) mkdir(path.join(p.dir, VASSALS_DIR));
    const unified = places.find((p) => p.h === layout.unified);
    if (unified) {
      const wanted = opts.v2Controllers ?? LIMIT_CONTROLLERS.filter((c) => layout[c] === unified.h);
      e.enableV2(unified, wanted, fixed ? '/' : unified.h.self, opts.movable ?? [process.pid]);
    }
    return e;
  }

  /**
   * v2: every cgroup from `start` (the emperor's own, or the root for emperor-cgroup) down to
   * <emperor>/vassals must list a controller in cgroup.subtree_control for the vassals to get it.
   */
  private enableV2(place: Place, wanted: string[], start: string, movable: number[]): void {
    if (wanted.length === 0) return;
    const mount = place.h.mountPoint;
    const target = path.join(place.dir, VASSALS_DIR);
    const top = path.join(mount, start).replace(/\/$/, '');
    const chain: string[] = [];
    for (let d = target; ; d = path.dirname(d)) {
      chain.unshift(d);
      if (d === top || d === mount || d === '/') break;
    }
    for (const c of wanted) {
      for (const dir of chain) {
        if (words(path.join(dir, 'cgroup.subtree_control')).includes(c)) continue;
        if (!words(path.join(dir, 'cgroup.controllers')).includes(c)) {
          this.unavailable[c as LimitController] = `${c}: ${dir} does not offer it (not in its cgroup.controllers: not delegated to this cgroup?)`;
          break;
        }
        try {
          this.enable(dir, c, place.dir, movable);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          this.unavailable[c as LimitController] = `${c}: ${(e as Error).message}` + (code === 'EBUSY'
            ? ` (${dir} holds processes other than the emperor's, and cgroup v2 gives controllers to children only from a cgroup without processes: run the emperor in a cgroup of its own, e.g. systemd Delegate=yes, or set emperor-cgroup)` : '');
          break;
        }
      }
    }
  }

  private enable(dir: string, c: string, emperorDir: string, movable: number[]): void {
    const file = path.join(dir, 'cgroup.subtree_control');
    try {
      write(file, `+${c}`);
      this.enabled.push({ dir, c });
      return;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EBUSY' || this.moved) throw e;
      const inside = (readMaybe(path.join(dir, 'cgroup.procs')) ?? '').split('\n').filter(Boolean).map(Number);
      if (inside.length === 0 || !inside.every((p) => movable.includes(p))) throw e;
      // Only our own processes block it: they move into <emperor>/emperor, and the write is tried again.
      const leaf = path.join(emperorDir, EMPEROR_LEAF);
      mkdir(leaf);
      for (const pid of inside) write(path.join(leaf, 'cgroup.procs'), String(pid));
      this.moved = { pids: inside, from: dir };
      this.notes.push(`moved the emperor's processes ${inside.join(', ')} from ${dir} to ${leaf} (cgroup v2's no-internal-process rule)`);
    }
    write(file, `+${c}`);
    this.enabled.push({ dir, c });
  }

  /** One line for logs: the layout, and any limit that cannot be applied. */
  explain(): string {
    const missing = Object.values(this.unavailable);
    return explainLayout(this.layout) + `; emperor cgroup ${this.places.map((p) => p.dir).join(', ')}` + (missing.length ? `; ${missing.join('; ')}` : '');
  }

  private vassalPlaces(name: string): Place[] {
    if (!NAME.test(name) || name === '.' || name === '..') throw new RangeError(`vassal name '${name}' cannot name a cgroup (letters, digits, and _ . @ : - only)`);
    return this.places.map((p) => ({ h: p.h, dir: path.join(p.dir, VASSALS_DIR, name) }));
  }

  /** Vassal cgroups that exist under this emperor on any hierarchy (left over ones included). */
  vassalNames(): string[] {
    const names = new Set<string>();
    for (const p of this.places) {
      try {
        for (const e of fs.readdirSync(path.join(p.dir, VASSALS_DIR), { withFileTypes: true })) if (e.isDirectory()) names.add(e.name);
      } catch { /* gone */ }
    }
    return [...names].sort();
  }

  /** An existing vassal cgroup (e.g. left over by an emperor that died), or undefined. */
  existingVassal(name: string): VassalCgroup | undefined {
    const places = this.vassalPlaces(name).filter((p) => fs.existsSync(p.dir));
    return places.length ? new VassalCgroup(name, this.layout, places, this.unavailable) : undefined;
  }

  /** Makes a vassal's cgroups and sets its limits. A cgroup of that name left over is emptied and made afresh. */
  async createVassal(name: string, limits: CgroupLimits = {}): Promise<{ cgroup: VassalCgroup; warnings: string[] }> {
    const warnings: string[] = [];
    const stale = this.existingVassal(name);
    if (stale) {
      const r = await stale.destroy();
      warnings.push(`vassal cgroup ${name} was left over: ${r.signalled} process(es) killed by ${r.method}, removed`);
    }
    const places = this.vassalPlaces(name);
    for (const p of places) mkdir(p.dir);
    const cgroup = new VassalCgroup(name, this.layout, places, this.unavailable);
    warnings.push(...cgroup.setLimits(limits));
    return { cgroup, warnings };
  }

  /** Kills every vassal under this emperor and removes the emperor's cgroups (the emperor's own leaf
   *  only when its processes can move back). Returns what could not be removed. */
  async destroy(timeoutMs = 5000): Promise<string[]> {
    const left: string[] = [];
    for (const name of this.vassalNames()) {
      const v = this.existingVassal(name);
      const r = await v?.destroy(timeoutMs);
      if (r && !r.empty) left.push(`vassal ${name}: processes left after ${timeoutMs} ms`);
    }
    const rm = (dir: string) => {
      try { fs.rmdirSync(dir); } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        if (code !== 'ENOENT') left.push(`${dir}: ${code}`);
      }
    };
    if (this.moved) {
      // Back where they came from: that cgroup must give up the controllers moat enabled in it
      // (children first), since cgroup v2 lets no process into a cgroup that hands controllers down.
      const from = this.moved.from;
      try {
        for (const p of this.places) rm(path.join(p.dir, VASSALS_DIR));
        for (const { dir, c } of [...this.enabled].reverse()) {
          if ((dir === from || dir.startsWith(from + '/')) && fs.existsSync(dir)) write(path.join(dir, 'cgroup.subtree_control'), `-${c}`);
        }
        for (const pid of this.moved.pids) if (fs.existsSync(`/proc/${pid}`)) write(path.join(from, 'cgroup.procs'), String(pid));
        this.moved = undefined;
      } catch (e) {
        left.push(`the emperor's processes stay in ${EMPEROR_LEAF}: ${(e as Error).message}`);
      }
    }
    for (const p of this.places) {
      for (const dir of [path.join(p.dir, VASSALS_DIR), path.join(p.dir, EMPEROR_LEAF), p.dir]) rm(dir);
    }
    return left;
  }
}

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
