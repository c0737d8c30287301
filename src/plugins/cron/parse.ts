// parse.ts: cron lines of a vassal file -> CronEntry, each with a croner
// schedule that fires exactly when uWSGI's rule would.
//
// Options read (repeatable, every occurrence counts, in file order):
//   cron        = <minute> <hour> <day> <month> <weekday> <command>   (uWSGI)
//   unique-cron = same, unique=1                                       (uWSGI)
//   cron2       = key=value,... <command>                              (uWSGI)
//   cron-tab    = <five crontab fields> <command> | @daily <command>   (moat)
//   cron-harakiri = N   default harakiri (seconds) of every entry      (uWSGI)
//
// uWSGI's numbers (core/master_utils.c, uwsgi_cron_task_needs_execution):
// -1 is any; -N matches a value with value % N == 0 (so day -7 is 7,14,21,28,
// never croner's */7 = 1,8,15...); weekday 7 is Sunday (0); when day and
// weekday are both plain numbers a match of either is enough, otherwise both
// must match. uWSGI ignores what it cannot read; we refuse it, naming file:line.
import { Cron } from 'croner';
import { formatSource } from '../../config/option';
import { checkOptions } from '../../config/schema';
import { ConfigError, Option, OptionList, Source } from '../../config/types';

export type CronKey = 'cron' | 'unique-cron' | 'cron2' | 'cron-tab';
export const CRON_KEYS: readonly string[] = ['cron', 'unique-cron', 'cron2', 'cron-tab'];

/** uWSGI's five numbers: -1 any, -N multiples of N, else the value itself. */
export interface UwsgiTime {
  minute: number;
  hour: number;
  day: number;
  month: number;
  week: number;
}

export interface CronEntry {
  key: CronKey;            // the option it came from
  text: string;            // the option's value, verbatim
  source: Source;
  where: string;           // 'file:line', for logs and metrics
  command: string;         // run with /bin/sh -c inside the vassal
  pattern: string;         // croner's five-field pattern (or @nickname for cron-tab)
  domAndDow: boolean;      // true: day and weekday must both match; false: either (when both are restricted)
  uwsgi?: UwsgiTime;       // the numbers, for cron/unique-cron/cron2
  unique: boolean;         // uWSGI's unique=1 (moat never overlaps a run anyway)
  harakiri: number;        // seconds before a run is killed; 0 = never
  schedule: Cron;          // paused croner instance: schedule.nextRun(after) / schedule.match(date)
}

interface Field {
  name: keyof UwsgiTime;
  min: number;
  max: number;
}

const FIELDS: readonly Field[] = [
  { name: 'minute', min: 0, max: 59 },
  { name: 'hour', min: 0, max: 23 },
  { name: 'day', min: 1, max: 31 },
  { name: 'month', min: 1, max: 12 },
  { name: 'week', min: 0, max: 7 },
];

const HINT = "uWSGI's cron takes one number per field: -1 (any), -N (multiples of N) or a value; "
  + 'for ranges, lists and steps use cron-tab = <crontab fields> <command>';

/** One uWSGI number: '-1', '-N' or a value within the field's range. */
function parseNumber(token: string, f: Field, key: string, source: Source): number {
  if (!/^-?[0-9]+$/.test(token)) {
    throw new ConfigError(`${key}: ${f.name} '${token}' is not a number (${HINT})`, source);
  }
  const n = Number(token);
  if (token.startsWith('-')) {
    if (n === 0) throw new ConfigError(`${key}: ${f.name} '${token}': -N needs N >= 1`, source);
    if (multiples(f, -n).length === 0) {
      throw new ConfigError(`${key}: ${f.name} '${token}' never matches (no ${f.name} in ${f.min}-${f.max} is a multiple of ${-n})`, source);
    }
    return n;
  }
  if (n < f.min || n > f.max) {
    throw new ConfigError(`${key}: ${f.name} ${token} is out of range ${f.min}-${f.max}`, source);
  }
  return n;
}

