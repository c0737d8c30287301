// cgroup-limits.ts: the values of a vassal's resource limits, as written in
// config files, and uWSGI's `cgroup` / `cgroup-opt` read where they mean the
// same. Pure functions: text in, numbers (or 'max', no limit) out, or an error
// that says what was expected. The emperor-wide defaults
// (emperor-vassal-memory-max, -pids-max, -cpu-max) use the same parsers; a
// vassal file's own value (max included) replaces the default.
//
// Units, as uWSGI passes them to the kernel and systemd reads MemoryMax=:
// memory in bytes with K/M/G/T suffixes, 1024-based; pids as a count of tasks
// (processes and threads); cpu in cores (0.5 = half of one CPU per 100 ms
// period), at least 0.01 (the kernel's smallest quota, 1 ms per 100 ms) and at
// most the machine's CPU count, as Docker's --cpus checks it: a vassal file
// asking for more CPUs than the machine has is refused, not silently capped.
import os from 'node:os';
import { ConfigError, Option, OptionList } from '../config/types';

export type Limit = number | 'max';

export interface CgroupLimits {
  memoryMax?: Limit;    // bytes
  pidsMax?: Limit;      // tasks
  cpuMax?: Limit;       // cores
}

export const MEMORY_MIN = 1 << 20;          // below 1M even the runtime cannot start; "512" is a missing suffix
export const PIDS_LIMIT = 4194304;          // the kernel's PID_MAX_LIMIT
export const CPU_PERIOD_US = 100_000;       // the period moat writes (the kernel's default)
export const CPU_MIN_QUOTA_US = 1000;       // the kernel's smallest cfs quota

