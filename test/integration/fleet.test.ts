// fleet.test.ts: a real fleet on one machine (test/helpers/fleet-lab.ts):
// three hosts, each a network namespace with its own `moat emperor`, router
// process and vassals, joined by a bridge; one real etcd. Vassals and rules
// go into etcd with etcdctl, as an operator puts them; the test watches where
// vassals run (each host's stats document), pings between vassals on
// different hosts (from inside their namespaces), plays an etcd outage and a
// host's death (SIGKILL to its emperor, router process and every process in
// its vassals' cgroups).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { FleetLab } from '../helpers/fleet-lab';
import { requireRoot, sleep } from '../helpers/netns';
import { CLI } from '../helpers/moat';

const TTL = 6;                 // s: renewal 1.2 s, margin 1.2 s, outages up to 3.6 s stop nothing
const F = new FleetLab();

const until = F.until.bind(F);

/** Each of names runs on exactly one host: name -> host. */
async function placed(names: string[]): Promise<Map<string, string> | undefined> {
  const w = await F.where();
  const out = new Map<string, string>();
  for (const n of names) {
    const hs = w.get(n);
    if (!hs || hs.length !== 1) return undefined;
    out.set(n, hs[0]);
  }
  return out;
}

const pingsFrom = F.pingFrom.bind(F);

before(async () => {
  requireRoot();
  await F.setup(3, TTL);
  for (const h of F.hosts) await F.start(h);
});

after(async () => {
  await F.cleanup();
});

test('a vassal added in etcd runs on one host and reaches a vassal on another host by its address', async () => {
  F.putVassal('a.ini', F.vassal(10));
  F.putVassal('b.ini', F.vassal(11));
  let where: Map<string, string> | undefined;
  await until(async () => (where = await placed(['a.ini', 'b.ini'])) !== undefined, 20000, 'a and b to run, each on one host');
  assert.notEqual(where!.get('a.ini'), where!.get('b.ini'), 'spread by count: two vassals, two hosts');
  const ms = await until(() => pingsFrom('a.ini', `${F.net}11`), 10000, 'a to reach b across hosts');
  assert.ok(await pingsFrom('b.ini', `${F.net}10`), 'and b reaches a');
  assert.ok(await pingsFrom('a.ini', `${F.net}1`), 'a reaches its own host\'s gateway');
  console.log(`# a -> b across hosts after ${ms} ms`);
  // The path: a's host routes b's address via b's host on the hosts' network.
  const hostOf = (n: string) => F.hosts.find((h) => h.name === where!.get(n))!;
  const routes = execFileSync('ip', ['netns', 'exec', hostOf('a.ini').ns, 'ip', 'route', 'show', 'proto', '77'], { encoding: 'utf8' });
  assert.match(routes, new RegExp(`^${F.net.replace(/\./g, '\\.')}11 via ${hostOf('b.ini').address.replace(/\./g, '\\.')} `, 'm'), routes);

  // moat fleet status: hosts with their leases, vassals with host, address and state.
  const st = JSON.parse(execFileSync('ip', ['netns', 'exec', F.hosts[0].ns, process.execPath, CLI, 'fleet', 'status', '--etcd', F.etcdUrl, '--json'], { encoding: 'utf8', timeout: 15000 }));
  assert.deepEqual(st.hosts.map((h: { name: string }) => h.name).sort(), ['h1', 'h2', 'h3']);
  const a = st.vassals.find((v: { name: string }) => v.name === 'a.ini');
  assert.equal(a.host, where!.get('a.ini'));
  assert.equal(a.address, `${F.net}10`);
  assert.equal(a.state, 'running');
});

