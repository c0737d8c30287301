// The command line as uWSGI takes it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { loadArgv } from '../../src/config/load';
import { kv, TempDir, throwsConfig } from './config-helpers';

const tmp = new TempDir();
after(() => tmp.remove());

test('--key value, --key=value, booleans without a value, _ read as -', () => {
  const got = loadArgv(['--master', '--tuntap-router', 'emperor0 /tmp/t.sock', '--tuntap_router_firewall_out=deny',
    '--tuntap-use-credentials', '--tuntap-router-stats', '127.0.0.1:5000', '--vacuum=false']);
  assert.deepEqual(kv(got), [
    ['master', 'true'], ['tuntap-router', 'emperor0 /tmp/t.sock'], ['tuntap-router-firewall-out', 'deny'],
    ['tuntap-use-credentials', 'true'], ['tuntap-router-stats', '127.0.0.1:5000'], ['vacuum', 'false'],
  ]);
  assert.equal(got[0].source.file, '<flags>');
  // a value may start with '-' when it is not an option
  assert.deepEqual(kv(loadArgv(['--cron', '-5 -1 -1 -1 -1 true'])), [['cron', '-5 -1 -1 -1 -1 true']]);
});

test('--ini/--yaml/--yml/--json/--xml and bare file names load in place', () => {
  const ini = tmp.write('v.ini', '[uwsgi]\na = 1\n[s2]\na = 2\n');
  const yaml = tmp.write('v.conf', 'uwsgi:\n  b: 2\n');
  const json = tmp.write('v.json', '{"uwsgi": {"c": "3"}}');
  const xml = tmp.write('v.xml', '<uwsgi><d>4</d></uwsgi>');
  const got = loadArgv(['--first', 'x', '--ini', ini, '--yml', yaml, `--json=${json}`, '--xml', xml,
    '--ini', `${ini}:s2`, json, '--last']);
  assert.deepEqual(kv(got), [['first', 'x'], ['a', '1'], ['b', '2'], ['c', '3'], ['d', '4'], ['a', '2'], ['c', '3'], ['last', 'true']]);
  assert.equal(got[1].source.file, ini);
  assert.equal(got[1].source.line, 2);
});

test('unknown options are kept; a known option without its value is an error', () => {
  assert.deepEqual(kv(loadArgv(['--foo', 'bar', '--baz', '--qux'])), [['foo', 'bar'], ['baz', 'true'], ['qux', 'true']]);
  throwsConfig(() => loadArgv(['--master', '--tuntap-router']), /--tuntap-router needs a value/);
  throwsConfig(() => loadArgv(['--tuntap-router', '--master']), /--tuntap-router needs a value/);
  throwsConfig(() => loadArgv(['--ini']), /--ini needs a (value|file)/);
  throwsConfig(() => loadArgv(['--ini=']), /--ini needs a file/);
  throwsConfig(() => loadArgv(['-M']), /write options in full/);
  throwsConfig(() => loadArgv(['--']), /write options in full/);
  throwsConfig(() => loadArgv(['--=x']), /empty name/);
  throwsConfig(() => loadArgv(['stray']), /neither an option nor a config file/);
  throwsConfig(() => loadArgv(['--ini', tmp.dir + '/none.ini']), /^<flags>: cannot read/);
});
