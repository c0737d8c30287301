// router.test.ts: the Router's TypeScript around the native data path, over
// the fake addon (no root, no tun): what start() hands the native Router,
// rule reloads that swap both chains and keep hit counters, native events
// turned into log lines and events, the stats socket, the socket watch, and
// a stop (or a failed start) that releases everything.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseIni } from '../../src/config/ini';
import { routerConfig } from '../../src/config/router-config';
import { Router } from '../../src/router/router';
import { compileRule } from '../../src/rules/compile';
import { parseFileLine } from '../../src/rules/parse';
import { installFakeAddon, peerStats, routerStats, type FakeAddon, type FakeNativeRouter } from '../helpers/fake-addon';
import { captureLog, type LogLine } from '../helpers/log';
import { readStats } from '../helpers/moat';
import { waitFor } from '../helpers/netns';

const ip = (s: string) => s.split('.').reduce((n, b) => n * 256 + Number(b), 0);

interface Setup { fake: FakeAddon; dir: string; rulesFile: string; router: Router; lines: LogLine[]; native(): FakeNativeRouter }

/** A Router built from ini lines (DIR stands for a fresh temp directory), stopped after the test. */
function setup(t: TestContext, iniLines: string[], rules = 'out allow 10.0.0.0/24 10.0.0.1\nout deny\n'): Setup {
  const fake = installFakeAddon();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-router-unit-'));
  const rulesFile = path.join(dir, 'policy.rules');
  fs.writeFileSync(rulesFile, rules);
  const text = ['[uwsgi]', `tuntap-router-firewall-file = ${rulesFile}`, ...iniLines].join('\n').replaceAll('DIR', dir);
  const { log, lines } = captureLog();
  const router = new Router(routerConfig(parseIni(text, 'moat.ini')), log);
  t.after(async () => {
    await router.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  return { fake, dir, rulesFile, router, lines, native: () => { assert.equal(fake.routers.length, 1, 'one native Router'); return fake.routers[0]; } };
}

const logged = (lines: LogLine[], msg: string | RegExp) => lines.filter((l) => (typeof msg === 'string' ? l.msg === msg : msg.test(String(l.msg))));

test('start hands the config to one native Router: its options, the bindings, the compiled rules, then start', async (t) => {
  const s = setup(t, [
    'tuntap-router = mt0 DIR/run/r.sock',
    'tuntap-router-max-frame = 1500', 'tuntap-router-queue-bytes = 65536', 'tuntap-router-socket-mode = 0600',
    'tuntap-router-hold = 7', 'tuntap-router-queues = 3', 'tuntap-router-busy-poll = 250', 'tuntap-router-sndbuf = 1048576', 'tuntap-router-sndbuf-busy = 2097152', 'tuntap-router-sndbuf-budget = 8388608', 'tuntap-router-offload = false',
    'tuntap-router-netns = /run/netns/gw1', 'tuntap-router-bind = 1234 10.0.0.9',
    'tuntap-router-firewall-in = deny 10.0.0.1 10.0.0.0/24',
  ]);
  assert.equal(s.fake.routers.length, 0, 'nothing native before start');
  await s.router.start();
  const n = s.native();
  assert.deepEqual(n.options, {
    tunName: 'mt0', netns: '/run/netns/gw1', socketPath: path.join(s.dir, 'run/r.sock'), socketMode: 0o600, socketUid: -1, socketGid: -1,
    maxFrame: 1500, queueBytes: 65536, offload: false, handoff: true, holdUs: 7000, tunQueues: 3, busyPollUs: 250, sndbuf: 1048576, sndbufBusy: 2097152, sndbufBudget: 8388608, acceptRuleBlocks: false,
    bindings: [{ uid: 1234, pid: -1, addr: ip('10.0.0.9') }], learn: { net: 0, bits: 0 },
  });
  assert.deepEqual(n.calls, ['setRules', 'setLimits', 'start'], 'rules and limits are in place before the first packet');
  assert.deepEqual(n.rules.in.map((r) => [r.action, r.src, r.dst, r.dstBits]), [[1, ip('10.0.0.1'), ip('10.0.0.0'), 24]]);
  assert.deepEqual(n.rules.out.map((r) => [r.action, r.srcBits, r.dst]), [[0, 24, ip('10.0.0.1')], [1, 0, 0]]);
  assert.equal(s.router.running, true);
  assert.ok(fs.statSync(path.join(s.dir, 'run')).isDirectory(), 'the socket directory was made');
  assert.equal(logged(s.lines, 'router started')[0]?.rulesOut, 2);
});

test('defaults: hold 50 ms, busy poll 100 us, offload on, sndbuf 0 (the kernel\'s), 512 KiB for streaming peers within 64 MiB, 8 tun queues', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock']);
  await s.router.start();
  const o = s.native().options;
  assert.deepEqual([o.holdUs, o.busyPollUs, o.offload, o.sndbuf, o.sndbufBusy, o.sndbufBudget, o.maxFrame, o.queueBytes, o.socketMode, o.netns, o.tunQueues],
    [50000, 100, true, 0, 524288, 67108864, 8188, 262144, 0o660, '', 8]);
});

test('setBindings: each owner\'s bindings after the config\'s; the learnable network is its owner\'s (anywhere without one), sent with them', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock', 'tuntap-router-bind = 1234 10.0.0.9']);
  await s.router.start();
  const n = s.native();
  const cfg = { uid: 1234, pid: -1, addr: ip('10.0.0.9') };
  const v = { uid: -1, pid: 77, start: 5, vassal: 1, addr: 0 };
  s.router.setBindings('emperor', [v], { net: ip('10.1.0.0'), bits: 16 });
  assert.deepEqual([n.bindings, n.learn], [[cfg, v], { net: ip('10.1.0.0'), bits: 16 }]);
  s.router.setBindings('other', [{ uid: 7, addr: ip('10.0.0.8') }]);
  assert.deepEqual(n.learn, { net: ip('10.1.0.0'), bits: 16 }, 'an owner without a network leaves the emperor\'s');
  s.router.setBindings('emperor', [v], null);
  assert.equal(n.learn, null, 'null: nothing learnable');
  s.router.setBindings('emperor', []);
  assert.deepEqual([n.bindings, n.learn], [[cfg, { uid: 7, addr: ip('10.0.0.8') }], { net: 0, bits: 0 }]);
});

