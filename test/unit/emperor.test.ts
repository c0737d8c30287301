// emperor.test.ts: the emperor's supervisor logic against a scripted
// stand-in for the native runtime (a small node program speaking the control
// channel of docs/runtime-protocol.md on fd 3). The real runtime, namespaces
// and router are exercised by test/integration/emperor.test.ts.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Emperor } from '../../src/emperor/emperor';
import { emperorConfig } from '../../src/emperor/config';
import { formatStatus } from '../../src/emperor/status';
import { vassalSpec } from '../../src/vassal/spec';
import { LineReader } from '../../src/vassal/vassal';
import { parseIni } from '../../src/config/ini';
import { parseYaml } from '../../src/config/yaml';
import { ConfigError } from '../../src/config/types';
import { EventEmitter } from 'node:events';
import { ipv4ToInt } from '../../src/addr';
import type { LearnNetwork, PeerBinding, PeerLimit } from '../../src/native';
import type { RouterApi } from '../../src/router/router-api';
import type { VassalRules } from '../../src/router/peer-rules';
import { processStat } from '../../src/emperor/runtime-start';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-emperor-unit-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

// The stand-in: records its config lines to $dir/NAME.lines, reports pid and
// ready; `attach-daemon die N` makes it exit N after 50 ms; `exec-as-root fail`
// makes it report a failed hook and exit 1; 'stop' or a closed channel exits 0.
const STANDIN = path.join(tmp, 'standin.js');
fs.writeFileSync(STANDIN, `
const net = require('node:net'); const fs = require('node:fs');
const ch = new net.Socket({ fd: 3, readable: true, writable: true });
const lines = []; let buf = ''; let started = false;
const send = (l) => ch.write(l + '\\n');
ch.setEncoding('utf8');
ch.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\\n')) >= 0) {
    const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
    if (!started) {
      if (line !== 'start') { lines.push(line); continue; }
      started = true;
      const name = lines.find((l) => l.startsWith('name ')).slice(5);
      fs.writeFileSync(process.env.RECORD_DIR + '/' + name + '.lines', lines.join('\\n') + '\\n');
      send('pid ' + process.pid);
      if (lines.includes('exec-as-root fail')) { send('hook 1 fail'); send('error hook failed: fail'); setTimeout(() => process.exit(1), 10); return; }
      send('ready');
      const die = lines.find((l) => l.startsWith('attach-daemon die '));
      if (die) setTimeout(() => process.exit(Number(die.split(' ')[2])), 50);
    } else if (line === 'stop') process.exit(0);
  }
});
ch.on('end', () => process.exit(0));
`);

const quiet = pino({ level: 'silent' });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until(pred: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(20);
  }
}

function makeEmperor(tag: string, backoffMinMs = 100, more: { ini?: string[]; router?: RouterApi } = {}) {
  const dir = path.join(tmp, tag, 'vassals');
  const root = path.join(tmp, tag, 'run');
  const rec = path.join(tmp, tag, 'rec');
  fs.mkdirSync(dir, { recursive: true });
  fs.mkdirSync(rec, { recursive: true });
  process.env.RECORD_DIR = rec;
  const cfg = emperorConfig(parseIni(`[uwsgi]\nemperor = ${dir}\nemperor-user-clone = fs,net,uts,pid\nvassals-dir-root = ${root}\nemperor-freq = 1\n${(more.ini ?? []).join('\n')}\n`, 'e.ini'));
  const emperor = new Emperor(cfg, {
    log: quiet, debounceMs: 50, router: more.router,
    supervisor: { runtime: { command: process.execPath, args: [STANDIN] }, backoffMinMs, backoffMaxMs: 4 * backoffMinMs, resetAfterMs: 60_000, stopTimeoutMs: 2000 },
  });
  return { emperor, dir, root, rec, lines: (name: string) => fs.readFileSync(path.join(rec, `${name}.lines`), 'utf8') };
}

