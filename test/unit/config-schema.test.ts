// The option table: aliases, unknown options, refusals, value kinds, docs.
import { readmeWithTable } from '../../src/config/gen-docs';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { canonicalKey, checkOptions, didYouMean, findOption, OPTIONS } from '../../src/config/schema';
import { optionTableMarkdown } from '../../src/config/options-doc';
import { parseIni } from '../../src/config/ini';
import { throwsConfig } from './config-helpers';

const ini = (body: string) => parseIni('[uwsgi]\n' + body, 'v.ini');

test('aliases resolve to one canonical name', () => {
  assert.equal(canonicalKey('emperor-user-clone'), 'emperor-use-clone');
  assert.equal(canonicalKey('forkptyrouter'), 'forkpty-router');
  assert.equal(canonicalKey('forkptyurouter'), 'forkpty-urouter');
  assert.equal(canonicalKey('forkptyrouter-cmd'), 'forkpty-router-command');
  assert.equal(canonicalKey('yml'), 'yaml');
  assert.equal(canonicalKey('tuntap_router'), 'tuntap-router');
  assert.equal(canonicalKey('no-such-option'), 'no-such-option');
  const { options, warnings } = checkOptions(ini('emperor-user-clone = fs,net\nforkptyurouter = /tmp/p.sock\n'));
  assert.deepEqual(options.map((o) => o.key), ['emperor-use-clone', 'forkpty-urouter']);
  assert.equal(options[0].source.line, 2);
  assert.deepEqual(warnings, []); // both are implemented
});

test('every option the brief names for now and for later is in the table', () => {
  const now = ['tuntap-router', 'tuntap-device', 'tuntap-router-firewall-in', 'tuntap-router-firewall-out',
    'tuntap-router-firewall-file', 'tuntap-router-route', 'tuntap-router-stats', 'tuntap-use-credentials',
    'tuntap-device-rule', 'tuntap-router-socket-mode', 'tuntap-router-socket-owner', 'tuntap-router-max-frame',
    'tuntap-router-queue-bytes', 'tuntap-router-bind', 'tuntap-router-netns', 'tuntap-device-reconnect-min',
    'tuntap-device-reconnect-max', 'metrics', 'log-format', 'ini', 'yaml', 'json', 'xml', 'master', 'exec-as-root',
    'emperor', 'emperor-use-clone', 'pivot-root', 'uid', 'gid', 'exec-as-user', 'attach-daemon', 'exec-post-jail',
    'vassals-dir-root', 'tuntap-device-address', 'tuntap-device-route',
    'cron', 'cron2', 'unique-cron', 'cron-tab', 'cron-harakiri'];
  const later = ['hook-as-root'];
  const pty = ['forkpty-router', 'forkpty-urouter', 'forkpty-router-command', 'forkptyrouter-rows',
    'forkptyrouter-cols', 'pty-socket', 'pty-exec', 'pty-connect', 'pty-uconnect'];
  for (const n of pty) assert.equal(findOption(n)?.status, 'implemented', n);
  for (const n of now) assert.notEqual(findOption(n)?.status, undefined, n);
  for (const n of now) assert.notEqual(findOption(n)?.status, 'planned', n);
  for (const n of later) assert.equal(findOption(n)?.status, 'planned', n);
  for (const s of OPTIONS) {
    assert.ok(s.description.length > 0, s.name);
    if (s.status === 'refused' || s.status === 'ignored') assert.ok(s.note, `${s.name} says why`);
  }
});

test('unknown options warn with their source; near misses get a hint', () => {
  const { options, warnings } = checkOptions(ini('tuntap-ruoter = a b\nsome-plugin-option-xyz = 1\nmastr = true\n'));
  assert.equal(options.length, 3);
  assert.deepEqual(warnings, [
    "v.ini:2: unknown option 'tuntap-ruoter' ignored (did you mean 'tuntap-router'?)",
    "v.ini:3: unknown option 'some-plugin-option-xyz' ignored",
    "v.ini:4: unknown option 'mastr' ignored (did you mean 'master'?)",
  ]);
  assert.equal(didYouMean('tuntap-router-firewal-in'), 'tuntap-router-firewall-in');
  assert.equal(didYouMean('zzz'), undefined);
});

test('refused options are errors naming option, source and reason', () => {
  throwsConfig(() => checkOptions(ini('master\ntuntap-router-route = 10.0.0.0/8 0.0.0.0/0 1.2.3.4:9\n')), /^v\.ini:3: tuntap-router-route is refused: .*routing/, 3);
  throwsConfig(() => checkOptions(ini('tuntap-device-rule = in 0.0.0.0/0 0.0.0.0/0 allow\n')), /may not set its own/, 2);
});

test('ignored and planned options warn; single options set twice warn; bad bool and int values are errors', () => {
  const { warnings } = checkOptions(ini('socket = :3031\nhook-as-user = x\nmetrics = :1\nmetrics = :2\nmaster = yes\nmaster = on\n'));
  assert.deepEqual(warnings, [
    'v.ini:2: socket ignored: moat runs no application server',
    'v.ini:3: hook-as-user is not implemented yet, ignored',
    'v.ini:5: metrics set again (first at v.ini:4); the last one counts',
    'v.ini:7: master set again (first at v.ini:6); the last one counts',
  ]);
  throwsConfig(() => checkOptions(ini('master = maybe\n')), /not a boolean/, 2);
  throwsConfig(() => checkOptions(ini('tuntap-router-max-frame = big\n')), /not an integer/, 2);
  // tuntap-use-credentials may name a uWSGI symbol: not a bool error
  assert.doesNotThrow(() => checkOptions(ini('tuntap-use-credentials = my_symbol\n')));
});

test('docs/options.md is the current optionTableMarkdown()', () => {
  const table = optionTableMarkdown();
  assert.match(table, /^\| Option \| Default \| Bounds \| Read by \| In a vassal file \| Description \| uWSGI \|\n(\|---){7}\|\n/);
  assert.equal(table.trim().split('\n').length, OPTIONS.length + 2);
  assert.match(table, /\| `emperor-use-clone` \(`emperor-user-clone`\) \|/);
  const doc = fs.readFileSync(path.join(__dirname, '../../../docs/options.md'), 'utf8');
  assert.ok(doc.endsWith(table), 'regenerate docs/options.md from optionTableMarkdown() (npm run docs)');
  const readme = fs.readFileSync(path.join(__dirname, '../../../README.md'), 'utf8');
  assert.equal(readme, readmeWithTable(readme, table), 'regenerate the README option table (npm run docs)');
});
