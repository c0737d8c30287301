// cgroup-layout.ts: which cgroup hierarchies this machine has and which of them
// moat uses for its vassals. A machine mounts either the unified (v2) hierarchy
// alone (current distributions), or v1 hierarchies, one per controller or
// group of controllers, often beside a unified hierarchy with no controllers
// ("hybrid", as the machines moat's tests run on). The decision, per limit:
// a controller bound to a v1 hierarchy is used there (the kernel binds each
// controller to one hierarchy only); else it is used on v2 when this
// process's cgroup lists it in cgroup.controllers; else that limit is not
// available. A unified hierarchy, when mounted, is always used as well: it
// tracks the vassal's process tree, and its cgroup.kill (Linux 5.14) ends
// that tree in one write, with or without controllers. Without cgroup.kill
// a vassal is stopped through a freezer (v2 cgroup.freeze, else the v1 freezer
// hierarchy), and without either by SIGKILL rounds over cgroup.procs.
//
// detectLayout() is pure (texts in, a plain object out) so that the layouts of
// other machines can be tested; readLayout() feeds it this process's files.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export type LimitController = 'memory' | 'pids' | 'cpu';
export const LIMIT_CONTROLLERS: readonly LimitController[] = ['memory', 'pids', 'cpu'];

/** One mounted hierarchy and where this process sits in it. */
export interface Hierarchy {
  version: 1 | 2;
  mountPoint: string;       // e.g. /sys/fs/cgroup/memory or /sys/fs/cgroup
  controllers: string[];    // v1: the controllers bound to it; v2: those this process's cgroup offers (cgroup.controllers)
  self: string;             // this process's cgroup, relative to mountPoint ('/' = the mount's root)
}

export interface CgroupLayout {
  unified?: Hierarchy;      // the v2 hierarchy, when mounted and this process's cgroup is inside the mount
  kill: boolean;            // the unified hierarchy has cgroup.kill
  freeze: 'v2' | 'v1' | undefined;  // how a vassal is frozen before its pids are signalled, when there is no cgroup.kill
  memory?: Hierarchy;       // where each limit's controller is used (undefined: that limit is unavailable)
  pids?: Hierarchy;
  cpu?: Hierarchy;
  cpuacct?: Hierarchy;      // v1 cpu usage, read only when there is no unified hierarchy (v2 cpu.stat always has usage_usec)
  freezer?: Hierarchy;      // v1 freezer, used only when the unified hierarchy cannot kill
  used: Hierarchy[];        // every hierarchy a vassal gets a cgroup in (unified first), each once
  notes: string[];          // why something is not used
}

export interface LayoutInput {
  mountinfo: string;              // /proc/self/mountinfo
  selfCgroup: string;             // /proc/self/cgroup
  unifiedControllers?: string;    // cgroup.controllers of this process's v2 cgroup
  unifiedKill?: boolean;          // cgroup.kill exists (non-root cgroups, Linux >= 5.14)
  unifiedFreeze?: boolean;        // cgroup.freeze exists (non-root cgroups, Linux >= 5.2)
}

interface Mount { root: string; mountPoint: string; fstype: string; superOptions: string[] }

/** mountinfo escapes blanks, tabs, newlines and backslashes as \ooo. */
const unescape = (s: string) => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** The cgroup and cgroup2 mounts of a mountinfo text, in order. */
export function cgroupMounts(mountinfo: string): Mount[] {
  const out: Mount[] = [];
  for (const line of mountinfo.split('\n')) {
    const f = line.split(' ');
    const dash = f.indexOf('-');
    if (dash < 6 || f.length < dash + 4) continue;
    const fstype = f[dash + 1];
    if (fstype !== 'cgroup' && fstype !== 'cgroup2') continue;
    out.push({ root: unescape(f[3]), mountPoint: unescape(f[4]), fstype, superOptions: f[dash + 3].split(',') });
  }
  return out;
}

/** /proc/self/cgroup lines: hierarchy id, controllers (v1; empty for v2), path. */
export function parseSelfCgroup(text: string): Array<{ id: number; controllers: string[]; path: string }> {
  const out = [];
  for (const line of text.split('\n')) {
    const m = /^(\d+):([^:]*):(.*)$/.exec(line);
    if (m) out.push({ id: Number(m[1]), controllers: m[2] ? m[2].split(',') : [], path: m[3] });
  }
  return out;
}

/** The process's cgroup relative to a mount of its hierarchy, or undefined when that mount does not contain it. */
function relativeTo(mount: Mount, cgroupPath: string): string | undefined {
  if (mount.root === '/') return cgroupPath;
  if (cgroupPath === mount.root) return '/';
  return cgroupPath.startsWith(mount.root + '/') ? cgroupPath.slice(mount.root.length) : undefined;
}

