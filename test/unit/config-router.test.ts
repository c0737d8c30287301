// routerConfig() and deviceConfig(): parsing, defaults, errors with sources.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { parseIni } from '../../src/config/ini';
import { loadArgv } from '../../src/config/load';
import { conntrackDefaults, deviceConfig, routerConfig, routerProcessUser } from '../../src/config/router-config';
import { TempDir, throwsConfig } from './config-helpers';

const tmp = new TempDir();
after(() => tmp.remove());
const accounts = {
  passwd: tmp.write('passwd', 'root:x:0:0:root:/root:/bin/sh\n# comment\nalice:x:1001:1001::/home/alice:/bin/sh\nbob:x:1002:100::/:/bin/sh\n'),
  group: tmp.write('group', 'root:x:0:\nusers:x:100:\nmoat:x:900:alice\n'),
};
const ini = (body: string) => parseIni('[uwsgi]\n' + body, 'r.ini');
const router = (body: string) => routerConfig(ini(body), accounts);

test('a full router config', () => {
  const c = router([
    'tuntap-router = emperor0 /run/moat/tuntap.sock /run/moat/stats.sock 10.0.0.1:9000',
    'tuntap-router-firewall-out = allow 192.168.0.0/24 192.168.0.1',
    'tuntap-router-firewall-in = allow 192.168.0.1 192.168.0.0/24',
    'tuntap-router-firewall-out = deny',
    'tuntap-router-firewall-file = rules/isolation.rules',
    'tuntap-router-firewall-file = rules/extra',
    'tuntap-router-socket-mode = 0600',
    'tuntap-router-socket-owner = alice:moat',
    'tuntap-router-max-frame = 1504',
    'tuntap-router-queue-bytes = 65536',
    'tuntap-router-bind = alice 192.168.0.2',
    'tuntap-router-bind = 1002 192.168.0.3',
    'tuntap-use-credentials',
    'metrics = 127.0.0.1:9100',
    'tuntap-router-netns = /run/netns/moat-test',
    'master = true',
  ].join('\n'));
  assert.equal(c.device, 'emperor0');
  assert.equal(c.socket, '/run/moat/tuntap.sock');
  assert.equal(c.stats, '/run/moat/stats.sock');
  assert.equal(c.gateway, '10.0.0.1:9000');
  assert.equal(c.socketMode, 0o600);
  assert.deepEqual(c.socketOwner, { uid: 1001, gid: 900 });
  assert.equal(c.maxFrame, 1504);
  assert.equal(c.queueBytes, 65536);
  assert.deepEqual(c.rules, [
    { chain: 'out', text: 'allow 192.168.0.0/24 192.168.0.1', index: 1, source: { file: 'r.ini', line: 3 } },
    { chain: 'in', text: 'allow 192.168.0.1 192.168.0.0/24', index: 2, source: { file: 'r.ini', line: 4 } },
    { chain: 'out', text: 'deny', index: 3, source: { file: 'r.ini', line: 5 } },
  ]);
  assert.deepEqual(c.ruleFiles, ['rules/isolation.rules', 'rules/extra']);
  assert.deepEqual(c.bindings, [{ uid: 1001, addr: '192.168.0.2' }, { uid: 1002, addr: '192.168.0.3' }]);
  assert.equal(c.useCredentials, true);
  assert.equal(c.metrics, '127.0.0.1:9100');
  assert.equal(c.netns, '/run/netns/moat-test');
  assert.deepEqual(c.warnings, ["r.ini:2: tuntap-router gateway '10.0.0.1:9000' accepted and ignored (moat does not forward over UDP)"]);
});

test('defaults', () => {
  const c = router('tuntap-router = emperor0 /tmp/t.sock\n');
  assert.deepEqual(c, {
    device: 'emperor0', socket: '/tmp/t.sock', stats: undefined, gateway: undefined, socketMode: 0o660,
    socketOwner: undefined, maxFrame: 8188, queueBytes: 262144, offload: true, handoff: true, holdMs: 50, tunQueues: 8, busyPollUs: 100, sndbuf: 0, sndbufBusy: 524288, sndbufBudget: 67108864, conntrack: conntrackDefaults(), rules: [], ruleFiles: [], bindings: [], peerLimits: [],
    useCredentials: false, metrics: undefined, netns: undefined, warnings: [],
  });
});

