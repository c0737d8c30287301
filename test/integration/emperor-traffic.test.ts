// emperor-traffic.test.ts: a vassal's traffic limits and accounting through a
// real `moat emperor` (its router in a process of its own; issue 16): the
// limit a vassal file names and the emperor's default for a vassal whose
// address is learned from its first packet hold within 10%; a vassal file
// that changes only its limit is applied to the running vassal (same
// runtime, same connection) at the new rate; the emperor's totals by vassal
// name and its accounting log equal what the gateway received, within 1%,
// across a restart of moat (router process and emperor), every interval
// written once; a SIGHUP with new emperor-wide defaults applies them to the
// running vassals. With moat's defaults each runtime hands its tun to the
// router (one hop, docs/one-hop.md): the limits and accounting hold there.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, sleep, waitFor, waitForAsync } from '../helpers/netns';
import { CLI, MoatProcess, readStats, startMoat, waitForSocket } from '../helpers/moat';
import { emperorInNetns } from '../helpers/emperor-netns';
import { ipBitsPerSec, RECEIVER_JS, SENDER_JS, UdpReceiver } from '../helpers/udp-meter';

const lab = new Lab();
let moat: MoatProcess;
let gwNs = '';
let dir = '';
let stats = '';
let sock = '';
let nextPort = 20000;
let ini = '';
const metricsPort = 31000 + crypto.randomInt(20000);
let acctLog = '';
const heard: Record<string, number> = {};   // datagrams the gateway received, by vassal name
const figures: string[] = [];
let host: (n: number) => string = () => { throw new Error('not set up'); };

interface Row { name: string; state: string; pid: number | null; restarts: number; address: string | null }
interface Peer { id: number; pid: number; addr: string; handoff: boolean }
const rows = async (): Promise<Row[]> => (await readStats(stats)).emperor.vassals as Row[];
const row = async (name: string) => (await rows()).find((v) => v.name === name);
const peers = async (): Promise<Peer[]> => (await readStats(stats)).peers as Peer[];
const until = (pred: () => Promise<boolean>, what: string, ms = 15000): Promise<void> => waitForAsync(pred, ms, what,
  async () => `${JSON.stringify(await rows().catch(() => []))}\n--- moat output (tail) ---\n${moat.output().slice(-4000)}`);
const running = async (name: string) => (await row(name))?.state === 'running';

const vassal = (extra: string[]) => ['[uwsgi]', `tuntap-device = uwsgi0 ${sock}`, 'attach-daemon = sleep 3600', ...extra, ''].join('\n');
const named = (extra: string[]) => vassal([`tuntap-device-address = ${host(7)}/24`, `tuntap-device-route = ${host(1)}`, ...extra]);
const learner = () => vassal(['exec-as-root = ip link set uwsgi0 up', 'exec-as-root = ip route add default dev uwsgi0']);

/** The received IPv4 rate of src's datagrams, sent from the vassal (pid) at
 *  pps x 1000-byte payloads for ms; measured first to last arrival (the
 *  shaping queue's drain included). */
async function sendAndMeasure(name: string, pid: number, src: string, pps: number, ms: number): Promise<{ bits: number; n: number }> {
  const port = nextPort++;
  const rx = new UdpReceiver(lab.spawn(process.execPath, ['-e', RECEIVER_JS, host(1), String(port)], { ns: gwNs }));
  await rx.ready();
  const tx = lab.spawn('nsenter', ['-t', String(pid), '-n', process.execPath, '-e', SENDER_JS, src, host(1), String(port), String(pps), '1000', String(ms)]);
  await new Promise((r) => tx.once('exit', r));
  await sleep(300);   // the queue drains (50 ms of the rate at most)
  const a = (await rx.bySource())[src];
  rx.stop();
  assert.ok(a && a.n > 10, `the gateway heard ${src}: ${JSON.stringify(a)}`);
  heard[name] = (heard[name] ?? 0) + a.n;
  return { bits: ipBitsPerSec(a), n: a.n };
}

function within(bits: number, limit: number, what: string): void {
  figures.push(`${what}: ${(bits / 1e6).toFixed(2)} Mbit/s (limit ${limit / 1e6})`);
  assert.ok(bits >= limit * 0.9 && bits <= limit * 1.1, `${what}: ${(bits / 1e6).toFixed(2)} Mbit/s, limit ${limit / 1e6} Mbit/s ±10%`);
}

