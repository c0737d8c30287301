// JSON, YAML and XML readers, and the same vassal in all four formats.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseJson } from '../../src/config/json';
import { parseYaml } from '../../src/config/yaml';
import { parseXml } from '../../src/config/xml';
import { loadFile } from '../../src/config/load';
import { kv, kvl, TempDir, throwsConfig } from './config-helpers';

const tmp = new TempDir();
after(() => tmp.remove());

test('json: arrays are repeated options in order, scalars become strings, lines kept', () => {
  const text = `{
  "other": {"a": "no"},
  "uwsgi": {
    "master": true,
    "vacuum": false,
    "tuntap-router-max-frame": 1500,
    "exec-as-root": [
      "one",
      "two; # three"
    ],
    "tuntap_device": "uwsgi0 /tmp/s \\"q\\"",
    "exec-as-root": "four"
  }
}`;
  assert.deepEqual(kvl(parseJson(text, 'v.json')), [
    ['master', 'true', 4],
    ['vacuum', 'false', 5],
    ['tuntap-router-max-frame', '1500', 6],
    ['exec-as-root', 'one', 8],
    ['exec-as-root', 'two; # three', 9],
    ['tuntap-device', 'uwsgi0 /tmp/s "q"', 11],
    ['exec-as-root', 'four', 12],
  ]);
  assert.deepEqual(kv(parseJson('{"x": {"a": "1"}}', 'v.json', 'x')), [['a', '1']]);
});

test('json: errors name the line', () => {
  throwsConfig(() => parseJson('{\n "uwsgi": {\n  "a": "1",\n  "b": \n }\n}', 'v.json'), /expected a value/, 5);
  throwsConfig(() => parseJson('{\n "uwsgi": {\n  "a": "1"\n  "b": "2"\n }\n}', 'v.json'), /expected ',' or '}'/, 4);
  throwsConfig(() => parseJson('{"uwsgi": {\n"a": null}}', 'v.json'), /null is not a value/, 2);
  throwsConfig(() => parseJson('{"uwsgi": {\n"a": [\n["x"]]}}', 'v.json'), /nested array/, 3);
  throwsConfig(() => parseJson('{"uwsgi": {"a": "unterminated\n"}}', 'v.json'), /unterminated string/, 1);
  throwsConfig(() => parseJson('{"uwsgi": {}} x', 'v.json'), /after the document/, 1);
  throwsConfig(() => parseJson('{"other": {}}', 'v.json'), /no "uwsgi" object/);
  throwsConfig(() => parseJson('["uwsgi"]', 'v.json'), /must be an object/, 1);
});

test('yaml: sequences are repeated options, duplicate keys all count, scalars verbatim, lines kept', () => {
  const text = [
    'other:',
    '  a: no',
    'uwsgi:',
    '  master:',
    '  tuntap-router-socket-mode: 0660',
    '  exec-as-root:',
    '    - one',
    "    - sh -c 'a; b' # a YAML comment",
    '  flow: [x, "y z"]',
    '  exec-as-root: two',
    '  yes-word: yes',
  ].join('\n');
  assert.deepEqual(kvl(parseYaml(text, 'v.yaml')), [
    ['master', 'true', 4],
    ['tuntap-router-socket-mode', '0660', 5],
    ['exec-as-root', 'one', 7],
    ['exec-as-root', "sh -c 'a; b'", 8],
    ['flow', 'x', 9],
    ['flow', 'y z', 9],
    ['exec-as-root', 'two', 10],
    ['yes-word', 'yes', 11],
  ]);
  assert.deepEqual(kv(parseYaml(text, 'v.yaml', 'other')), [['a', 'no']]);
});

test('yaml: errors name the line', () => {
  throwsConfig(() => parseYaml('uwsgi:\n  a: 1\n b: 2\n', 'v.yaml'), /same column/, 3);
  throwsConfig(() => parseYaml('uwsgi:\n  a:\n    b: 1\n', 'v.yaml'), /nested mapping/, 2);
  throwsConfig(() => parseYaml('uwsgi: x\n', 'v.yaml'), /must be a mapping/, 1);
  throwsConfig(() => parseYaml('other:\n  a: 1\n', 'v.yaml'), /no 'uwsgi:' mapping/);
});

test('xml: elements in document order, <flag/> is true, lines kept, ids select', () => {
  const text = [
    '<?xml version="1.0"?>',
    '<!-- <uwsgi><nope/></uwsgi> -->',
    '<uwsgi>',
    '  <master/>',
    '  <exec-as-root>one</exec-as-root>',
    '  <socket-x a="1>2">v &amp; w</socket-x>',
    '  <exec-as-root>sh -c \'a; b\' # note</exec-as-root><empty></empty>',
    '  <exec-as-root',
    '    >three</exec-as-root>',
    '</uwsgi>',
  ].join('\n');
  assert.deepEqual(kvl(parseXml(text, 'v.xml')), [
    ['master', 'true', 4],
    ['exec-as-root', 'one', 5],
    ['socket-x', 'v & w', 6],
    ['exec-as-root', "sh -c 'a; b' # note", 7],
    ['empty', 'true', 7],
    ['exec-as-root', 'three', 8],
  ]);
  const multi = '<all>\n<uwsgi id="a">\n<x>1</x>\n</uwsgi>\n<uwsgi id="b">\n<x>2</x>\n<y id="c">3</y>\n<y id="b">4</y>\n</uwsgi>\n</all>';
  assert.deepEqual(kvl(parseXml(multi, 'v.xml')), [['x', '1', 3]]);
  assert.deepEqual(kvl(parseXml(multi, 'v.xml', 'b')), [['x', '2', 6], ['y', '4', 8]]);
  throwsConfig(() => parseXml(multi, 'v.xml', 'zz'), /no <uwsgi id="zz">/);
});

