// fleet-store.test.ts: the fleet's etcd side against a real etcd (Debian's
// etcd-server in a namespace of the test, reached over a veth): registration
// and a refused duplicate host, the watch, claim races, address conflicts,
// release and report, fencing across etcd outages (SIGSTOP), and stop().
// Each test works under a prefix of its own.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import pino from 'pino';
import { Lab, requireRoot, sh, sleep, uniqueName, waitFor } from '../helpers/netns';
import { EtcdServer } from '../helpers/etcd-server';
import { FleetStore } from '../../src/fleet/fleet-store';
import { readFleetStatus } from '../../src/fleet/fleet-status';
import { endpointOptions } from '../../src/fleet/etcd-client';
import type { FleetStoreOptions } from '../../src/fleet/types';

const lab = new Lab();
let etcd: EtcdServer;
const stores: FleetStore[] = [];
const log = pino({ level: process.env.MOAT_TEST_LOG ?? 'silent' });
let prefixes = 0;
const newPrefix = () => `/t${process.pid}-${++prefixes}`;

before(async () => {
  requireRoot();
  const ns = lab.netns('mfs');
  const outer = uniqueName('mfo');
  const inner = uniqueName('mfi');
  const net = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.${4 * crypto.randomInt(60)}`.split('.').map(Number);
  const ip = (n: number) => `${net[0]}.${net[1]}.${net[2]}.${net[3] + n}`;
  sh('ip', ['link', 'add', outer, 'type', 'veth', 'peer', 'name', inner]);
  lab.onCleanup(() => sh('ip', ['link', 'del', outer]));
  sh('ip', ['link', 'set', inner, 'netns', ns]);
  sh('ip', ['addr', 'add', `${ip(1)}/30`, 'dev', outer]);
  sh('ip', ['link', 'set', outer, 'up']);
  sh('ip', ['addr', 'add', `${ip(2)}/30`, 'dev', inner], { ns });
  sh('ip', ['link', 'set', inner, 'up'], { ns });
  etcd = new EtcdServer(ns, ip(2), 2379);
  await etcd.start();
});

after(async () => {
  if (etcd) etcd.resume();
  await Promise.all(stores.map((s) => s.stop()));
  if (etcd) await etcd.stop();
  await lab.cleanup();
});

function store(host: string, prefix: string, over: Partial<FleetStoreOptions> = {}): FleetStore {
  const s = new FleetStore({
    endpoints: [etcd.url], prefix, host, hostAddress: '192.0.2.10', ttlSec: 2, renewMs: 300, marginMs: 500,
    callTimeoutMs: 1000, log: log.child({ host }), ...over,
  });
  stores.push(s);
  return s;
}

/** Records the store's events with their time. */
function events(s: FleetStore): Array<{ name: string; at: number }> {
  const seen: Array<{ name: string; at: number }> = [];
  for (const name of ['fenced', 'unfenced', 'lease-lost', 'registered', 'change']) s.on(name, () => seen.push({ name, at: Date.now() }));
  return seen;
}

test('a host registers under a lease; its name is refused while it lives and taken over once its lease expired', async () => {
  const p = newPrefix();
  const a = store('h1', p);
  await a.start();
  const rec = JSON.parse(etcd.get(`${p}/hosts/h1`)!) as { address: string; since: string };
  assert.equal(rec.address, '192.0.2.10');
  assert.ok(!Number.isNaN(Date.parse(rec.since)));
  assert.equal(a.fenced, false);
  assert.equal(a.snapshot().hosts.get('h1')?.lease, a.lease);

  await assert.rejects(store('h1', p).start(), /^Error: fleet-host h1 is held by a live host \(its lease has [12] s left\)$/);

  // a host that died: its key under a lease nobody renews
  const lease = /lease ([0-9a-f]+) granted/.exec(etcd.ctl(['lease', 'grant', '2']))![1];
  etcd.ctl(['put', `--lease=${lease}`, `${p}/hosts/h2`, '{"since":"x"}']);
  await assert.rejects(store('h2', p).start(), /fleet-host h2 is held by a live host/);
  await sleep(3200);
  const c = store('h2', p);
  await c.start();
  assert.equal(c.snapshot().hosts.size, 2);
});

test('the snapshot is read at start and the watch applies puts and deletes of vassals and rules within a second', async () => {
  const p = newPrefix();
  etcd.put(`${p}/vassals/old.ini`, '[uwsgi]\n');
  etcd.put(`${p}/other/ignored`, 'x');
  const s = store('w1', p);
  const seen = events(s);
  await s.start();
  assert.deepEqual([...s.snapshot().vassals.keys()], ['old.ini']);
  const within = async (what: string, pred: () => boolean) => {
    const t0 = Date.now();
    await waitFor(pred, 1000, what);
    return Date.now() - t0;
  };
  etcd.put(`${p}/vassals/a.ini`, 'A');
  await within('a.ini put', () => s.snapshot().vassals.get('a.ini') === 'A');
  etcd.put(`${p}/rules/10-base.rules`, 'allow all');
  await within('rule put', () => s.snapshot().rules.get('10-base.rules') === 'allow all');
  etcd.put(`${p}/vassals/a.ini`, 'A2');
  await within('a.ini changed', () => s.snapshot().vassals.get('a.ini') === 'A2');
  etcd.del(`${p}/vassals/old.ini`);
  await within('old.ini deleted', () => !s.snapshot().vassals.has('old.ini'));
  etcd.del(`${p}/rules/`, true);
  await within('rules deleted', () => s.snapshot().rules.size === 0);
  assert.ok(seen.filter((e) => e.name === 'change').length >= 5);
  assert.equal(s.snapshot().vassals.size, 1);
});

test('two hosts racing for the same 20 vassals (with addresses): each vassal is won by exactly one', async () => {
  const p = newPrefix();
  const a = store('ra', p);
  const b = store('rb', p);
  await Promise.all([a.start(), b.start()]);
  const names = Array.from({ length: 20 }, (_, i) => `v${i}.ini`);
  const addr = (i: number) => `10.99.0.${i + 1}`;
  const [ra, rb] = await Promise.all([
    Promise.all(names.map((n, i) => a.claim(n, addr(i)))),
    Promise.all(names.map((n, i) => b.claim(n, addr(i)))),
  ]);
  const placements = etcd.list(`${p}/placement/`);
  const addresses = etcd.list(`${p}/addresses/`);
  names.forEach((n, i) => {
    assert.equal(Number(ra[i].ok) + Number(rb[i].ok), 1, `${n}: ${JSON.stringify([ra[i], rb[i]])}`);
    const [winner, loser] = ra[i].ok ? ['ra', rb[i]] : ['rb', ra[i]];
    assert.deepEqual(loser, { ok: false, reason: 'placed', host: winner }, n);
    assert.deepEqual(JSON.parse(placements.get(`${p}/placement/${n}`)!), { host: winner, address: addr(i) });
    assert.equal(addresses.get(`${p}/addresses/${addr(i)}`), n);
  });
});

test('an address is held by one vassal: a second claim names the holder and places nothing; release and releaseAddress', async () => {
  const p = newPrefix();
  const a = store('aa', p);
  const b = store('ab', p);
  await Promise.all([a.start(), b.start()]);
  assert.deepEqual(await a.claim('one.ini', '10.98.0.1'), { ok: true });
  assert.deepEqual(await b.claim('two.ini', '10.98.0.1'), { ok: false, reason: 'address', holder: 'one.ini' });
  assert.equal(etcd.get(`${p}/placement/two.ini`), undefined, 'the refused claim placed nothing');
  assert.deepEqual(await b.claimAddress('three.ini', '10.98.0.1'), { ok: false, reason: 'address', holder: 'one.ini' });
  assert.deepEqual(await a.claim('one.ini', '10.98.0.1'), { ok: true }, 'claiming again what is already ours');

  // the address stays with the vassal when it moves: released by a, claimed by b
  assert.equal(await b.release('one.ini'), false, 'not b\'s placement');
  assert.equal(await a.release('one.ini'), true);
  assert.equal(etcd.get(`${p}/placement/one.ini`), undefined);
  assert.equal(etcd.get(`${p}/addresses/10.98.0.1`), 'one.ini');
  assert.deepEqual(await b.claim('one.ini', '10.98.0.1'), { ok: true });
  assert.deepEqual(JSON.parse(etcd.get(`${p}/placement/one.ini`)!), { host: 'ab', address: '10.98.0.1' });

  // a learned address, then the vassal's key removed: its address freed
  assert.deepEqual(await a.claimAddress('four.ini', '10.98.0.4'), { ok: true });
  assert.deepEqual(await a.claimAddress('four.ini', '10.98.0.4'), { ok: true });
  assert.equal(await a.releaseAddress('10.98.0.4', 'five.ini'), false);
  assert.equal(await a.releaseAddress('10.98.0.4', 'four.ini'), true);
  assert.equal(etcd.get(`${p}/addresses/10.98.0.4`), undefined);
});

test('report writes state and a learned address into this host\'s placement, and skips unchanged values', async () => {
  const p = newPrefix();
  const a = store('pa', p);
  await a.start();
  assert.deepEqual(await a.claim('r.ini'), { ok: true });
  assert.equal(await a.report('r.ini', 'running'), true);
  assert.deepEqual(JSON.parse(etcd.get(`${p}/placement/r.ini`)!), { host: 'pa', state: 'running' });
  const txns = a.requests.get('txn');
  assert.equal(await a.report('r.ini', 'running'), true);
  assert.equal(a.requests.get('txn'), txns, 'an unchanged report is not written');
  assert.equal(await a.report('r.ini', 'running', '10.97.0.5'), true);
  assert.deepEqual(JSON.parse(etcd.get(`${p}/placement/r.ini`)!), { host: 'pa', address: '10.97.0.5', state: 'running' });
  assert.equal(await a.report('elsewhere.ini', 'running'), false, 'no placement of this host');
  await waitFor(() => a.snapshot().placements.get('r.ini')?.state === 'running', 1000, 'the report in the snapshot');
  assert.match(await a.registry.metrics(), /moat_fleet_placements 1/);
});

test('an etcd outage shorter than ttl - renew - margin fences nothing; a longer one fences, and renewing in time unfences', async () => {
  const p = newPrefix();
  // Wide windows, so a loaded machine (timers late by hundreds of ms) cannot
  // turn them: fenced 5 s after the last renewal sent, the lease lives 8 s.
  const s = store('fa', p, { ttlSec: 8, renewMs: 500, marginMs: 3000 });
  const seen = events(s);
  await s.start();
  assert.deepEqual(await s.claim('f.ini'), { ok: true });
  await sleep(600);

  try {
    etcd.pause();
    await sleep(3000);                   // < 8000 - 500 - 3000
    etcd.resume();
    await sleep(1000);
    assert.deepEqual(seen.filter((e) => e.name !== 'change'), [], 'a short outage fences nothing');
    assert.equal(s.fenced, false);

    const t0 = Date.now();
    etcd.pause();
    // The event, not the getter: the getter reads the clock, the event comes
    // from the store's 100 ms check, so the getter can turn first.
    await waitFor(() => seen.some((e) => e.name === 'fenced'), 7000, "'fenced'");
    assert.ok(s.fenced);
    const fencedAfter = seen.find((e) => e.name === 'fenced')!.at - t0;
    // Not before ttl - margin - renew; and well before etcd may expire the lease (8 s after the last renewal).
    assert.ok(fencedAfter >= 4400 && fencedAfter <= 6500, `fenced ${fencedAfter} ms into the outage`);
    assert.deepEqual(await s.claim('g.ini'), { ok: false, reason: 'fenced', message: 'fleet-host fa is fenced (no lease renewal in time)' });
    await sleep(Math.max(0, 5800 - (Date.now() - t0)));
    etcd.resume();
  } finally {
    etcd.resume();
  }
  await waitFor(() => !s.fenced, 3000, 'unfenced');
  await waitFor(() => seen.some((e) => e.name === 'unfenced'), 500, "'unfenced'");
  assert.ok(!seen.some((e) => e.name === 'lease-lost'));
  assert.ok(etcd.get(`${p}/placement/f.ini`), 'the placement survived');

  // the watch goes on after the outages
  etcd.put(`${p}/vassals/after.ini`, 'x');
  await waitFor(() => s.snapshot().vassals.has('after.ini'), 3000, 'the watch after the outage');
});

test('an outage longer than the ttl: fenced, the lease lost, registered again under a new lease', async () => {
  const p = newPrefix();
  const s = store('fb', p);            // ttl 2 s, fenced at 1.5 s
  const seen = events(s);
  await s.start();
  const first = s.lease;
  assert.deepEqual(await s.claim('l.ini'), { ok: true });
  etcd.pause();
  try { await sleep(3000); } finally { etcd.resume(); }
  await waitFor(() => seen.some((e) => e.name === 'registered'), 5000, "'registered'");
  const names = seen.map((e) => e.name).filter((n) => n !== 'change');
  assert.deepEqual(names, ['fenced', 'lease-lost', 'registered']);
  assert.equal(s.fenced, false);
  assert.notEqual(s.lease, first);
  assert.equal(etcd.get(`${p}/placement/l.ini`), undefined, 'the old lease took its placement along');
  assert.ok(etcd.get(`${p}/hosts/fb`));
  assert.deepEqual(await s.claim('l.ini'), { ok: true });
});

test('stop() revokes the lease: the host\'s placements vanish at once; with etcd stopped it still returns in a few seconds', async () => {
  const p = newPrefix();
  const a = store('sa', p);
  const b = store('sb', p);
  await Promise.all([a.start(), b.start()]);
  for (const n of ['x.ini', 'y.ini', 'z.ini']) assert.deepEqual(await a.claim(n), { ok: true });
  await waitFor(() => b.snapshot().placements.size === 3, 1000, 'b sees the placements');
  await a.stop();
  assert.equal(etcd.list(`${p}/placement/`).size, 0);
  assert.equal(etcd.get(`${p}/hosts/sa`), undefined);
  await waitFor(() => b.snapshot().placements.size === 0 && !b.snapshot().hosts.has('sa'), 1000, 'b sees them gone');

  etcd.pause();
  try {
    const t0 = Date.now();
    await b.stop();
    assert.ok(Date.now() - t0 < 3000, `stop took ${Date.now() - t0} ms`);
  } finally {
    etcd.resume();
  }
});

/** `moat fleet status ARGS` (fleetCommand in a node of its own): exit code and output. */
function fleetStatus(args: string[]): { code: number; out: string; err: string } {
  const js = `require(${JSON.stringify(path.resolve(__dirname, '../../src/commands/fleet'))}).fleetCommand(process.argv.slice(1)).then((c) => { process.exitCode = c; })`;
  const r = spawnSync(process.execPath, ['-e', js, ...args], { encoding: 'utf8', timeout: 15000 });
  return { code: r.status ?? -1, out: r.stdout, err: r.stderr };
}

test('fleet status: hosts with their lease, vassals with host, address and state, rule files; JSON; bad usage; etcd down', async () => {
  const p = newPrefix();
  const a = store('sta', p);
  const b = store('stb', p, { hostAddress: undefined });
  await Promise.all([a.start(), b.start()]);
  etcd.put(`${p}/vassals/a.ini`, 'A');
  etcd.put(`${p}/vassals/b.ini`, 'B');
  etcd.put(`${p}/vassals/c.ini`, 'C');
  etcd.put(`${p}/rules/20-x.rules`, 'x');
  etcd.put(`${p}/rules/10-y.rules`, 'y');
  assert.deepEqual(await a.claim('a.ini', '10.96.0.1'), { ok: true });
  assert.equal(await a.report('a.ini', 'running'), true);
  assert.deepEqual(await b.claim('b.ini'), { ok: true });
  assert.deepEqual(await b.claimAddress('c.ini', '10.96.0.3'), { ok: true });
  const url = `etcd://${etcd.url.slice('http://'.length)}${p}`;

  const s = await readFleetStatus(endpointOptions({ url }));
  assert.deepEqual(s.hosts.map((h) => [h.name, h.address, typeof h.ttl === 'number' && h.ttl >= 1 && h.ttl <= 2]),
    [['sta', '192.0.2.10', true], ['stb', null, true]]);
  assert.deepEqual(s.vassals, [
    { name: 'a.ini', host: 'sta', address: '10.96.0.1', state: 'running' },
    { name: 'b.ini', host: 'stb', address: null, state: 'placed' },
    { name: 'c.ini', host: null, address: '10.96.0.3', state: 'unplaced' },
  ]);
  assert.deepEqual(s.rules, ['10-y.rules', '20-x.rules']);

  const text = fleetStatus(['status', '--etcd', url]);
  assert.equal(text.code, 0, text.err);
  assert.match(text.out, /^HOST +ADDRESS +LEASE LEFT +SINCE$/m);
  assert.match(text.out, /^sta +192\.0\.2\.10 +[12] s +\d{4}-/m);
  assert.match(text.out, /^a\.ini +sta +10\.96\.0\.1 +running$/m);
  assert.match(text.out, /^c\.ini +- +10\.96\.0\.3 +unplaced$/m);
  assert.match(text.out, /^rules: 10-y\.rules 20-x\.rules$/m);
  const json = fleetStatus(['status', '--etcd', url, '--json']);
  assert.equal(json.code, 0, json.err);
  assert.deepEqual((JSON.parse(json.out) as { vassals: unknown }).vassals, s.vassals);

  assert.equal(fleetStatus(['status']).code, 2);
  assert.match(fleetStatus(['status', '--etcd', 'etcd://x:1']).err, /prefix is missing/);
  assert.equal(fleetStatus(['status', '--etcd', url, '--etcd-user', 'u']).code, 2);
  etcd.pause();
  try {
    const t0 = Date.now();
    const down = fleetStatus(['status', '--etcd', url, '--timeout', '500']);
    assert.equal(down.code, 1, down.err);
    assert.match(down.err, /DEADLINE_EXCEEDED/);
    assert.ok(Date.now() - t0 < 5000);
  } finally {
    etcd.resume();
  }
});