/**
 * The values v of a field with v % n == 0, as uWSGI tests them: weekday
 * values are struct tm's tm_wday (0-6), so -N never means 7.
 */
function multiples(f: Field, n: number): number[] {
  const max = f.name === 'week' ? 6 : f.max;
  const out: number[] = [];
  for (let v = f.min; v <= max; v++) if (v % n === 0) out.push(v);
  return out;
}

/** The croner field for one uWSGI number. */
function cronerField(f: Field, n: number): string {
  if (n === -1) return '*';
  if (n < 0) return multiples(f, -n).join(',');
  if (f.name === 'week' && n === 7) return '0';
  return String(n);
}

function compile(key: CronKey, pattern: string, domAndDow: boolean, source: Source): Cron {
  let cron: Cron;
  try {
    cron = new Cron(pattern, { paused: true, mode: '5-part', domAndDow });
  } catch (e) {
    throw new ConfigError(`${key}: ${(e as Error).message.replace(/^CronPattern: /, '')}`, source);
  }
  // A schedule that never fires (day 31 of February) is a mistake uWSGI keeps quietly.
  if (cron.nextRun(new Date(2000, 0, 1)) === null) throw new ConfigError(`${key}: '${pattern}' never fires`, source);
  return cron;
}

interface Common {
  key: CronKey;
  text: string;
  source: Source;
  command: string;
  unique: boolean;
  harakiri: number;
}

/** An entry from uWSGI's numbers (cron, unique-cron, cron2). */
function fromUwsgi(c: Common, t: UwsgiTime): CronEntry {
  const pattern = FIELDS.map((f) => cronerField(f, t[f.name])).join(' ');
  // uWSGI: `if (day >= 0 && week >= 0)` ORs them; -1 and -N do not.
  const domAndDow = !(t.day >= 0 && t.week >= 0);
  return { ...c, where: formatSource(c.source), pattern, domAndDow, uwsgi: t, schedule: compile(c.key, pattern, domAndDow, c.source) };
}

function requireCommand(command: string, key: string, source: Source): string {
  const cmd = command.trim();
  if (cmd === '') throw new ConfigError(`${key}: missing command`, source);
  // The runtime's control channel is one line per command (a YAML or JSON value could hold a newline).
  if (/[\r\n\0]/.test(cmd)) throw new ConfigError(`${key}: the command may not contain a line break or NUL`, source);
  return cmd;
}

/** `cron = <minute> <hour> <day> <month> <weekday> <command>` (and unique-cron). */
function parseClassic(o: Option, key: 'cron' | 'unique-cron', harakiri: number): CronEntry {
  const m = /^\s*(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)(?:\s+(.*))?$/s.exec(o.value);
  if (!m) {
    throw new ConfigError(`${key}: expected <minute> <hour> <day> <month> <weekday> <command>, got '${o.value}'`, o.source);
  }
  const t = {} as UwsgiTime;
  FIELDS.forEach((f, i) => { t[f.name] = parseNumber(m[i + 1], f, key, o.source); });
  const command = requireCommand(m[6] ?? '', key, o.source);
  return fromUwsgi({ key, text: o.value, source: o.source, command, unique: key === 'unique-cron', harakiri }, t);
}

