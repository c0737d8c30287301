// tenant-address.test.ts: the address squatter (issue 15, item 4). A tenant
// in learned-address mode (its address comes from its first packet) tries
// every address it should not get: outside the vassal network, the
// network's own network and broadcast addresses, the gateway's, an address a
// vassal file names; a vassal's address after its peer disconnected; the
// binding of a dead runtime, from a new process that reuses its pid number.
// Two parts: the native router with hand-played peers (in this process, and
// in child processes for peers with pids of their own), and the real
// emperor with real vassals, whose router learns only from the network on
// its tun device. Everything runs in namespaces the test makes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { ChildProcess, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { LearnNetwork, PeerBinding, RouterEvent } from '../../src/native';
import { processStat } from '../../src/emperor/runtime-start';
import { Lab, requireRoot, sleep, waitFor, waitForAsync } from '../helpers/netns';
import { ipToInt } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { RouterLab } from '../helpers/native-router';
import { MoatProcess, readStats, startMoat, waitForSocket } from '../helpers/moat';
import { emperorInNetns } from '../helpers/emperor-netns';

// A peer in a process of its own: connects, says `ready PID`, then answers
// `ping SRC DST` with ok/no (an echo from SRC answered within 800 ms).
const CHILD_PEER = `
const { FramePeer } = require(${JSON.stringify(path.join(__dirname, '..', 'helpers', 'frame-peer.js'))});
(async () => {
  const p = await FramePeer.connect(process.argv[1]);
  process.stdout.write('ready ' + process.pid + '\\n');
  const rl = require('node:readline').createInterface({ input: process.stdin });
  for await (const line of rl) {
    const [cmd, src, dst] = line.split(' ');
    if (cmd === 'ping') process.stdout.write((await p.ping(src, dst, 800)) ? 'ok\\n' : 'no\\n');
  }
  process.exit(0);
})();`;

class ChildPeer {
  private readonly lines: AsyncIterator<string>;
  private constructor(readonly child: ChildProcess, lines: AsyncIterator<string>, readonly pid: number, readonly start: number) {
    this.lines = lines;
  }

  /** A child process connected to sock; with `argv0` it is started through that command line (see withPid). */
  static async start(lab: Lab, sock: string, argv: string[] = [process.execPath, '-e', CHILD_PEER, sock]): Promise<ChildPeer> {
    const child = lab.spawn(argv[0], argv.slice(1));
    const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
    const first = await Promise.race([lines.next(), sleep(10000).then(() => ({ value: 'timeout', done: false }))]);
    const m = /^ready (\d+)$/.exec(String(first.value));
    if (!m) throw new Error(`child peer did not start: ${first.value}`);
    const pid = Number(m[1]);
    return new ChildPeer(child, lines, pid, processStat(pid)!.start);
  }

  /** A child peer whose pid is `pid` (a dead process's number): ns_last_pid is
   *  set right before a shell forks it; retried while another fork wins. */
  static async withPid(lab: Lab, sock: string, pid: number): Promise<ChildPeer> {
    for (let i = 0; i < 100; i++) {
      const p = await ChildPeer.start(lab, sock, ['sh', '-c', `echo ${pid - 1} > /proc/sys/kernel/ns_last_pid; "$@"; exit $?`, 'sh', process.execPath, '-e', CHILD_PEER, sock]);
      if (p.pid === pid) return p;
      await p.exit();
    }
    throw new Error(`no process got pid ${pid} in 100 tries`);
  }

  async ping(src: string, dst: string): Promise<boolean> {
    this.child.stdin!.write(`ping ${src} ${dst}\n`);
    const r = await this.lines.next();
    return r.value === 'ok';
  }

  /** Ends the process (its connection closes) and waits until it is reaped. */
  async exit(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGKILL');
    await gone;
  }
}