test('stats from the option or the third field; quoted fields; owner group defaults to the primary group', () => {
  assert.equal(router('tuntap-router = emperor0 /tmp/t.sock\ntuntap-router-stats = 127.0.0.1:5001\n').stats, '127.0.0.1:5001');
  assert.equal(router("tuntap-router = emperor0 '/tmp/a b.sock'\n").socket, '/tmp/a b.sock');
  assert.deepEqual(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-socket-owner = bob\n').socketOwner, { uid: 1002, gid: 100 });
  assert.deepEqual(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-socket-owner = 5000:users\n').socketOwner, { uid: 5000, gid: 100 });
  // the real /etc/passwd
  assert.deepEqual(routerConfig(ini('tuntap-router = e0 /tmp/t.sock\ntuntap-router-socket-owner = root\n')).socketOwner, { uid: 0, gid: 0 });
});

test('warnings: unknown options, a big frame, a credentials symbol (emperor is not the router\'s)', () => {
  const c = router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-max-frame = 9000\ntuntap-use-credentials = addr_of\nemperor = /etc/vassals\nbogus-opt = 1\n');
  assert.deepEqual(c.warnings, [
    "r.ini:6: unknown option 'bogus-opt' ignored",
    'r.ini:3: tuntap-router-max-frame 9000 is above 8188: uWSGI peers cannot send or take such frames',
    "r.ini:4: tuntap-use-credentials 'addr_of' (a uWSGI symbol hook) ignored; moat reads SO_PEERCRED",
  ]);
});

test('errors name the option and its source', () => {
  const base = 'tuntap-router = emperor0 /tmp/t.sock\n';
  throwsConfig(() => router('master\n'), /^no tuntap-router option/);
  throwsConfig(() => router(base + base), /tuntap-router: given more than once \(first at r\.ini:2\)/, 3);
  throwsConfig(() => router('tuntap-router = emperor0\n'), /expected <device> <socket>/, 2);
  throwsConfig(() => router('tuntap-router = a b c d e\n'), /expected <device> <socket>/, 2);
  throwsConfig(() => router("tuntap-router = e0 '/tmp/x\n"), /unterminated quote/, 2);
  throwsConfig(() => router('tuntap-router = this-name-is-too-long /tmp/t.sock\n'), /not a device name/, 2);
  throwsConfig(() => router(`tuntap-router = e0 /tmp/${'x'.repeat(120)}\n`), /longer than 107/, 2);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock 127.0.0.1:99999\n'), /bad port/, 2);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock /tmp/s1\ntuntap-router-stats = /tmp/s2\n'), /differs from the stats field/, 3);
  throwsConfig(() => router(base + 'tuntap-router-socket-mode = 0999\n'), /tuntap-router-socket-mode: bad mode '0999'/, 3);
  throwsConfig(() => router(base + 'tuntap-router-socket-mode = rw\n'), /bad mode/, 3);
  throwsConfig(() => router(base + 'tuntap-router-socket-owner = mallory\n'), /unknown user 'mallory'/, 3);
  throwsConfig(() => router(base + 'tuntap-router-socket-owner = alice:nogroup\n'), /unknown group 'nogroup'/, 3);
  throwsConfig(() => router(base + 'tuntap-router-socket-owner = 5000\n'), /name a group/, 3);
  throwsConfig(() => router(base + 'tuntap-router-socket-owner = a:b:c\n'), /expected user\[:group\]/, 3);
  throwsConfig(() => router(base + 'tuntap-router-max-frame = 575\n'), /'575' is outside 576\.\.65535/, 3);
  throwsConfig(() => router(base + 'tuntap-router-max-frame = 65536\n'), /outside 576\.\.65535/, 3);
  throwsConfig(() => router(base + 'tuntap-router-queue-bytes = 100\n'), /tuntap-router-queue-bytes: '100' is outside/, 3);
  throwsConfig(() => router(base + 'tuntap-router-bind = alice 192.168.0.256\n'), /not an IPv4 address/, 3);
  throwsConfig(() => router(base + 'tuntap-router-bind = alice 192.168.0\n'), /not an IPv4 address/, 3);
  throwsConfig(() => router(base + 'tuntap-router-bind = alice 0.0.0.0\n'), /cannot be a peer's address/, 3);
  throwsConfig(() => router(base + 'tuntap-router-bind = alice\n'), /expected <uid\|user> <ipv4>/, 3);
  throwsConfig(() => router(base + 'tuntap-router-bind = nobody-here 192.168.0.2\n'), /unknown user/, 3);
  throwsConfig(() => router(base + 'tuntap-router-bind = alice 192.168.0.2\ntuntap-router-bind = bob 192.168.0.2\n'), /already bound to uid 1001 \(r\.ini:3\)/, 4);
  throwsConfig(() => router(base + 'tuntap-router-firewall-in =\n'), /empty rule/, 3);
  throwsConfig(() => router(base + 'metrics = /tmp/m.sock\n'), /expected host:port/, 3);
  throwsConfig(() => router(base + 'tuntap-router-netns = moat-test\n'), /not an absolute path/, 3);
  throwsConfig(() => router(base + 'tuntap-router-route = 0.0.0.0/0 0.0.0.0/0 1.2.3.4:1\n'), /refused/, 3);
});

test('from the command line', () => {
  const c = routerConfig(loadArgv(['--tuntap-router', 'emperor0 /tmp/t.sock', '--tuntap-router-firewall-in', 'deny', '--master']));
  assert.deepEqual(c.rules, [{ chain: 'in', text: 'deny', index: 1, source: { file: '<flags>' } }]);
  throwsConfig(() => routerConfig(loadArgv(['--tuntap-router', 'e0 /tmp/t.sock', '--tuntap-router-socket-mode', '8'])), /^<flags>: tuntap-router-socket-mode: bad mode/);
});

test('deviceConfig', () => {
  const c = deviceConfig(ini('tuntap-device = uwsgi0 /run/moat/tuntap.sock\ntuntap-device-reconnect-min = 50\ntuntap-device-netns = /run/netns/v1\n'));
  assert.deepEqual(c, {
    device: 'uwsgi0', socket: '/run/moat/tuntap.sock', maxFrame: 8188, queueBytes: 262144, offload: true, handoff: true, busyPollUs: 100, sndbuf: 4194304,
    reconnectMinMs: 50, reconnectMaxMs: 5000, netns: '/run/netns/v1', warnings: [],
  });
  // uWSGI splits at the first space: the rest is the path
  assert.equal(deviceConfig(ini('tuntap-device = uwsgi0 /tmp/a b.sock\n')).socket, '/tmp/a b.sock');
  const bare = deviceConfig(ini('tuntap-device = uwsgi0\n'));
  assert.equal(bare.socket, '/tmp/tuntap.socket');
  assert.deepEqual(bare.warnings, ['r.ini:2: tuntap-device without a socket: moat connects to /tmp/tuntap.socket (uWSGI would only create the device)']);
  assert.equal(deviceConfig(ini('tuntap-device = u0 /s\ntuntap-device-reconnect-min = 9000\n')).reconnectMaxMs, 9000);
  throwsConfig(() => deviceConfig(ini('master\n')), /^no tuntap-device option/);
  throwsConfig(() => deviceConfig(ini('tuntap-device = u0 /a\ntuntap-device = u1 /b\n')), /given more than once.*one per vassal/, 3);
  throwsConfig(() => deviceConfig(ini('tuntap-device = u0 /s\ntuntap-device-reconnect-min = 100\ntuntap-device-reconnect-max = 10\n')), /below tuntap-device-reconnect-min/, 4);
  throwsConfig(() => deviceConfig(ini('tuntap-device = u0 /s\ntuntap-device-max-frame = 100\n')), /outside 576/, 3);
  throwsConfig(() => deviceConfig(ini('tuntap-device = u0 /s\ntuntap-device-rule = in 0.0.0.0/0 0.0.0.0/0 allow\n')), /refused/, 3);
  throwsConfig(() => deviceConfig(ini('tuntap-device = a/b /s\n')), /not a device name/, 2);
});

test('routerProcessUser: the emperor config\'s uid/gid, else nobody:nogroup, never root', () => {
  const withNobody = {
    passwd: tmp.write('passwd-nobody', 'root:x:0:0::/:/bin/sh\nalice:x:1001:1001::/:/bin/sh\nnobody:x:65534:65534::/nonexistent:/usr/sbin/nologin\n'),
    group: tmp.write('group-nobody', 'root:x:0:\nnogroup:x:65533:\nmoat:x:900:\n'),
  };
  const user = (body: string, acc = withNobody) => routerProcessUser(ini(body), acc);
  assert.deepEqual(user('emperor = /etc/moat/vassals'), { uid: 65534, gid: 65533 }, 'nobody, group nogroup');
  assert.deepEqual(user('uid = alice'), { uid: 1001, gid: 1001 });
  assert.deepEqual(user('uid = alice\ngid = moat'), { uid: 1001, gid: 900 });
  throwsConfig(() => user('uid = root'), /uid: the router process cannot stay root/);
  throwsConfig(() => user('uid = 0\ngid = 0'), /cannot stay root/);
  // No nobody: a clear error naming the way out.
  throwsConfig(() => routerProcessUser(ini('emperor = /x'), accounts), /drops to user nobody by default.*set uid/);
  // No nogroup: a group named nobody, else nobody's primary group.
  const noNogroup = { passwd: withNobody.passwd, group: tmp.write('group-bare', 'root:x:0:\n') };
  assert.deepEqual(user('emperor = /x', noNogroup), { uid: 65534, gid: 65534 });
});

test('tuntap-router-hold: ms, 0..1000, default 50', () => {
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\n').holdMs, 50);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-hold = 0\n').holdMs, 0);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-hold = 250\n').holdMs, 250);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-hold = 1001\n'), /tuntap-router-hold: '1001' is outside/, 3);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-hold = soon\n'), /tuntap-router-hold/, 3);
});

