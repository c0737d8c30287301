// fleet.ts: `moat fleet status --etcd URL [--json] [--etcd-ca F --etcd-cert F
// --etcd-key F --etcd-user U --etcd-password-file F]`: the fleet as etcd
// holds it. Exit codes as the CLI's: 0 done, 1 etcd failed, 2 bad usage.
import { Command, CommanderError } from 'commander';
import { endpointOptions } from '../fleet/etcd-client';
import { formatFleetStatus, readFleetStatus } from '../fleet/fleet-status';

interface StatusFlags {
  etcd: string; json?: boolean;
  etcdCa?: string; etcdCert?: string; etcdKey?: string; etcdUser?: string; etcdPasswordFile?: string;
  timeout: string;
}

export async function fleetCommand(argv: string[]): Promise<number> {
  let code = 0;
  const program = new Command('moat fleet')
    .description('the fleet of hosts that share vassals through etcd')
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) });
  program.command('status')
    .description('hosts with their lease, vassals with host, address and state, rule files')
    .requiredOption('--etcd <url>', 'etcd://HOST:PORT[,HOST:PORT...]/PREFIX (etcds:// for TLS)')
    .option('--json', 'print JSON')
    .option('--etcd-ca <file>', 'CA certificate (PEM) of the etcd servers')
    .option('--etcd-cert <file>', 'client certificate (PEM)')
    .option('--etcd-key <file>', 'client key (PEM)')
    .option('--etcd-user <user>', 'etcd user')
    .option('--etcd-password-file <file>', 'file whose first line is the etcd password')
    .option('--timeout <ms>', 'deadline of each etcd call', '5000')
    .action(async (f: StatusFlags) => { code = await status(f); });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' ? 0 : 2;
    throw err;
  }
  return code;
}

async function status(f: StatusFlags): Promise<number> {
  let opts;
  try {
    const timeout = Number(f.timeout);
    if (!Number.isInteger(timeout) || timeout <= 0) throw new Error(`--timeout must be a number of milliseconds, got ${JSON.stringify(f.timeout)}`);
    opts = endpointOptions({
      url: f.etcd, ca: f.etcdCa, cert: f.etcdCert, key: f.etcdKey, user: f.etcdUser, passwordFile: f.etcdPasswordFile, callTimeoutMs: timeout,
    });
  } catch (err) {
    process.stderr.write(`moat fleet status: ${(err as Error).message}\n`);
    return 2;
  }
  try {
    const s = await readFleetStatus(opts);
    process.stdout.write(f.json ? JSON.stringify(s, null, 2) + '\n' : formatFleetStatus(s));
    return 0;
  } catch (err) {
    process.stderr.write(`moat fleet status: etcd ${opts.endpoints.join(',')}: ${(err as Error).message}\n`);
    return 1;
  }
}
