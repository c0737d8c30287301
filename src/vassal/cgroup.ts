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
// any vassal code runs. One vassal's cgroups: cgroup-vassal.ts; which
// hierarchies: cgroup-layout.ts; the option values: cgroup-limits.ts. Every
// operation is synchronous file I/O on cgroupfs except the waits in
// killAll/remove, which poll with a bound.
import fs from 'node:fs';
import path from 'node:path';
import { CgroupLayout, explainLayout, Hierarchy, LIMIT_CONTROLLERS, LimitController, readLayout } from './cgroup-layout';
import { CgroupLimits } from './cgroup-limits';
import { mkdir, readMaybe, words, write } from './cgroup-fs';
import { Place, VassalCgroup } from './cgroup-vassal';

export { VassalCgroup } from './cgroup-vassal';
export type { CgroupStats, KillMethod, KillReport, Place } from './cgroup-vassal';

export const VASSALS_DIR = 'vassals';
export const EMPEROR_LEAF = 'emperor';
export const EMPEROR_OOM_SCORE_ADJ = -900;   // the emperor and the router process: the last a host-wide OOM picks
export const VASSAL_OOM_SCORE_ADJ = 500;     // a vassal's runtime sets this for itself before it starts anything (its processes inherit it)

const NAME = /^[A-Za-z0-9_.@:-]+$/;

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