test('tuntap-router-busy-poll / tuntap-device-busy-poll: µs, 0..1000, default 100', () => {
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\n').busyPollUs, 100);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-busy-poll = 0\n').busyPollUs, 0);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-busy-poll = 1000\n').busyPollUs, 1000);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-busy-poll = 1001\n'), /tuntap-router-busy-poll: '1001' is outside/, 3);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-busy-poll = -1\n'), /tuntap-router-busy-poll/, 3);
  assert.equal(deviceConfig(ini('tuntap-device = u0 /s\ntuntap-device-busy-poll = 40\n')).busyPollUs, 40);
  throwsConfig(() => deviceConfig(ini('tuntap-device = u0 /s\ntuntap-device-busy-poll = 2000\n')), /tuntap-device-busy-poll: '2000' is outside/);
});

test('tuntap-router-sndbuf / tuntap-device-sndbuf: bytes, 0..64 MiB, defaults 0 (the kernel\'s) and 4 MiB', () => {
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\n').sndbuf, 0);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-sndbuf = 0\n').sndbuf, 0);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-sndbuf = 1048576\n').sndbuf, 1048576);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-sndbuf = 67108865\n'), /tuntap-router-sndbuf: '67108865' is outside/, 3);
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-sndbuf-busy = 0\n').sndbufBusy, 0, 'never grown');
  assert.equal(router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-sndbuf-budget = 1048576\n').sndbufBudget, 1048576);
  throwsConfig(() => router('tuntap-router = e0 /tmp/t.sock\ntuntap-router-sndbuf-budget = -1\n'), /tuntap-router-sndbuf-budget: '-1' is outside/, 3);
  assert.equal(deviceConfig(ini('tuntap-device = u0 /tmp/t.sock\ntuntap-device-sndbuf = 65536\n')).sndbuf, 65536);
  assert.equal(deviceConfig(ini('tuntap-device = u0 /tmp/t.sock\n')).sndbuf, 4194304);
});
