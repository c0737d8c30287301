// emperor.ts: `moat emperor [options]` runs the emperor (with the router when
// the options set tuntap-router); `moat emperor --status` prints the vassals
// of a running one from its stats socket.
import { loadArgv } from '../config/load';
import { routerConfig } from '../config/router-config';
import { runOptions } from './run';
import { fetchStats, formatStatus } from '../emperor/status';
import type { VassalStatus } from '../emperor/emperor';

export async function emperorCommand(args: string[]): Promise<number> {
  if (!args.includes('--status')) return runOptions(args, { emperor: true });
  const rest = args.filter((a) => a !== '--status' && a !== '--json');
  const json = args.includes('--json');
  let addr: string | undefined;
  const i = rest.indexOf('--stats');
  if (i >= 0) {
    addr = rest[i + 1];
    rest.splice(i, 2);
  }
  try {
    if (!addr) {
      if (rest.length === 0) throw new Error('give --stats ADDR or the emperor\'s config (--ini FILE)');
      addr = routerConfig(loadArgv(rest)).stats;
      if (!addr) throw new Error('the config sets no stats socket (tuntap-router\'s third field or tuntap-router-stats)');
    }
    const doc = await fetchStats(addr) as { emperor?: { dir: string; vassals: VassalStatus[] } };
    if (!doc.emperor) throw new Error(`${addr}: this router runs no emperor`);
    process.stdout.write(json ? JSON.stringify(doc.emperor, null, 2) + '\n' : `emperor ${doc.emperor.dir}\n${formatStatus(doc.emperor.vassals)}`);
    return 0;
  } catch (err) {
    process.stderr.write(`moat emperor --status: ${(err as Error).message}\n`);
    return 1;
  }
}
