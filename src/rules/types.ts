// types.ts: the rule engine's interface to the rest of moat.
import type { NativeRule } from '../native';

export type Chain = 'in' | 'out';

/** Where a rule was written: 'rules/isolation.rules:3' or 'option:2'. */
export type Origin = string;

export interface CompiledRule {
  chain: Chain;
  origin: Origin;
  text: string;          // normalised text (used to carry hit counters across reloads)
  native: NativeRule;
}

export interface RuleSet {
  in: CompiledRule[];
  out: CompiledRule[];
  warnings: string[];    // e.g. shadowed rules (both origins), host bits masked in an option
}

/** Thrown for any bad rule: the message is 'file:line:column: reason'. */
export class RuleError extends Error {}
