// option.ts: small helpers shared by the config readers: key spelling,
// "FILE:section" specs, source text, and uWSGI's quoted field splitting.
import { ConfigError, Option, Source } from './types';

/** uWSGI spelling of an option name: lower case, '_' read as '-'. */
export function normaliseKey(key: string): string {
  return key.trim().toLowerCase().replace(/_/g, '-');
}

/** 'file:line' or 'file' (used in warnings; ConfigError formats its own). */
export function formatSource(source: Source): string {
  return source.line ? `${source.file}:${source.line}` : source.file;
}

/** Builds an option, refusing an empty key (a line such as ' = x'). */
export function option(key: string, value: string, source: Source): Option {
  const k = normaliseKey(key);
  if (k === '') throw new ConfigError('an option with an empty name', source);
  return { key: k, value, source };
}

/**
 * Splits uWSGI's 'FILE:section' spec. As in uWSGI, the section follows the last
 * ':'; 'FILE:' (empty section) and a path without ':' mean the default section
 * (section undefined).
 */
export function splitSpec(spec: string): { path: string; section?: string } {
  const colon = spec.lastIndexOf(':');
  if (colon < 0) return { path: spec };
  const section = spec.slice(colon + 1);
  return { path: spec.slice(0, colon), section: section === '' ? undefined : section };
}

/**
 * Splits a value into fields on blanks, keeping a quoted field ('a b' or
 * "a b") whole, as uWSGI's uwsgi_split_quoted() does for tuntap-router.
 */
export function splitQuoted(value: string, source?: Source, what = 'value'): string[] {
  const fields: string[] = [];
  let cur = '';
  let quote: string | null = null;
  let inField = false;
  for (const c of value) {
    if (quote) {
      if (c === quote) quote = null;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inField = true;
    } else if (c === ' ' || c === '\t') {
      if (inField) fields.push(cur);
      cur = '';
      inField = false;
    } else {
      cur += c;
      inField = true;
    }
  }
  if (quote) throw new ConfigError(`unterminated quote in ${what} '${value}'`, source);
  if (inField) fields.push(cur);
  return fields;
}

/** 1-based line of a character offset in text. */
export function lineAt(text: string, offset: number): number {
  let line = 1;
  const end = Math.min(offset, text.length);
  for (let i = 0; i < end; i++) if (text.charCodeAt(i) === 10) line++;
  return line;
}