const UNITS: Record<string, number> = { k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** Bytes in a short form for messages: 536870912 -> 512M. */
export function formatBytes(n: number): string {
  for (const [u, f] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (n >= f && n % f === 0) return `${n / f}${u}`;
  }
  return String(n);
}

/** vassal-memory-max: bytes, or a number with K, M, G or T (1024-based; 1.5G allowed), or max. */
export function parseMemoryMax(value: string): Limit {
  const v = value.trim();
  if (/^(max|infinity)$/i.test(v)) return 'max';
  const m = /^(\d+(?:\.\d+)?)([kmgt])?$/i.exec(v);
  if (!m) throw new RangeError(`'${value}' is not a size: write bytes, or a number with K, M, G or T (1024-based), e.g. 512M, or max`);
  if (!m[2] && m[1].includes('.')) throw new RangeError(`'${value}' is a fraction of a byte: add a unit (K, M, G, T)`);
  const bytes = Math.floor(Number(m[1]) * (m[2] ? UNITS[m[2].toLowerCase()] : 1));
  if (!Number.isSafeInteger(bytes)) throw new RangeError(`'${value}' is too large (write max for no limit)`);
  if (bytes < MEMORY_MIN) {
    const hint = m[2] ? '' : ` (did you mean ${m[1]}M?)`;
    throw new RangeError(`'${value}' is ${bytes} bytes, below the smallest limit moat sets, 1M${hint}`);
  }
  return bytes;
}

/** vassal-pids-max: the most tasks (processes and threads) the vassal may hold at once, >= 1, or max. */
export function parsePidsMax(value: string): Limit {
  const v = value.trim();
  if (/^max$/i.test(v)) return 'max';
  if (!/^\d+$/.test(v)) throw new RangeError(`'${value}' is not a whole number of tasks (e.g. 64, or max)`);
  const n = Number(v);
  if (n < 1) throw new RangeError(`'${value}': at least 1 (the vassal's runtime is one)`);
  if (n > PIDS_LIMIT) throw new RangeError(`'${value}' is above the kernel's limit of ${PIDS_LIMIT} (write max for no limit)`);
  return n;
}

/** vassal-cpu-max: cores, a decimal > 0 (0.5 = half a CPU), 0.01 .. the machine's CPU count, or max. */
export function parseCpuMax(value: string, cpus = os.availableParallelism()): Limit {
  const v = value.trim();
  if (/^max$/i.test(v)) return 'max';
  if (!/^\d*\.?\d+$/.test(v)) throw new RangeError(`'${value}' is not a number of cores: write e.g. 0.5 (half a CPU), 2, or max`);
  return checkCores(Number(v), `'${value}'`, cpus);
}

function checkCores(cores: number, what: string, cpus: number): number {
  if (!(cores > 0)) throw new RangeError(`${what}: more than 0 cores (e.g. 0.5 for half a CPU; max for no limit)`);
  if (Math.round(cores * CPU_PERIOD_US) < CPU_MIN_QUOTA_US) {
    throw new RangeError(`${what} cores is below the kernel's smallest quota, 0.01 (1 ms per 100 ms)`);
  }
  if (cores > cpus) throw new RangeError(`${what} cores is more than this machine's ${cpus} CPUs (write max for no limit)`);
  return cores;
}

/** cfs quota in µs per CPU_PERIOD_US for a number of cores. */
export function cpuQuotaUs(cores: number): number {
  return Math.max(CPU_MIN_QUOTA_US, Math.round(cores * CPU_PERIOD_US));
}

// uWSGI's cgroup-opt keys with no moat counterpart, and why.
const REFUSED: Array<[RegExp, string]> = [
  [/^memory\.(memsw\.limit_in_bytes|swap\.max)$/, 'moat leaves swap as the host has it (docs/cgroups.md)'],
  [/^memory\.(soft_limit_in_bytes|high|low|min)$/, 'moat sets one hard memory limit: vassal-memory-max'],
  [/^memory\.oom_control$/, 'moat keeps the OOM killer on: an out-of-memory vassal is killed inside its own cgroup'],
  [/^cpu\.(shares|weight|weight\.nice)$/, 'moat sets no relative CPU weight; vassal-cpu-max caps the cores a vassal uses'],
  [/^cpuset\./, 'moat does not pin vassals to CPUs or memory nodes'],
  [/^(tasks|cgroup\.\w+|notify_on_release|release_agent)$/, 'moat places the vassal\'s processes itself'],
];

/** The limits of a vassal file: vassal-memory-max, -pids-max, -cpu-max and uWSGI's cgroup/cgroup-opt
 *  in file order (the last value of a limit wins), over the emperor's defaults. Throws ConfigError. */
export function vassalLimits(opts: OptionList, defaults: CgroupLimits = {}, cpus = os.availableParallelism()):
    { limits: CgroupLimits; warnings: string[] } {
  return readLimits(opts, 'vassal-', defaults, cpus);
}

/** The emperor-wide defaults: emperor-vassal-memory-max, -pids-max, -cpu-max (last wins). Throws ConfigError. */
export function emperorVassalLimits(opts: OptionList, cpus = os.availableParallelism()): CgroupLimits {
  return readLimits(opts, 'emperor-vassal-', {}, cpus).limits;
}

function readLimits(opts: OptionList, prefix: 'vassal-' | 'emperor-vassal-', defaults: CgroupLimits, cpus: number):
    { limits: CgroupLimits; warnings: string[] } {
  const limits: CgroupLimits = { ...defaults };
  const warnings: string[] = [];
  let quota: { us: number | 'max'; period: number } | undefined;   // from cgroup-opt cpu.cfs_*_us, read as one ratio
  const fail = (o: Option, message: string): never => { throw new ConfigError(`${o.key}: ${message}`, o.source); };
  const parse = <T>(o: Option, f: () => T): T => {
    try { return f(); } catch (e) { return fail(o, (e as Error).message); }
  };
  const setQuota = (o: Option, next: { us: number | 'max'; period: number }) => {
    quota = next;
    if (next.us === 'max') { limits.cpuMax = 'max'; return; }
    const cores = next.us / next.period;
    limits.cpuMax = parse(o, () => checkCores(cores, `${next.us}/${next.period} µs = ${Number(cores.toFixed(3))}`, cpus));
  };
  for (const o of opts) {
    // uWSGI's cgroup options belong to a vassal file; emperor-vassal-* to the emperor's config.
    const uwsgi = prefix === 'vassal-' && (o.key === 'cgroup' || o.key === 'cgroup-opt');
    switch (uwsgi ? o.key : o.key.startsWith(prefix) ? o.key.slice(prefix.length) : '') {
      case 'memory-max': limits.memoryMax = parse(o, () => parseMemoryMax(o.value)); break;
      case 'pids-max': limits.pidsMax = parse(o, () => parsePidsMax(o.value)); break;
      case 'cpu-max': limits.cpuMax = parse(o, () => parseCpuMax(o.value, cpus)); quota = undefined; break;
      case 'cgroup-opt': {
        const eq = o.value.indexOf('=');
        if (eq <= 0) fail(o, `'${o.value}' is not KEY=VALUE (e.g. memory.limit_in_bytes=512M)`);
        const file = o.value.slice(0, eq).trim();
        const value = o.value.slice(eq + 1).trim();
        const refused = REFUSED.find(([re]) => re.test(file));
        if (refused) fail(o, `${file} is not supported: ${refused[1]}`);
        if (file === 'memory.limit_in_bytes' || file === 'memory.max') {
          limits.memoryMax = value === '-1' ? 'max' : parse(o, () => parseMemoryMax(value));
        } else if (file === 'pids.max') {
          limits.pidsMax = parse(o, () => parsePidsMax(value));
        } else if (file === 'cpu.cfs_quota_us') {
          setQuota(o, { us: value === '-1' ? 'max' : parse(o, () => microseconds(value, 'cpu.cfs_quota_us')), period: quota?.period ?? CPU_PERIOD_US });
        } else if (file === 'cpu.cfs_period_us') {
          const period = parse(o, () => microseconds(value, 'cpu.cfs_period_us'));
          if (quota) setQuota(o, { us: quota.us, period });
          else quota = { us: 'max', period };
        } else if (file === 'cpu.max') {
          const [q, p] = value.split(/\s+/);
          const period = p === undefined ? CPU_PERIOD_US : parse(o, () => microseconds(p, 'the cpu.max period'));
          setQuota(o, { us: q === 'max' ? 'max' : parse(o, () => microseconds(q, 'the cpu.max quota')), period });
        } else {
          fail(o, `${file} is not supported: no moat limit maps to it (moat sets memory, pids and cpu limits: memory.limit_in_bytes / memory.max, pids.max, cpu.cfs_quota_us + cpu.cfs_period_us / cpu.max)`);
        }
        break;
      }
    }
  }
  return { limits, warnings };
}

function microseconds(v: string, what: string): number {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new RangeError(`${what} '${v}' is not a positive number of microseconds`);
  return Number(v);
}

/** A limit for a status line: 512M, 64, 0.5 cores, max. */
export function describeLimits(l: CgroupLimits): string {
  const f = (v: Limit | undefined, show: (n: number) => string) => v === undefined || v === 'max' ? 'max' : show(v);
  return `memory ${f(l.memoryMax, formatBytes)}, pids ${f(l.pidsMax, String)}, cpu ${f(l.cpuMax, (c) => `${c} cores`)}`;
}