test('an idle host sends etcd one keepalive per renew interval and nothing else; the metrics name what it did', async () => {
  const p = newPrefix();
  const s = store('idle', p, { renewMs: 250 });
  await s.start();
  assert.deepEqual(await s.claim('m.ini'), { ok: true });
  await sleep(300);
  const before = new Map(s.requests);
  await sleep(2000);
  const delta = [...s.requests].map(([op, n]) => [op, n - (before.get(op) ?? 0)] as const).filter(([, n]) => n > 0);
  assert.equal(delta.length, 1, JSON.stringify(delta));
  assert.equal(delta[0][0], 'leaseKeepAlive');
  assert.ok(delta[0][1] >= 7 && delta[0][1] <= 9, `${delta[0][1]} keepalives in 2 s`);
  const text = await s.registry.metrics();
  for (const re of [/^moat_fleet_etcd_requests_total\{op="leaseKeepAlive"\} \d+$/m, /^moat_fleet_etcd_requests_total\{op="txn"\} [1-9]/m,
    /^moat_fleet_lease_renewals_total\{result="ok"\} [1-9]/m, /^moat_fleet_fenced 0$/m, /^moat_fleet_placements 1$/m,
    /^moat_fleet_claims_total\{result="ok"\} 1$/m, /^moat_fleet_lease_renewal_age_seconds 0\.[0-3]/m, /^moat_fleet_resyncs_total 1$/m]) {
    assert.match(text, re);
  }
  etcd.put(`${p}/vassals/x.ini`, 'x');
  await waitFor(() => s.snapshot().vassals.has('x.ini'), 1000, 'the put');
  assert.match(await s.registry.metrics(), /^moat_fleet_watch_events_total\{kind="vassals",type="put"\} 1$/m);
});