// In the option table's order.
const DEVICE_DEFAULTS = ['device-reconnect-min 100', 'device-reconnect-max 5000', 'device-max-frame 8188', 'device-offload on',
  'device-handoff on', 'device-sndbuf 4194304', 'device-busy-poll 100', 'device-queue-bytes 262144'];

test('vassal spec: options to runtime lines, in the protocol\'s words', () => {
  const opts = parseIni([
    '[uwsgi]', 'exec-as-root = hostname v1', 'tuntap-device = uwsgi0 /run/moat/t.sock', 'tuntap-device-address = 192.168.0.2/24',
    'tuntap-device-route = 192.168.0.1', 'pivot-root = /srv/v1 /srv/v1/.old', 'uid = 1000', 'gid = 1000',
    'attach-daemon = sleep 1000', 'env = A=b c', 'exec-as-user = id',
  ].join('\n') + '\n', '/etc/vassals/v1.ini');
  const s = vassalSpec('/etc/vassals/v1.ini', opts, { clone: ['fs', 'net'], hostDir: '/run/moat/vassals/v1.ini' });
  assert.deepEqual(s.lines, [
    'name v1.ini', 'clone fs,net', 'device uwsgi0 /run/moat/t.sock', ...DEVICE_DEFAULTS, 'device-address 192.168.0.2/24', 'device-route 192.168.0.1',
    'vassal-dir /run/moat/vassals/v1.ini /run/moat', 'pivot-root /srv/v1 /srv/v1/.old', 'gid 1000', 'uid 1000',
    'exec-as-root hostname v1', 'attach-daemon sleep 1000', 'env A=b c', 'exec-as-user id',
  ]);
  assert.equal(s.address, '192.168.0.2');
  // A device without a socket connects to the emperor's router; no fs namespace: no vassal-dir.
  const y = vassalSpec('v2.yaml', parseYaml('uwsgi:\n  tuntap-device: uwsgi0\n', 'v2.yaml'), { clone: [], hostDir: '/x', routerSocket: '/run/r.sock' });
  assert.deepEqual(y.lines, ['name v2.yaml', 'device uwsgi0 /run/r.sock', ...DEVICE_DEFAULTS]);
  // Every device option of the file reaches the runtime (the runtime has no defaults of its own).
  const z = vassalSpec('v3.yaml', parseYaml('uwsgi:\n  tuntap-device: uwsgi0\n  tuntap-device-offload: false\n  tuntap-device-busy-poll: 0\n  tuntap-device-sndbuf: 65536\n'
    + '  tuntap-device-max-frame: 1500\n  tuntap-device-queue-bytes: 100000\n  tuntap-device-reconnect-min: 10\n  tuntap-device-reconnect-max: 99\n', 'v3.yaml'), { clone: [], hostDir: '/x', routerSocket: '/run/r.sock' });
  assert.deepEqual(z.lines, ['name v3.yaml', 'device uwsgi0 /run/r.sock', 'device-reconnect-min 10', 'device-reconnect-max 99',
    'device-max-frame 1500', 'device-offload off', 'device-handoff on', 'device-sndbuf 65536', 'device-busy-poll 0', 'device-queue-bytes 100000']);
});

test('vassal spec: a bad value is a ConfigError with file:line', () => {
  const bad = (text: string, re: RegExp, clone: Array<'fs' | 'net'> = ['fs']) => assert.throws(
    () => vassalSpec('b.ini', parseIni('[uwsgi]\n' + text, 'b.ini'), { clone, hostDir: '/x' }),
    (e: unknown) => e instanceof ConfigError && re.test(e.message), text);
  bad('tuntap-device = u0 /s\ntuntap-device-address = 192.168.0.300/24\n', /^b\.ini:3: tuntap-device-address: .*(not an IPv4|A\.B\.C\.D)/);
  bad('tuntap-device-address = 10.0.0.2/24\n', /^b\.ini:2: .*needs a tuntap-device/);
  bad('tuntap-device = u0 /s\ntuntap-device-address = 10.0.0.2\n', /^b\.ini:3: .*A\.B\.C\.D\/BITS/);
  bad('pivot-root = /a /a/old\n', /^b\.ini:2: pivot-root: needs emperor-use-clone with fs/, ['net']);
  bad('uid = no-such-user-here\n', /^b\.ini:2: uid: unknown user/);
  bad('env = =x\n', /^b\.ini:2: env: expected KEY=VALUE/);
  bad('tuntap-router-route = a b c\n', /refused/);
  assert.throws(() => emperorConfig(parseIni('[uwsgi]\nemperor-use-clone = fs,nett\nemperor = /x\n', 'e.ini')), /e\.ini:2: emperor-use-clone: 'nett' is not a namespace/);
});

