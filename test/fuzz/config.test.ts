// config.test.ts: fast-check fuzz of the config readers (src/config/): ini,
// JSON, YAML and XML text, command lines, and option lists handed to
// routerConfig/deviceConfig. Nothing but ConfigError may come out, and every
// ConfigError names its place: file:line where the text has a line for it.
// The few errors about a whole document (a missing section, a missing
// tuntap-router option) have no line; they are listed here by message, so a
// new line-less error fails this test and gets looked at.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseIni } from '../../src/config/ini';
import { parseJson } from '../../src/config/json';
import { parseYaml } from '../../src/config/yaml';
import { parseXml } from '../../src/config/xml';
import { parseFlags } from '../../src/config/flags';
import { routerConfig, deviceConfig } from '../../src/config/router-config';
import { ConfigError, OptionList } from '../../src/config/types';
import { onlyThrows, params, textOf } from './fuzz-helpers';

/** Errors that concern the whole document and so carry the file alone. */
const WHOLE_DOCUMENT = [
  /^no \[[^\]]*\] section$/, /^no "[^"]*" object$/, /^no '[^']*:' mapping$/, /^no <uwsgi[^>]*> element$/,
  /^expected one root element$/, /^the document must be a mapping$/,
];

/** The error names file:N with 1 <= N <= the text's lines, or is a whole-document error naming the file. */
function checkPlace(e: ConfigError, file: string, text: string): void {
  const lines = text.split('\n').length;
  const m = /^([^:]+):(\d+): (.+)$/s.exec(e.message);
  if (m && m[1] === file) {
    const n = Number(m[2]);
    assert.ok(n >= 1 && n <= lines, `line ${n} outside the text's ${lines} lines: ${e.message}\ninput: ${JSON.stringify(text)}`);
    assert.equal(e.source?.line, n);
    return;
  }
  const rest = e.message.startsWith(`${file}: `) ? e.message.slice(file.length + 2) : undefined;
  assert.ok(rest !== undefined && WHOLE_DOCUMENT.some((re) => re.test(rest)),
    `error without file:line: ${JSON.stringify(e.message)}\ninput: ${JSON.stringify(text)}`);
}

function fuzzReader(name: string, file: string, parse: (text: string) => OptionList, text: fc.Arbitrary<string>, runs?: number): void {
  test(`${name}: arbitrary text gives options with file:line, or a ConfigError with its place`, () => {
    let ok = 0;
    let n = 0;
    fc.assert(fc.property(text, (t) => {
      n++;
      let out: OptionList = [];
      const e = onlyThrows(() => { out = parse(t); }, ConfigError, new RegExp(`^${file.replace(/\./g, '\\.')}(:\\d+)?: `), t);
      if (e) return checkPlace(e, file, t);
      ok++;
      const lines = t.split('\n').length;
      for (const o of out) {
        assert.equal(o.source.file, file);
        assert.ok(o.source.line !== undefined && o.source.line >= 1 && o.source.line <= lines, `option ${o.key} at line ${o.source.line} of ${lines}: ${JSON.stringify(t)}`);
        assert.ok(o.key.length > 0 && o.key === o.key.toLowerCase() && !o.key.includes('_'), `key ${JSON.stringify(o.key)}`);
        assert.equal(typeof o.value, 'string');
      }
    }), params(runs));
    assert.ok(ok > 0, `${name}: no input parsed (of ${n})`);
    console.log(`# ${name}: ${ok} of ${n} inputs parsed`);
  });
}

const KEYS = ['tuntap-router', 'tuntap_router', 'TunTap-Device', 'master', 'uid', 'exec-as-root', 'tuntap-router-firewall-in', 'x', 'ini', 'json', 'yaml', 'xml'];

const iniText = textOf(['[uwsgi]', '[uwsgi]\n', '[other]\n', '[', ']', '=', ' = ', ';', '#', '\n', '\r\n', ...KEYS, 'tun0 /tmp/s.sock', "'quoted'", '"x"', '\\'], 30);
fuzzReader('ini', 'fz/v.ini', (t) => parseIni(t, 'fz/v.ini'), fc.oneof(iniText, iniText.map((t) => `[uwsgi]\n${t}`)));

const jsonText = textOf(['{', '}', '[', ']', ':', ',', '"uwsgi"', '"', '\\', '\\u00', '\\n', 'true', 'false', 'null', '0', '-1', '1.5e3', '01', ...KEYS.map((k) => `"${k}"`), '\n', ' '], 30);
const jsonDoc = fc.oneof(
  jsonText,
  jsonText.map((t) => `{"uwsgi": {${t}`),
  fc.dictionary(fc.constantFrom(...KEYS), fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null), fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null)), { maxLength: 3 }), fc.jsonValue({ maxDepth: 2 })))
    .chain((o) => fc.nat(3).map((ws) => JSON.stringify({ uwsgi: o }, null, ws))),
  fc.json({ maxDepth: 4 }),
);
fuzzReader('json', 'fz/v.json', (t) => parseJson(t, 'fz/v.json'), jsonDoc);

const yamlText = textOf(['uwsgi:', 'uwsgi:\n', '  ', '- ', ':', ': ', '\n', '&a ', '*a', '!!str ', '!tag ', '|', '>', '{', '}', '[', ']', ',', '#', '"', "'", '%YAML 1.2\n', '---\n', '...\n', '? ', '<<: *a', ...KEYS.map((k) => `  ${k}: `)], 30);
fuzzReader('yaml', 'fz/v.yaml', (t) => parseYaml(t, 'fz/v.yaml'), fc.oneof(yamlText, yamlText.map((t) => `uwsgi:\n  ${t}`)), 800);

