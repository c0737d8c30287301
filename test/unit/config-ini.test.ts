// The ini reader against uWSGI's rules (core/ini.c).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import ini from 'ini';
import { parseIni } from '../../src/config/ini';
import { kvl, throwsConfig } from './config-helpers';

test('the value is everything after the first =, trimmed, verbatim', () => {
  const opts = parseIni([
    '[uwsgi]',
    "exec-as-root = sh -c 'a; b' # note",
    'a = "quoted"',
    "b = 'single' ",
    'c = x=y=z',
    'd = back\\slash \\; kept',
    '\te\t=\t tabs \t',
  ].join('\n'), 'v.ini');
  assert.deepEqual(kvl(opts), [
    ['exec-as-root', "sh -c 'a; b' # note", 2],
    ['a', '"quoted"', 3],
    ['b', "'single'", 4],
    ['c', 'x=y=z', 5],
    ['d', 'back\\slash \\; kept', 6],
    ['e', 'tabs', 7],
  ]);
});

test('repeated keys all count, in file order, with their lines', () => {
  const text = [
    '; a comment',
    '[uwsgi]',
    'exec-as-root = one',
    '',
    'tuntap-router-firewall-out = allow',
    '# another comment',
    '   ; an indented comment',
    'exec-as-root = two',
    'tuntap-router-firewall-out = deny',
    'exec-as-root = three',
  ].join('\n');
  assert.deepEqual(kvl(parseIni(text, 'v.ini')), [
    ['exec-as-root', 'one', 3],
    ['tuntap-router-firewall-out', 'allow', 5],
    ['exec-as-root', 'two', 8],
    ['tuntap-router-firewall-out', 'deny', 9],
    ['exec-as-root', 'three', 10],
  ]);
});

test('other sections are ignored; a section may come back; FILE:section picks another', () => {
  const text = '[uwsgi]\na = 1\n[other]\na = 2\nb = 3\n[uwsgi]\nc = 4\n';
  assert.deepEqual(kvl(parseIni(text, 'v.ini')), [['a', '1', 2], ['c', '4', 7]]);
  assert.deepEqual(kvl(parseIni(text, 'v.ini', 'other')), [['a', '2', 4], ['b', '3', 5]]);
  throwsConfig(() => parseIni('a = 1\n[x]\nb = 2\n', 'v.ini'), /^v\.ini: no \[uwsgi\] section/);
  // keys before any section belong to no section
  assert.deepEqual(kvl(parseIni('a = 1\n[uwsgi]\nb = 2', 'v.ini')), [['b', '2', 3]]);
});

test('bare keys are flags; an empty value stays empty; keys are normalised', () => {
  const opts = parseIni('[uwsgi]\nmaster\nempty =\nTunTap_Use_Credentials\n', 'v.ini');
  assert.deepEqual(kvl(opts), [['master', 'true', 2], ['empty', '', 3], ['tuntap-use-credentials', 'true', 4]]);
});

test('CRLF line ends and a last line without a newline', () => {
  assert.deepEqual(kvl(parseIni('[uwsgi]\r\na = 1\r\nb = 2', 'v.ini')), [['a', '1', 2], ['b', '2', 3]]);
});

test('a line with an empty key is an error naming its line', () => {
  throwsConfig(() => parseIni('[uwsgi]\n\n = x\n', 'v.ini'), /empty name/, 3);
});

test('the npm ini package differs from uWSGI where the comment in ini.ts says', () => {
  // Why ini.ts scans lines itself: ini strips quotes even with escaping, and
  // folds repeated keys into one array per key.
  const parsed = ini.parse('[uwsgi]\na = "x y"\nb = 1\na = 2\n', { bracketedArray: false }) as Record<string, Record<string, unknown>>;
  assert.deepEqual(parsed.uwsgi.a, ['x y', '2']);
  assert.deepEqual(kvl(parseIni('[uwsgi]\na = "x y"\nb = 1\na = 2\n', 'v.ini')), [['a', '"x y"', 2], ['b', '1', 3], ['a', '2', 4]]);
});

test('values agree with ini.parse after escaping ; # and \\ (where ini can agree)', () => {
  const chars = fc.constantFrom(...'ab ;#\\=\'"[]x\t$%(){}/.-_0'.split(''));
  const value = fc.string({ unit: chars, maxLength: 30 })
    .map((s) => s.trim())
    .filter((s) => !(s !== '' && (s[0] === '"' || s[0] === "'") && s.endsWith(s[0])) && !['true', 'false', 'null'].includes(s));
  fc.assert(fc.property(fc.array(value, { minLength: 1, maxLength: 5 }), (values) => {
    const raw = '[uwsgi]\n' + values.map((v) => `k = ${v}`).join('\n') + '\n';
    const escaped = '[uwsgi]\n' + values.map((v) => `k = ${v.replace(/[\\;#]/g, (c) => '\\' + c)}`).join('\n') + '\n';
    const ours = parseIni(raw, 'p.ini').map((o) => o.value);
    const theirs = (ini.parse(escaped, { bracketedArray: false }) as Record<string, Record<string, unknown>>).uwsgi.k;
    assert.deepEqual(ours, ([] as unknown[]).concat(theirs ?? []).map((v) => (v === true ? '' : String(v))));
  }), { numRuns: 300 });
});