test('line reader: split lines, keyword and verbatim value, overlong lines flagged', () => {
  const r = new LineReader();
  assert.deepEqual(r.push('pid 12\nhook 0 echo  a b\nre'), [{ keyword: 'pid', value: '12' }, { keyword: 'hook', value: '0 echo  a b' }]);
  assert.deepEqual(r.push('ady\n'), [{ keyword: 'ready', value: '' }]);
  assert.deepEqual(r.push('x'.repeat(70000)), [{ overflow: true }]);
});

test('deploy, reload only the changed one, remove, bad file reported, stop removes everything', async () => {
  const { emperor, dir, root, lines } = makeEmperor('life');
  const invalid: string[] = [];
  emperor.on('invalid', (name: string, msg: string) => invalid.push(`${name}: ${msg}`));
  fs.writeFileSync(path.join(dir, 'a.ini'), '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\ntuntap-device-address = 10.9.0.2/24\n');
  fs.writeFileSync(path.join(dir, 'b.yaml'), 'uwsgi:\n  exec-as-root: hostname b\n');
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a vassal');
  await emperor.start();
  try {
    const running = (n: string) => emperor.status().find((v) => v.name === n)?.state === 'running';
    await until(() => running('a.ini') && running('b.yaml'), 'both running');
    assert.deepEqual(emperor.status().map((v) => v.name), ['a.ini', 'b.yaml']);
    assert.match(lines('a.ini'), /^clone fs,net,uts,pid$/m);
    assert.match(lines('a.ini'), new RegExp(`^vassal-dir ${root}/a /run/moat$`, 'm'));
    assert.ok(fs.statSync(path.join(root, 'a')).isDirectory(), 'host directory made (named without the extension)');
    const pidA = emperor.vassal('a.ini')!.pid;
    const pidB = emperor.vassal('b.yaml')!.pid;

    // Edit b: only b reloads.
    fs.writeFileSync(path.join(dir, 'b.yaml'), 'uwsgi:\n  exec-as-root: hostname b2\n');
    await until(() => emperor.vassal('b.yaml')?.pid !== undefined && emperor.vassal('b.yaml')?.pid !== pidB && running('b.yaml'), 'b reloaded');
    assert.equal(emperor.vassal('a.ini')!.pid, pidA, 'a untouched');
    assert.match(lines('b.yaml'), /^exec-as-root hostname b2$/m);

    // A malformed file: reported with its line, not deployed, the others keep running.
    fs.writeFileSync(path.join(dir, 'c.ini'), '[uwsgi]\ntuntap-device = u0 /s\ntuntap-device-address = 10.9.0.2/24\n');
    fs.writeFileSync(path.join(dir, 'd.yaml'), 'uwsgi:\n  exec-as-root: [unclosed\n');
    await until(() => invalid.length >= 2, 'two files reported');
    assert.ok(invalid.some((m) => /^c\.ini: .*c\.ini: tuntap-device-address: 10\.9\.0\.2 is already named by vassal a\.ini/.test(m)), invalid.join('\n'));
    assert.ok(invalid.some((m) => /^d\.yaml: .*d\.yaml:\d+/.test(m)), invalid.join('\n'));
    assert.equal(emperor.status().find((v) => v.name === 'c.ini')?.state, 'invalid');
    assert.equal(emperor.vassal('a.ini')!.pid, pidA);
    // A running vassal whose file turns bad keeps running on its old config.
    const pidB2 = emperor.vassal('b.yaml')!.pid;
    fs.writeFileSync(path.join(dir, 'b.yaml'), 'uwsgi:\n  tuntap-device-address: 10.9.0.9/24\n');
    await until(() => invalid.length >= 3, 'b reported');
    assert.equal(emperor.vassal('b.yaml')!.pid, pidB2);
    assert.match(emperor.status().find((v) => v.name === 'b.yaml')!.error ?? '', /b\.yaml:2: .*needs a tuntap-device/);

    // Remove a: stopped, its directory gone, its address free for c once c changes.
    fs.rmSync(path.join(dir, 'a.ini'));
    await until(() => !emperor.status().some((v) => v.name === 'a.ini'), 'a removed');
    assert.equal(fs.existsSync(path.join(root, 'a')), false, 'host directory removed');
    assert.throws(() => process.kill(pidA!, 0), 'a\'s runtime is gone');
    fs.appendFileSync(path.join(dir, 'c.ini'), '; touched\n');
    await until(() => running('c.ini'), 'c deployed with the freed address');
    assert.equal(emperor.status().find((v) => v.name === 'c.ini')!.address, '10.9.0.2');
    assert.match(formatStatus(emperor.status()), /^c\.ini\s+running\s+\d+\s+0\s+10\.9\.0\.2/m);
  } finally {
    await emperor.stop();
  }
  assert.equal(fs.existsSync(root), false, 'vassals-dir-root it created is removed');
});