test('user and password: a user limited to the prefix runs a store; a wrong password is refused at start', async () => {
  const secure = new EtcdServer(etcd.ns, etcd.ip, 2479);
  try {
    await secure.start();
    const ctl = (args: string[]) => secure.ctl(args);
    ctl(['user', 'add', 'root', '--new-user-password', 'rootpw']);
    ctl(['user', 'grant-role', 'root', 'root']);
    ctl(['role', 'add', 'moat']);
    ctl(['role', 'grant-permission', 'moat', '--prefix=true', 'readwrite', '/secure/']);
    ctl(['user', 'add', 'fleet', '--new-user-password', 'fleetpw']);
    ctl(['user', 'grant-role', 'fleet', 'moat']);
    ctl(['auth', 'enable']);
    const opts = { endpoints: [secure.url], prefix: '/secure' };
    const s = store('au', '/secure', { ...opts, auth: { username: 'fleet', password: 'fleetpw' } });
    await s.start();
    assert.deepEqual(await s.claim('s.ini', '10.95.0.1'), { ok: true });
    ctl(['--user', 'root:rootpw', 'put', '/secure/vassals/s.ini', 'S']);
    await waitFor(() => s.snapshot().vassals.get('s.ini') === 'S', 1000, 'the watch under auth');
    await s.stop();
    assert.equal(ctl(['--user', 'root:rootpw', 'get', '/secure/placement/s.ini']), '', 'revoked under auth');
    await assert.rejects(store('au2', '/secure', { ...opts, auth: { username: 'fleet', password: 'wrong' } }).start(), /authentication failed/i);
  } finally {
    await secure.stop();
  }
});