describe('the router learns only what the emperor allows, and keeps a vassal\'s address for it', () => {
  const L = new RouterLab();
  let gw = '';
  let net: LearnNetwork;
  const host = (n: number) => L.host(n);
  const bind = (list: PeerBinding[], learn: LearnNetwork | null = net) => L.router.setBindings(list, learn);
  const waitEvent = (pred: (e: RouterEvent) => boolean, what: string) => waitFor(() => L.log.some(pred), 3000, what);
  const refusedEvent = (reason: string, addr: string) => waitEvent((e) => e.type === 'refused' && e.reason === reason && e.addr === ipToInt(addr), `refused ${reason} ${addr}`);
  /** A peer of this process and its id. */
  async function connect(): Promise<{ p: FramePeer; id: number }> {
    const ids = new Set(L.events.filter((e) => e.type === 'peer_up').map((e) => (e as { id: number }).id));
    const p = await FramePeer.connect(L.sockPath);
    let id = 0;
    await waitFor(() => {
      const e = L.events.find((x) => x.type === 'peer_up' && !ids.has(x.id) && x.pid === process.pid);
      if (e) id = (e as { id: number }).id;
      return id !== 0;
    }, 3000, 'peer_up');
    return { p, id };
  }
  const dropsOf = (id: number) => L.router.stats().peers.find((x) => x.id === id)!.drops;
  const peerUpOf = (c: ChildPeer) => L.events.find((e) => e.type === 'peer_up' && e.pid === c.pid && e.start === c.start) as { id: number } | undefined;

  before(() => {
    requireRoot();
    L.start('ta', { maxFrame: 1500, queueBytes: 65536 });
    gw = L.gw;
    net = { net: ipToInt(host(0)), bits: 24 };
  });
  after(() => L.cleanup());

  test('outside the vassal network, its network and broadcast addresses, the gateway: refused from the first packet, nothing reaches the tun', async () => {
    bind([]);
    const { p, id } = await connect();
    const other = `${host(0).split('.').slice(0, 2).join('.')}.${(Number(host(0).split('.')[2]) + 1) % 256}.5`;
    const tries: Array<[string, string]> = [['192.0.2.7', 'outside_network'], [other, 'outside_network'], [host(0), 'bad_source'], [host(255), 'bad_source'], [gw, 'gateway']];
    const tunBefore = L.router.stats().txPackets;
    for (const [src, reason] of tries) {
      assert.equal(await p.ping(src, gw, 400), false, `${src} refused`);
      if (src !== other && src !== host(255)) await refusedEvent(reason, src);   // one event per reason per second
    }
    assert.equal(L.router.stats().txPackets, tunBefore, 'not one packet reached the tun');
    const d = dropsOf(id);
    assert.ok(d.outside_network >= 2 && d.bad_source >= 2 && d.gateway >= 1, JSON.stringify(d));
    assert.equal(L.router.stats().peers.find((x) => x.id === id)!.addr, 0, 'still no address');
    assert.ok(await p.ping(host(5), gw), 'an address inside the network is learned');
    p.close();
  });

  test('no vassal network (null): no address is learned at all', async () => {
    bind([], null);
    const { p, id } = await connect();
    assert.equal(await p.ping(host(6), gw, 400), false);
    await refusedEvent('outside_network', host(6));
    assert.ok(dropsOf(id).outside_network >= 1);
    bind([]);
    assert.ok(await p.ping(host(6), gw), 'learned once a network is set');
    p.close();
  });

  test('an address a vassal file names (a pure reservation) is refused to a learner', async () => {
    bind([{ uid: -1, pid: -1, addr: ipToInt(host(7)) }]);
    const { p } = await connect();
    assert.equal(await p.ping(host(7), gw, 400), false);
    await refusedEvent('unbound', host(7));
    assert.ok(await p.ping(host(8), gw), 'a free address is learned');
    p.close();
    bind([]);
  });

  test('a vassal\'s learned address stays its own when its peer disconnects: refused to others, given back to its next runtime, free once released', async () => {
    const V = 71;
    const r1 = await ChildPeer.start(L.lab, L.sockPath);
    bind([{ uid: -1, pid: r1.pid, start: r1.start, vassal: V, addr: 0 }]);
    assert.ok(await r1.ping(host(20), gw), 'the runtime learns its address');
    await r1.exit();
    await waitEvent((e) => e.type === 'peer_down' && e.addr === ipToInt(host(20)), 'peer_down');
    const thief = await connect();
    assert.equal(await thief.p.ping(host(20), gw, 400), false, 'reserved at once, before the emperor heard of anything');
    await refusedEvent('unbound', host(20));
    bind([{ uid: -1, pid: -1, vassal: V, addr: 0 }]);   // what the emperor sends while the vassal restarts
    assert.equal(await thief.p.ping(host(20), gw, 400), false, 'still reserved while the vassal restarts');
    const r2 = await ChildPeer.start(L.lab, L.sockPath);
    bind([{ uid: -1, pid: r2.pid, start: r2.start, vassal: V, addr: 0 }]);
    await waitFor(() => peerUpOf(r2) !== undefined, 3000, 'r2 peer_up');
    await waitEvent((e) => e.type === 'peer_addr' && e.id === peerUpOf(r2)!.id && e.addr === ipToInt(host(20)), 'the next runtime gets the address back before its first packet');
    assert.ok(await r2.ping(host(20), gw));
    assert.equal(await r2.ping(host(21), gw), false, 'and no other');
    await r2.exit();
    bind([]);   // the vassal is removed: the emperor names it no more
    assert.ok(await thief.p.ping(host(20), gw), 'released: now anyone may learn it');
    thief.p.close();
  });

  test('a new process reusing a dead runtime\'s pid number does not inherit its binding', async () => {
    const r1 = await ChildPeer.start(L.lab, L.sockPath);
    bind([{ uid: -1, pid: r1.pid, start: r1.start, vassal: 72, addr: ipToInt(host(30)) }]);
    await waitFor(() => peerUpOf(r1) !== undefined, 3000, 'r1 peer_up');
    await waitEvent((e) => e.type === 'peer_addr' && e.id === peerUpOf(r1)!.id && e.addr === ipToInt(host(30)), 'bound at accept');
    assert.ok(await r1.ping(host(30), gw));
    await r1.exit();
    // The binding stays (the emperor has not heard of the exit yet); a new
    // process takes the dead runtime's number and connects.
    const r2 = await ChildPeer.withPid(L.lab, L.sockPath, r1.pid);
    assert.equal(r2.pid, r1.pid);
    assert.notEqual(r2.start, r1.start, 'another process: another start time');
    await waitFor(() => peerUpOf(r2) !== undefined, 3000, 'r2 peer_up');
    const id = peerUpOf(r2)!.id;
    assert.equal(await r2.ping(host(30), gw), false, 'the dead runtime\'s address is refused');
    await refusedEvent('unbound', host(30));
    assert.ok(!L.events.some((e) => e.type === 'peer_addr' && e.id === id), 'nothing was given to it');
    assert.equal(L.router.stats().peers.find((x) => x.id === id)!.addr, 0);
    await r2.exit();
    bind([]);
  });
});

