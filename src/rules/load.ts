// load.ts: firewall options and rule files -> one checked, compiled RuleSet.
//
// Chain order: the tuntap-router-firewall-in/out options first (in their file
// order), then the rule files in the order given; a directory stands for its
// *.rules files in name order. Any error fails the whole load: a half-loaded
// firewall is worse than none, so nothing is returned but the RuleError.
import fs from 'node:fs';
import path from 'node:path';
import type { OptionRule } from '../config/types';
import type { CompiledRule, RuleSet } from './types';
import { RuleError } from './types';
import { parseFileLine, parseOptionRule } from './parse';
import { compileRule } from './compile';
import { findShadowed } from './shadow';

/** The files a path stands for: itself, or a directory's *.rules in name order. */
export function expandRulePath(p: string): string[] {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (e) {
    throw new RuleError(`${p}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  if (!st.isDirectory()) return [p];
  return fs.readdirSync(p)
    .filter((n) => n.endsWith('.rules'))
    .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))
    .map((n) => path.join(p, n))
    .filter((f) => fs.statSync(f).isFile());
}

/** Parses one rule file; its rules in order, warnings appended to `warnings`. */
export function loadRuleFile(file: string, warnings: string[]): CompiledRule[] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new RuleError(`${file}: cannot read: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
  const rules: CompiledRule[] = [];
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const parsed = parseFileLine(lines[i], { file, line: i + 1 });
    warnings.push(...parsed.warnings);
    if (parsed.rule) rules.push(compileRule(parsed.rule, `${file}:${i + 1}`));
  }
  return rules;
}

export function loadRuleSet(optionRules: OptionRule[], files: string[]): RuleSet {
  const warnings: string[] = [];
  const all: CompiledRule[] = [];
  for (const o of optionRules) {
    const parsed = parseOptionRule(o.text, o.chain, { file: o.source.file, line: o.source.line ?? 0 }, o.index);
    warnings.push(...parsed.warnings);
    if (parsed.rule) all.push(compileRule(parsed.rule, `option:${o.index}`));
  }
  for (const p of files)
    for (const f of expandRulePath(p)) all.push(...loadRuleFile(f, warnings));
  const set: RuleSet = {
    in: all.filter((r) => r.chain === 'in'),
    out: all.filter((r) => r.chain === 'out'),
    warnings,
  };
  warnings.push(...findShadowed(set.in).warnings, ...findShadowed(set.out).warnings);
  return set;
}
