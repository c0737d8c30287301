// Every row of the option table, placed in a vassal file and read as the
// emperor reads it (loadFile -> vassalSpec): it either takes effect (the
// runtime's lines or the vassal's spec change; a row with a runtime line
// carries its value there), is a warning naming file:line, or an error naming
// file:line. Nothing is silently dropped. ("always so" rows are uWSGI options
// whose request moat always fulfils: master, vacuum, plugin, die-on-term.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { loadFile } from '../../src/config/load';
import { OPTIONS, OptionSpec, vassalUse } from '../../src/config/schema';
import { ConfigError } from '../../src/config/types';
import { vassalSpec, VassalSpec } from '../../src/vassal/spec';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-vassal-options-'));
process.on('exit', () => fs.rmSync(dir, { recursive: true, force: true }));
fs.writeFileSync(path.join(dir, 'included.ini'), '[uwsgi]\nenv = FROM_INCLUDE=1\n');
fs.writeFileSync(path.join(dir, 'included.yaml'), 'uwsgi:\n  env: FROM_INCLUDE=1\n');
fs.writeFileSync(path.join(dir, 'included.json'), '{"uwsgi": {"env": "FROM_INCLUDE=1"}}\n');
fs.writeFileSync(path.join(dir, 'included.xml'), '<uwsgi><env>FROM_INCLUDE=1</env></uwsgi>\n');
fs.writeFileSync(path.join(dir, 'vassal.rules'), 'out deny 0.0.0.0/0 10.1.2.0/24\n');

/** A value each string or repeatable row can take (ints and bools come from the row). */
const SAMPLE: Record<string, string> = {
  'tuntap-router': 'e0 /tmp/r.sock', 'tuntap-router-firewall-in': 'deny', 'tuntap-router-firewall-out': 'deny',
  'tuntap-router-stats': '/tmp/stats.sock', 'tuntap-router-route': '10.0.0.0/8 0.0.0.0/0 1.2.3.4:9', 'tuntap-device-rule': 'in 0.0.0.0/0 0.0.0.0/0 allow',
  'tuntap-device': 'uwsgi1 /run/other.sock', 'tuntap-router-firewall-file': '/etc/moat/x.rules', 'tuntap-router-socket-mode': '0600',
  'tuntap-router-socket-owner': 'root', 'tuntap-router-bind': 'root 10.0.0.5', 'tuntap-router-netns': '/run/netns/x',
  'tuntap-device-netns': '/run/netns/x', metrics: '127.0.0.1:9100', 'log-level': 'debug', 'log-format': 'json',
  ini: path.join(dir, 'included.ini'), yaml: path.join(dir, 'included.yaml'), json: path.join(dir, 'included.json'), xml: path.join(dir, 'included.xml'),
  plugin: 'python3', 'exec-as-root': 'hostname v', socket: ':3031', http: ':8080', logto: '/tmp/log', daemonize: '/tmp/log',
  emperor: '/etc/vassals', 'emperor-use-clone': 'fs,net', 'pivot-root': '/srv/v /srv/v/.old', chroot: '/srv/v', uid: 'root', gid: 'root',
  'exec-post-jail': 'true', 'exec-as-user': 'id', env: 'A=b', 'vassals-dir-root': '/srv/vassals', 'emperor-vassal-network': '10.0.0.0/24',
  'tuntap-device-address': '10.9.0.2/24', 'tuntap-device-route': '10.9.0.1', 'hook-as-root': 'hostname:v', 'hook-as-user': 'x',
  'attach-daemon': 'sleep 100', cron: '5 -1 -1 -1 -1 date', cron2: 'minute=5 date', 'unique-cron': '5 -1 -1 -1 -1 date',
  'cron-tab': '*/5 * * * * date', 'forkpty-router': '/run/moat/pty.sock', 'forkpty-urouter': '/run/moat/upty.sock',
  'forkpty-router-command': '/bin/bash', 'pty-socket': '/run/moat/shared.sock', 'pty-exec': '/usr/bin/top', 'pty-connect': '/run/moat/pty.sock',
  'pty-uconnect': '/run/moat/pty.sock', 'emperor-cgroup': 'moat/e1', 'emperor-vassal-memory-max': '64M', 'emperor-vassal-pids-max': '32',
  'emperor-vassal-cpu-max': '0.5', 'vassal-memory-max': '64M', 'vassal-pids-max': '32', 'vassal-cpu-max': '0.5',
  cgroup: '/sys/fs/cgroup/memory/x', 'cgroup-opt': 'pids.max=10',
  'vassal-rate-out': '10mbit', 'vassal-rate-in': '5mbit', 'vassal-pps-out': '1000', 'vassal-pps-in': '2000', 'vassal-burst': '64K', 'vassal-pps-burst': '50',
  'emperor-vassal-rate-out': '10mbit', 'emperor-vassal-rate-in': '5mbit', 'emperor-vassal-pps-out': '1000', 'emperor-vassal-pps-in': '2000',
  'vassal-firewall-in': 'deny 10.1.2.3 0.0.0.0/0', 'vassal-firewall-out': 'deny 0.0.0.0/0 10.1.2.0/24 proto tcp dport 25', 'vassal-firewall-file': 'vassal.rules',
  'emperor-vassal-burst': '64K', 'emperor-vassal-pps-burst': '50', 'tuntap-router-peer-limit': 'default out rate 10mbit', 'accounting-log': '/var/log/moat/accounting.log', 'forkpty-router-socket-mode': '0660', 'forkpty-router-socket-owner': 'root', 'forkpty-router-user': 'root',
  'fleet-host': 'h1', 'fleet-address': '10.0.0.1', 'fleet-dir': '/run/moat/fleet', 'fleet-etcd-ca': '/etc/moat/ca.pem', 'fleet-etcd-cert': '/etc/moat/c.pem',
  'fleet-etcd-key': '/etc/moat/k.pem', 'fleet-etcd-user': 'moat', 'fleet-etcd-password-file': '/etc/moat/etcd.pw', 'vassal-host': 'h2',
};
/** Options that act only beside another one (the pty servers' settings need a server). */
const NEEDS: Record<string, string> = {
  'forkpty-router-command': 'forkpty-router = /run/moat/pty.sock', 'forkptyrouter-rows': 'forkpty-router = /run/moat/pty.sock',
  'forkptyrouter-cols': 'forkpty-router = /run/moat/pty.sock', 'forkpty-router-socket-mode': 'forkpty-router = /run/moat/pty.sock',
  'forkpty-router-socket-owner': 'forkpty-router = /run/moat/pty.sock', 'forkpty-router-user': 'forkpty-router = /run/moat/pty.sock',
  'forkpty-router-grace': 'forkpty-router = /run/moat/pty.sock', 'forkpty-router-max-sessions': 'forkpty-router = /run/moat/pty.sock',
  'pty-exec': 'pty-socket = /run/moat/shared.sock', 'vassal-burst': 'vassal-rate-out = 1mbit', 'vassal-pps-burst': 'vassal-pps-out = 100', 'cron-harakiri': 'cron = 5 -1 -1 -1 -1 date', 'pivot-root': '',
  uid: 'gid = root', 'tuntap-device-route': '',
};

