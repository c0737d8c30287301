// parse.ts: one line of the rule language -> a rule AST, with the 1-based
// column of every token so that every error can point at its cause.
//
// Grammar (one rule per line, '#' starts a comment that runs to the end of the line):
//   file line:   in|out RULE
//   option:      RULE                       (tuntap-router-firewall-in/out = RULE)
//   RULE:        ACTION                     (bare: matches every packet)
//              | ACTION SRC DST MATCH*
//   ACTION:      allow | deny | reject      (reject: a deny that answers)
//   SRC, DST:    A.B.C.D[/BITS]             (no /BITS = /32; 0.0.0.0 matches any)
//   MATCH:       proto tcp|udp|icmp|N  |  sport LIST  |  dport LIST  |  icmp-type N
//              | state STATES
//   LIST:        PORT or LO-HI, comma separated (tcp/udp only)
//   STATES:      new, established, related, invalid, comma separated
//
// Files are strict: host bits set in a network are an error. Options are read
// as uWSGI reads them where that is harmless (host bits are masked, with a
// warning) and refused where uWSGI silently misreads them (a typo'd action
// becomes allow, a one-address rule is skipped).
import type { Chain } from './types';
import { STATES } from '../native';
import { RuleError } from './types';

export interface Token {
  text: string;
  col: number;   // 1-based column of the token's first character
}

export interface Address {
  addr: number;  // uint32 host order, masked
  bits: number;  // 0..32; an address of 0 is stored as 0/0 (matches any)
  col: number;
}

export interface RuleAst {
  chain: Chain;
  action: Action;
  actionCol: number;
  src: Address;
  dst: Address;
  proto: number;                     // -1 any
  protoCol: number;                  // 0 when absent
  sport: Array<[number, number]>;    // as written (compile.ts normalises)
  dport: Array<[number, number]>;
  icmpType: number;                  // -1 any
  states: number;                    // bits 1 << STATES index; 0 any
}

export type Action = 'allow' | 'deny' | 'reject';
const ACTIONS: readonly string[] = ['allow', 'deny', 'reject'];

/** Where a line came from. File errors read `file:line:column: reason`;
 *  option errors `file:line: tuntap-router-firewall-X (option:N): reason`. */
export interface LineSource {
  file: string;
  line: number;  // 1-based; 0 when the source has no lines (command-line flags)
}

export const PROTOCOLS: Readonly<Record<string, number>> = { icmp: 1, tcp: 6, udp: 17 };
export const PROTO_NAMES: Readonly<Record<number, string>> = { 1: 'icmp', 6: 'tcp', 17: 'udp' };
const KEYWORDS = ['proto', 'sport', 'dport', 'icmp-type', 'state'] as const;
type Keyword = (typeof KEYWORDS)[number];

/** Splits a line into tokens with their columns; '#' ends the line. */
export function tokenize(line: string): Token[] {
  const hash = line.indexOf('#');
  const body = hash >= 0 ? line.slice(0, hash) : line;
  const tokens: Token[] = [];
  const re = /\S+/g;
  for (let m = re.exec(body); m; m = re.exec(body)) tokens.push({ text: m[0], col: m.index + 1 });
  return tokens;
}

/** Strict dotted quad: four decimal numbers 0..255. Returns null if not one. */
export function parseIpv4(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let v = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p)) return null;
    const n = Number(p);
    if (n > 255) return null;
    v = v * 256 + n;
  }
  return v >>> 0;
}