test('a vassal file whose name is not a safe vassal name is reported and not deployed', async () => {
  const { emperor, dir } = makeEmperor('names');
  const invalid: string[] = [];
  emperor.on('invalid', (name: string, msg: string) => invalid.push(`${name}: ${msg}`));
  // A newline in a name would inject lines into the runtime's set-up.
  fs.writeFileSync(path.join(dir, 'evil\nclone.ini'), '[uwsgi]\nexec-as-root = hostname evil\n');
  fs.writeFileSync(path.join(dir, 'good.ini'), '[uwsgi]\nexec-as-root = hostname good\n');
  await emperor.start();
  try {
    await until(() => emperor.status().some((v) => v.name === 'good.ini' && v.state === 'running'), 'good running');
    assert.deepEqual(emperor.status().map((v) => v.name), ['good.ini']);
    assert.equal(invalid.length, 1);
    assert.match(invalid[0], /^evil\nclone\.ini: .*is not a vassal name: letters, digits and _ \. @ : - only/);
  } finally {
    await emperor.stop();
  }
});

test('a dying vassal is restarted with exponential backoff; its exit reason is kept', async () => {
  const { emperor, dir } = makeEmperor('crash', 150);
  const starts: number[] = [];
  const deaths: number[] = [];
  emperor.on('vassal-state', (_n: string, s: string) => {
    if (s === 'starting') starts.push(Date.now());
    if (s === 'backoff') deaths.push(Date.now());
  });
  fs.writeFileSync(path.join(dir, 'x.ini'), '[uwsgi]\nattach-daemon = die 3\n');
  await emperor.start();
  try {
    await until(() => starts.length >= 4, 'four starts', 8000);
    // From each death to the next start: 150, 300, 600 ms (capped at 600).
    const gaps = starts.slice(1, 4).map((t, i) => t - deaths[i]);
    assert.ok(gaps[0] >= 140 && gaps[0] < 290, `gaps ${gaps.join(', ')}`);
    assert.ok(gaps[1] >= 290 && gaps[1] < 590, `gaps ${gaps.join(', ')}`);
    assert.ok(gaps[2] >= 590 && gaps[2] < 1000, `gaps ${gaps.join(', ')}`);
    const st = emperor.status()[0];
    assert.ok(st.restarts >= 3);
    assert.match(st.lastExit ?? '', /^exit 3/);
  } finally {
    await emperor.stop();
  }
  assert.equal(emperor.status().length, 0);
});