describe('the emperor: a squatter vassal in learned-address mode', () => {
  const lab = new Lab();
  let moat: MoatProcess;
  let gwNs = '';
  let dir = '';
  let sock = '';
  let stats = '';
  let heard = '';
  let host: (n: number) => string = () => { throw new Error('not set up'); };

  interface Row { name: string; state: string; pid: number | null; address: string | null; addressFrom: string | null; error: string | null; restarts: number }
  const rows = async (): Promise<Row[]> => (await readStats(stats)).emperor.vassals as Row[];
  const row = async (name: string) => (await rows()).find((v) => v.name === name);
  const until = (pred: () => Promise<boolean>, what: string, ms = 15000): Promise<void> => waitForAsync(pred, ms, what,
    async () => `${JSON.stringify(await rows().catch(() => []))}\n--- moat output (tail) ---\n${moat.output().slice(-4000)}`);
  const running = async (name: string) => (await row(name))?.state === 'running';
  const inVassal = (pid: number, cmd: string[]) => execFileSync('nsenter', ['-t', String(pid), '-n', ...cmd], { encoding: 'utf8', timeout: 10000, stdio: ['ignore', 'pipe', 'pipe'] });
  const SENDER = `
const s = require('node:dgram').createSocket('udp4');
const [src, dst, port] = process.argv.slice(1);
s.bind(0, src, () => { let n = 0; const go = () => s.send('x', Number(port), dst, () => { if (++n < 3) setTimeout(go, 50); else s.close(); }); go(); });`;
  /** Three datagrams from src (added to the vassal's device first) to the
   *  listener on the tun's second address, .254 (.1 may be added in the
   *  vassal as a source: it would then be local there). */
  function sendFrom(pid: number, src: string): void {
    try { inVassal(pid, ['ip', 'addr', 'add', `${src}/32`, 'dev', 'uwsgi0']); } catch { /* there already */ }
    inVassal(pid, [process.execPath, '-e', SENDER, src, host(254), '9999']);
  }
  const peerOf = async (pid: number) => (await readStats(stats)).peers.find((p: { pid: number }) => p.pid === pid) as { addr: string; drops: Record<string, number> } | undefined;
  const learner = () => ['[uwsgi]', `tuntap-device = uwsgi0 ${sock}`, 'exec-as-root = ip link set uwsgi0 up', 'exec-as-root = ip route add default dev uwsgi0', ''].join('\n');
  const named = (extra: string[]) => ['[uwsgi]', `tuntap-device = uwsgi0 ${sock}`, `tuntap-device-address = ${host(7)}/24`, `tuntap-device-route = ${host(1)}`, ...extra, ''].join('\n');

  before(async () => {
    requireRoot();
    const f = emperorInNetns(lab, 'ta', { extraHooks: (e) => [`ip addr add ${e.host(254)}/32 dev ${e.tun}`] });
    ({ gwNs, dir, sock, stats } = f);
    host = f.host;
    fs.writeFileSync(path.join(dir, 'squat.ini'), learner());
    fs.writeFileSync(path.join(dir, 'thief.ini'), learner());
    // Parsed, but not deployed: its user does not exist. Its address is reserved all the same.
    fs.writeFileSync(path.join(dir, 'later.ini'), named(['uid = no-such-user-moat-ta']));
    moat = startMoat(lab, ['emperor', '--ini', f.ini]);
    await waitForSocket(stats, moat, 15000);
    // The gateway's address exists once the hooks ran: its listener binds it.
    const listener = lab.spawn(process.execPath, ['-e', `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => process.stdout.write(r.address + '\\n'));
s.bind(9999, process.argv[1], () => process.stdout.write('ready\\n'));`, host(254)], { ns: gwNs });
    listener.stdout!.on('data', (d) => { heard += d; });
    await waitFor(() => heard.includes('ready'), 5000, 'listener');
    await until(async () => (await running('squat.ini')) && (await running('thief.ini')) && (await row('later.ini'))?.state === 'invalid', 'squat and thief running, later invalid');
  });

  after(async () => {
    if (moat.child.exitCode === null) moat.child.kill('SIGTERM');
    await Promise.race([moat.exited, sleep(20000)]);
    await lab.cleanup();
  });

  test('the vassal network is the router device\'s; every forbidden source is refused from the first packet, then its own is learned', async () => {
    assert.match(moat.output(), new RegExp(`"network":"${host(0).replace(/\./g, '\\.')}/24".*vassal network`));
    const pid = (await row('squat.ini'))!.pid!;
    for (const src of ['192.0.2.77', host(0), host(255), host(1), host(7)]) sendFrom(pid, src);
    await until(async () => {
      const d = (await peerOf(pid))?.drops ?? {};
      return d.outside_network >= 3 && d.bad_source >= 6 && d.gateway >= 3 && d.unbound >= 3;
    }, 'every forbidden packet counted under its reason', 5000);
    assert.equal((await row('squat.ini'))!.address, null, 'nothing learned');
    sendFrom(pid, host(9));
    await until(async () => heard.includes(host(9) + '\n'), 'its own address gets through');
    const r = (await row('squat.ini'))!;
    assert.deepEqual([r.address, r.addressFrom], [host(9), 'first packet']);
    const sources = heard.split('\n').filter((l) => l && l !== 'ready');
    assert.deepEqual([...new Set(sources)], [host(9)], 'the gateway heard nothing from a forbidden source');
  });

  test('the not-deployed file\'s address was kept for it: fixed, it deploys with it', async () => {
    fs.writeFileSync(path.join(dir, 'later.ini'), named([]));
    await until(async () => (await running('later.ini')) && (await row('later.ini'))?.address === host(7), 'later.ini deployed with its address');
    const pid = (await row('later.ini'))!.pid!;
    await until(async () => (await peerOf(pid))?.addr === host(7), 'bound to it in the router');
    sendFrom(pid, host(7));
    await until(async () => heard.includes(host(7) + '\n'), 'later.ini reaches the gateway from its address');
  });

  test('a vassal whose runtime dies keeps its address: the thief is refused meanwhile, the next runtime has it at once; removed, it is free', async () => {
    const r0 = (await row('squat.ini'))!;
    const thief = (await row('thief.ini'))!.pid!;
    process.kill(r0.pid!, 'SIGKILL');
    await until(async () => (await row('squat.ini'))?.pid !== r0.pid, 'squat runtime gone');
    sendFrom(thief, host(9));
    await until(async () => ((await peerOf(thief))?.drops.unbound ?? 0) >= 3, 'the thief refused (unbound)', 5000);
    await until(async () => (await row('squat.ini'))?.restarts === 1 && (await running('squat.ini')), 'squat restarted');
    const pid = (await row('squat.ini'))!.pid!;
    await until(async () => (await peerOf(pid))?.addr === host(9), 'the new runtime holds its address before any packet');
    assert.equal((await peerOf(thief))!.addr, '', 'the thief has none');
    fs.rmSync(path.join(dir, 'squat.ini'));
    await until(async () => !(await row('squat.ini')), 'squat removed');
    heard = '';
    await until(async () => { sendFrom(thief, host(9)); return heard.includes(host(9) + '\n'); }, 'released with the vassal: the thief learns it now');
    assert.equal((await row('thief.ini'))!.address, host(9));
  });
});