function sample(s: OptionSpec): string {
  if (s.kind === 'bool') return String(!(s.default ?? false));
  if (s.kind === 'int' || s.kind === 'number') {
    const d = typeof s.default === 'number' ? s.default : 7;
    return String(s.max === undefined || d + 1 <= s.max ? d + 1 : d - 1);
  }
  const v = SAMPLE[s.name];
  if (v === undefined) throw new Error(`no sample value for ${s.name}: add one`);
  return v;
}

// The device options need a device; tuntap-device itself is tried without one.
const baseOf = (name: string) => name === 'tuntap-device' ? ['[uwsgi]', '# no device'] : ['[uwsgi]', 'tuntap-device = uwsgi0 /run/r.sock'];
const CTX = { clone: ['fs', 'ipc', 'uts', 'net', 'pid'] as Array<'fs' | 'ipc' | 'uts' | 'net' | 'pid'>, hostDir: '/run/moat/vassals/v', routerSocket: '/run/r.sock' };

function read(name: string, extra: string[]): VassalSpec {
  const file = path.join(dir, 'v.ini');
  fs.writeFileSync(file, [...baseOf(name), ...extra].join('\n') + '\n');
  return vassalSpec(file, loadFile(file), CTX);
}

const effect = (v: VassalSpec) => JSON.stringify({ lines: v.lines, cron: v.cron, uid: v.uid, gid: v.gid, address: v.address, host: v.host, limits: v.limits, traffic: v.traffic, firewall: v.firewall });

test('every option in a vassal file takes effect, warns or is an error, naming file:line', () => {
  const seen: Record<string, string[]> = { applies: [], implicit: [], warns: [], refused: [] };
  for (const s of OPTIONS) {
    const before = NEEDS[s.name] ? [NEEDS[s.name]] : [];
    const line = baseOf(s.name).length + before.length + 1;
    const where = `${path.join(dir, 'v.ini')}:${line}`;
    const u = vassalUse(s);
    seen[u.use].push(s.name);
    const extra = [...before, `${s.name} = ${sample(s)}`];
    if (u.use === 'refused') {
      assert.throws(() => read(s.name, extra), (e: unknown) => e instanceof ConfigError && e.message.startsWith(where + ':'), s.name);
      continue;
    }
    const base = read(s.name, before);
    const v = read(s.name, extra);
    const named = v.warnings.filter((w) => w.startsWith(where + ':') && w.includes(s.name));
    if (u.use === 'warns') {
      assert.equal(named.length, 1, `${s.name}: one warning naming ${where}, got ${JSON.stringify(v.warnings)}`);
      assert.equal(effect(v), effect(base), `${s.name} warns and changes nothing`);
    } else if (u.use === 'implicit') {
      assert.deepEqual(v.warnings, base.warnings, s.name);
    } else {
      assert.notEqual(effect(v), effect(base), `${s.name} takes effect in a vassal file`);
      if (s.runtime) assert.ok(v.lines.includes(`${s.runtime} ${s.kind === 'bool' ? (sample(s) === 'true' ? 'on' : 'off') : sample(s)}`), `${s.name} -> ${s.runtime}: ${v.lines.join(' | ')}`);
    }
  }
  // The split this test walks through, for the reader (and so a row moving class is a visible change).
  assert.ok(seen.applies.includes('tuntap-device-sndbuf') && seen.applies.includes('tuntap-device-reconnect-max'));
  assert.ok(seen.warns.includes('tuntap-router-max-frame') && seen.warns.includes('tuntap-device-netns'));
  assert.deepEqual(seen.implicit.sort(), ['die-on-term', 'master', 'plugin', 'vacuum']);
  assert.deepEqual(seen.refused.sort(), ['tuntap-device-rule', 'tuntap-router-route']);
});