test('a failing hook: the runtime error is logged and kept with the exit', async () => {
  const { emperor, dir } = makeEmperor('hook', 5000);
  fs.writeFileSync(path.join(dir, 'h.ini'), '[uwsgi]\nexec-as-root = fail\n');
  await emperor.start();
  try {
    await until(() => emperor.status()[0]?.state === 'backoff', 'backoff');
    assert.match(emperor.status()[0].lastExit ?? '', /^exit 1: hook failed: fail/);
  } finally {
    await emperor.stop();   // stops a vassal waiting to restart
  }
});

/** A RouterApi that records the bindings it is given (no data path). */
class BindingsRouter extends EventEmitter {
  readonly config = { socket: '/tmp/moat-unit-none.sock', gateway: undefined, netns: undefined, device: 'moat-no-such-dev' };
  readonly running = true;
  readonly sets: Array<{ list: PeerBinding[]; learn: LearnNetwork | null | undefined }> = [];
  async start(): Promise<void> { /* nothing */ }
  async stop(): Promise<void> { /* nothing */ }
  reloadRules(): void { /* nothing */ }
  setBindings(_owner: string, list: PeerBinding[], learn?: LearnNetwork | null): void { this.sets.push({ list, learn }); }
  readonly limitSets: PeerLimit[][] = [];
  setLimits(_owner: string, list: PeerLimit[]): void { this.limitSets.push(list); }
  readonly peerRuleSets: VassalRules[][] = [];
  setPeerRules(_owner: string, list: VassalRules[]): void { this.peerRuleSets.push(list); }
  addStatsSection(): void { /* nothing */ }
  removeStatsSection(): void { /* nothing */ }
  addMetrics(): void { /* nothing */ }
  removeMetrics(): void { /* nothing */ }
  stats() { return { peers: [] }; }
  get last() { return this.sets[this.sets.length - 1]; }
}

test('emperor-vassal-network: A.B.C.D/BITS, no host bits; a bad one names its line', () => {
  const cfg = (line: string) => emperorConfig(parseIni(`[uwsgi]\nemperor = /x\n${line}\n`, 'e.ini'));
  assert.deepEqual(cfg('emperor-vassal-network = 10.9.0.0/16').vassalNetwork, { net: ipv4ToInt('10.9.0.0'), bits: 16 });
  assert.equal(cfg('emperor-freq = 2').vassalNetwork, undefined);
  assert.throws(() => cfg('emperor-vassal-network = 10.9.0.1/16'), /e\.ini:3: emperor-vassal-network: .*host bits set: the network is 10\.9\.0\.0\/16/);
  assert.throws(() => cfg('emperor-vassal-network = 10.9.0.0'), /e\.ini:3: emperor-vassal-network: .*A\.B\.C\.D\/BITS/);
  assert.throws(() => cfg('emperor-vassal-network = 10.9.0.0/33'), /e\.ini:3: emperor-vassal-network/);
});

