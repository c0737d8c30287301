// emperor.test.ts: `moat emperor --ini FILE` (the real program) with the real
// vassal runtime (build/Release/moat-vassal): the router's tun device in a
// namespace the test makes, vassals in namespaces their runtime makes (fs,
// ipc, uts, net, pid), the seed isolation policy. One emperor runs through
// the whole file; the tests run in order and share it.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, sh, uniqueName, waitFor, waitForAsync } from '../helpers/netns';
import { CLI, MoatProcess, readStats, startMoat, tempDir, waitForSocket } from '../helpers/moat';

const lab = new Lab();
let moat: MoatProcess;
let gwNs = '';
let tun = '';
let dir = '';          // the emperor directory
let runDir = '';       // vassals-dir-root
let sock = '';
let stats = '';
let net24 = '';
let tag = '';
const host = (n: number) => net24 + n;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Row { name: string; state: string; pid: number | null; restarts: number; address: string | null; addressFrom: string | null; error: string | null; lastExit: string | null; traffic: { tx_packets: number; rx_packets: number; dropped: number } | null }

async function vassals(): Promise<Row[]> {
  return (await readStats(stats)).emperor.vassals as Row[];
}
async function row(name: string): Promise<Row | undefined> {
  return (await vassals()).find((v) => v.name === name);
}
const until = (pred: () => Promise<boolean>, what: string, ms = 15000): Promise<void> => waitForAsync(pred, ms, what,
  async () => `${JSON.stringify(await vassals().catch(() => []), null, 1)}\n--- moat output (tail) ---\n${moat.output().slice(-4000)}`);
const running = async (name: string) => { const r = await row(name); return r?.state === 'running' && r.traffic !== null; };

function inVassal(pid: number, ns: string, cmd: string[], timeoutMs = 10000): string {
  return execFileSync('nsenter', ['-t', String(pid), `-${ns}`, ...cmd], { encoding: 'utf8', timeout: timeoutMs, stdio: ['ignore', 'pipe', 'pipe'] });
}
function pingFrom(pid: number, dst: string, src?: string): boolean {
  try {
    inVassal(pid, 'n', ['ping', '-n', '-c', '1', '-W', '1', ...(src ? ['-I', src] : []), dst]);
    return true;
  } catch { return false; }
}
const alive = (pid: number) => fs.existsSync(`/proc/${pid}`);

