// run.ts: `moat --OPTION VALUE ...` (and `moat emperor`): runs what the
// options name (instance.ts builds the components, in order) until SIGTERM or
// SIGINT; SIGHUP reloads the router's rules; a failed router stops everything
// with exit 1 (src/lifecycle/runner.ts). With `emperor` and tuntap-router the
// router runs in a process of its own (privilege separation): this process
// stays root to spawn vassals, the router process drops to the config's
// uid/gid (default nobody) once its device and sockets exist. A pty client
// option (pty-connect, pty-uconnect) runs alone, in the foreground.
import { loadArgv } from '../config/load';
import { checkOptions } from '../config/schema';
import type { OptionList } from '../config/types';
import { Lifecycle } from '../lifecycle/lifecycle';
import { runLifecycle } from '../lifecycle/runner';
import { logger, setLogLevel } from '../log';
import { ptyClientConfig } from '../pty/config';
import { buildInstance, Instance } from './instance';
import { ptyClient } from './pty';

export async function runOptions(argv: string[], opts: { emperor?: boolean } = {}): Promise<number> {
  let options: OptionList;
  try {
    options = loadArgv(argv);
  } catch (err) {
    process.stderr.write(`moat: ${(err as Error).message}\n`);
    return 2;
  }
  const level = options.filter((o) => o.key === 'log-level').pop();
  if (level) setLogLevel(level.value);
  let instance: Instance;
  try {
    const checked = checkOptions(options);
    const client = ptyClientConfig(checked.options);
    if (client) return ptyClient(client.path, client.framed);
    instance = buildInstance(options, checked, { ...opts, reread: () => loadArgv(argv) });
  } catch (err) {
    process.stderr.write(`moat: ${(err as Error).message}\n`);
    return 2;
  }
  const log = logger();
  return runLifecycle(new Lifecycle(instance.components, log), { log });
}
