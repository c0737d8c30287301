// rules.ts: `moat rules check|trace|stats`.
import net from 'node:net';
import { rulesCheck, rulesTrace } from '../rules/cli';
import { parseStatsAddress } from '../router/stats-server';

const RULES_USAGE = `usage:
  moat rules check FILE...
  moat rules trace FILE... --dir in|out --src A --dst B [--proto P] [--sport N] [--dport N] [--icmp-type N] [--fragment]
  moat rules trace FILE... --packets LIST
  moat rules stats [--stats ADDR]   (default /run/moat/stats.sock)
`;

export async function rulesCommand(args: string[]): Promise<number> {
  const [sub, ...rest] = args;
  switch (sub) {
    case 'check':
      return rulesCheck(rest);
    case 'trace':
      return rulesTrace(rest);
    case 'stats':
      return rulesStats(rest);
    default:
      process.stderr.write(RULES_USAGE);
      return sub === '--help' ? 0 : 2;
  }
}

interface StatsRule { rule: string; text: string; hits: number }

/** Like `iptables -L -v`: each chain's rules with their hit counters. */
async function rulesStats(args: string[]): Promise<number> {
  const i = args.indexOf('--stats');
  const addr = i >= 0 ? args[i + 1] : '/run/moat/stats.sock';
  if (!addr) {
    process.stderr.write(RULES_USAGE);
    return 2;
  }
  let doc: { moat?: { rules?: { in: StatsRule[]; out: StatsRule[] } } };
  try {
    doc = JSON.parse(await fetchStats(addr)) as typeof doc;
  } catch (err) {
    process.stderr.write(`moat: cannot read stats from ${addr}: ${(err as Error).message}\n`);
    return 1;
  }
  const rules = doc.moat?.rules;
  if (!rules) {
    process.stderr.write(`moat: ${addr} is not a moat router's stats socket\n`);
    return 1;
  }
  for (const chain of ['in', 'out'] as const) {
    process.stdout.write(`chain ${chain} (${rules[chain].length} rules, default allow)\n`);
    process.stdout.write(`${'hits'.padStart(12)}  ${'origin'.padEnd(28)} rule\n`);
    for (const r of rules[chain]) process.stdout.write(`${String(r.hits).padStart(12)}  ${r.rule.padEnd(28)} ${r.text}\n`);
  }
  return 0;
}

export function fetchStats(addr: string): Promise<string> {
  const where = parseStatsAddress(addr);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const sock = 'path' in where ? net.connect(where.path) : net.connect(where.port, where.host);
    sock.setTimeout(5000, () => sock.destroy(new Error('timed out')));
    sock.on('data', (d) => chunks.push(d));
    sock.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    sock.on('error', reject);
  });
}
