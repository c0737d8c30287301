// emperor-rules.test.ts: a vassal's own firewall rules through a real `moat
// emperor` (its router in a process of its own; issue 17 item 3). The admin's
// rules allow the vassal's UDP to the gateway but one port; the vassal file's
// vassal-firewall-out denies another port the admin allows (narrowed), and
// its allow for the admin's denied port changes nothing (never widened). A
// bad rule is reported with file:line and the vassal keeps running under its
// old rules; the fixed file applies without a restart, over the same
// connection, an unchanged rule keeping its hit counter. Hits show in the
// stats document and /metrics.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, sleep, uniqueName, waitFor, waitForAsync } from '../helpers/netns';
import { MoatProcess, readStats, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { RECEIVER_JS, SENDER_JS, UdpReceiver } from '../helpers/udp-meter';

const lab = new Lab();
let moat: MoatProcess;
let net24 = '';
let gwNs = '';
let dir = '';
let stats = '';
let sock = '';
let file = '';
const metricsPort = 31000 + crypto.randomInt(20000);
const host = (n: number) => `${net24}${n}`;
const base = 21000 + crypto.randomInt(20000);
const NARROWED = base, LATER = base + 1, ADMIN_DENIED = base + 2, OPEN = base + 3;

interface Row { name: string; state: string; pid: number | null; restarts: number; error: string | null }
interface RuleHits { rule: string; text: string; hits: number }
const doc = () => readStats(stats);
const row = async (): Promise<Row | undefined> => ((await doc()).emperor.vassals as Row[]).find((v) => v.name === 'v.ini');
const own = async (): Promise<{ out: RuleHits[] } | undefined> => (await doc()).moat.vassal_rules['v.ini'];
const until = (pred: () => Promise<boolean>, what: string, ms = 15000): Promise<void> => waitForAsync(pred, ms, what,
  async () => `${JSON.stringify(await row().catch(() => undefined))}\n--- moat output (tail) ---\n${moat.output().slice(-4000)}`);

/** The vassal file: its address host(7), its own out rules after the header (line 6 on). */
const vassalFile = (rules: string[]) => ['[uwsgi]', `tuntap-device = uwsgi0 ${sock}`, 'attach-daemon = sleep 3600',
  `tuntap-device-address = ${host(7)}/24`, `tuntap-device-route = ${host(1)}`, ...rules, ''].join('\n');
const FIRST = [
  `vassal-firewall-out = deny 0.0.0.0/0 HOST1/32 proto udp dport ${NARROWED}`,
  `vassal-firewall-out = allow 0.0.0.0/0 0.0.0.0/0 proto udp dport ${ADMIN_DENIED}`,
];
const rules = (lines: string[]) => lines.map((l) => l.replace('HOST1', host(1)));

/** 20 datagrams from the vassal (pid's network namespace) to the gateway's port; how many arrived. */
async function heard(pid: number, port: number): Promise<number> {
  const rx = new UdpReceiver(lab.spawn(process.execPath, ['-e', RECEIVER_JS, host(1), String(port)], { ns: gwNs }));
  await rx.ready();
  const tx = lab.spawn('nsenter', ['-t', String(pid), '-n', process.execPath, '-e', SENDER_JS, host(7), host(1), String(port), '100', '100', '200']);
  await new Promise((r) => tx.once('exit', r));
  await sleep(200);
  const n = (await rx.bySource())[host(7)]?.n ?? 0;
  rx.stop();
  return n;
}

before(async () => {
  requireRoot();
  net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
  gwNs = lab.netns('erg');
  const tun = uniqueName('ere');
  const tmp = tempDir(lab);
  fs.chmodSync(tmp, 0o755);   // the router process (nobody) reaches its socket
  dir = path.join(tmp, 'vassals');
  fs.mkdirSync(dir);
  sock = path.join(tmp, 't.sock');
  stats = path.join(tmp, 's.sock');
  const ini = path.join(tmp, 'emperor.ini');
  fs.writeFileSync(ini, [
    '[uwsgi]', `emperor = ${dir}`, 'emperor-use-clone = fs,ipc,uts,net,pid', 'emperor-freq = 1',
    `vassals-dir-root = ${path.join(tmp, 'run')}`,
    `tuntap-router = ${tun} ${sock} ${stats}`, `tuntap-router-netns = /run/netns/${gwNs}`,
    `exec-as-root = ip addr add ${host(1)}/24 dev ${tun}`, `exec-as-root = ip link set ${tun} up`,
    `tuntap-router-firewall-out = deny 0.0.0.0/0 ${host(1)}/32 proto udp dport ${ADMIN_DENIED}`,
    `metrics = 127.0.0.1:${metricsPort}`, '',
  ].join('\n'));
  file = path.join(dir, 'v.ini');
  fs.writeFileSync(file, vassalFile(rules(FIRST)));
  moat = startMoat(lab, ['emperor', '--ini', ini]);
  await waitForSocket(stats, moat, 15000);
  await until(async () => (await row())?.state === 'running' && (await own()) !== undefined, 'the vassal running, its rules in the router');
});

after(async () => {
  if (moat && moat.child.exitCode === null) moat.child.kill('SIGTERM');
  if (moat) await Promise.race([moat.exited, sleep(20000)]);
  await lab.cleanup();
});

test('a vassal\'s own rule narrows the admin\'s, never widens them; a bad rule keeps the old ones; the fix applies without a restart', async () => {
  const r0 = (await row())!;
  const pid = r0.pid!;
  const peerId = ((await doc()).peers as Array<{ id: number; pid: number }>).find((p) => p.pid === pid)?.id;
  assert.ok(peerId, 'the vassal is connected');

  assert.ok(await heard(pid, OPEN) > 0, 'an open port: heard');
  assert.equal(await heard(pid, NARROWED), 0, 'the vassal\'s own deny: nothing heard');
  assert.equal(await heard(pid, ADMIN_DENIED), 0, 'the admin\'s deny holds over the vassal\'s allow');
  assert.ok(await heard(pid, LATER) > 0, 'a port neither denies: heard');

  let out = (await own())!.out;
  assert.deepEqual(out.map((r) => r.rule), [`${file}:6`, `${file}:7`], 'each rule named by the vassal file\'s line');
  const narrowedHits = out[0].hits;
  assert.ok(narrowedHits >= 15, `the vassal's deny judged what it dropped (${narrowedHits})`);
  assert.equal(out[1].hits, 0, 'the vassal\'s allow never saw what the admin denied');
  const d = (await doc()).peers.find((p: { id: number }) => p.id === peerId).drops;
  assert.ok(d.vassal_firewall_out >= 15 && d.firewall_out >= 15, `drops by reason: ${JSON.stringify(d)}`);
  const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = new RegExp(`moat_vassal_firewall_rule_hits_total\\{vassal="v\\.ini",chain="out",rule="[^"]*v\\.ini:6"\\} (\\d+)`).exec(metrics);
  assert.ok(m && Number(m[1]) >= narrowedHits, `the rule's hits in /metrics: ${m?.[0]}`);

  // A bad rule: reported with file:line, the vassal runs on under its old rules.
  fs.writeFileSync(file, vassalFile(rules([...FIRST, `vassal-firewall-out = deny 0.0.0.0/0 ${host(1)}/32 dport ${LATER}`])));
  await until(async () => (await row())?.error != null, 'the bad file reported');
  assert.match((await row())!.error!, new RegExp(`v\\.ini:8: vassal-firewall-out \\(option:3\\): 'dport' needs 'proto tcp' or 'proto udp'`));
  await waitFor(() => /v\.ini:8: vassal-firewall-out/.test(moat.output()), 5000, 'the error logged');
  assert.equal(await heard(pid, NARROWED), 0, 'the old deny still holds');
  assert.ok(await heard(pid, LATER) > 0, 'the bad rule is not in force');
  assert.deepEqual([(await row())!.pid, (await row())!.state], [pid, 'running']);

  // Fixed: a new rule first, the old ones unchanged behind it.
  fs.writeFileSync(file, vassalFile(rules([`vassal-firewall-out = deny 0.0.0.0/0 ${host(1)}/32 proto udp dport ${LATER}`, ...FIRST])));
  await until(async () => (await row())?.error === null && (await own())?.out.length === 3, 'the fixed file applied');
  assert.equal(await heard(pid, LATER), 0, 'the new deny holds');
  assert.equal(await heard(pid, NARROWED), 0, 'the old deny still holds');
  assert.ok(await heard(pid, OPEN) > 0, 'traffic flows on');
  out = (await own())!.out;
  assert.deepEqual(out.map((r) => r.rule), [`${file}:6`, `${file}:7`, `${file}:8`]);
  assert.ok(out[0].hits >= 15, 'the new rule counts');
  assert.ok(out[1].hits >= narrowedHits + 30, `the unchanged deny kept its counter (${narrowedHits} before, ${out[1].hits} now)`);
  const r1 = (await row())!;
  assert.deepEqual([r1.pid, r1.restarts], [pid, r0.restarts], 'not restarted');
  assert.ok(((await doc()).peers as Array<{ id: number }>).some((p) => p.id === peerId), 'the same connection');
  assert.match(moat.output(), /changed only its limits or rules/);
});
