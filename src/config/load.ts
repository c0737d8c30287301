// load.ts: config files and the command line to one ordered option list.
//
// A file's format comes from its extension (.ini, .json, .yaml/.yml, .xml)
// unless an include option names it (--ini FILE). FILE:section picks another
// section than 'uwsgi' (for XML: the <uwsgi id=...>). Include options inside
// a file (ini = other.ini) are replaced by the other file's options at that
// point, as uWSGI does; relative paths are taken from the current directory,
// as uWSGI does. An include cycle is an error.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigFormat, includeFormat, parseFlags } from './flags';
import { parseIni } from './ini';
import { parseJson } from './json';
import { splitSpec } from './option';
import { parseXml } from './xml';
import { parseYaml } from './yaml';
import { ConfigError, OptionList, Source } from './types';

export type { ConfigFormat } from './flags';

const MAX_DEPTH = 16;

/** The format a path's extension names, or undefined. */
export function formatOf(file: string): ConfigFormat | undefined {
  switch (path.extname(file).toLowerCase()) {
    case '.ini': return 'ini';
    case '.json': case '.js': return 'json';
    case '.yaml': case '.yml': return 'yaml';
    case '.xml': return 'xml';
    default: return undefined;
  }
}

/** Parses config text already in memory (no include expansion). */
export function parseConfig(text: string, format: ConfigFormat, file: string, section?: string): OptionList {
  switch (format) {
    case 'ini': return parseIni(text, file, section);
    case 'json': return parseJson(text, file, section);
    case 'yaml': return parseYaml(text, file, section);
    case 'xml': return parseXml(text, file, section);
  }
}

function load(spec: string, format: ConfigFormat | undefined, from: Source | undefined, stack: string[]): OptionList {
  const { path: file, section } = splitSpec(spec);
  const fmt = format ?? formatOf(file);
  if (!fmt) throw new ConfigError(`${file}: unknown config format (use .ini, .json, .yaml, .yml or .xml)`, from);
  const id = `${path.resolve(file)}:${section ?? ''}`;
  if (stack.includes(id)) throw new ConfigError(`${spec} includes itself`, from);
  if (stack.length >= MAX_DEPTH) throw new ConfigError(`includes nested more than ${MAX_DEPTH} deep`, from);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, from);
  }
  const out: OptionList = [];
  for (const o of parseConfig(text, fmt, file, section)) {
    const inc = includeFormat(o.key);
    if (inc) out.push(...load(o.value, inc, o.source, [...stack, id]));
    else out.push(o);
  }
  return out;
}

/** Reads FILE[:section], expanding includes, with every option's file:line. */
export function loadFile(spec: string, format?: ConfigFormat): OptionList {
  return load(spec, format, undefined, []);
}

/** Reads a command line (without node and the script), loading files it names in place. */
export function loadArgv(argv: readonly string[]): OptionList {
  return parseFlags(argv, (spec, format, source) => load(spec, format, source, []));
}
