// config.ts: the emperor's own options (emperor, emperor-use-clone,
// emperor-freq, vassals-dir-root) from the option list of `moat emperor` or
// `moat --ini FILE` whose file sets `emperor`.
import { ConfigError, OptionList } from '../config/types';
import { CloneName, parseClone } from '../vassal/spec';

export const DEFAULT_VASSALS_DIR_ROOT = '/run/moat/vassals';
export const DEFAULT_FREQ_S = 3;

export interface EmperorConfig {
  dir: string;                 // emperor = DIR
  clone: CloneName[];          // emperor-use-clone (alias emperor-user-clone)
  freqMs: number;              // emperor-freq: rescan period (inotify also wakes the watcher)
  vassalsDirRoot: string;      // vassals-dir-root
}

export function emperorConfig(options: OptionList): EmperorConfig {
  const last = (keys: string[]) => options.filter((o) => keys.includes(o.key)).pop();
  const e = last(['emperor']);
  if (!e) throw new ConfigError('no emperor option: emperor = DIR (a directory of vassal files)');
  const dir = e.value.trim();
  if (dir === '') throw new ConfigError('emperor: empty directory', e.source);
  if (/^[a-z]+:\/\//.test(dir) || /[*?[]/.test(dir)) throw new ConfigError(`emperor: '${dir}': only a directory is supported (no glob, no scheme)`, e.source);
  const c = last(['emperor-use-clone', 'emperor-user-clone']);
  const clone = c ? parseClone(c) : [];
  const f = last(['emperor-freq']);
  let freqMs = DEFAULT_FREQ_S * 1000;
  if (f) {
    const n = Number(f.value.trim());
    if (!Number.isFinite(n) || n <= 0 || n > 3600) throw new ConfigError(`emperor-freq: '${f.value}' is not a number of seconds in (0, 3600]`, f.source);
    freqMs = Math.round(n * 1000);
  }
  const r = last(['vassals-dir-root']);
  const vassalsDirRoot = r ? r.value.trim() : DEFAULT_VASSALS_DIR_ROOT;
  if (!vassalsDirRoot.startsWith('/') || vassalsDirRoot === '/') {
    throw new ConfigError(`vassals-dir-root: '${vassalsDirRoot}' is not an absolute directory path`, r?.source);
  }
  return { dir, clone, freqMs, vassalsDirRoot };
}