test('a rule changed in etcd is applied by every host\'s router within 2 s, and a bad one changes nothing', async () => {
  const hasRule = F.hasRule.bind(F);
  const t0 = Date.now();
  F.putRules('10-no-ping.rules', `out deny ${F.net}10/32 ${F.net}11/32 proto icmp\n`);
  const spent: number[] = [];
  for (const h of F.hosts) {
    await until(() => hasRule(h, '10-no-ping.rules'), 5000, `host ${h.name} to load the rule`);
    spent.push(Date.now() - t0);
  }
  console.log(`# rule change applied by every host after ${Math.max(...spent)} ms (${spent.join(', ')})`);
  assert.ok(Math.max(...spent) <= 2000, `every host within 2 s (${spent.join(', ')} ms)`);
  assert.equal(await pingsFrom('a.ini', `${F.net}11`), false, 'a\'s host denies a -> b now');

  // A bad value: every host reports key and line; its routers keep the good rules.
  F.putRules('10-no-ping.rules', 'out deny 10.0.0.0/33 0.0.0.0/0\n');
  await until(() => F.hosts.every((h) => /\/rules\/10-no-ping\.rules:1:\d+/.test(h.proc!.output())), 5000, 'every host to report the bad rule file with key:line');
  await sleep(500);
  for (const h of F.hosts) assert.ok(await hasRule(h, '10-no-ping.rules'), `${h.name} keeps the previous rule`);
  assert.equal(await pingsFrom('a.ini', `${F.net}11`), false);

  F.etcd.del(`${F.prefix}/rules/10-no-ping.rules`);
  for (const h of F.hosts) await until(async () => !(await hasRule(h, '10-no-ping.rules')), 5000, `${h.name} to drop the rule`);
  await until(() => pingsFrom('a.ini', `${F.net}11`), 5000, 'a to reach b again');
});

test('vassals added at once: each runs on exactly one host, never on two', async () => {
  const names = [20, 21, 22, 23, 24, 25].map((n) => `r${n}.ini`);
  names.forEach((n, i) => F.putVassal(n, F.vassal(20 + i)));
  const t0 = Date.now();
  let all: Map<string, string> | undefined;
  while (Date.now() - t0 < 30000) {
    const w = await F.where();
    for (const n of names) assert.ok((w.get(n)?.length ?? 0) <= 1, `${n} never on two hosts (${w.get(n)})`);
    const placements = F.etcd.list(`${F.prefix}/placement/`);
    for (const n of names) assert.ok([...placements.keys()].filter((k) => k.endsWith(`/${n}`)).length <= 1);
    if ((all = await placed(names))) break;
    await sleep(100);
  }
  assert.ok(all, 'all six placed');
  const perHost = new Map<string, number>();
  for (const h of all!.values()) perHost.set(h, (perHost.get(h) ?? 0) + 1);
  assert.ok(Math.max(...perHost.values()) <= 3, `spread by count: ${JSON.stringify(Object.fromEntries(perHost))}`);
  names.forEach((n) => F.delVassal(n));
  await until(async () => { const w = await F.where(); return names.every((n) => !w.has(n)); }, 20000, 'the removed vassals to stop');
  await until(() => ![...F.etcd.list(`${F.prefix}/addresses/`).values()].some((v) => names.includes(v)), 5000, 'their addresses to be freed');
});

test('a bad vassal value is reported by every host with its key and line, runs nowhere, and touches no other vassal', async () => {
  const before = [(await F.pidOf('a.ini'))!.pid, (await F.pidOf('b.ini'))!.pid];
  F.putVassal('bad.ini', ['[uwsgi]', 'tuntap-device = uwsgi0', 'tuntap-device-address = not-an-address', ''].join('\n'));
  await until(() => F.hosts.every((h) => new RegExp(`${F.prefix}/vassals/bad\\.ini:3`).test(h.proc!.output())), 5000, 'every host to report bad.ini:3');
  await sleep(1500);
  assert.equal((await F.where()).has('bad.ini'), false, 'not run anywhere');
  assert.equal(F.etcd.get(`${F.prefix}/placement/bad.ini`), undefined, 'not placed');
  assert.deepEqual([(await F.pidOf('a.ini'))!.pid, (await F.pidOf('b.ini'))!.pid], before, 'a and b untouched');
  F.delVassal('bad.ini');
});