const xmlText = textOf(['<uwsgi>', '</uwsgi>', '<uwsgi id="a">', '<uwsgi/>', '<root>', '</root>', '<', '>', '/>', '</', '<!--', '-->', '<![CDATA[', ']]>', '<?xml version="1.0"?>', '<!DOCTYPE x>', '&amp;', '&lt;', '&#0;', '&x;', '"', "'", '=', ' id="b"',
  ...KEYS.flatMap((k) => [`<${k}>`, `</${k}>`, `<${k}/>`]), '\n', ' '], 30);
fuzzReader('xml', 'fz/v.xml', (t) => parseXml(t, 'fz/v.xml'), fc.oneof(xmlText, xmlText.map((t) => `<uwsgi>${t}</uwsgi>`)), 800);

test('command line: arbitrary argv gives options or a ConfigError naming <flags>', () => {
  const arg = fc.oneof(
    textOf(['--', '-', '=', '--ini', '--yaml', '--yml', '--json', '--xml', '--master', '--master=', 'x.ini', 'v.yml:sec', ...KEYS.map((k) => `--${k}`)], 4),
    fc.string({ maxLength: 8 }),
  );
  fc.assert(fc.property(fc.array(arg, { maxLength: 8 }), (argv) => {
    const loaded: string[] = [];
    // The loader stands in for files: it sees what would be read, and reads nothing.
    onlyThrows(() => parseFlags(argv, (spec) => { loaded.push(spec); return []; }), ConfigError, /^<flags>: \S/, argv);
  }), params());
});

/** Option lists made of the options routerConfig/deviceConfig read, with any values. */
const ROUTER_KEYS = ['tuntap-router', 'tuntap-router-stats', 'tuntap-router-socket-mode', 'tuntap-router-socket-owner', 'tuntap-router-max-frame',
  'tuntap-router-queue-bytes', 'tuntap-router-firewall-in', 'tuntap-router-firewall-out', 'tuntap-router-firewall-file', 'tuntap-router-bind',
  'tuntap-use-credentials', 'metrics', 'tuntap-router-netns', 'tuntap-device', 'tuntap-device-max-frame', 'tuntap-device-queue-bytes',
  'tuntap-device-reconnect-min', 'tuntap-device-reconnect-max', 'tuntap-device-netns', 'tuntap-router-route', 'tuntap-device-rule', 'master', 'log-level', 'unknown-thing'];
const value = fc.oneof(
  textOf(['tun0', 'mt0', '/tmp/s.sock', '127.0.0.1:9000', ':9000', 'root', 'nobody', '0', '65534', '10.0.0.2', '0.0.0.0', '0660', '8188', '576', '65535', '1e3', 'true', 'false', 'yes', '0x10', ' ', "'", '"', ':', '/run/netns/x', 'a'.repeat(120)], 5),
  fc.string({ maxLength: 10 }),
);
const optionList = fc.array(fc.tuple(fc.constantFrom(...ROUTER_KEYS), value, fc.integer({ min: 1, max: 50 })), { maxLength: 8 })
  .map((l) => l.map(([key, v, line]) => ({ key, value: v, source: { file: 'fz/v.ini', line } })));

for (const [name, fn, what] of [['routerConfig', routerConfig, 'tuntap-router'], ['deviceConfig', deviceConfig, 'tuntap-device']] as const) {
  test(`${name}: any option values give a config or a ConfigError with file:line`, () => {
    let ok = 0;
    // A well-formed main option half the time: a random one is almost never
    // (about 5 in 1,500 for tuntap-router), and the rest must get a chance.
    const mainValue = fc.oneof(value, fc.constantFrom('mt0 /tmp/s.sock', 'tun0 /tmp/s.sock 127.0.0.1:9000', "mt0 '/tmp/s.sock'"));
    fc.assert(fc.property(fc.tuple(mainValue, optionList), ([main, rest]) => {
      const opts = [{ key: what, value: main, source: { file: 'fz/v.ini', line: 1 } }, ...rest];
      const e = onlyThrows(() => fn(opts), ConfigError, /^fz\/v\.ini:\d+: \S/, opts);
      if (!e) ok++;
    }), params());
    assert.ok(ok > 0, `${name}: nothing was accepted`);
    console.log(`# ${name}: ${ok} option lists accepted`);
    // Without its main option: the one error without a line.
    assert.throws(() => fn([]), (e: unknown) => e instanceof ConfigError && e.message.startsWith(`no ${what} option`));
  });
}

// Inputs the fuzzing above found, replayed every run (each failed when found).
const FOUND: Array<[string, string, (t: string) => OptionList]> = [
  // fast-xml-parser's validator passes an unclosed comment or CDATA after the
  // root element, and its parser then throws a plain Error.
  ['xml', '<x/><!--', (t) => parseXml(t, 'fz/v.xml')],
  ['xml', '<master/><![CDATA[', (t) => parseXml(t, 'fz/v.xml')],
  ['xml', '<uwsgi></uwsgi>\n<!--</uwsgi>', (t) => parseXml(t, 'fz/v.xml')],
  // '<!' inside <uwsgi> became an option named '!</uwsgi' with no line.
  ['xml', '<uwsgi><!</uwsgi>', (t) => parseXml(t, 'fz/v.xml')],
];
for (const [name, input, parse] of FOUND) {
  test(`${name}: found by fuzzing: ${JSON.stringify(input)}`, () => {
    const file = `fz/v.${name}`;
    let out: OptionList = [];
    const e = onlyThrows(() => { out = parse(input); }, ConfigError, new RegExp(`^${file.replace(/\./g, '\\.')}(:\\d+)?: `), input);
    if (e) return checkPlace(e, file, input);
    for (const o of out) assert.ok(o.source.line !== undefined, `option ${JSON.stringify(o.key)} without a line`);
  });
}