test('reloadRules swaps both chains at once and carries hit counters by rule text', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock DIR/s.sock']);
  await s.router.start();
  const n = s.native();
  n.hit('out', 0, 5);
  n.hit('out', 1, 2);
  fs.writeFileSync(s.rulesFile, 'out deny 10.0.0.66 10.0.0.1\nout allow 10.0.0.0/24 10.0.0.1\nout deny\nin deny\n');
  assert.equal(s.router.reloadRules('test'), true);
  assert.deepEqual(n.carries.at(-1), { in: [-1], out: [-1, 0, 1] }, 'each kept rule names its old index, a new one -1');
  assert.equal(n.rules.in.length, 1);
  const doc = await readStats(path.join(s.dir, 's.sock'));
  assert.deepEqual(doc.moat.rules.out.map((r: { rule: string; hits: number }) => [r.rule, r.hits]),
    [[`${s.rulesFile}:1`, 0], [`${s.rulesFile}:2`, 5], [`${s.rulesFile}:3`, 2]]);
  assert.deepEqual(doc.moat.reloads, { ok: 1, error: 0 });
  assert.equal(logged(s.lines, 'rules reloaded')[0]?.why, 'test');
});

test('a bad rule on reload keeps the old rules in force and says where', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock DIR/s.sock']);
  await s.router.start();
  const n = s.native();
  const errors: Error[] = [];
  s.router.on('rules-error', (e: Error) => errors.push(e));
  fs.writeFileSync(s.rulesFile, 'out allow 10.0.0.0/24 10.0.0.1\nout frobnicate\n');
  assert.equal(s.router.reloadRules('edit'), false);
  assert.deepEqual(n.calls, ['setRules', 'setLimits', 'start'], 'the native rules were not touched');
  assert.match(errors[0]?.message ?? '', new RegExp(`policy\\.rules:2:5: unknown action 'frobnicate'`));
  const line = logged(s.lines, 'rules not reloaded, the old rules stay in force')[0];
  assert.equal(line?.level, 50);
  assert.match(String(line.err), /policy\.rules:2:5/);
  assert.deepEqual((await readStats(path.join(s.dir, 's.sock'))).moat.reloads, { ok: 0, error: 1 });
});

