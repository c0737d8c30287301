// flags.ts: the command line as uWSGI takes it. Every option is
// `--key value` or `--key=value`; options the table knows as booleans
// (--master, --tuntap-use-credentials, ...) take no value unless written
// `--key=value`. `--ini FILE`, `--yaml/--yml FILE`, `--json FILE` and
// `--xml FILE` (FILE[:section]) read that file at that point, so its options
// sit between the flags before and after it. A bare argument naming a config
// file by its extension is read the same way (`uwsgi vassal.ini`).
// Unknown options are kept for the caller to judge; a known option without
// its value is an error.
import { option } from './option';
import { findOption, takesNoValue } from './schema';
import { ConfigError, OptionList, Source } from './types';

export type ConfigFormat = 'ini' | 'yaml' | 'json' | 'xml';

/** Reads one config file (spec = FILE[:section]) in the given format. */
export type FileLoader = (spec: string, format: ConfigFormat | undefined, source: Source) => OptionList;

const FLAGS: Source = { file: '<flags>' };

/** The format an include option names ('yml' is 'yaml'), if key is one. */
export function includeFormat(key: string): ConfigFormat | undefined {
  const name = findOption(key)?.name;
  return name === 'ini' || name === 'yaml' || name === 'json' || name === 'xml' ? name : undefined;
}

export function parseFlags(argv: readonly string[], load: FileLoader): OptionList {
  const out: OptionList = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (!arg.startsWith('-')) {
      if (!/\.(ini|json|js|ya?ml|xml)(:[^/]*)?$/.test(arg)) {
        throw new ConfigError(`'${arg}' is neither an option nor a config file (.ini, .json, .yaml, .yml, .xml)`, FLAGS);
      }
      out.push(...load(arg, undefined, FLAGS));
      continue;
    }
    if (!arg.startsWith('--') || arg === '--') {
      throw new ConfigError(`'${arg}': write options in full as --name [value]`, FLAGS);
    }
    const eq = arg.indexOf('=');
    const key = arg.slice(2, eq < 0 ? undefined : eq);
    if (key === '') throw new ConfigError(`'${arg}': an option with an empty name`, FLAGS);
    let value: string;
    if (eq >= 0) {
      value = arg.slice(eq + 1);
    } else if (takesNoValue(key)) {
      value = 'true';
    } else if (findOption(key)) {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new ConfigError(`--${key} needs a value`, FLAGS);
      value = next;
      i++;
    } else {
      // Unknown: take the next word as its value unless it is an option.
      const next = argv[i + 1];
      if (next !== undefined && !next.startsWith('-')) { value = next; i++; } else value = 'true';
    }
    const format = includeFormat(key);
    if (format) {
      if (value === '' || value === 'true' && eq < 0) throw new ConfigError(`--${key} needs a file`, FLAGS);
      out.push(...load(value, format, FLAGS));
    } else {
      out.push(option(key, value, FLAGS));
    }
  }
  return out;
}
