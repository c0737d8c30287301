// xml.ts: uWSGI's XML config, <uwsgi><key>value</key>...</uwsgi>.
//
// As in uWSGI (core/xmlconf.c): the root element is <uwsgi>, or the root
// holds several <uwsgi> elements and FILE:id picks the one with that id
// attribute (the first one without FILE:id). A child element with an id
// attribute that differs from the asked id is skipped. An empty element
// (<master/>) is a flag, 'true'. Repeated elements count in document order.
//
// fast-xml-parser (preserveOrder) reads the values; it gives no positions, so
// a small tag scan over the same text finds where each element starts, and
// the two are matched in document order for line numbers.
import { XMLParser, XMLValidator } from 'fast-xml-parser';
import { lineAt, option } from './option';
import { ConfigError, OptionList } from './types';

type Node = Record<string, unknown> & { ':@'?: Record<string, string> };

interface Tag { name: string; offset: number; parent: number }

/** Every element start in document order, with its parent's index (-1 at top). */
function scanTags(text: string): Tag[] {
  const tags: Tag[] = [];
  const open: number[] = [];
  let i = 0;
  while ((i = text.indexOf('<', i)) >= 0) {
    const skipTo = (end: string): void => { const j = text.indexOf(end, i); i = j < 0 ? text.length : j + end.length; };
    if (text.startsWith('<!--', i)) skipTo('-->');
    else if (text.startsWith('<![CDATA[', i)) skipTo(']]>');
    else if (text.startsWith('<?', i)) skipTo('?>');
    else if (text.startsWith('<!', i)) skipTo('>');
    else if (text[i + 1] === '/') { open.pop(); skipTo('>'); }
    else {
      const name = /^<([^\s/>]+)/.exec(text.slice(i, i + 256))?.[1] ?? '';
      const start = i;
      let quote = '';
      let j = i + 1;
      for (; j < text.length; j++) {
        const c = text[j];
        if (quote) { if (c === quote) quote = ''; } else if (c === '"' || c === "'") quote = c; else if (c === '>') break;
      }
      tags.push({ name, offset: start, parent: open.length ? open[open.length - 1] : -1 });
      if (text[j - 1] !== '/') open.push(tags.length - 1);
      i = j + 1;
    }
  }
  return tags;
}

const tagOf = (n: Node): string | undefined => Object.keys(n).find((k) => k !== ':@');

export function parseXml(text: string, file: string, id?: string): OptionList {
  const valid = XMLValidator.validate(text);
  if (valid !== true) throw new ConfigError(valid.err.msg, { file, line: valid.err.line });
  const parser = new XMLParser({
    preserveOrder: true, ignoreAttributes: false, attributeNamePrefix: '',
    parseTagValue: false, parseAttributeValue: false, trimValues: true,
  });
  // The validator passes some markup the parser then refuses (an unclosed
  // comment or CDATA after the root): that is a ConfigError at its line.
  let doc: Node[];
  try {
    doc = parser.parse(text) as Node[];
  } catch (e) {
    const at = text.lastIndexOf('<!');
    throw new ConfigError((e as Error).message, { file, line: lineAt(text, at < 0 ? 0 : at) });
  }
  const elements = (list: Node[]): Node[] => list.filter((n) => { const t = tagOf(n); return t !== undefined && !t.startsWith('?') && t !== '#text'; });
  const tags = scanTags(text);
  const roots = elements(doc);
  if (roots.length !== 1) throw new ConfigError('expected one root element', { file });
  const root = roots[0];
  const rootTag = tags.findIndex((t) => t.parent === -1);

  // The chosen <uwsgi> element and its index among the scanned tags.
  let chosen: Node | undefined;
  let chosenTag = -1;
  if (tagOf(root) === 'uwsgi') {
    chosen = root;
    chosenTag = rootTag;
  } else {
    const kids = elements(root[tagOf(root)!] as Node[]);
    const kidTags = tags.map((t, k) => ({ t, k })).filter(({ t }) => t.parent === rootTag);
    kids.forEach((n, k) => {
      if (chosen || tagOf(n) !== 'uwsgi') return;
      const nid = n[':@']?.id;
      if (id !== undefined && nid !== undefined && nid !== id) return;
      chosen = n;
      chosenTag = kidTags[k]?.k ?? -1;
    });
    if (!chosen) throw new ConfigError(`no <uwsgi${id ? ` id="${id}"` : ''}> element`, { file });
  }

  const children = elements(chosen[tagOf(chosen)!] as Node[]);
  const childTags = tags.filter((t) => t.parent === chosenTag && chosenTag >= 0);
  const lines = childTags.length === children.length ? childTags.map((t) => lineAt(text, t.offset)) : [];
  const out: OptionList = [];
  children.forEach((n, k) => {
    const key = tagOf(n)!;
    const source = { file, line: lines[k] ?? lineAt(text, tags[chosenTag]?.offset ?? 0) };
    if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(key)) throw new ConfigError(`<${key}>: not an option name`, source);
    const nid = n[':@']?.id;
    if (id !== undefined && nid !== undefined && nid !== id) return;
    const content = n[key] as Node[];
    if (content.length === 0) {
      out.push(option(key, 'true', source));
    } else if (content.length === 1 && '#text' in content[0]) {
      out.push(option(key, String(content[0]['#text']), source));
    } else {
      throw new ConfigError(`<${key}>: nested elements are not a value`, source);
    }
  });
  return out;
}
