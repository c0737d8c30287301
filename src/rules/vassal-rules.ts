// vassal-rules.ts: a vassal file's own firewall (vassal-firewall-in, -out,
// -file) -> its compiled chains. They apply to that vassal's traffic only,
// after the router's: a packet passes only if both accept it, so a vassal's
// rules can narrow what the admin allows, never widen it (native/
// peer_rules.h). Same language and order as the router's (load.ts): the
// options in file order, then the files. A relative rule path is read
// relative to the vassal file's directory, by the emperor (root) at each
// load: the vassal file is the operator's, so is the path it names. Every
// error is a ConfigError naming the vassal file's line, and the rule file's
// file:line:column when the rule is in one.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, Option, OptionList } from '../config/types';
import { formatSource } from '../config/option';
import type { CompiledRule } from './types';
import { RuleError } from './types';
import { parseOptionRule } from './parse';
import { compileRule } from './compile';
import { expandRulePath, loadRuleFile } from './load';
import { findShadowed } from './shadow';

export interface VassalFirewall {
  in: CompiledRule[];
  out: CompiledRule[];
}

/** The chains a vassal file's options give (empty chains: none), its rule
 *  paths resolved (files or directories: the emperor rereads them when they
 *  change), warnings appended to `warnings`. A rule path inside
 *  `vassalsRoot` (vassals-dir-root: the vassals write there) is refused: the
 *  emperor would read, as root, whatever a tenant put or linked there. */
export function vassalFirewall(vassalFile: string, opts: OptionList, warnings: string[], vassalsRoot?: string): { firewall: VassalFirewall; ruleFiles: string[] } {
  const all: CompiledRule[] = [];
  let index = 0;
  for (const o of opts) {
    if (o.key !== 'vassal-firewall-in' && o.key !== 'vassal-firewall-out') continue;
    const chain = o.key === 'vassal-firewall-in' ? 'in' : 'out';
    index++;
    if (o.value.trim() === '') throw new ConfigError(`${o.key}: empty rule`, o.source);
    const parsed = ruleOrConfigError(() => parseOptionRule(o.value, chain, { file: o.source.file, line: o.source.line ?? 0 }, index, 'vassal-firewall'));
    warnings.push(...parsed.warnings);
    if (parsed.rule) all.push(compileRule(parsed.rule, formatSource(o.source)));
  }
  const ruleFiles: string[] = [];
  for (const o of opts) {
    if (o.key !== 'vassal-firewall-file') continue;
    if (o.value.trim() === '') throw new ConfigError(`${o.key}: empty path`, o.source);
    const p = path.resolve(path.dirname(vassalFile), o.value.trim());
    if (vassalsRoot && (p + '/').startsWith(path.resolve(vassalsRoot) + '/')) {
      throw new ConfigError(`${o.key}: ${p} is inside vassals-dir-root (${vassalsRoot}), where vassals write: keep rule files where only the operator can`, o.source);
    }
    ruleFiles.push(p);
    inFile(o, () => { for (const f of expandRulePath(p)) all.push(...loadRuleFile(f, warnings)); });
  }
  // The connection table is the router's, kept for its own rules; a vassal's
  // chains see no state, and their verdict is a drop without an answer.
  for (const r of all) {
    if (r.native.states) throw new ConfigError(`${r.origin}: a vassal's own rules cannot match state (yet): the router's rules decide by connection state; here write addresses, protocols and ports`);
    if (r.native.action === 2) throw new ConfigError(`${r.origin}: reject in a vassal's own rules is not supported (yet): write deny`);
  }
  const firewall = { in: all.filter((r) => r.chain === 'in'), out: all.filter((r) => r.chain === 'out') };
  warnings.push(...findShadowed(firewall.in).warnings, ...findShadowed(firewall.out).warnings);
  return { firewall, ruleFiles };
}

/** vassal-firewall-file's paths, resolved against the vassal file's directory (blank ones left out). */
export function vassalRulePaths(vassalFile: string, opts: OptionList): string[] {
  return opts.filter((o) => o.key === 'vassal-firewall-file' && o.value.trim() !== '')
    .map((o) => path.resolve(path.dirname(vassalFile), o.value.trim()));
}

/** What the rule files behind these paths hold now (a directory: its
 *  *.rules files), as one digest: the emperor reloads a vassal whose digest
 *  changed. A file that cannot be read counts as its error. */
export function ruleFilesDigest(paths: readonly string[]): string {
  if (paths.length === 0) return '';
  const h = crypto.createHash('sha256');
  for (const p of paths) {
    let files: string[];
    try { files = expandRulePath(p); } catch (err) { h.update(`${p}\0${(err as Error).message}\0`); continue; }
    for (const f of files) {
      h.update(f + '\0');
      try { h.update(fs.readFileSync(f)); } catch (err) { h.update((err as NodeJS.ErrnoException).code ?? 'error'); }
      h.update('\0');
    }
  }
  return h.digest('hex');
}

/** A rule error in an option's value: its message names the file:line already. */
function ruleOrConfigError<T>(f: () => T): T {
  try { return f(); } catch (err) {
    if (err instanceof RuleError) throw new ConfigError(err.message);
    throw err;
  }
}

/** A rule error in a rule file: the option that named it, then the rule's file:line:column. */
function inFile(o: Option, f: () => void): void {
  try { f(); } catch (err) {
    if (err instanceof RuleError) throw new ConfigError(`${o.key}: ${err.message}`, o.source);
    throw err;
  }
}
