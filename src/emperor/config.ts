// config.ts: the emperor's own options (emperor, emperor-use-clone,
// emperor-freq, vassals-dir-root, emperor-vassal-network) from the option list of `moat emperor` or
// `moat --ini FILE` whose file sets `emperor`.
import { CheckedOptions, checkOptions } from '../config/schema';
import { ConfigError, OptionList } from '../config/types';
import { Ipv4Network, parseNetwork } from '../addr';
import { CloneName, parseClone } from '../vassal/spec';

export interface EmperorConfig {
  dir: string;                 // emperor = DIR
  clone: CloneName[];          // emperor-use-clone (alias emperor-user-clone)
  freqMs: number;              // emperor-freq: rescan period (inotify also wakes the watcher)
  vassalsDirRoot: string;      // vassals-dir-root
  vassalNetwork?: Ipv4Network; // emperor-vassal-network; absent: the router's tun network (vassal-network.ts)
}

export function emperorConfig(options: OptionList | CheckedOptions): EmperorConfig {
  const opts = checkOptions(options);
  const last = (keys: string[]) => opts.options.filter((o) => keys.includes(o.key)).pop();
  const e = last(['emperor']);
  if (!e) throw new ConfigError('no emperor option: emperor = DIR (a directory of vassal files)');
  const dir = e.value.trim();
  if (dir === '') throw new ConfigError('emperor: empty directory', e.source);
  if (/^[a-z]+:\/\//.test(dir) || /[*?[]/.test(dir)) throw new ConfigError(`emperor: '${dir}': only a directory is supported (no glob, no scheme)`, e.source);
  const c = last(['emperor-use-clone', 'emperor-user-clone']);
  const clone = c ? parseClone(c) : [];
  const freqMs = Math.round(opts.int('emperor-freq') * 1000);
  const r = last(['vassals-dir-root']);
  const vassalsDirRoot = opts.string('vassals-dir-root')!.trim();
  if (!vassalsDirRoot.startsWith('/') || vassalsDirRoot === '/') {
    throw new ConfigError(`vassals-dir-root: '${vassalsDirRoot}' is not an absolute directory path`, r?.source);
  }
  const n = last(['emperor-vassal-network']);
  let vassalNetwork: Ipv4Network | undefined;
  if (n) {
    try { vassalNetwork = parseNetwork(n.value); } catch (err) { throw new ConfigError(`emperor-vassal-network: ${(err as Error).message}`, n.source); }
  }
  return { dir, clone, freqMs, vassalsDirRoot, ...(vassalNetwork ? { vassalNetwork } : {}) };
}