test('bindings: each vassal\'s runtime by pid and start time under a vassal key, learned addresses, reservations for files not deployed, the vassal network', async () => {
  const router = new BindingsRouter();
  const { emperor, dir } = makeEmperor('bind', 100, { ini: ['emperor-vassal-network = 10.9.0.0/16'], router: router as unknown as RouterApi });
  fs.writeFileSync(path.join(dir, 'a.ini'), '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\n');
  fs.writeFileSync(path.join(dir, 'b.ini'), '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\ntuntap-device-address = 10.9.0.5/16\n');
  fs.writeFileSync(path.join(dir, 'bad.ini'), '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\ntuntap-device-address = 10.9.0.6/16\nuid = no-such-user-moat-unit\n');
  await emperor.start();
  try {
    const running = (n: string) => emperor.status().find((v) => v.name === n)?.state === 'running';
    const of = (name: string) => {
      const pid = emperor.vassal(name)?.pid;
      return router.last.list.find((b) => b.pid === pid);
    };
    await until(() => running('a.ini') && running('b.ini') && of('a.ini') !== undefined && of('b.ini') !== undefined, 'a and b running, bound');
    assert.deepEqual(router.last.learn, { net: ipv4ToInt('10.9.0.0'), bits: 16 });
    const pidA = emperor.vassal('a.ini')!.pid!;
    const a = of('a.ini')!;
    const b = of('b.ini')!;
    assert.deepEqual(a, { uid: -1, pid: pidA, start: processStat(pidA)!.start, vassal: a.vassal, addr: 0 }, 'a learns: addr 0');
    assert.equal(b.addr, ipv4ToInt('10.9.0.5'));
    assert.ok(a.vassal! > 0 && b.vassal! > 0 && a.vassal !== b.vassal);
    assert.ok(router.last.list.some((x) => x.pid === -1 && x.uid === -1 && x.addr === ipv4ToInt('10.9.0.6') && !x.vassal), 'bad.ini\'s address reserved');

    // The router learned a's address: a peer with a's pid but another start time is not a's.
    router.emit('peer-up', { id: 1, pid: pidA, start: a.start! + 1 });
    router.emit('peer-address', { id: 1, address: '10.9.0.8' });
    assert.equal(of('a.ini')!.addr, 0, 'not a\'s runtime: ignored');
    router.emit('peer-up', { id: 2, pid: pidA, start: a.start });
    router.emit('peer-address', { id: 2, address: '10.9.0.9' });
    assert.deepEqual(of('a.ini'), { ...a, addr: ipv4ToInt('10.9.0.9') }, 'bound, same vassal key');

    // a edited, still learning: same key (its reservation stays); b names another address: a new key.
    fs.writeFileSync(path.join(dir, 'a.ini'), '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\nenv = X=1\n');
    fs.writeFileSync(path.join(dir, 'b.ini'), '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\ntuntap-device-address = 10.9.0.7/16\n');
    await until(() => emperor.vassal('a.ini')?.pid !== pidA && running('a.ini') && running('b.ini') && of('a.ini') !== undefined && of('b.ini')?.addr === ipv4ToInt('10.9.0.7'), 'both reloaded');
    assert.equal(of('a.ini')!.vassal, a.vassal);
    assert.notEqual(of('b.ini')!.vassal, b.vassal);

    // The bad file removed: its reservation goes.
    fs.rmSync(path.join(dir, 'bad.ini'));
    await until(() => !router.last.list.some((x) => x.addr === ipv4ToInt('10.9.0.6')), 'reservation released');
  } finally {
    await emperor.stop();
  }
  assert.deepEqual(router.last.list, [], 'stopped: nothing bound');
});

