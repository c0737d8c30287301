#!/usr/bin/env node
// cli.ts: argv -> a command. uWSGI-style option flags (`--tuntap-router ...`,
// `--ini FILE`) run the router and/or device; words name moat's own commands.
// Exit codes: 0 done, 1 failed while running, 2 bad usage or configuration.
import { runOptions } from './commands/run';
import { rulesCommand } from './commands/rules';
import { demoCommand } from './commands/demo';
import { emperorCommand } from './commands/emperor';
import { ptyCommand } from './commands/pty';
import { fleetCommand } from './commands/fleet';
import { routerProcessCommand } from './commands/router-process';
import { ROUTER_PROCESS_COMMAND } from './router/ipc-messages';

const USAGE = `usage:
  moat [--ini FILE | --yaml FILE | --json FILE | --xml FILE] [--OPTION VALUE ...]
      runs what the options name: --tuntap-router "DEV SOCKET [STATS]" runs the
      router, --tuntap-device "DEV SOCKET" a vassal's device (uWSGI option names;
      see the README's option table). SIGTERM/SIGINT stop, SIGHUP reloads rules.
  moat emperor [--ini FILE | --emperor DIR ...]
      the emperor: deploys the vassal files in DIR (each in its own namespaces,
      run by the native moat-vassal runtime), with the router when the config
      sets tuntap-router (\`moat --ini FILE\` whose file sets emperor does the same)
  moat emperor --status [--stats ADDR | --ini FILE]
      lists vassals: state, pid, restarts, address, traffic (add --json for JSON)
  moat rules check FILE...          validate rule files (exit 1 on error)
  moat rules trace FILE... --dir in|out --src A --dst B [--proto P] [--sport N] [--dport N] [--icmp-type N]
  moat rules trace FILE... --packets LIST
  moat rules stats [--stats ADDR]   per-rule hit counters of a running router
  moat fleet status --etcd etcd://HOST:PORT/PREFIX [--json]
      a fleet's hosts (lease state), vassals (host, address, state) and rule files
  moat demo [--keep]                emperor demo in namespaces it creates (root)
  moat pty-connect ADDR             this terminal on a forkpty-router or pty-socket (raw)
  moat pty-uconnect ADDR            this terminal on a forkpty-urouter (framed; sshd ForceCommand)
  moat --help | --version
`;

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === '--version' || cmd === '-V') {
    process.stdout.write('moat 0.1.0\n');
    return 0;
  }
  // Internal (not in the usage): the router process `moat emperor` forks. It
  // exits at once when done: its IPC channel would keep it alive otherwise.
  if (cmd === ROUTER_PROCESS_COMMAND) return routerProcessCommand().then((code) => process.exit(code));
  if (cmd === 'rules') return rulesCommand(rest);
  if (cmd === 'demo') return demoCommand(rest);
  if (cmd === 'fleet') return fleetCommand(rest);
  if (cmd === 'emperor') return emperorCommand(rest);
  if (cmd === 'pty-connect' || cmd === 'pty-uconnect') return ptyCommand(cmd, rest);
  if (!cmd.startsWith('-')) {
    process.stderr.write(`moat: unknown command ${JSON.stringify(cmd)}\n${USAGE}`);
    return 2;
  }
  return runOptions(argv);
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: Error) => {
    process.stderr.write(`moat: ${err.message}\n`);
    process.exitCode = 1;
  },
);
