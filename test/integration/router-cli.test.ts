// router-cli.test.ts: the moat program as an admin runs it: a router in a
// gateway namespace, devices in vassal namespaces, the seed policy, stats,
// metrics, reload, restart, and a flood that must not block another vassal.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { startMoat, tempDir, readStats, REPO, MoatProcess } from '../helpers/moat';
import { pings, startCliDevice, startCliRouter } from '../helpers/cli-path';

const lab = new Lab();
let dir = '';
let sock = '';
let stats = '';
let gw = '';
let v1 = '';
let v2 = '';
let router: MoatProcess;
let metricsPort = 0;
const GW = '192.168.0.1';
const A1 = '192.168.0.2';
const A2 = '192.168.0.3';
const TUN = 'emperor0';

const ping = (ns: string, dst: string, count = 2): boolean => pings(ns, dst, count);

function startRouter(): Promise<MoatProcess> {
  return startCliRouter(lab, { ns: gw, tun: TUN, sock, stats, addr: GW }, [
    '--tuntap-router-firewall-file', path.join(dir, 'policy.rules'),
    '--exec-as-root', 'sysctl -qw net.ipv4.ip_forward=1',
    '--metrics', `127.0.0.1:${metricsPort}`,
  ]);
}

const startDevice = (ns: string, addr: string) => startCliDevice(lab, ns, sock, { addr, gw: GW });

before(async () => {
  requireRoot();
  dir = tempDir(lab);
  sock = path.join(dir, 'tuntap.sock');
  stats = path.join(dir, 'stats.sock');
  fs.copyFileSync(path.join(REPO, 'rules', 'isolation.rules'), path.join(dir, 'policy.rules'));
  gw = lab.netns('mgw');
  v1 = lab.netns('mv1');
  v2 = lab.netns('mv2');
  metricsPort = 20000 + Math.floor(Math.random() * 20000);
  router = await startRouter();
  await startDevice(v1, A1);
  await startDevice(v2, A2);
});

after(() => lab.cleanup());

test('vassals reach the gateway, and the gateway reaches them (both chains allow)', () => {
  assert.ok(ping(v1, GW), 'vassal 1 -> gateway');
  assert.ok(ping(v2, GW), 'vassal 2 -> gateway');
  assert.ok(ping(gw, A1), 'gateway -> vassal 1');
});

const PROBE = path.join(REPO, 'dist', 'src', 'demo', 'udp-probe.js');

/** A UDP echo server in `serverNs` on addr:7777, asked once from `clientNs`. */
async function udpEcho(serverNs: string, clientNs: string, addr: string): Promise<boolean> {
  const server = lab.spawn('ip', ['netns', 'exec', serverNs, process.execPath, PROBE, 'serve', addr, '7777']);
  let ready = '';
  server.stdout!.on('data', (d) => { ready += d; });
  try {
    await waitFor(() => ready.includes('ready'), 5000, 'udp echo server');
    try {
      sh('ip', ['netns', 'exec', clientNs, process.execPath, PROBE, 'ask', addr, '7777', '1500']);
      return true;
    } catch {
      return false;
    }
  } finally {
    server.kill('SIGKILL');
  }
}

test('UDP crosses the router both ways', async () => {
  assert.ok(await udpEcho(gw, v1, GW), 'vassal 1 -> gateway UDP echo');
  assert.ok(await udpEcho(v2, gw, A2), 'gateway -> vassal 2 UDP echo');
});

test('the in chain judges what the tun device sends toward vassals', async () => {
  // A second gateway-side address inside the vassal network: the in chain's
  // `deny 192.168.0.0/24 192.168.0.0/24` stops its packets before any vassal.
  const before = (await readStats(stats)).moat.drops.firewall_in ?? 0;
  sh('ip', ['-n', gw, 'addr', 'add', '192.168.0.99/32', 'dev', TUN]);
  try {
    let ok = true;
    try { sh('ping', ['-c', '2', '-W', '1', '-i', '0.2', '-q', '-I', '192.168.0.99', A1], { ns: gw }); } catch { ok = false; }
    assert.equal(ok, false, 'from 192.168.0.99 the vassal is unreachable');
    const after = (await readStats(stats)).moat.drops.firewall_in ?? 0;
    assert.ok(after >= before + 2, `firewall_in drops grew (${before} -> ${after})`);
  } finally {
    sh('ip', ['-n', gw, 'addr', 'del', '192.168.0.99/32', 'dev', TUN]);
  }
});

test('the seed policy keeps vassals apart', () => {
  assert.equal(ping(v1, A2), false, 'vassal 1 -> vassal 2 must be blocked');
  assert.equal(ping(v2, A1), false, 'vassal 2 -> vassal 1 must be blocked');
});