test('native events become log lines and router events', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock']);
  await s.router.start();
  const seen: Array<[string, unknown]> = [];
  for (const ev of ['peer-up', 'peer-address', 'peer-down', 'refused', 'protocol-error', 'data-path-error', 'fatal']) {
    s.router.on(ev, (e: unknown) => seen.push([ev, e]));
  }
  const n = s.native();
  n.emit(
    { type: 'peer_up', id: 3, uid: 1000, gid: 1000, pid: 77, start: 5 },
    { type: 'peer_addr', id: 3, addr: ip('10.0.0.2') },
    { type: 'refused', id: 3, reason: 'spoof', addr: ip('10.0.0.3'), count: 4 },
    { type: 'protocol_error', id: 3, reason: 'oversize' },
    { type: 'peer_down', id: 3, addr: ip('10.0.0.2'), reason: 'protocol_error', stats: peerStats({ id: 3, addr: ip('10.0.0.2'), ipPacketsOut: 5, ipBytesOut: 420 }) },
    { type: 'error', message: 'write to tun: EIO' },
    { type: 'notice', message: 'accepting peers again' },
  );
  assert.deepEqual(seen.map(([ev]) => ev), ['peer-up', 'peer-address', 'refused', 'protocol-error', 'peer-down', 'data-path-error']);
  assert.equal((seen[1][1] as { address: string }).address, '10.0.0.2');
  assert.equal((seen[2][1] as { address: string }).address, '10.0.0.3');
  // peer-down carries the peer's last counters (accounting takes the rest from them).
  assert.deepEqual((seen[4][1] as { stats: unknown }).stats, peerStats({ id: 3, addr: ip('10.0.0.2'), ipPacketsOut: 5, ipBytesOut: 420 }));
  const pick = (msg: string) => logged(s.lines, msg).map(({ level, peer, uid, pid, addr, claimed, count, reason, err }) =>
    JSON.parse(JSON.stringify({ level, peer, uid, pid, addr, claimed, count, reason, err })));
  assert.deepEqual(pick('peer connected'), [{ level: 30, peer: 3, uid: 1000, pid: 77 }]);
  assert.deepEqual(pick('peer address learned'), [{ level: 30, peer: 3, addr: '10.0.0.2' }]);
  assert.deepEqual(pick('packets refused'), [{ level: 40, peer: 3, claimed: '10.0.0.3', count: 4, reason: 'spoof' }]);
  assert.deepEqual(pick('protocol error, peer closed'), [{ level: 40, peer: 3, reason: 'oversize' }]);
  assert.deepEqual(pick('peer disconnected'), [{ level: 30, peer: 3, addr: '10.0.0.2', reason: 'protocol_error' }]);
  assert.deepEqual(pick('data path error'), [{ level: 50, err: 'write to tun: EIO' }]);
  assert.equal(logged(s.lines, 'accepting peers again')[0]?.level, 30);

  // fatal: logged and emitted once, however often the data path says it.
  n.emit({ type: 'fatal', message: 'tun device mt0 failed' }, { type: 'fatal', message: 'again' });
  assert.deepEqual(seen.filter(([ev]) => ev === 'fatal').map(([, r]) => r), ['tun device mt0 failed']);
  assert.equal(logged(s.lines, /^router failed: /).length, 1);
  assert.equal(logged(s.lines, /^router failed: /)[0].level, 60);
});