export function formatIpv4(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

export function maskOf(bits: number): number {
  return bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;  // no shift by 32 (uWSGI's /0 bug)
}

/** A protocol by name (tcp, udp, icmp) or number 0..255; null if neither. */
export function parseProto(text: string): number | null {
  if (Object.prototype.hasOwnProperty.call(PROTOCOLS, text)) return PROTOCOLS[text];
  if (/^\d{1,3}$/.test(text) && Number(text) <= 255) return Number(text);
  return null;
}

function isKeyword(t: string): t is Keyword {
  return (KEYWORDS as readonly string[]).includes(t);
}

class LineParser {
  readonly warnings: string[] = [];

  constructor(
    private readonly where: LineSource,
    private readonly mode: 'file' | 'option',
    private readonly optionName: string,  // for option messages: 'tuntap-router-firewall-out (option:2)'
  ) {}

  fail(col: number, reason: string): never {
    if (this.mode === 'file') throw new RuleError(`${this.where.file}:${this.where.line}:${col}: ${reason}`);
    // An option's value has no column in its file: name the source and the option (the reason quotes the token).
    throw new RuleError(`${optionPlace(this.where)}: ${this.optionName}: ${reason}`);
  }

  address(tok: Token, role: 'source' | 'destination'): Address {
    const slash = tok.text.indexOf('/');
    const addrText = slash >= 0 ? tok.text.slice(0, slash) : tok.text;
    const addr = parseIpv4(addrText);
    if (addr === null) this.fail(tok.col, `bad ${role} address '${addrText}' (expected A.B.C.D[/BITS])`);
    let bits = 32;
    if (slash >= 0) {
      const bitsText = tok.text.slice(slash + 1);
      if (!/^\d{1,2}$/.test(bitsText) || Number(bitsText) > 32)
        this.fail(tok.col + slash + 1, `bad ${role} mask '/${bitsText}' (expected /0 to /32)`);
      bits = Number(bitsText);
    }
    const masked = (addr & maskOf(bits)) >>> 0;
    if (masked !== addr) {
      const fixed = `${formatIpv4(masked)}/${bits}`;
      if (this.mode === 'file') this.fail(tok.col, `host bits set in ${role} '${tok.text}' (did you mean ${fixed}?)`);
      this.warnings.push(`${optionPlace(this.where)}: ${this.optionName}: host bits set in ${role} '${tok.text}', read as ${fixed}`);
    }
    return masked === 0 ? { addr: 0, bits: 0, col: tok.col } : { addr: masked, bits, col: tok.col };
  }

  ports(tok: Token, keyword: string): Array<[number, number]> {
    const ranges: Array<[number, number]> = [];
    let offset = 0;
    for (const item of tok.text.split(',')) {
      const col = tok.col + offset;
      offset += item.length + 1;
      const m = /^(\d+)(?:-(\d+))?$/.exec(item);
      if (!m) this.fail(col, `bad ${keyword} '${item}' (expected PORT or LO-HI, comma separated)`);
      const lo = Number(m[1]);
      const hi = m[2] === undefined ? lo : Number(m[2]);
      if (m[1].length > 5 || lo > 65535) this.fail(col, `${keyword} ${m[1]} is outside 0-65535`);
      if (m[2] !== undefined && (m[2].length > 5 || hi > 65535))
        this.fail(col + m[1].length + 1, `${keyword} ${m[2]} is outside 0-65535`);
      if (hi < lo) this.fail(col, `${keyword} range ${item} is reversed (write ${hi}-${lo})`);
      ranges.push([lo, hi]);
    }
    return ranges;
  }

  states(tok: Token): number {
    let bits = 0;
    let offset = 0;
    for (const item of tok.text.split(',')) {
      const col = tok.col + offset;
      offset += item.length + 1;
      const i = (STATES as readonly string[]).indexOf(item);
      if (i < 0) this.fail(col, `unknown state '${item}' (expected ${STATES.join(', ')}, comma separated)`);
      if (bits & (1 << i)) this.fail(col, `state '${item}' listed twice`);
      bits |= 1 << i;
    }
    return bits;
  }

  /** tokens: the rule's tokens, without the chain word. */
  rule(chain: Chain, tokens: Token[], lineEndCol: number): RuleAst {
    const [act, ...rest] = tokens;
    if (!ACTIONS.includes(act.text)) {
      const hint = this.mode === 'option' ? '; uWSGI would read it as allow' : '';
      this.fail(act.col, `unknown action '${act.text}' (expected allow, deny or reject${hint})`);
    }
    const any: Address = { addr: 0, bits: 0, col: 0 };
    const ast: RuleAst = {
      chain, action: act.text as Action, actionCol: act.col, src: any, dst: { ...any },
      proto: -1, protoCol: 0, sport: [], dport: [], icmpType: -1, states: 0,
    };
    if (rest.length === 0) return ast;  // bare allow / deny
    const skipped = this.mode === 'option' ? ' (uWSGI would skip this rule)' : '';
    if (isKeyword(rest[0].text))
      this.fail(rest[0].col, `expected a source address before '${rest[0].text}' (write 0.0.0.0/0 0.0.0.0/0 to match any)`);
    if (rest.length === 1 || isKeyword(rest[1].text))
      this.fail(rest.length === 1 ? lineEndCol : rest[1].col, `'${act.text}' needs a source and a destination address, found only one${skipped}`);
    ast.src = this.address(rest[0], 'source');
    ast.dst = this.address(rest[1], 'destination');

    const seen = new Map<Keyword, Token>();
    for (let i = 2; i < rest.length; i += 2) {
      const kw = rest[i];
      if (!isKeyword(kw.text)) this.fail(kw.col, `unknown keyword '${kw.text}' (expected proto, sport, dport, icmp-type or state)`);
      if (seen.has(kw.text)) this.fail(kw.col, `duplicate '${kw.text}' (first at column ${seen.get(kw.text)!.col})`);
      seen.set(kw.text, kw);
      const val = rest[i + 1];
      if (!val) this.fail(lineEndCol, `'${kw.text}' needs a value`);
      switch (kw.text) {
        case 'proto': {
          const p = parseProto(val.text);
          if (p === null) this.fail(val.col, `bad protocol '${val.text}' (expected tcp, udp, icmp or 0-255)`);
          ast.proto = p;
          ast.protoCol = kw.col;
          break;
        }
        case 'sport': ast.sport = this.ports(val, 'sport'); break;
        case 'dport': ast.dport = this.ports(val, 'dport'); break;
        case 'icmp-type': {
          if (!/^\d+$/.test(val.text) || val.text.length > 3 || Number(val.text) > 255)
            this.fail(val.col, `icmp-type '${val.text}' is outside 0-255`);
          ast.icmpType = Number(val.text);
          break;
        }
        case 'state': ast.states = this.states(val); break;
      }
    }
    // Cross checks, once every match is known (the order of matches is free).
    for (const k of ['sport', 'dport'] as const) {
      const kw = seen.get(k);
      if (kw && ast.proto !== 6 && ast.proto !== 17)
        this.fail(kw.col, ast.proto === -1
          ? `'${k}' needs 'proto tcp' or 'proto udp'`
          : `'${k}' applies to tcp and udp only, not ${PROTO_NAMES[ast.proto] ?? 'protocol ' + ast.proto}`);
    }
    const it = seen.get('icmp-type');
    if (it && ast.proto !== 1) this.fail(it.col, `'icmp-type' needs 'proto icmp'`);
    return ast;
  }
}

export interface ParsedLine {
  rule: RuleAst | null;   // null: blank or comment
  warnings: string[];
}

/** A line of a rule file: `in|out RULE`. Throws RuleError. */
export function parseFileLine(text: string, where: LineSource): ParsedLine {
  const tokens = tokenize(text);
  if (tokens.length === 0) return { rule: null, warnings: [] };
  const p = new LineParser(where, 'file', '');
  const first = tokens[0];
  if (first.text !== 'in' && first.text !== 'out') {
    if (ACTIONS.includes(first.text))
      p.fail(first.col, `missing chain word: write 'in ${first.text} ...' or 'out ${first.text} ...'`);
    p.fail(first.col, `unknown chain '${first.text}' (expected in or out)`);
  }
  if (tokens.length === 1) p.fail(endCol(text), `missing action after '${first.text}' (expected allow, deny or reject)`);
  const rule = p.rule(first.text as Chain, tokens.slice(1), endCol(text));
  return { rule, warnings: p.warnings };
}

/** The value of a tuntap-router-firewall-in/out option (or, with option
 *  'vassal-firewall', a vassal file's). Throws RuleError naming the
 *  option's source; host bits are masked with a warning. */
export function parseOptionRule(text: string, chain: Chain, where: LineSource, index: number, option = 'tuntap-router-firewall'): ParsedLine {
  const name = `${option}-${chain} (option:${index})`;
  const p = new LineParser(where, 'option', name);
  const tokens = tokenize(text);
  if (tokens.length === 0) p.fail(1, 'empty rule (expected allow, deny or reject)');
  const rule = p.rule(chain, tokens, endCol(text));
  return { rule, warnings: p.warnings };
}

/** file:line of an option, or just the file when its format has no lines (flags). */
function optionPlace(where: LineSource): string {
  return where.line > 0 ? `${where.file}:${where.line}` : where.file;
}

/** The column just past the last token: where a missing word would go. */
function endCol(text: string): number {
  const hash = text.indexOf('#');
  const body = hash >= 0 ? text.slice(0, hash) : text;
  return body.trimEnd().length + 1;
}