test('vassal-firewall: each vassal\'s own rules go to the router by its address; a change to them (or its rule file) applies without a restart; a bad rule keeps the old ones and names file:line', async () => {
  const router = new BindingsRouter();
  const { emperor, dir } = makeEmperor('vfw', 100, { ini: ['emperor-vassal-network = 10.9.0.0/16'], router: router as unknown as RouterApi });
  const rulesDir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-unit-vfw-'));
  after(() => fs.rmSync(rulesDir, { recursive: true, force: true }));
  const ruleFile = path.join(rulesDir, 'c.rules');
  fs.writeFileSync(ruleFile, 'in deny 0.0.0.0/0 0.0.0.0/0 proto udp dport 53\n');
  const head = '[uwsgi]\ntuntap-device = u0 /tmp/none.sock\ntuntap-device-address = 10.9.0.5/16\n';
  const file = path.join(dir, 'c.ini');
  fs.writeFileSync(file, `${head}vassal-firewall-out = deny 0.0.0.0/0 10.20.0.0/16\nvassal-firewall-file = ${path.relative(dir, ruleFile)}\n`);
  const rulesOf = (name: string) => router.peerRuleSets[router.peerRuleSets.length - 1]?.find((s) => s.name === name);
  const texts = (s: VassalRules | undefined) => s && { in: s.in.map((r) => r.text), out: s.out.map((r) => r.text) };
  await emperor.start();
  try {
    await until(() => emperor.vassal('c.ini')?.state === 'running' && rulesOf('c.ini') !== undefined, 'c running, its rules pushed');
    const pid = emperor.vassal('c.ini')!.pid;
    const first = rulesOf('c.ini')!;
    assert.equal(first.addr, ipv4ToInt('10.9.0.5'));
    assert.deepEqual(texts(first), { in: ['deny 0.0.0.0/0 0.0.0.0/0 proto udp dport 53'], out: ['deny 0.0.0.0/0 10.20.0.0/16'] });
    assert.equal(first.out[0].origin, `${file}:4`, 'an option rule is named by the vassal file\'s line');
    assert.equal(first.in[0].origin, `${ruleFile}:1`, 'a file rule by the rule file\'s line (the path relative to the vassal file\'s directory)');

    // Only the rules change: applied, the vassal keeps its runtime.
    fs.writeFileSync(file, `${head}vassal-firewall-out = deny 0.0.0.0/0 10.30.0.0/16\nvassal-firewall-file = ${ruleFile}\n`);
    await until(() => texts(rulesOf('c.ini'))?.out[0] === 'deny 0.0.0.0/0 10.30.0.0/16', 'new rule pushed');
    assert.equal(emperor.vassal('c.ini')!.pid, pid, 'not restarted');

    // A bad rule: the file is reported with file:line, the old rules stay, the vassal runs on.
    const pushes = router.peerRuleSets.length;
    fs.writeFileSync(file, `${head}vassal-firewall-out = deny 0.0.0.0/0 10.30.0.0/16 dport 80\nvassal-firewall-file = ${ruleFile}\n`);
    await until(() => emperor.status()[0].error !== null, 'error reported');
    assert.match(emperor.status()[0].error!, new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:4: vassal-firewall-out \\(option:1\\): 'dport' needs 'proto tcp' or 'proto udp'`));
    assert.equal(router.peerRuleSets.length, pushes, 'nothing pushed');
    assert.equal(emperor.vassal('c.ini')!.pid, pid);
    assert.equal(emperor.status()[0].state, 'running');

    // Fixed, and the rule file edited: applied at a rescan, still no restart.
    fs.writeFileSync(file, `${head}vassal-firewall-out = deny 0.0.0.0/0 10.30.0.0/16\nvassal-firewall-file = ${ruleFile}\n`);
    await until(() => emperor.status()[0].error === null, 'fixed');
    fs.writeFileSync(ruleFile, 'in deny 0.0.0.0/0 0.0.0.0/0 proto udp dport 54\nout bad\n');
    await until(() => /c\.rules:2:5: unknown action 'bad'/.test(emperor.status()[0].error ?? ''), 'rule file error names its file:line:column');
    assert.match(emperor.status()[0].error!, /c\.ini:5: vassal-firewall-file: /);
    fs.writeFileSync(ruleFile, 'in deny 0.0.0.0/0 0.0.0.0/0 proto udp dport 54\n');
    await until(() => texts(rulesOf('c.ini'))?.in[0] === 'deny 0.0.0.0/0 0.0.0.0/0 proto udp dport 54' && emperor.status()[0].error === null, 'rule file change pushed');
    assert.equal(emperor.vassal('c.ini')!.pid, pid, 'not restarted');

    // A rule file where vassals write (vassals-dir-root) is refused.
    const inRoot = path.join(emperor.config.vassalsDirRoot, 'c', 'my.rules');
    fs.writeFileSync(file, `${head}vassal-firewall-file = ${inRoot}\n`);
    await until(() => /c\.ini:4: vassal-firewall-file: .* is inside vassals-dir-root/.test(emperor.status()[0].error ?? ''), 'refused');
    assert.equal(emperor.vassal('c.ini')!.pid, pid, 'still running');
  } finally {
    await emperor.stop();
  }
  assert.deepEqual(router.peerRuleSets[router.peerRuleSets.length - 1], [], 'stopped: no rules left');
});

test('without emperor-vassal-network and no IPv4 network on the router\'s device: nothing is learnable (null)', async () => {
  const router = new BindingsRouter();
  const { emperor } = makeEmperor('nonet', 100, { router: router as unknown as RouterApi });
  await emperor.start();
  try {
    assert.equal(router.last.learn, null);
  } finally {
    await emperor.stop();
  }
});
