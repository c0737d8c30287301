// json.ts: uWSGI's JSON config, {"uwsgi": {"key": value, ...}}.
//
// A value is a string, a number (its text as written), a boolean ('true' or
// 'false'; uWSGI itself writes "1"/"0") or an array of those: one option per
// element, in order. null and nested objects are refused with their line.
//
// JSON.parse gives neither positions nor repeated keys, so this file carries
// a small JSON reader of its own that records the offset of every value and
// keeps every occurrence of a key (uWSGI's jansson keeps only the last; a
// repeated key here counts each time, as in an ini file). String escapes are
// decoded by JSON.parse on the string's own text.
import { lineAt, option } from './option';
import { ConfigError, OptionList } from './types';

type JNode =
  | { kind: 'object'; pos: number; entries: Array<{ key: string; pos: number; value: JNode }> }
  | { kind: 'array'; pos: number; items: JNode[] }
  | { kind: 'scalar'; pos: number; value: string; type: 'string' | 'number' | 'boolean' }
  | { kind: 'null'; pos: number };

class Reader {
  pos = 0;
  constructor(readonly text: string, readonly file: string) {}

  fail(message: string, pos = this.pos): never {
    throw new ConfigError(message, { file: this.file, line: lineAt(this.text, pos) });
  }

  skip(): void {
    while (this.pos < this.text.length && ' \t\r\n'.includes(this.text[this.pos])) this.pos++;
  }

  expect(c: string): void {
    this.skip();
    if (this.text[this.pos] !== c) this.fail(`expected '${c}' but found ${this.describe()}`);
    this.pos++;
  }

  describe(): string {
    return this.pos >= this.text.length ? 'the end of the file' : `'${this.text[this.pos]}'`;
  }

  value(depth: number): JNode {
    if (depth > 64) this.fail('nested too deeply');
    this.skip();
    const pos = this.pos;
    const c = this.text[pos];
    if (c === '{') {
      this.pos++;
      const entries: Array<{ key: string; pos: number; value: JNode }> = [];
      this.skip();
      if (this.text[this.pos] === '}') { this.pos++; return { kind: 'object', pos, entries }; }
      for (;;) {
        this.skip();
        const keyPos = this.pos;
        if (this.text[this.pos] !== '"') this.fail(`expected a key in double quotes but found ${this.describe()}`);
        const key = this.string();
        this.expect(':');
        entries.push({ key, pos: keyPos, value: this.value(depth + 1) });
        this.skip();
        if (this.text[this.pos] === ',') { this.pos++; continue; }
        if (this.text[this.pos] === '}') { this.pos++; return { kind: 'object', pos, entries }; }
        this.fail(`expected ',' or '}' but found ${this.describe()}`);
      }
    }
    if (c === '[') {
      this.pos++;
      const items: JNode[] = [];
      this.skip();
      if (this.text[this.pos] === ']') { this.pos++; return { kind: 'array', pos, items }; }
      for (;;) {
        items.push(this.value(depth + 1));
        this.skip();
        if (this.text[this.pos] === ',') { this.pos++; continue; }
        if (this.text[this.pos] === ']') { this.pos++; return { kind: 'array', pos, items }; }
        this.fail(`expected ',' or ']' but found ${this.describe()}`);
      }
    }
    if (c === '"') return { kind: 'scalar', pos, value: this.string(), type: 'string' };
    const word = /^(?:true|false|null|-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)/.exec(this.text.slice(pos, pos + 400));
    if (!word) this.fail(`expected a value but found ${this.describe()}`);
    this.pos += word[0].length;
    if (word[0] === 'null') return { kind: 'null', pos };
    if (word[0] === 'true' || word[0] === 'false') return { kind: 'scalar', pos, value: word[0], type: 'boolean' };
    return { kind: 'scalar', pos, value: word[0], type: 'number' };
  }

  string(): string {
    const start = this.pos;
    this.pos++;
    while (this.pos < this.text.length) {
      const c = this.text[this.pos];
      if (c === '\\') { this.pos += 2; continue; }
      if (c === '"') {
        this.pos++;
        try {
          return JSON.parse(this.text.slice(start, this.pos)) as string;
        } catch (e) {
          this.fail(`bad string: ${(e as Error).message}`, start);
        }
      }
      if (c === '\n') break;
      this.pos++;
    }
    this.fail('unterminated string', start);
  }
}

export function parseJson(text: string, file: string, section = 'uwsgi'): OptionList {
  const r: Reader = new Reader(text.replace(/^\uFEFF/, ''), file);
  const root = r.value(0);
  r.skip();
  if (r.pos < r.text.length) r.fail(`unexpected ${r.describe()} after the document`);
  if (root.kind !== 'object') r.fail('the document must be an object', root.pos);
  const out: OptionList = [];
  let found = false;
  for (const s of root.entries) {
    if (s.key !== section) continue;
    found = true;
    if (s.value.kind !== 'object') r.fail(`"${section}" must be an object`, s.value.pos);
    for (const e of s.value.entries) {
      const items = e.value.kind === 'array' ? e.value.items : [e.value];
      for (const item of items) {
        const source = { file, line: lineAt(r.text, item.kind === 'scalar' && e.value.kind !== 'array' ? e.pos : item.pos) };
        if (item.kind !== 'scalar') {
          throw new ConfigError(`"${e.key}": ${item.kind === 'null' ? 'null is not a value' : `a nested ${item.kind} is not a value`}`, source);
        }
        out.push(option(e.key, item.value, source));
      }
    }
  }
  if (!found) throw new ConfigError(`no "${section}" object`, { file });
  return out;
}