test('stats(): the native counters while running; the stats socket serves uWSGI\'s document with them', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock DIR/s.sock', 'tuntap-router-hold = 3']);
  assert.throws(() => s.router.stats(), /not running/);
  await s.router.start();
  const n = s.native();
  n.snapshot = routerStats({
    rxPackets: 10, rxBytes: 1000, txPackets: 20, txBytes: 2000, heldFrames: 6, heldWrites: 2, drops: { no_peer: 3 },
    sndbufGrownPeers: 1, sndbufGrownBytes: 835584, sndbufGrows: 4,
    peers: [peerStats({ id: 3, addr: ip('10.0.0.2'), uid: 1000, pid: 77, tx: 5, rx: 6, txBytes: 500, rxBytes: 600, drops: { spoof: 1 }, dropped: 1, sndbufGrown: 835584 })],
  });
  assert.equal(s.router.stats().txPackets, 20);
  const doc = await readStats(path.join(s.dir, 's.sock'));
  assert.equal(doc.pid, process.pid);
  assert.deepEqual(doc.peers, [{
    addr: '10.0.0.2', addr_32: doc.peers[0].addr_32, uid: 1000, gid: 0, pid: 77, tx: 500, rx: 600, dropped: 1,
    tx_packets: 5, rx_packets: 6, drops: { spoof: 1 }, queued: 0, offload: false, handoff: false, vnet_rx: 0, gso_rx: 0, vnet_tx: 0, gso_tx: 0, uso_tx: 0, sndbuf_grown: 835584,
    id: 3, shaped_in: 0, shaped_out: 0, shape_queued_in: 0, shape_queued_out: 0, shape_peak_in: 0, shape_peak_out: 0,
  }]);
  assert.deepEqual(doc.moat.tun, { rx_packets: 10, rx_bytes: 1000, tx_packets: 20, tx_bytes: 2000, read_calls: 0, queues: 1, steered_by: 'one queue' });
  assert.deepEqual(doc.moat.hold, { ms: 3, held_frames: 6, held_writes: 2 });
  assert.deepEqual(doc.moat.sndbuf, { busy: 524288, budget: 67108864, grown_peers: 1, grown_bytes: 835584, grows: 4 });
  assert.deepEqual(doc.moat.drops, { no_peer: 3 });
  assert.equal(doc.moat.device, 'mt0');
});

test('stop releases everything once: the native Router, its socket file, the stats socket', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock DIR/s.sock']);
  await s.router.start();
  const n = s.native();
  assert.ok(fs.existsSync(path.join(s.dir, 's.sock')));
  await s.router.stop();
  await s.router.stop();
  assert.deepEqual(n.calls, ['setRules', 'setLimits', 'start', 'stop'], 'the native stop once');
  assert.equal(s.router.running, false);
  assert.equal(fs.existsSync(path.join(s.dir, 'r.sock')), false, 'socket file gone');
  assert.equal(fs.existsSync(path.join(s.dir, 's.sock')), false, 'stats socket gone');
  assert.throws(() => s.router.stats(), /not running/);
  assert.equal(s.router.reloadRules(), false, 'no reload when stopped');
  assert.equal(logged(s.lines, 'router stopped').length, 1);
});

test('a failed start stops what started: a live stats socket of another process', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock DIR/s.sock']);
  const other = net.createServer();
  await new Promise<void>((r) => other.listen(path.join(s.dir, 's.sock'), r));
  t.after(() => other.close());
  await assert.rejects(s.router.start(), /stats socket .*s\.sock is in use by another process/);
  assert.deepEqual(s.native().calls, ['setRules', 'setLimits', 'start', 'stop'], 'the data path was stopped again');
  assert.equal(s.router.running, false);
  assert.equal(fs.existsSync(path.join(s.dir, 'r.sock')), false);
});

test('a rule error stops the start before anything native exists', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock'], 'out allow 10.0.0.1/24 10.0.0.1\n');
  await assert.rejects(s.router.start(), /policy\.rules:1:\d+: host bits set in source '10\.0\.0\.1\/24'/);
  assert.equal(s.fake.routers.length, 0);
});