export function detectLayout(input: LayoutInput): CgroupLayout {
  const mounts = cgroupMounts(input.mountinfo);
  const notes: string[] = [];
  const layout: CgroupLayout = { kill: false, freeze: undefined, used: [], notes };
  const v1ByController = new Map<string, Hierarchy>();

  for (const entry of parseSelfCgroup(input.selfCgroup)) {
    const v2 = entry.id === 0 && entry.controllers.length === 0;
    const candidates = mounts.filter((m) => v2 ? m.fstype === 'cgroup2'
      : m.fstype === 'cgroup' && entry.controllers.every((c) => m.superOptions.includes(c)));
    if (candidates.length === 0) continue;      // a hierarchy not mounted here (e.g. name=systemd elsewhere)
    const mount = candidates.find((m) => relativeTo(m, entry.path) !== undefined);
    const what = v2 ? 'the unified hierarchy' : `the v1 ${entry.controllers.join(',')} hierarchy`;
    if (!mount) {
      notes.push(`${what}: this process's cgroup ${entry.path} is outside every mount of it (${candidates.map((m) => m.mountPoint).join(', ')})`);
      continue;
    }
    const self = relativeTo(mount, entry.path)!;
    if (v2) {
      const controllers = (input.unifiedControllers ?? '').split(/\s+/).filter(Boolean);
      layout.unified = { version: 2, mountPoint: mount.mountPoint, controllers, self };
    } else {
      const h: Hierarchy = { version: 1, mountPoint: mount.mountPoint, controllers: entry.controllers, self };
      for (const c of entry.controllers) v1ByController.set(c, h);
    }
  }

  const unified = layout.unified;
  for (const c of LIMIT_CONTROLLERS) {
    const v1 = v1ByController.get(c);
    if (v1) layout[c] = v1;
    else if (unified?.controllers.includes(c)) layout[c] = unified;
    else notes.push(`${c}: on no v1 hierarchy${unified ? ` and not in the unified cgroup.controllers of ${unified.self} (not delegated?)` : ', and no unified hierarchy'}: no ${c} limit`);
  }
  if (unified) {
    layout.kill = input.unifiedKill === true;
    if (!layout.kill && input.unifiedFreeze) layout.freeze = 'v2';
  }
  if (!layout.kill && layout.freeze === undefined && v1ByController.has('freezer')) {
    layout.freezer = v1ByController.get('freezer');
    layout.freeze = 'v1';
  }
  if (!unified && v1ByController.has('cpuacct')) layout.cpuacct = v1ByController.get('cpuacct');

  for (const h of [unified, layout.freezer, layout.memory, layout.pids, layout.cpu, layout.cpuacct]) {
    if (h && !layout.used.some((u) => u.mountPoint === h.mountPoint)) layout.used.push(h);
  }
  return layout;
}

/** One line that says which hierarchies moat uses and how it stops a vassal (README, logs). */
export function explainLayout(layout: CgroupLayout): string {
  if (layout.used.length === 0) return 'cgroups: none usable: no vassal limits; stop signals the runtime\'s process groups only';
  const where = (h: Hierarchy) => h.version === 2 ? `v2 ${h.mountPoint}` : `v1 ${h.mountPoint}`;
  const limits = LIMIT_CONTROLLERS.map((c) => layout[c] ? `${c} on ${where(layout[c]!)}` : `no ${c} limit`);
  const unified = layout.unified;
  const v2Only = unified && LIMIT_CONTROLLERS.every((c) => layout[c] === unified);
  const kind = v2Only ? 'cgroup v2' : unified ? 'hybrid' : 'cgroup v1';
  const tree = unified && !v2Only ? `; the process tree and cgroup.kill on v2 ${unified.mountPoint} (controllers there: ${unified.controllers.join(' ') || 'none'})` : '';
  const stop = layout.kill ? 'cgroup.kill' : layout.freeze === 'v2' ? 'cgroup.freeze, SIGKILL to each pid, thaw'
    : layout.freeze === 'v1' ? `v1 freezer (${layout.freezer!.mountPoint}), SIGKILL to each pid, thaw` : 'SIGKILL rounds over cgroup.procs';
  return `cgroups (${kind}): ${limits.join(', ')}${tree}; stop: ${stop}`;
}

/** Linux release >= major.minor (os.release() reads like 6.1.0-13-amd64). */
function kernelAtLeast(major: number, minor: number, release = os.release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  return !!m && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
}

/** This process's cgroup files, as detectLayout() reads them. */
export function readLayoutInput(proc = '/proc/self'): LayoutInput {
  const input: LayoutInput = {
    mountinfo: fs.readFileSync(path.join(proc, 'mountinfo'), 'utf8'),
    selfCgroup: fs.readFileSync(path.join(proc, 'cgroup'), 'utf8'),
  };
  const unified = detectLayout(input).unified;
  if (unified) {
    const dir = path.join(unified.mountPoint, unified.self);
    try { input.unifiedControllers = fs.readFileSync(path.join(dir, 'cgroup.controllers'), 'utf8'); } catch { /* none */ }
    // The root cgroup has neither file; there the kernel's version tells.
    const root = unified.self === '/';
    input.unifiedKill = root ? kernelAtLeast(5, 14) : fs.existsSync(path.join(dir, 'cgroup.kill'));
    input.unifiedFreeze = root ? kernelAtLeast(5, 2) : fs.existsSync(path.join(dir, 'cgroup.freeze'));
  }
  return input;
}

/** This process's layout. */
export function readLayout(proc = '/proc/self'): CgroupLayout {
  return detectLayout(readLayoutInput(proc));
}