test('xml: errors name the line', () => {
  throwsConfig(() => parseXml('<uwsgi>\n<a>\n</uwsgi>', 'v.xml'), /closing tag/, 3);
  throwsConfig(() => parseXml('<uwsgi>\n<a><b>1</b></a>\n</uwsgi>', 'v.xml'), /nested elements/, 2);
});

// The same vassal in four formats.
const VASSAL = {
  ini: `[uwsgi]
master = true
tuntap-device = uwsgi0 /run/moat/tuntap.socket
exec-as-root = ip addr add 192.168.0.2/24 dev uwsgi0
exec-as-root = ip link set uwsgi0 up
exec-as-root = sh -c 'echo a; echo b' # kept
exec-as-root = ip route add default via 192.168.0.1
cron = -5 -1 -1 -1 -1 /bin/true
uid = 1000
`,
  json: `{"uwsgi": {
  "master": true,
  "tuntap-device": "uwsgi0 /run/moat/tuntap.socket",
  "exec-as-root": ["ip addr add 192.168.0.2/24 dev uwsgi0", "ip link set uwsgi0 up",
                   "sh -c 'echo a; echo b' # kept", "ip route add default via 192.168.0.1"],
  "cron": "-5 -1 -1 -1 -1 /bin/true",
  "uid": 1000
}}`,
  yaml: `uwsgi:
  master: true
  tuntap-device: uwsgi0 /run/moat/tuntap.socket
  exec-as-root:
    - ip addr add 192.168.0.2/24 dev uwsgi0
    - ip link set uwsgi0 up
    - "sh -c 'echo a; echo b' # kept"
    - ip route add default via 192.168.0.1
  cron: -5 -1 -1 -1 -1 /bin/true
  uid: 1000
`,
  xml: `<uwsgi>
  <master>true</master>
  <tuntap-device>uwsgi0 /run/moat/tuntap.socket</tuntap-device>
  <exec-as-root>ip addr add 192.168.0.2/24 dev uwsgi0</exec-as-root>
  <exec-as-root>ip link set uwsgi0 up</exec-as-root>
  <exec-as-root>sh -c 'echo a; echo b' # kept</exec-as-root>
  <exec-as-root>ip route add default via 192.168.0.1</exec-as-root>
  <cron>-5 -1 -1 -1 -1 /bin/true</cron>
  <uid>1000</uid>
</uwsgi>
`,
};

test('the same vassal as .ini, .json, .yaml and .xml gives the same option list', () => {
  const lists = Object.entries(VASSAL).map(([ext, text]) => kv(loadFile(tmp.write(`vassal.${ext}`, text))));
  assert.equal(lists[0].length, 8);
  assert.deepEqual(lists[0][4], ['exec-as-root', "sh -c 'echo a; echo b' # kept"]);
  for (const l of lists.slice(1)) assert.deepEqual(l, lists[0]);
  // .yml is YAML too, and sources are file:line
  const yml = loadFile(tmp.write('vassal.yml', VASSAL.yaml));
  assert.deepEqual(kv(yml), lists[0]);
  assert.equal(yml[7].source.line, 10);
});

test('loadFile: includes in place, FILE:section, unknown extension, missing file, cycles', () => {
  const inner = tmp.write('inner.json', '{"uwsgi": {"b": "2"}, "alt": {"c": "3"}}');
  const outer = tmp.write('outer.ini', `[uwsgi]\na = 1\njson = ${inner}\njson = ${inner}:alt\nd = 4\n`);
  const got = loadFile(outer);
  assert.deepEqual(kvl(got), [['a', '1', 2], ['b', '2', 1], ['c', '3', 1], ['d', '4', 5]]);
  assert.equal(got[1].source.file, inner);
  const sect = tmp.write('sect.ini', '[uwsgi]\na = 1\n[vassal2]\na = 2\n');
  assert.deepEqual(kv(loadFile(`${sect}:vassal2`)), [['a', '2']]);
  throwsConfig(() => loadFile(tmp.write('x.conf', '')), /unknown config format/);
  throwsConfig(() => loadFile(tmp.dir + '/missing.ini'), /cannot read .*ENOENT/);
  const a = tmp.dir + '/a.ini';
  tmp.write('b.ini', `[uwsgi]\nini = ${a}\n`);
  tmp.write('a.ini', `[uwsgi]\nx = 1\nini = ${tmp.dir}/b.ini\n`);
  throwsConfig(() => loadFile(a), /includes itself/, 2);
});
