// schema.ts: what a row of the option table (options-table.ts) says, the
// lookups by name, and checkOptions(): the one pass every option list goes
// through (aliases, unknown names, refused options) that also parses,
// defaults and bounds every single-valued option from its row, so the typed
// configs read values from it and never parse or default them again.
//
// status, for an option that comes from uWSGI, says what moat does with it:
//   implemented  moat does what uWSGI does (or better, see the note)
//   accepted     read and has no effect (no warning: nothing is lost)
//   ignored      read, has no effect, and a warning says why
//   refused      a config that sets it is an error (the note says why)
//   planned      known, not implemented yet (a warning says so)
// Options that are moat's own have origin 'moat' and status 'implemented'.
import { formatSource } from './option';
import { OPTIONS } from './options-table';
import { ConfigError, Option, OptionList } from './types';

export { OPTIONS };

/** string: verbatim; int/number: bounded by min..max; bool: true/false...; repeatable: every occurrence counts. */
export type OptionKind = 'string' | 'bool' | 'int' | 'number' | 'repeatable';
export type OptionStatus = 'implemented' | 'accepted' | 'ignored' | 'refused' | 'planned';
/** The component that reads the option. */
export type Consumer = 'router' | 'device' | 'emperor' | 'vassal' | 'cron' | 'pty' | 'pty-client' | 'config' | 'log' | 'metrics' | 'none';
export type OptionValue = string | number | boolean;

export interface OptionSpec {
  name: string;
  aliases?: readonly string[];
  kind: OptionKind;
  consumer: Consumer;
  default?: OptionValue;
  min?: number;           // int, number
  max?: number;
  values?: readonly string[];   // string: the allowed values
  unit?: string;          // of an int or number: 'bytes', 'ms', 'µs', 's'
  native?: string;        // the field of the addon's options object it becomes (native/option_bounds.h)
  runtime?: string;       // the vassal runtime's protocol line that carries it from a vassal file
  vassal?: string;        // set: in a vassal file it is ignored with a warning giving this reason
  description: string;
  origin: 'uwsgi' | 'moat';
  status: OptionStatus;
  note?: string;          // why ignored/refused, or what moat does differently
}

const byName = new Map<string, OptionSpec>();
for (const s of OPTIONS) {
  for (const n of [s.name, ...(s.aliases ?? [])]) {
    if (byName.has(n)) throw new Error(`schema: ${n} listed twice`);
    byName.set(n, s);
  }
}

/** The spec of an option by name or alias ('_' read as '-'), or undefined. */
export function findOption(key: string): OptionSpec | undefined {
  return byName.get(key.toLowerCase().replace(/_/g, '-'));
}

/** The spec of a known option's canonical name (a typo in moat's own code throws). */
export function spec(name: string): OptionSpec {
  const s = byName.get(name);
  if (!s || s.name !== name) throw new Error(`schema: no option named ${name}`);
  return s;
}

/** The canonical name of an option, or the key itself when unknown. */
export function canonicalKey(key: string): string {
  return findOption(key)?.name ?? key;
}

/** Options given as flags without a value (`--master`). */
export function takesNoValue(key: string): boolean {
  return findOption(key)?.kind === 'bool';
}

export function parseBool(value: string): boolean | undefined {
  switch (value.trim().toLowerCase()) {
    case '': case 'true': case '1': case 'yes': case 'on': return true;
    case 'false': case '0': case 'no': case 'off': return false;
    default: return undefined;
  }
}

/** Where a vassal file's option goes: its runtime or the emperor acting for it
 *  (applies), nowhere by design because moat always behaves so (implicit), a
 *  warning naming file:line (warns, with the reason), or an error (refused). */
export type VassalUse = { use: 'applies' } | { use: 'implicit' } | { use: 'warns'; reason: string } | { use: 'refused' };

const NOT_IN_VASSAL: Partial<Record<Consumer, string>> = {
  router: 'it configures the emperor\'s router: set it in the emperor\'s config',
  emperor: 'it configures the emperor: set it in the emperor\'s config',
  log: 'the emperor\'s log settings apply to every vassal',
  metrics: 'the emperor serves the metrics of every vassal',
  'pty-client': 'a pty client runs in a terminal, not in a vassal',
};

export function vassalUse(s: OptionSpec): VassalUse {
  if (s.status === 'refused') return { use: 'refused' };
  if (s.status === 'ignored') return { use: 'warns', reason: s.note ?? 'ignored' };
  if (s.status === 'planned') return { use: 'warns', reason: 'not implemented yet' };
  if (s.vassal) return { use: 'warns', reason: s.vassal };
  const elsewhere = NOT_IN_VASSAL[s.consumer];
  if (elsewhere) return { use: 'warns', reason: elsewhere };
  if (s.status === 'accepted') return { use: 'implicit' };
  return { use: 'applies' };
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The known option name nearest to key, if it is near enough to be a typo. */
export function didYouMean(key: string): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const name of byName.keys()) {
    const d = distance(key, name);
    if (d < bestD) { best = name; bestD = d; }
  }
  const limit = key.length <= 5 ? 1 : key.length <= 12 ? 2 : 3;
  return bestD <= limit ? best : undefined;
}