test('the stats socket speaks uWSGI\'s JSON shape', async () => {
  const doc = await readStats(stats);
  for (const k of ['version', 'pid', 'uid', 'gid', 'cwd', 'peers']) assert.ok(k in doc, `key ${k}`);
  const addrs = doc.peers.map((p: { addr: string }) => p.addr).sort();
  assert.deepEqual(addrs, [A1, A2]);
  for (const p of doc.peers) {
    for (const k of ['addr', 'addr_32', 'uid', 'gid', 'pid', 'tx', 'rx', 'dropped']) assert.ok(k in p, `peer key ${k}`);
    assert.ok(p.rx > 0 && p.tx > 0, 'traffic counted');
  }
  assert.ok(doc.moat.drops.firewall_out > 0, 'vassal-to-vassal packets counted as firewall_out drops');
});

test('moat rules stats prints each rule with its hit counter', () => {
  const out = sh(process.execPath, [path.join(REPO, 'dist', 'src', 'cli.js'), 'rules', 'stats', '--stats', stats]);
  assert.match(out, /^chain in \(4 rules, default allow\)/m);
  assert.match(out, /^chain out \(4 rules, default allow\)/m);
  // The vassal-to-vassal deny (line 6 of isolation.rules) has judged packets.
  assert.match(out, /^\s+[1-9]\d*\s+\S+policy\.rules:6\s+deny 192\.168\.0\.0\/24 192\.168\.0\.0\/24$/m);
});

test('Prometheus metrics are served', async () => {
  const body = await new Promise<string>((resolve, reject) => {
    http.get(`http://127.0.0.1:${metricsPort}/metrics`, (res) => {
      let b = '';
      res.on('data', (d) => { b += d; });
      res.on('end', () => resolve(b));
    }).on('error', reject);
  });
  assert.match(body, /moat_tun_packets_total\{direction="rx"\} \d+/);
  assert.match(body, /moat_drops_total\{reason="firewall_out"\} [1-9]/);
  assert.match(body, new RegExp(`moat_peer_packets_total\\{peer="${A1.replace(/\./g, '\\.')}",direction="tx"\\} [1-9]`));
  assert.match(body, /moat_rule_hits_total\{chain="out",rule="[^"]+policy\.rules:\d+"\} [1-9]/);
});

test('SIGHUP reloads rules; a bad rule file keeps the old rules', async () => {
  const policy = path.join(dir, 'policy.rules');
  const original = fs.readFileSync(policy, 'utf8');
  try {
    fs.writeFileSync(policy, 'in dney all\n');
    router.child.kill('SIGHUP');
    await waitFor(() => /rules not reloaded/.test(router.output()), 5000, 'reload error logged');
    assert.match(router.output(), /policy\.rules:1:\d+/);
    assert.equal(ping(v1, A2), false, 'old rules still in force');
    // Vassal isolation lifted: everything allowed.
    fs.writeFileSync(policy, 'out allow\nin allow\n');
    router.child.kill('SIGHUP');
    await waitFor(() => ping(v1, A2, 1), 5000, 'vassal 1 reaches vassal 2 after reload');
  } finally {
    fs.writeFileSync(policy, original);
    router.child.kill('SIGHUP');
  }
  await waitFor(() => !ping(v1, A2, 1), 5000, 'isolation restored');
});

test('a flood from one vassal does not block another vassal', async () => {
  // vassal 1 floods the gateway with small UDP packets for ~3 s (bounded);
  // vassal 2's pings must keep answering meanwhile.
  const flood = lab.spawn('ip', ['netns', 'exec', v1, process.execPath, '-e', `
    const s = require('dgram').createSocket('udp4'); const buf = Buffer.alloc(36);
    const end = Date.now() + 3000; let n = 0;
    (function burst() { for (let i = 0; i < 2000 && n < 3000000; i++, n++) s.send(buf, 9, '${GW}');
      if (Date.now() < end) setImmediate(burst); else setTimeout(() => process.exit(0), 100); })();`]);
  await new Promise((r) => setTimeout(r, 500));
  const ok = ping(v2, GW, 5);
  await new Promise((r) => flood.on('exit', r));
  assert.ok(ok, 'vassal 2 pings the gateway during the flood');
  const doc = await readStats(stats);
  const p1 = doc.peers.find((p: { addr: string }) => p.addr === A1);
  assert.ok(p1 && p1.rx > 1000, 'the flood went through the router');
});

test('the router restarts: devices reconnect and traffic resumes', async () => {
  router.child.kill('SIGTERM');
  assert.equal(await router.exited, 0, 'graceful exit');
  assert.equal(fs.existsSync(sock), false, 'socket file removed on SIGTERM');
  router = await startRouter();
  await waitFor(() => ping(v1, GW, 1), 15000, 'vassal 1 reaches the gateway again');
  assert.ok(ping(v2, GW));
});

test('a second router on the same live socket is refused', async () => {
  const other = startMoat(lab, ['--tuntap-router', `${uniqueName('mt')} ${sock}`], gw);
  const code = await other.exited;
  assert.notEqual(code, 0);
  assert.match(other.output(), /in use/);
  assert.ok(ping(v1, GW, 1), 'the running router is unaffected');
});
