// cli.ts: `moat rules check` and `moat rules trace`, as functions returning an
// exit code (src/cli.ts wires them into the command line).
import fs from 'node:fs';
import { loadRuleSet } from './load';
import { RuleError, type RuleSet } from './types';
import { buildPacket, formatVerdict, parsePackets, Tracer, traceSequence, type PacketSpec, type TracePacket } from './trace';

/** Where the commands write: process.stdout / process.stderr, or a test's collector. */
export interface Output {
  write(text: string): unknown;
}

function report(e: unknown, err: Output): number {
  if (e instanceof RuleError) {
    err.write(`${e.message}\n`);
    return 1;
  }
  throw e;
}

/** `moat rules check FILE...`: loads the files as the router would; prints the
 *  rule count per chain and every warning. 0 if they load, 1 on an error. */
export function rulesCheck(files: string[], out: Output = process.stdout, err: Output = process.stderr): number {
  if (files.length === 0) {
    err.write('moat rules check: give at least one rule file or directory\n');
    return 1;
  }
  let set: RuleSet;
  try {
    set = loadRuleSet([], files);
  } catch (e) {
    return report(e, err);
  }
  out.write(`in: ${set.in.length} rule${set.in.length === 1 ? '' : 's'}\n`);
  out.write(`out: ${set.out.length} rule${set.out.length === 1 ? '' : 's'}\n`);
  for (const w of set.warnings) out.write(`warning: ${w}\n`);
  return 0;
}

const TRACE_USAGE = 'usage: moat rules trace FILE... (--dir in|out --src A --dst B [--proto P] [--sport N] [--dport N] [--icmp-type N] [--fragment] [--state S] | --packets FILE [--sequence])';

/** `moat rules trace FILE... --dir in|out --src A --dst B [...]` prints one
 *  line, `VERDICT ORIGIN` (ORIGIN is the deciding rule's origin or `default`);
 *  with `--packets FILE` (`-`: stdin) one such line per packet, in input order.
 *  Exit 0 whatever the verdicts, 1 on bad input. */
export function rulesTrace(args: string[], out: Output = process.stdout, err: Output = process.stderr): number {
  const files: string[] = [];
  const flags = new Map<string, string>();
  let fragment = false;
  let sequence = false;
  const valued = new Set(['--dir', '--src', '--dst', '--proto', '--sport', '--dport', '--icmp-type', '--state', '--packets']);
  const bad = (msg: string): number => {
    err.write(`moat rules trace: ${msg}\n${TRACE_USAGE}\n`);
    return 1;
  };
  for (let i = 0; i < args.length; i++) {
    const a = args[i];
    if (a === '--fragment') { fragment = true; continue; }
    if (a === '--sequence') { sequence = true; continue; }
    if (!a.startsWith('--')) { files.push(a); continue; }
    const eq = a.indexOf('=');
    const name = eq >= 0 ? a.slice(0, eq) : a;
    if (!valued.has(name)) return bad(`unknown option '${a}'`);
    if (flags.has(name)) return bad(`'${name}' given twice`);
    const value = eq >= 0 ? a.slice(eq + 1) : args[++i];
    if (value === undefined) return bad(`'${name}' needs a value`);
    flags.set(name, value);
  }
  if (files.length === 0) return bad('give at least one rule file or directory');

  let packets: TracePacket[];
  try {
    const packetsFile = flags.get('--packets');
    if (packetsFile !== undefined) {
      const single = [...flags.keys()].filter((k) => k !== '--packets');
      if (single.length || fragment) return bad(`--packets describes the packets itself; drop ${[...single, ...(fragment ? ['--fragment'] : [])].join(', ')}`);
      let text: string;
      try {
        text = fs.readFileSync(packetsFile === '-' ? 0 : packetsFile, 'utf8');
      } catch (e) {
        return bad(`${packetsFile}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      }
      packets = parsePackets(text, packetsFile === '-' ? '<stdin>' : packetsFile);
      if (sequence && packets.some((p) => p.stated)) return bad('--sequence: the connection table decides each packet\'s state; drop the `state` fields');
    } else {
      for (const f of ['--dir', '--src', '--dst']) if (!flags.has(f)) return bad(`'${f}' is required`);
      const spec: PacketSpec = {
        chain: flags.get('--dir')!, src: flags.get('--src')!, dst: flags.get('--dst')!,
        proto: flags.get('--proto'), sport: flags.get('--sport'), dport: flags.get('--dport'),
        icmpType: flags.get('--icmp-type'), fragment, state: flags.get('--state'),
      };
      const option: Record<keyof PacketSpec, string> = {
        chain: '--dir', src: '--src', dst: '--dst', proto: '--proto', sport: '--sport', dport: '--dport',
        icmpType: '--icmp-type', fragment: '--fragment', state: '--state', flags: 'flags', at: 'at',
      };
      packets = [buildPacket(spec, (field, reason) => { throw new RuleError(`${option[field]}: ${reason}`); })];
    }
  } catch (e) {
    if (e instanceof RuleError) return bad(e.message);
    throw e;
  }

  let set: RuleSet;
  try {
    set = loadRuleSet([], files);
  } catch (e) {
    return report(e, err);
  }
  if (sequence && flags.get('--packets') === undefined) return bad('--sequence plays a --packets file');
  const verdicts = sequence ? traceSequence(set, packets) : new Tracer(set).trace(packets);
  for (const v of verdicts) out.write(`${formatVerdict(v)}\n`);
  return 0;
}