/** One option's value parsed by its row: a ConfigError naming option and source otherwise. */
export function parseValue(s: OptionSpec, o: Option): OptionValue {
  const v = o.value.trim();
  switch (s.kind) {
    case 'bool': {
      const b = parseBool(o.value);
      if (b === undefined) throw new ConfigError(`${o.key}: '${o.value}' is not a boolean (true/false, 1/0, yes/no, on/off)`, o.source);
      return b;
    }
    case 'int': case 'number': {
      const ok = s.kind === 'int' ? /^-?[0-9]+$/.test(v) : /^-?([0-9]+\.?[0-9]*|\.[0-9]+)$/.test(v);
      if (!ok) throw new ConfigError(`${o.key}: '${o.value}' is not ${s.kind === 'int' ? 'an integer' : 'a number'}`, o.source);
      const n = Number(v);
      if ((s.min !== undefined && n < s.min) || (s.max !== undefined && n > s.max) || !Number.isFinite(n)) {
        throw new ConfigError(`${o.key}: '${o.value}' is outside ${s.min ?? '-inf'}..${s.max ?? 'inf'}${s.unit ? ' ' + s.unit : ''}`, o.source);
      }
      return n;
    }
    default:
      if (s.values && !s.values.includes(v)) throw new ConfigError(`${o.key}: '${o.value}' is not one of ${s.values.join(', ')}`, o.source);
      return s.values ? v : o.value;
  }
}

/**
 * An option list once checked: canonical keys, warnings, and every
 * single-valued option parsed from its row. Typed getters give the parsed
 * value, else the row's default: the only place defaults are applied.
 */
export class CheckedOptions {
  private readonly parsed = new Map<string, { value: OptionValue; option: Option }>();
  constructor(readonly options: OptionList, readonly warnings: string[]) {}

  all(name: string): Option[] { return this.options.filter((o) => o.key === name); }
  /** The last occurrence of a single-valued option (earlier ones were warned about). */
  last(name: string): Option | undefined { const a = this.all(name); return a[a.length - 1]; }
  has(name: string): boolean { return this.options.some((o) => o.key === name); }

  /** The value of an option, else its default, else undefined. */
  value(name: string): OptionValue | undefined { return this.parsed.get(name)?.value ?? spec(name).default; }
  int(name: string): number { return this.typed(name, 'number') as number; }
  bool(name: string): boolean { return this.typed(name, 'boolean') as boolean; }
  string(name: string): string | undefined { const v = this.value(name); return v === undefined ? undefined : String(v); }

  /** @internal checkOptions() records each parsed value here. */
  record(name: string, value: OptionValue, option: Option): void { this.parsed.set(name, { value, option }); }

  private typed(name: string, type: 'number' | 'boolean'): OptionValue {
    const v = this.value(name);
    if (typeof v !== type) throw new Error(`schema: ${name} has no ${type} value or default`);
    return v!;
  }
}

const checkedLists = new WeakMap<OptionList, CheckedOptions>();

/**
 * Checks a raw option list against the table: resolves aliases, warns about
 * unknown options (uWSGI ignores options of plugins it has not loaded; a near
 * miss gets a hint), ignored and planned ones and single options set twice;
 * throws ConfigError for a refused option or a value its row refuses. The
 * result's `options` list, passed again, returns the same result.
 */
export function checkOptions(input: OptionList | CheckedOptions): CheckedOptions {
  if (input instanceof CheckedOptions) return input;
  const done = checkedLists.get(input);
  if (done) return done;
  const warnings: string[] = [];
  const seen = new Map<string, Option>();
  const out: OptionList = [];
  const result = new CheckedOptions(out, warnings);
  for (const o of input) {
    const s = findOption(o.key);
    const where = formatSource(o.source);
    if (!s) {
      const hint = didYouMean(o.key);
      warnings.push(`${where}: unknown option '${o.key}' ignored${hint ? ` (did you mean '${hint}'?)` : ''}`);
      out.push(o);
      continue;
    }
    const opt = s.name === o.key ? o : { ...o, key: s.name };
    if (s.status === 'refused') throw new ConfigError(`${o.key} is refused: ${s.note}`, o.source);
    if (s.status === 'ignored') warnings.push(`${where}: ${o.key} ignored: ${s.note}`);
    if (s.status === 'planned') warnings.push(`${where}: ${o.key} is not implemented yet, ignored`);
    // tuntap-use-credentials may name a uWSGI symbol (routerConfig warns about it).
    if (s.kind !== 'repeatable' && s.name !== 'tuntap-use-credentials') result.record(s.name, parseValue(s, o), opt);
    if (s.kind !== 'repeatable') {
      const before = seen.get(s.name);
      if (before && before.value !== o.value) {
        warnings.push(`${where}: ${o.key} set again (first at ${formatSource(before.source)}); the last one counts`);
      }
      seen.set(s.name, opt);
    }
    out.push(opt);
  }
  checkedLists.set(input, result);
  checkedLists.set(out, result);
  return result;
}