after(async () => {
  if (figures.length) process.stderr.write(`# emperor-traffic figures:\n${figures.map((f) => `#   ${f}`).join('\n')}\n`);
  if (moat && moat.child.exitCode === null) moat.child.kill('SIGTERM');
  if (moat) await Promise.race([moat.exited, sleep(20000)]);
  await lab.cleanup();
});

describe('per-vassal traffic limits through moat emperor', () => {
  before(async () => {
    requireRoot();
    const f = emperorInNetns(lab, 'et', { extra: (e) => ['emperor-vassal-rate-out = 4mbit', `accounting-log = ${(acctLog = path.join(e.tmp, 'accounting.log'))}`, 'accounting-interval = 1', `metrics = 127.0.0.1:${metricsPort}`] });
    ({ gwNs, dir, sock, stats, ini } = f);
    host = f.host;
    fs.writeFileSync(path.join(dir, 'named.ini'), named(['vassal-rate-out = 8mbit']));
    fs.writeFileSync(path.join(dir, 'learner.ini'), learner());
    moat = startMoat(lab, ['emperor', '--ini', ini]);
    await waitForSocket(stats, moat, 15000);
    await until(async () => (await running('named.ini')) && (await running('learner.ini')), 'both vassals running');
  });


  test('the vassal file\'s limit holds within 10%, and the emperor\'s default for a learned address', async () => {
    const pid = (await row('named.ini'))!.pid!;
    within((await sendAndMeasure('named.ini', pid, host(7), 2000, 4000)).bits, 8e6, 'named vassal, vassal-rate-out = 8mbit');
    const lp = (await row('learner.ini'))!.pid!;
    execInVassal(lp, ['ip', 'addr', 'add', `${host(9)}/32`, 'dev', 'uwsgi0']);
    within((await sendAndMeasure('learner.ini', lp, host(9), 1000, 4000)).bits, 4e6, 'learned address, emperor-vassal-rate-out = 4mbit');
    assert.equal((await row('learner.ini'))!.address, host(9));
  });

  test('a file that changes only its limit: the same runtime and connection, the new rate', async () => {
    const before = (await row('named.ini'))!;
    const peer = (await peers()).find((p) => p.pid === before.pid)!;
    assert.ok(peer, 'the vassal is connected');
    // moat's defaults: its runtime handed the vassal's tun to the router (one hop), and the limits hold on that path.
    assert.equal(peer.handoff, true, 'the vassal\'s tun is with the router');
    fs.writeFileSync(path.join(dir, 'named.ini'), named(['vassal-rate-out = 2mbit']));
    await waitFor(() => /changed only its limits/.test(moat.output()), 10000, 'the change applied');
    within((await sendAndMeasure('named.ini', before.pid!, host(7), 600, 4000)).bits, 2e6, 'named vassal after reload, 2mbit');
    const after = (await row('named.ini'))!;
    assert.deepEqual([after.pid, after.restarts], [before.pid, before.restarts], 'not restarted');
    assert.ok((await peers()).some((p) => p.id === peer.id && p.pid === before.pid), 'still the same connection');
  });
});

interface Line { vassal: string; start: string; end: string; packets_out: number; bytes_out: number; total: { packets_out: number } }
const logLines = (): Line[] => fs.readFileSync(acctLog, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);

/** Within 1% (and never more than was received: nothing counted twice). */
function sameCount(counted: number, received: number, what: string): void {
  figures.push(`${what}: counted ${counted}, received ${received}`);
  assert.ok(counted <= received && counted >= received * 0.99, `${what}: counted ${counted}, the gateway received ${received} (within 1%)`);
}

describe('the emperor\'s defaults reloaded', () => {
  test('SIGHUP with a new emperor-vassal-rate-out: the vassal it limits gets it, same runtime and connection', async () => {
    const before = (await row('learner.ini'))!;
    const peer = (await peers()).find((p) => p.pid === before.pid)!;
    assert.ok(peer && before.address === host(9), 'the learner is connected with its learned address');
    fs.writeFileSync(ini, fs.readFileSync(ini, 'utf8').replace('emperor-vassal-rate-out = 4mbit', 'emperor-vassal-rate-out = 6mbit'));
    moat.child.kill('SIGHUP');
    await waitFor(() => /vassal defaults reloaded/.test(moat.output()), 10000, 'the reload applied');
    within((await sendAndMeasure('learner.ini', before.pid!, host(9), 1400, 4000)).bits, 6e6, 'learned address after SIGHUP, emperor-vassal-rate-out = 6mbit');
    const after = (await row('learner.ini'))!;
    assert.deepEqual([after.pid, after.restarts], [before.pid, before.restarts], 'not restarted');
    assert.ok((await peers()).some((p) => p.id === peer.id), 'still the same connection');
  });
});

describe('accounting by vassal name through moat emperor', () => {
  test('totals by name and the accounting log equal what the gateway received, across a restart of moat', async () => {
    const stat = async (name: string) => (await row(name) as unknown as { accounting: { packets_out: number } | null }).accounting;
    // The emperor samples the router's counters every second.
    for (const name of ['named.ini', 'learner.ini']) {
      await until(async () => (await stat(name))?.packets_out === heard[name], `the emperor counted what the gateway heard from ${name}`, 5000).catch(() => undefined);
      sameCount((await stat(name))?.packets_out ?? 0, heard[name], `${name} before the restart (status)`);
    }
    // A clean restart: the interval in progress is written at the stop, the totals restored at the start.
    moat.child.kill('SIGTERM');
    await Promise.race([moat.exited, sleep(20000)]);
    assert.notEqual(moat.child.exitCode, null, 'moat stopped');
    const before = logLines();
    moat = startMoat(lab, ['emperor', '--ini', ini]);
    await waitForSocket(stats, moat, 15000);
    await until(async () => (await running('named.ini')) && (await running('learner.ini')), 'both vassals running again');
    const restored = await stat('named.ini');
    assert.equal(restored!.packets_out, before.filter((l) => l.vassal === 'named.ini').pop()!.total.packets_out, 'totals restored from the log');
    const pid = (await row('named.ini'))!.pid!;
    await sendAndMeasure('named.ini', pid, host(7), 500, 2000);
    // moat emperor --status: the current rate beside the limit; /metrics: the totals by name.
    const status = execFileSync(process.execPath, [CLI, 'emperor', '--status', '--stats', stats], { encoding: 'utf8' });
    figures.push(`--status:\n${status.trimEnd()}`);
    assert.match(status, /OUT NOW\/LIMIT/);
    assert.match(status, /^named\.ini\s.*\s[\d.]+[km]?bit\/2mbit\s/m, 'named.ini: its rate now beside its 2mbit limit');
    assert.match(status, /^learner\.ini\s.*\s[\d.]+[km]?bit\/6mbit\s/m, 'learner.ini: beside the emperor\'s default (6mbit since the SIGHUP)');
    // The emperor samples every second: /metrics and the status are compared once the last datagrams are counted.
    await until(async () => (await stat('named.ini'))?.packets_out === heard['named.ini'], 'the emperor counted the burst', 5000).catch(() => undefined);
    const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const m = /moat_vassal_network_packets_total\{vassal="named\.ini",direction="out"\} (\d+)/.exec(metrics);
    assert.ok(m, 'the vassal\'s packets by name in /metrics');
    assert.equal(Number(m[1]), (await stat('named.ini'))!.packets_out);
    assert.match(metrics, /moat_vassal_network_rate_limit_bits_per_second\{vassal="named\.ini",direction="out"\} 2000000/);
    await sleep(2500);   // an interval (1 s) written after the last arrival
    moat.child.kill('SIGTERM');
    await Promise.race([moat.exited, sleep(20000)]);
    const lines = logLines();
    for (const name of ['named.ini', 'learner.ini']) {
      const mine = lines.filter((l) => l.vassal === name);
      const sum = mine.reduce((a, l) => a + l.packets_out, 0);
      sameCount(sum, heard[name], `${name}: the log's intervals summed, across the restart`);
      assert.equal(mine[mine.length - 1].total.packets_out, sum, `${name}: the last total is the sum of its intervals`);
      for (let i = 1; i < mine.length; i++) assert.ok(mine[i].start >= mine[i - 1].end, `${name}: intervals do not overlap (${mine[i - 1].end} > ${mine[i].start})`);
    }
  });
});

function execInVassal(pid: number, cmd: string[]): void {
  const r = spawnSync('nsenter', ['-t', String(pid), '-n', ...cmd], { encoding: 'utf8', timeout: 10000 });
  if (r.status !== 0) throw new Error(`${cmd.join(' ')} in the vassal: ${r.stderr}`);
}