/** A CA and one certificate for ip, good for server and client auth (PEM files in dir). */
function makeCerts(dir: string, ip: string): { ca: string; cert: string; key: string } {
  const f = (n: string) => path.join(dir, n);
  const ossl = (args: string[]) => sh('openssl', args);
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '1', '-subj', '/CN=moat-test-ca']);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', f('node.key'), '-out', f('node.csr'), '-subj', '/CN=moat-test']);
  fs.writeFileSync(f('ext'), `subjectAltName=IP:${ip}\nextendedKeyUsage=serverAuth,clientAuth\n`);
  ossl(['x509', '-req', '-in', f('node.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f('node.pem'), '-days', '1', '-extfile', f('ext')]);
  return { ca: f('ca.pem'), cert: f('node.pem'), key: f('node.key') };
}

test('TLS (etcds://): a store and fleet status with the CA and a client certificate; no client certificate, no start', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-etcd-tls-'));
  const tls = makeCerts(dir, etcd.ip);
  const secure = new EtcdServer(etcd.ns, etcd.ip, 2579, tls);
  try {
    await secure.start();
    const url = `etcds://${etcd.ip}:2579/tls`;
    const opts = endpointOptions({ url, ca: tls.ca, cert: tls.cert, key: tls.key });
    assert.deepEqual(opts.endpoints, [secure.url]);
    const s = store('tl', '/tls', opts);
    await s.start();
    assert.deepEqual(await s.claim('t.ini'), { ok: true });
    const st = fleetStatus(['status', '--etcd', url, '--etcd-ca', tls.ca, '--etcd-cert', tls.cert, '--etcd-key', tls.key, '--json']);
    assert.equal(st.code, 0, st.err);
    assert.deepEqual((JSON.parse(st.out) as { vassals: unknown }).vassals, [{ name: 't.ini', host: 'tl', address: null, state: 'placed', keyMissing: true }]);
    await s.stop();
    await assert.rejects(store('tl2', '/tls', { ...opts, tls: { ca: tls.ca } }).start());
    assert.throws(() => endpointOptions({ url: `etcd://${etcd.ip}:2579/tls`, ca: tls.ca }), /use etcds:\/\//);
  } finally {
    await secure.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