// A UDP listener in the gateway namespace printing each datagram's source.
const LISTENER = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => process.stdout.write(r.address + '\\n'));
s.bind(Number(process.argv[2]), process.argv[1], () => process.stdout.write('ready\\n'));`;
const SENDER = `
const s = require('node:dgram').createSocket('udp4');
const [src, dst, port] = process.argv.slice(1);
s.bind(0, src, () => { let n = 0; const go = () => s.send('x', Number(port), dst, () => { if (++n < 3) setTimeout(go, 50); else s.close(); }); go(); });`;

function vassalIni(name: string, extra: string[]): string {
  return ['[uwsgi]', `tuntap-device = uwsgi0 ${sock}`, `exec-as-root = hostname ${name}-${tag}`, ...extra, ''].join('\n');
}

before(async () => {
  requireRoot();
  tag = crypto.randomBytes(2).toString('hex');
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  gwNs = lab.netns('eg');
  tun = uniqueName('emp');
  const tmp = tempDir(lab);
  // The router process runs as nobody once started: it must reach its socket.
  fs.chmodSync(tmp, 0o755);
  dir = path.join(tmp, 'vassals');
  runDir = path.join(tmp, 'run', 'vassals');
  fs.mkdirSync(dir);
  sock = path.join(tmp, 't.sock');
  stats = path.join(tmp, 's.sock');
  const net = `${net24}0/24`;
  const gw = host(1);
  const ini = path.join(tmp, 'emperor.ini');
  fs.writeFileSync(ini, [
    '[uwsgi]',
    `emperor = ${dir}`,
    'emperor-user-clone = fs,ipc,uts,net,pid',
    'emperor-freq = 1',
    `vassals-dir-root = ${runDir}`,
    `tuntap-router = ${tun} ${sock} ${stats}`,
    `tuntap-router-netns = /run/netns/${gwNs}`,
    `exec-as-root = ip addr add ${gw}/24 dev ${tun}`,
    `exec-as-root = ip addr add ${host(254)}/32 dev ${tun}`,
    `exec-as-root = ip link set ${tun} up`,
    // the seed policy, on this test's /24; .254 is a second gateway address (a listener)
    `tuntap-router-firewall-out = allow ${net} ${gw}`,
    `tuntap-router-firewall-out = allow ${net} ${host(254)}`,
    `tuntap-router-firewall-out = deny ${net} ${net}`,
    `tuntap-router-firewall-out = allow ${net} 0.0.0.0`,
    'tuntap-router-firewall-out = deny',
    `tuntap-router-firewall-in = allow ${gw} ${net}`,
    `tuntap-router-firewall-in = allow ${host(254)} ${net}`,
    `tuntap-router-firewall-in = deny ${net} ${net}`,
    `tuntap-router-firewall-in = allow 0.0.0.0 ${net}`,
    'tuntap-router-firewall-in = deny',
    '',
  ].join('\n'));
  // v1: written as for uWSGI (address from its hooks, learned from its first packet).
  fs.writeFileSync(path.join(dir, 'v1.ini'), vassalIni('v1', [
    `exec-as-root = ip addr add ${host(2)}/24 dev uwsgi0`, 'exec-as-root = ip link set uwsgi0 up',
    `exec-as-root = ip route add default via ${gw}`, 'attach-daemon = sleep 3600',
  ]));
  // v2: YAML, moat's options (address named in the file, bound before the first packet).
  fs.writeFileSync(path.join(dir, 'v2.yaml'), [
    'uwsgi:', `  tuntap-device: uwsgi0 ${sock}`, `  tuntap-device-address: ${host(3)}/24`, `  tuntap-device-route: ${gw}`,
    `  exec-as-root: hostname v2-${tag}`, '',
  ].join('\n'));
  moat = startMoat(lab, ['emperor', '--ini', ini]);
  await waitForSocket(stats, moat, 15000);
  await until(async () => (await running('v1.ini')) && (await running('v2.yaml')), 'both vassals running');
});

after(async () => {
  if (moat.child.exitCode === null) moat.child.kill('SIGTERM');
  await Promise.race([moat.exited, sleep(20000)]);
  await lab.cleanup();
});

test('two vassals from .ini and .yaml: own hostname, pid 1 is the runtime, only lo and the tun', async () => {
  for (const [name, hn] of [['v1.ini', `v1-${tag}`], ['v2.yaml', `v2-${tag}`]]) {
    const r = (await row(name))!;
    const pid = r.pid!;
    assert.equal(inVassal(pid, 'u', ['hostname']).trim(), hn);
    const nspid = /^NSpid:\s+(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1].trim().split(/\s+/);
    assert.equal(nspid[nspid.length - 1], '1', `${name}: the runtime is pid 1 inside (${nspid.join(' ')})`);
    assert.equal(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'moat-vassal');
    const links = inVassal(pid, 'n', ['ip', '-o', 'link', 'show']).split('\n').filter(Boolean).map((l) => l.split(':')[1].trim().split('@')[0]).sort();
    assert.deepEqual(links, ['lo', 'uwsgi0'], name);
    assert.notEqual(fs.readlinkSync(`/proc/${pid}/ns/mnt`), fs.readlinkSync('/proc/self/ns/mnt'), `${name}: own mount namespace`);
    assert.ok(fs.statSync(path.join(runDir, name.replace(/\.(ini|yaml)$/, ''))).isDirectory(), `${name}: its host directory exists (named without the extension)`);
  }
});

test('both reach the gateway; vassal to vassal is blocked by the seed policy; --status lists them', async () => {
  const v1 = (await row('v1.ini'))!;
  const v2 = (await row('v2.yaml'))!;
  assert.ok(pingFrom(v1.pid!, host(1)), 'v1 -> gateway');
  assert.ok(pingFrom(v2.pid!, host(1)), 'v2 -> gateway');
  assert.equal(pingFrom(v1.pid!, host(3)), false, 'v1 -> v2 blocked');
  assert.equal(pingFrom(v2.pid!, host(2)), false, 'v2 -> v1 blocked');
  await until(async () => (await row('v1.ini'))?.address === host(2), 'v1 address learned');
  const r1 = (await row('v1.ini'))!;
  assert.equal(r1.addressFrom, 'first packet');
  assert.equal((await row('v2.yaml'))!.addressFrom, 'file');
  assert.ok(r1.traffic!.rx_packets >= 1 && r1.traffic!.tx_packets >= 1, 'traffic counted');
  const out = execFileSync(process.execPath, [CLI, 'emperor', '--status', '--stats', stats], { encoding: 'utf8' });
  assert.match(out, new RegExp(`^v1\\.ini\\s+running\\s+${v1.pid}\\s+0\\s+${host(2).replace(/\./g, '\\.')}\\*`, 'm'));
  assert.match(out, new RegExp(`^v2\\.yaml\\s+running\\s+${v2.pid}\\s+0\\s+${host(3).replace(/\./g, '\\.')}\\s`, 'm'));
});

test("a vassal using another address than its own, or the gateway's: nothing gets through", async () => {
  const listener: ChildProcess = lab.spawn(process.execPath, ['-e', LISTENER, host(254), '9999'], { ns: gwNs });
  let heard = '';
  listener.stdout!.on('data', (d) => { heard += d; });
  await waitFor(() => heard.includes('ready'), 5000, 'listener');
  const send = (pid: number, src: string) => execFileSync('nsenter', ['-t', String(pid), '-n', process.execPath, '-e', SENDER, src, host(254), '9999'], { timeout: 10000 });
  for (const name of ['v1.ini', 'v2.yaml']) {
    const pid = (await row(name))!.pid!;
    const own = name === 'v1.ini' ? host(2) : host(3);
    inVassal(pid, 'n', ['ip', 'addr', 'add', `${host(50)}/32`, 'dev', 'uwsgi0']);
    inVassal(pid, 'n', ['ip', 'addr', 'add', `${host(1)}/32`, 'dev', 'uwsgi0']);
    send(pid, host(50));
    send(pid, host(1));
    send(pid, own);    // the control: its own address gets through
    await waitFor(() => heard.includes(own + '\n'), 5000, `${name}: datagram from its own address`);
    inVassal(pid, 'n', ['ip', 'addr', 'del', `${host(50)}/32`, 'dev', 'uwsgi0']);
    inVassal(pid, 'n', ['ip', 'addr', 'del', `${host(1)}/32`, 'dev', 'uwsgi0']);
  }
  await sleep(300);
  const sources = heard.split('\n').filter((l) => l && l !== 'ready');
  assert.deepEqual([...new Set(sources)].sort(), [host(2), host(3)].sort(), 'only own addresses arrived');
  const doc = await readStats(stats);
  for (const p of doc.peers) assert.ok(p.drops.spoof >= 6, `peer ${p.addr}: spoofed packets refused (${JSON.stringify(p.drops)})`);
  // Both are moat runtimes talking to moat's router: offloads negotiated (docs/offload.md).
  for (const p of doc.peers) assert.equal(p.offload, true, `peer ${p.addr}: offloads negotiated`);
  listener.kill('SIGKILL');
});

test('editing a file reloads only that vassal', async () => {
  const v1 = (await row('v1.ini'))!.pid!;
  const v2 = (await row('v2.yaml'))!.pid!;
  fs.writeFileSync(path.join(dir, 'v2.yaml'), fs.readFileSync(path.join(dir, 'v2.yaml'), 'utf8').replace(`hostname v2-${tag}`, `hostname v2b-${tag}`));
  await until(async () => { const r = await row('v2.yaml'); return r?.pid !== v2 && r?.pid !== null && (await running('v2.yaml')); }, 'v2 reloaded');
  const r2 = (await row('v2.yaml'))!;
  assert.equal(inVassal(r2.pid!, 'u', ['hostname']).trim(), `v2b-${tag}`);
  assert.equal(alive(v2), false, 'the old runtime is gone');
  assert.equal((await row('v1.ini'))!.pid, v1, 'v1 untouched');
  assert.ok(pingFrom(r2.pid!, host(1)), 'the reloaded vassal reaches the gateway with its address');
});

test('a malformed file is reported (file:line, reason) and the others keep running', async () => {
  const pids = (await vassals()).map((v) => v.pid);
  fs.writeFileSync(path.join(dir, 'bad.ini'), `[uwsgi]\ntuntap-device = uwsgi0 ${sock}\ntuntap-device-address = ${net24}999/24\n`);
  fs.writeFileSync(path.join(dir, 'broken.json'), '{"uwsgi": {"exec-as-root": [}}');
  await until(async () => (await row('bad.ini'))?.state === 'invalid' && (await row('broken.json'))?.state === 'invalid', 'bad files reported');
  assert.match((await row('bad.ini'))!.error!, /bad\.ini:3: tuntap-device-address: .*/);
  assert.match((await row('broken.json'))!.error!, /broken\.json/);
  assert.match(moat.output(), /bad vassal file: not deployed/);
  assert.deepEqual((await vassals()).filter((v) => v.state !== 'invalid').map((v) => v.pid), pids);
  fs.rmSync(path.join(dir, 'bad.ini'));
  fs.rmSync(path.join(dir, 'broken.json'));
});

test('a vassal whose runtime dies is restarted with backoff, its address kept for it', async () => {
  const r0 = (await row('v2.yaml'))!;
  const t0 = Date.now();
  process.kill(r0.pid!, 'SIGKILL');   // pid 1 of its namespace: the whole vassal dies
  await until(async () => { const r = await row('v2.yaml'); return r?.restarts === 1 && (await running('v2.yaml')); }, 'first restart');
  const first = Date.now() - t0;
  const r1 = (await row('v2.yaml'))!;
  assert.match(r1.lastExit ?? '', /signal 9/);
  assert.ok(pingFrom(r1.pid!, host(1)), 'back with its address');
  const t1 = Date.now();
  process.kill(r1.pid!, 'SIGKILL');
  await until(async () => { const r = await row('v2.yaml'); return r?.restarts === 2 && (await running('v2.yaml')); }, 'second restart');
  const second = Date.now() - t1;
  assert.ok(first >= 900 && second >= 1900 && second > first, `backoff grows: ${first} ms, then ${second} ms`);
  assert.match(moat.output(), /vassal died, restarting after a delay/);
});

test('an attached daemon that crashes is restarted by the runtime with backoff', async () => {
  fs.writeFileSync(path.join(dir, 'v3.ini'), vassalIni('v3', ["attach-daemon = sh -c 'sleep 0.1; exit 7'"]));
  await until(async () => (moat.output().match(/"daemon":"exit \d+ 7 /g) ?? []).length >= 3, 'three daemon exits', 20000);
  const r = (await row('v3.ini'))!;
  assert.equal(r.restarts, 0, 'the vassal itself stays up');
  fs.rmSync(path.join(dir, 'v3.ini'));
  await until(async () => !(await row('v3.ini')), 'v3 removed');
});

test('deleting a file stops that vassal and frees its address', async () => {
  const r = (await row('v1.ini'))!;
  fs.rmSync(path.join(dir, 'v1.ini'));
  await until(async () => !(await row('v1.ini')), 'v1 gone');
  await waitFor(() => !alive(r.pid!), 10000, 'v1 runtime exit');
  assert.equal(fs.existsSync(path.join(runDir, 'v1.ini')), false, 'its directory removed');
  // Its address is free again: a new vassal naming it in its file gets it.
  fs.writeFileSync(path.join(dir, 'v4.ini'), vassalIni('v4', [`tuntap-device-address = ${host(2)}/24`, `tuntap-device-route = ${host(1)}`]));
  await until(() => running('v4.ini'), 'v4 running');
  const v4 = (await row('v4.ini'))!;
  assert.equal(v4.address, host(2));
  assert.ok(pingFrom(v4.pid!, host(1)), 'v4 reaches the gateway from the freed address');
});

test('SIGTERM: vassals stop, then the router; no process, namespace, mount, device or directory survives', async () => {
  const rows = await vassals();
  const pids = rows.map((v) => v.pid!).filter(Boolean);
  const netns = pids.map((p) => fs.readlinkSync(`/proc/${p}/ns/net`));
  assert.ok(pids.length >= 2);
  moat.child.kill('SIGTERM');
  const code = await Promise.race([moat.exited, sleep(30000).then(() => 'timeout')]);
  assert.equal(code, 0, moat.output().slice(-3000));
  for (const p of pids) assert.equal(alive(p), false, `runtime ${p} gone`);
  // No process left in any vassal's network namespace.
  const left = fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).filter((d) => {
    try { return netns.includes(fs.readlinkSync(`/proc/${d}/ns/net`)); } catch { return false; }
  });
  assert.deepEqual(left, [], 'no process in the vassals\' namespaces');
  assert.equal(fs.existsSync(runDir), false, 'vassals-dir-root removed');
  assert.equal(fs.existsSync(sock), false, 'router socket removed');
  assert.equal(fs.readFileSync('/proc/self/mountinfo', 'utf8').includes(runDir), false, 'no mount left');
  assert.throws(() => sh('ip', ['-n', gwNs, 'link', 'show', tun]), 'the router\'s tun device is gone');
  assert.match(moat.output(), /emperor stopped[\s\S]*router stopped/);
});
