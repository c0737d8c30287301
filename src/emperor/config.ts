// config.ts: the emperor's own options (emperor, emperor-use-clone,
// emperor-freq, vassals-dir-root, emperor-vassal-network, emperor-cgroup,
// the vassals' default limits and output budget) from the option list of `moat emperor` or
// `moat --ini FILE` whose file sets `emperor`.
import { CheckedOptions, checkOptions, spec } from '../config/schema';
import { ConfigError, OptionList } from '../config/types';
import { CgroupLimits, emperorVassalLimits } from '../vassal/cgroup-limits';
import { TrafficLimits, emperorTrafficLimits } from '../config/traffic-limits';
import { parseEmperorCgroupPath } from '../vassal/cgroup';
import type { OutputBudgetOptions } from '../vassal/output-budget';
import { Ipv4Network, parseNetwork } from '../addr';
import { CloneName, parseClone } from '../vassal/spec';
import { FleetConfig, fleetConfig, isEtcdUrl } from '../fleet/fleet-config';
import path from 'node:path';

export interface EmperorConfig {
  dir: string;                 // emperor = DIR (in a fleet: this host's copies of the vassal files it runs)
  fleet?: FleetConfig;         // emperor = etcd://... (src/fleet, docs/fleet.md)
  clone: CloneName[];          // emperor-use-clone (alias emperor-user-clone)
  freqMs: number;              // emperor-freq: rescan period (inotify also wakes the watcher)
  vassalsDirRoot: string;      // vassals-dir-root
  cgroupPath?: string;         // emperor-cgroup (absent: a child of the emperor's own cgroup)
  vassalLimits: CgroupLimits;  // emperor-vassal-memory-max, -pids-max, -cpu-max
  vassalTraffic: TrafficLimits; // emperor-vassal-rate-out, -rate-in, -pps-out, -pps-in, -burst, -pps-burst
  accounting?: { log: string; intervalMs: number };  // accounting-log, accounting-interval (docs/accounting.md)
  output: OutputBudgetOptions; // emperor-vassal-log-lines, -log-bytes
  vassalNetwork?: Ipv4Network; // emperor-vassal-network; absent: the router's tun network (vassal-network.ts)
}

export function emperorConfig(options: OptionList | CheckedOptions): EmperorConfig {
  const opts = checkOptions(options);
  const last = (keys: string[]) => opts.options.filter((o) => keys.includes(o.key)).pop();
  const e = last(['emperor']);
  if (!e) throw new ConfigError('no emperor option: emperor = DIR (a directory of vassal files)');
  let dir = e.value.trim();
  let fleet: FleetConfig | undefined;
  if (dir === '') throw new ConfigError('emperor: empty directory', e.source);
  if (isEtcdUrl(dir)) {
    fleet = fleetConfig(opts, e);
    dir = path.join(fleet.dir, 'vassals');
  } else if (/^[a-z]+:\/\//.test(dir) || /[*?[]/.test(dir)) {
    throw new ConfigError(`emperor: '${dir}': a directory or etcd://HOST:PORT/PREFIX (no glob, no other scheme)`, e.source);
  }
  const c = last(['emperor-use-clone', 'emperor-user-clone'])
    ?? { key: 'emperor-use-clone', value: String(spec('emperor-use-clone').default), source: { file: '<default>' } };
  const clone = parseClone(c);
  const freqMs = Math.round(opts.int('emperor-freq') * 1000);
  const r = last(['vassals-dir-root']);
  const vassalsDirRoot = opts.string('vassals-dir-root')!.trim();
  if (!vassalsDirRoot.startsWith('/') || vassalsDirRoot === '/') {
    throw new ConfigError(`vassals-dir-root: '${vassalsDirRoot}' is not an absolute directory path`, r?.source);
  }
  const cg = last(['emperor-cgroup']);
  let cgroupPath: string | undefined;
  if (cg) {
    try { cgroupPath = parseEmperorCgroupPath(cg.value.trim()); } catch (err) { throw new ConfigError(`emperor-cgroup: ${(err as Error).message}`, cg.source); }
  }
  const n = last(['emperor-vassal-network']);
  let vassalNetwork: Ipv4Network | undefined;
  if (n) {
    try { vassalNetwork = parseNetwork(n.value); } catch (err) { throw new ConfigError(`emperor-vassal-network: ${(err as Error).message}`, n.source); }
  }
  return {
    dir, ...(fleet ? { fleet } : {}), clone, freqMs, vassalsDirRoot, cgroupPath, ...(vassalNetwork ? { vassalNetwork } : {}),
    vassalLimits: emperorVassalLimits(opts.options),
    vassalTraffic: emperorTrafficLimits(opts.options),
    ...accountingOf(opts),
    output: { linesPerSec: opts.int('emperor-vassal-log-lines'), bytesPerSec: opts.int('emperor-vassal-log-bytes') },
  };
}

/** An emperor config built in code (tests, an embedder): what `emperor = DIR`
 *  gives, the table's defaults included, with `more` over it. */
export function emperorConfigFor(dir: string, more: Partial<EmperorConfig> = {}): EmperorConfig {
  return { ...emperorConfig([{ key: 'emperor', value: dir, source: { file: '<code>' } }]), ...more };
}

function accountingOf(opts: CheckedOptions): Pick<EmperorConfig, 'accounting'> {
  const log = opts.string('accounting-log')?.trim();
  if (!log) return {};
  const o = opts.last('accounting-log');
  if (!log.startsWith('/')) throw new ConfigError(`accounting-log: '${log}' is not an absolute file path`, o?.source);
  return { accounting: { log, intervalMs: opts.int('accounting-interval') * 1000 } };
}