/** `cron2 = minute=39,hour=23,unique=1,harakiri=30 <command>`; a missing key is any. */
function parseCron2(o: Option, harakiri: number): CronEntry {
  const key = 'cron2';
  const m = /^\s*(\S+)(?:\s+(.*))?$/s.exec(o.value);
  if (!m) throw new ConfigError(`${key}: expected key=value,... <command>`, o.source);
  const t: UwsgiTime = { minute: -1, hour: -1, day: -1, month: -1, week: -1 };
  let unique = false;
  const seen = new Set<string>();
  for (const kv of m[1].split(',')) {
    const eq = kv.indexOf('=');
    if (eq <= 0) {
      throw new ConfigError(`${key}: '${kv}' is not key=value (keys: minute, hour, day, month, week, unique, harakiri)`, o.source);
    }
    const k = kv.slice(0, eq);
    const v = kv.slice(eq + 1);
    if (seen.has(k)) throw new ConfigError(`${key}: ${k} given twice`, o.source);
    seen.add(k);
    const field = FIELDS.find((f) => f.name === k);
    if (field) {
      t[field.name] = parseNumber(v, field, key, o.source);
    } else if (k === 'unique') {
      if (v !== '0' && v !== '1') throw new ConfigError(`${key}: unique must be 0 or 1, got '${v}'`, o.source);
      unique = v === '1';
    } else if (k === 'harakiri') {
      harakiri = parseSeconds(v, `${key}: harakiri`, o.source);
    } else if (k === 'legion') {
      throw new ConfigError(`${key}: legion is not supported (moat has no legions; one emperor schedules its vassals' jobs)`, o.source);
    } else {
      throw new ConfigError(`${key}: unknown key '${k}' (keys: minute, hour, day, month, week, unique, harakiri)`, o.source);
    }
  }
  const command = requireCommand(m[2] ?? '', key, o.source);
  return fromUwsgi({ key, text: o.value, source: o.source, command, unique, harakiri }, t);
}

/** moat's `cron-tab = <minute> <hour> <day> <month> <weekday> <command>` or `@daily <command>`. */
function parseCrontab(o: Option, harakiri: number): CronEntry {
  const key = 'cron-tab';
  const nick = /^\s*(@[a-z]+)(?:\s+(.*))?$/is.exec(o.value);
  const m = nick ?? /^\s*(\S+\s+\S+\s+\S+\s+\S+\s+\S+)(?:\s+(.*))?$/s.exec(o.value);
  if (!m) {
    throw new ConfigError(`${key}: expected five crontab fields and a command (or @hourly/@daily/@weekly/@monthly/@yearly and a command), got '${o.value}'`, o.source);
  }
  const pattern = m[1].replace(/\s+/g, ' ');
  const command = requireCommand(m[2] ?? '', key, o.source);
  // Vixie cron's rule: day and weekday are ORed unless either field starts with '*' ('?' read as '*').
  const f = pattern.split(' ');
  const domAndDow = nick !== null || /^[*?]/.test(f[2]) || /^[*?]/.test(f[4]);
  return {
    key, text: o.value, source: o.source, where: formatSource(o.source), command, pattern, domAndDow,
    unique: false, harakiri, schedule: compile(key, pattern, domAndDow, o.source),
  };
}

function parseSeconds(v: string, what: string, source: Source): number {
  if (!/^[0-9]+$/.test(v.trim())) throw new ConfigError(`${what} must be a number of seconds, got '${v}'`, source);
  return Number(v.trim());
}

/** One cron option (key canonical: cron, unique-cron, cron2 or cron-tab). */
export function parseCronOption(o: Option, defaultHarakiri = 0): CronEntry {
  switch (o.key) {
    case 'cron': case 'unique-cron': return parseClassic(o, o.key, defaultHarakiri);
    case 'cron2': return parseCron2(o, defaultHarakiri);
    case 'cron-tab': return parseCrontab(o, defaultHarakiri);
    default: throw new ConfigError(`${o.key} is not a cron option`, o.source);
  }
}

/**
 * Every cron entry of a vassal's (checked) option list, in file order.
 * `cron-harakiri` (the last one) is the harakiri of entries that set none.
 * Throws ConfigError naming file:line for the first line it cannot read.
 */
export function parseCronOptions(options: OptionList): CronEntry[] {
  const harakiri = checkOptions(options).int('cron-harakiri');
  return options.filter((o) => CRON_KEYS.includes(o.key)).map((o) => parseCronOption(o, harakiri));
}
