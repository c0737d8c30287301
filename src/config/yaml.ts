// yaml.ts: uWSGI's YAML config, a 'uwsgi:' mapping (or FILE:section).
//
// Read with the `yaml` package's failsafe schema: every scalar is a string as
// written (0660 stays '0660', yes stays 'yes'), which is what uWSGI's own
// YAML reader hands to its options. A sequence is a repeated option, one per
// element in order; a key written twice counts twice (uniqueKeys: false), as
// in an ini file. An empty value ('master:') is a flag: 'true'.
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, Scalar } from 'yaml';
import { option } from './option';
import { ConfigError, OptionList } from './types';

export function parseYaml(text: string, file: string, section = 'uwsgi'): OptionList {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { schema: 'failsafe', uniqueKeys: false, lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    throw new ConfigError(e.message.split('\n')[0], { file, line: lineCounter.linePos(e.pos[0]).line });
  }
  const lineOf = (node: unknown): number | undefined => {
    const range = (node as { range?: [number, number, number] } | null)?.range;
    return range ? lineCounter.linePos(range[0]).line : undefined;
  };
  const root = doc.contents;
  if (!isMap(root)) throw new ConfigError('the document must be a mapping', { file, line: lineOf(root) });

  const out: OptionList = [];
  let found = false;
  for (const s of root.items) {
    if (!isScalar(s.key) || String(s.key.value) !== section) continue;
    found = true;
    if (!isMap(s.value)) throw new ConfigError(`'${section}' must be a mapping`, { file, line: lineOf(s.value ?? s.key) });
    for (const pair of s.value.items) {
      const keyLine = lineOf(pair.key);
      if (!isScalar(pair.key)) throw new ConfigError('an option name must be a plain scalar', { file, line: keyLine });
      const key = String(pair.key.value);
      const value = isAlias(pair.value) ? pair.value.resolve(doc) : pair.value;
      const items = isSeq(value) ? value.items : [value];
      for (const raw of items) {
        const item = isAlias(raw) ? raw.resolve(doc) : raw;
        const line = isSeq(value) ? lineOf(item) ?? keyLine : keyLine;
        if (item == null) {
          out.push(option(key, 'true', { file, line }));
        } else if (isScalar(item)) {
          const v = String(item.value);
          const bare = v === '' && item.type === Scalar.PLAIN;
          out.push(option(key, bare ? 'true' : v, { file, line }));
        } else {
          throw new ConfigError(`'${key}': a nested ${isMap(item) ? 'mapping' : 'sequence'} is not a value`, { file, line });
        }
      }
    }
  }
  if (!found) throw new ConfigError(`no '${section}:' mapping`, { file });
  return out;
}