test('the socket file removed: bound again (relisten); when that fails, fatal', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock']);
  await s.router.start();
  const n = s.native();
  const sock = path.join(s.dir, 'r.sock');
  fs.rmSync(sock);
  await waitFor(() => logged(s.lines, 'socket bound again: new peers can connect').length === 1, 3000, 'socket bound again');
  assert.deepEqual(n.calls, ['setRules', 'setLimits', 'start', 'relisten']);
  assert.ok(logged(s.lines, /was removed: new peers cannot connect/)[0]?.level === 50);
  const fatal: string[] = [];
  s.router.on('fatal', (r: string) => fatal.push(r));
  n.relistenError = new Error('bind: Permission denied');
  fs.rmSync(sock);
  await waitFor(() => fatal.length === 1, 3000, 'fatal');
  assert.match(fatal[0], /r\.sock was removed and could not be bound again: bind: Permission denied/);
});

test('setPeerRules: each vassal\'s own rules by address under a key that stays its own; carries against what it last had; rows and metrics by vassal name', async (t) => {
  const s = setup(t, ['tuntap-router = mt0 DIR/r.sock']);
  const rule = (line: string, origin: string) => compileRule(parseFileLine(line, { file: 'x', line: 1 }).rule!, origin);
  const deny = rule('out deny 0.0.0.0/0 10.20.0.0/16', 'a.ini:5');
  const allow = rule('out allow 0.0.0.0/0 10.20.0.1', 'a.ini:5');
  const dropIn = rule('in deny 10.9.9.9 0.0.0.0/0', 'b.rules:1');
  // Before start: kept, handed over at start (after the rules and limits).
  s.router.setPeerRules('emperor', [{ name: 'a.ini', addr: ip('10.0.0.5'), in: [], out: [deny] }, { name: 'empty.ini', addr: ip('10.0.0.7'), in: [], out: [] }]);
  await s.router.start();
  const n = s.native();
  assert.deepEqual(n.calls, ['setRules', 'setLimits', 'setPeerRules', 'start']);
  assert.equal(n.peerRules.length, 1, 'a vassal without rules gets no set');
  const keyA = n.peerRules[0].key;
  assert.deepEqual([n.peerRules[0].addr, n.peerRules[0].out, [...n.peerRules[0].carryOut!]], [ip('10.0.0.5'), [deny.native], [-1]]);

  // An allow in front: the deny (now index 1) carries from index 0; b joins with a key of its own.
  s.router.setPeerRules('emperor', [{ name: 'a.ini', addr: ip('10.0.0.5'), in: [], out: [allow, deny] }, { name: 'b.ini', addr: ip('10.0.0.6'), in: [dropIn], out: [] }]);
  const [a, b] = n.peerRules;
  assert.equal(a.key, keyA);
  assert.notEqual(b.key, keyA);
  assert.deepEqual([...a.carryOut!], [-1, 0]);
  assert.deepEqual([...b.carryIn!], [-1]);

  n.snapshot = routerStats({ peerHits: [{ key: a.key, addr: a.addr, in: [], out: [3, 40] }, { key: b.key, addr: b.addr, in: [7], out: [] }] });
  const doc = await s.router.statsDocument() as { moat: { vassal_rules: Record<string, unknown> } };
  assert.deepEqual(doc.moat.vassal_rules, {
    'a.ini': { address: '10.0.0.5', in: [], out: [{ rule: 'a.ini:5', text: allow.text, hits: 3 }, { rule: 'a.ini:5', text: deny.text, hits: 40 }] },
    'b.ini': { address: '10.0.0.6', in: [{ rule: 'b.rules:1', text: dropIn.text, hits: 7 }], out: [] },
  });
  const text = await s.router.metricsText();
  assert.match(text, /moat_vassal_firewall_rule_hits_total\{vassal="b\.ini",chain="in",rule="b\.rules:1"\} 7/);

  // The owner's list emptied: nothing left in the data path.
  s.router.setPeerRules('emperor', []);
  assert.deepEqual(n.peerRules, []);
});