test('a second emperor with a live host\'s fleet-host is refused', async () => {
  const h = F.hosts[0];
  const ini = h.ini.replace(/emperor\.ini$/, 'twin.ini');
  fs.writeFileSync(ini, fs.readFileSync(h.ini, 'utf8').replace(/fleet-dir = .*/, `fleet-dir = ${ini}.d`));
  const r = spawnSync('ip', ['netns', 'exec', h.ns, process.execPath, CLI, 'emperor', '--ini', ini], { encoding: 'utf8', timeout: 20000 });
  assert.notEqual(r.status, 0);
  assert.match(r.stdout + r.stderr, /fleet-host h1 is held by a live host/);
  assert.ok((await F.where()).get('a.ini'), 'the running fleet is untouched');
});

test('a vassal pinned to another host moves there with its address, and traffic to it follows', async () => {
  const from = (await F.pidOf('b.ini'))!.host;
  const aHost = (await F.pidOf('a.ini'))!.host;
  const target = F.hosts.find((h) => h !== from && h !== aHost)!;   // a third host: a's traffic crosses hosts still
  const t0 = Date.now();
  F.putVassal('b.ini', F.vassal(11, [`vassal-host = ${target.name}`]));
  await until(async () => (await placed(['b.ini']))?.get('b.ini') === target.name, 20000, `b to move to ${target.name}`);
  const moved = Date.now() - t0;
  const resumed = await until(() => pingsFrom('a.ini', `${F.net}11`), 10000, 'a to reach b on its new host');
  console.log(`# move: b running on ${target.name} ${moved} ms after its pin changed, a reached it ${resumed} ms later`);
  F.putVassal('b.ini', F.vassal(11));   // unpinned again: it stays where it runs
  await sleep(1500);
  assert.equal((await placed(['b.ini']))?.get('b.ini'), target.name, 'an unpinned vassal is not moved again');
});

test('a learned address is claimed in etcd and stays the vassal\'s when it moves to another host', async () => {
  const aHost = (await F.pidOf('a.ini'))!.host;
  const [x, y] = F.hosts.filter((h) => h !== aHost);
  const learner = (pin: string) => ['[uwsgi]', 'tuntap-device = uwsgi0', `exec-as-root = ip addr add ${F.net}40/24 dev uwsgi0`, 'exec-as-root = ip link set uwsgi0 up',
    `exec-as-root = ip route add default via ${F.net}1 dev uwsgi0`, 'attach-daemon = sleep 3600', `vassal-host = ${pin}`, ''].join('\n');
  F.putVassal('l.ini', learner(x.name));
  await until(async () => (await placed(['l.ini']))?.get('l.ini') === x.name, 20000, `l to run on ${x.name}`);
  await until(() => pingsFrom('l.ini', `${F.net}10`), 10000, 'l\'s first packets (to a) to pass: its address learned');
  await until(() => F.etcd.get(`${F.prefix}/addresses/${F.net}40`) === 'l.ini', 5000, 'the learned address claimed in etcd');
  await until(() => pingsFrom('a.ini', `${F.net}40`), 10000, 'a to reach l by its learned address');

  F.putVassal('l.ini', learner(y.name));
  await until(async () => (await placed(['l.ini']))?.get('l.ini') === y.name, 20000, `l to move to ${y.name}`);
  const row = (await F.rows(y)).find((r) => r.name === 'l.ini')!;
  assert.equal(row.address, `${F.net}40`, 'bound on the new host before its first packet');
  await until(() => pingsFrom('a.ini', `${F.net}40`), 10000, 'a to reach l on its new host');
  F.delVassal('l.ini');
  await until(() => F.etcd.get(`${F.prefix}/addresses/${F.net}40`) === undefined, 20000, 'its address freed with its key');
});

