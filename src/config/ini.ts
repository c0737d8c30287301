// ini.ts: uWSGI's ini reader (core/ini.c in uWSGI 2.0), line by line.
//
// Rules, as uWSGI applies them:
// - A line is trimmed of blanks (space, tab, CR) at both ends.
// - '[name]' starts a section: the name is the line without its first and
//   last character. Only the asked section ('uwsgi' unless FILE:section) counts.
// - A line starting with ';' or '#' is a comment. Nowhere else is ';' or '#'
//   special: everything after the first '=' is the value, verbatim once
//   trimmed, quotes included (`exec-as-root = sh -c 'a; b' # note` is that
//   whole text).
// - Every occurrence of a key counts, in file order.
// - A bare key (no '=') is a flag; moat reads it as 'true'.
//
// Why a line scan and not the npm `ini` package: `ini` cannot give what this
// reader must return. It splits on /[\r\n]+/ (blank lines vanish, so no line
// numbers), and with `bracketedArray: false` it groups repeated keys into one
// array per key, losing the interleaving of different keys (exec-as-root and
// firewall lines must keep their relative order). Its values differ from
// uWSGI's too, even with ';', '#' and '\' escaped beforehand: a value wrapped
// in quotes loses them ('"a b"' becomes 'a b'), and 'true'/'false'/'null'
// become typed. The scan below is therefore the reader; the unit tests use
// `ini` (with that escaping) as an oracle for the values where the two agree.
import { option } from './option';
import { ConfigError, OptionList } from './types';

const BLANKS = /^[ \t\r]+|[ \t\r]+$/g;

export function parseIni(text: string, file: string, section = 'uwsgi'): OptionList {
  const out: OptionList = [];
  const lines = text.split('\n');
  let current = '';
  let found = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i].replace(BLANKS, '');
    if (line === '') continue;
    if (line[0] === '[') {
      current = line.slice(1, -1);
      if (current === section) found = true;
      continue;
    }
    if (line[0] === ';' || line[0] === '#') continue;
    if (current !== section) continue;
    const source = { file, line: i + 1 };
    const eq = line.indexOf('=');
    if (eq < 0) {
      out.push(option(line, 'true', source));
    } else {
      out.push(option(line.slice(0, eq), line.slice(eq + 1).replace(BLANKS, ''), source));
    }
  }
  if (!found) throw new ConfigError(`no [${section}] section`, { file });
  return out;
}