test('a tenant sending from another host\'s vassal address is stopped; the address stays its owner\'s and traffic to it still reaches the owner', async () => {
  const aHost = (await F.pidOf('a.ini'))!.host;
  if ((await F.pidOf('b.ini'))!.host === aHost) {
    // The hijacker runs beside a, so a's own router is the one it tries to fool.
    const other = F.hosts.find((h) => h !== aHost)!;
    F.putVassal('b.ini', F.vassal(11, [`vassal-host = ${other.name}`]));
    await until(async () => (await placed(['b.ini']))?.get('b.ini') === other.name, 20000, `b to move to ${other.name}`);
  }
  const bPid = (await F.pidOf('b.ini'))!;
  const stolen = `${F.net}11`;
  // No address in its file: the tenant sets b's address on its own device and sends.
  F.putVassal('h.ini', ['[uwsgi]', 'tuntap-device = uwsgi0', `exec-as-root = ip addr add ${stolen}/24 dev uwsgi0`, 'exec-as-root = ip link set uwsgi0 up',
    `exec-as-root = ip route add default via ${F.net}1 dev uwsgi0`, 'attach-daemon = sleep 3600', `vassal-host = ${aHost.name}`, ''].join('\n'));
  await until(async () => (await F.pidOf('h.ini')) !== undefined, 20000, `h to run on ${aHost.name}`);
  F.pingFrom('h.ini', `${F.net}10`).catch(() => false);   // its first packets: the router on a's host learns the address
  await until(async () => (await F.pidOf('h.ini')) === undefined, 10000, 'the hijacker stopped once the fleet refused its address');
  assert.match(aHost.proc!.output(), new RegExp(`learned address ${stolen.replace(/\./g, '\\.')} is held by vassal b\\.ini`), 'the refusal is logged, naming the owner');
  assert.equal(F.etcd.get(`${F.prefix}/addresses/${stolen}`), 'b.ini', 'the address stays b\'s in etcd');
  await until(() => pingsFrom('a.ini', stolen), 10000, 'a to reach b\'s address');
  assert.deepEqual((await F.where()).get('b.ini'), [bPid.host.name], 'b runs where it ran');
  assert.equal((await F.pidOf('b.ini'))!.pid, bPid.pid, 'the same b');
  await sleep(1500);
  assert.equal(await F.pidOf('h.ini'), undefined, 'the hijacker stays stopped');
  F.delVassal('h.ini');
});

test('etcd stopped for a third of the TTL: nothing stops', async () => {
  const before = [(await F.pidOf('a.ini'))!, (await F.pidOf('b.ini'))!];
  F.etcd.pause();
  await sleep((TTL * 1000) / 3);
  F.etcd.resume();
  await sleep(2500);
  const afterPids = [(await F.pidOf('a.ini'))!, (await F.pidOf('b.ini'))!];
  assert.deepEqual(afterPids.map((p) => [p.host.name, p.pid]), before.map((p) => [p.host.name, p.pid]), 'the same processes on the same hosts');
  for (const h of F.hosts) assert.doesNotMatch(h.proc!.output(), /killing every vassal/, `${h.name} did not fence`);
  assert.ok(await pingsFrom('a.ini', `${F.net}11`));
});

test('a host killed: its vassals run on the others with their addresses, and the pings between vassals resume', async () => {
  const b = (await F.pidOf('b.ini'))!;
  const victim = b.host;
  const t0 = Date.now();
  F.kill(victim);
  let w: Map<string, string> | undefined;
  await until(async () => (w = await placed(['a.ini', 'b.ini'])) !== undefined && w.get('b.ini') !== victim.name && w.get('a.ini') !== victim.name,
    (TTL + 15) * 1000, 'b to run on another host');
  const failover = Date.now() - t0;
  const rows = await Promise.all(F.hosts.filter((h) => h !== victim).map((h) => F.rows(h)));
  const bRow = rows.flat().find((r) => r.name === 'b.ini' && r.state === 'running')!;
  assert.equal(bRow.address, `${F.net}11`, 'b kept its address');
  const resumed = await until(() => pingsFrom('a.ini', `${F.net}11`), 10000, 'a to reach b on its new host');
  console.log(`# failover: b running elsewhere ${failover} ms after the kill (TTL ${TTL} s), pings resumed ${resumed} ms later`);
  assert.ok(failover <= (TTL + 8) * 1000, `within the TTL plus a few seconds (${failover} ms)`);
});
