// device-uwsgi.test.ts: our Device (in a vassal netns) against the real uWSGI
// tuntap router (in a gateway netns): ping and UDP both ways; then uWSGI's
// router is stopped and started again and our device reconnects by itself,
// keeping its tun device (uWSGI's own device would exit instead).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import test from 'node:test';
import { deviceConfigFor } from '../../src/config/router-config';

import type { DeviceConfig } from '../../src/config/types';
import { Device } from '../../src/device/device';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { jailSocketDir, startUwsgiDevice, startUwsgiRouter } from '../helpers/uwsgi';

const GW = '192.168.0.1';
const VASSAL = '192.168.0.2';

// A UDP echo server: prints "ready" once bound, answers "echo:<msg>".
const SERVER = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m, r) => s.send('echo:' + m, r.port, r.address));
s.bind(Number(process.argv[2]), process.argv[1], () => console.log('ready'));`;
// A UDP client: sends until it hears the echo (at most 5 tries), prints it.
const CLIENT = `
const s = require('node:dgram').createSocket('udp4');
let tries = 0;
const send = () => {
  if (tries++ === 5) { console.error('no answer'); process.exit(1); }
  s.send(process.argv[3], Number(process.argv[2]), process.argv[1]);
  setTimeout(send, 500);
};
s.on('message', (m) => { console.log(String(m)); process.exit(0); });
send();`;

async function udpEcho(lab: Lab, serverNs: string, serverAddr: string, clientNs: string, msg: string): Promise<string> {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const server = lab.spawn(process.execPath, ['-e', SERVER, serverAddr, String(port)], { ns: serverNs });
  let out = '';
  server.stdout?.on('data', (b: Buffer) => { out += b.toString(); });
  try {
    await waitFor(() => out.includes('ready'), 5000, `udp server in ${serverNs}`);
    return sh(process.execPath, ['-e', CLIENT, serverAddr, String(port), msg], { ns: clientNs, timeoutMs: 10000 }).trim();
  } finally {
    server.kill('SIGKILL');
  }
}

function ping(ns: string, addr: string): string {
  return sh('ping', ['-c', '3', '-W', '1', addr], { ns, timeoutMs: 15000 });
}

/** "IFINDEX: NAME: ..." of a link, or throws if it is not there. */
function linkIndex(ns: string, dev: string): number {
  const line = sh('ip', ['-n', ns, '-o', 'link', 'show', 'dev', dev]);
  return Number(line.split(':')[0]);
}

test('our device talks to uWSGI tuntap router, and reconnects after the router restarts', async (t) => {
  requireRoot();
  const lab = new Lab();
  let device: Device | undefined;
  t.after(async () => {
    device?.stop();
    await lab.cleanup();
  });

  const gwNs = lab.netns('mgw');
  const vNs = lab.netns('mvs');
  const dir = fs.mkdtempSync('/tmp/moat-dev-');
  lab.onCleanup(() => fs.rmSync(dir, { recursive: true, force: true }));
  const socket = path.join(dir, 'router.sock');
  const gwTun = uniqueName('ugw');
  const devName = uniqueName('mdv');

  let router = await startUwsgiRouter(lab, { ns: gwNs, tun: gwTun, socket, addr: `${GW}/24` });

  const config: DeviceConfig = deviceConfigFor(devName, socket, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 50, reconnectMaxMs: 800, offload: false });
  device = new Device(config, { netns: `/run/netns/${vNs}` });
  const seen: string[] = [];
  const failures: Array<{ attempt: number; error: string; retryMs: number }> = [];
  device.on('connected', () => seen.push('connected'));
  device.on('disconnected', (reason) => seen.push(`disconnected: ${reason}`));
  device.on('connect_failed', (f) => failures.push(f));
  device.on('error', (e) => seen.push(`error: ${e.message}`));
  device.start();
  const d = device;

  // IPv6 stays on in the vassal's netns: our device drops what is not IPv4
  // (uWSGI's router would drop us for an IPv6 router solicitation).
  await waitFor(() => d.stats().connected, 5000, 'device connected to uWSGI');
  const index = linkIndex(vNs, devName);
  sh('ip', ['-n', vNs, 'addr', 'add', `${VASSAL}/24`, 'dev', devName]);

  const p1 = ping(vNs, GW);
  assert.match(p1, /3 packets transmitted, 3 received/);
  assert.equal(await udpEcho(lab, gwNs, GW, vNs, 'up'), 'echo:up', 'vassal -> gateway UDP and its answer');
  assert.equal(await udpEcho(lab, vNs, VASSAL, gwNs, 'down'), 'echo:down', 'gateway -> vassal UDP and its answer');
  const before = d.stats();
  assert.ok(before.toRouterPackets >= 5 && before.fromRouterPackets >= 5, JSON.stringify(before));
  assert.deepEqual(seen, ['connected']);

  // Stop uWSGI's router: our device notices, keeps its tun, and retries.
  // (uWSGI's gateway process dies before its master, which still holds the
  // listening socket for a moment: a retry landing in that window "connects"
  // into the backlog and is reset when the master exits. Hence the counts
  // below are taken once the master is gone and the retries are refused.)
  await router.stop();
  const failedBefore = failures.length;
  await waitFor(() => failures.length >= failedBefore + 2 && !d.stats().connected, 5000, 'refused reconnects');
  assert.equal(seen[1], 'disconnected: router closed the connection');
  const down = failures.slice(failedBefore);
  assert.match(down[0].error, /Connection refused/);
  assert.equal(down[1].attempt, down[0].attempt + 1);
  assert.ok(down[1].retryMs > down[0].retryMs, `backoff grows: ${JSON.stringify(down)}`);
  assert.equal(linkIndex(vNs, devName), index, 'tun device kept while the router is gone');
  const reconnectsDown = d.stats().reconnects;
  const seenDown = seen.length;

  // Start it again: the device reconnects by itself and traffic flows again.
  router = await startUwsgiRouter(lab, { ns: gwNs, tun: gwTun, socket, addr: `${GW}/24` });
  // stats() is read from the device thread's counters; events arrive through the event loop: wait for both.
  await waitFor(() => d.stats().connected && seen.length > seenDown, 5000, 'device reconnected');
  assert.equal(d.stats().reconnects, reconnectsDown + 1);
  assert.deepEqual(seen.slice(seenDown), ['connected']);
  const p2 = ping(vNs, GW);
  assert.match(p2, /3 packets transmitted, 3 received/);
  assert.equal(await udpEcho(lab, vNs, VASSAL, gwNs, 'again'), 'echo:again');

  // The same tun device the whole time, address included.
  assert.equal(linkIndex(vNs, devName), index);
  assert.match(sh('ip', ['-n', vNs, '-o', '-4', 'addr', 'show', 'dev', devName]), new RegExp(`inet ${VASSAL.replace(/\./g, '\\.')}/24`));
  const final = d.stats();
  t.diagnostic(`stats: ${JSON.stringify({ ...final, drops: Object.fromEntries(Object.entries(final.drops).filter(([, v]) => v > 0)) })}`);
  t.diagnostic(`connect_failed while the router was down: ${failures.length} (last: ${failures[failures.length - 1].error})`);
  assert.ok(!router.exited(), 'uWSGI router still running (it did not drop us)');
  await router.stop();
});

// The helpers the router's interop tests use: uWSGI's device against uWSGI's
// router. It also shows the behaviour our device fixes: uWSGI's device exits
// when the router goes away.
test('helpers: uWSGI device <-> uWSGI router; uWSGI\'s device exits when its router stops', async (t) => {
  requireRoot();
  const lab = new Lab();
  t.after(() => lab.cleanup());
  const gwNs = lab.netns('mgw');
  const vNs = lab.netns('mvs');
  const dir = jailSocketDir(lab);
  const socket = path.join(dir, 'router.sock');
  const router = await startUwsgiRouter(lab, { ns: gwNs, tun: uniqueName('ugw'), socket, addr: `${GW}/24` });
  const dev = await startUwsgiDevice(lab, {
    ns: vNs, tun: uniqueName('udv'), router: socket, socket: path.join(dir, 'vassal.sock'), addr: `${VASSAL}/24`,
  });
  assert.match(ping(vNs, GW), /3 packets transmitted, 3 received/);
  assert.equal(await udpEcho(lab, vNs, VASSAL, gwNs, 'hi'), 'echo:hi');
  await router.stop();
  await waitFor(() => dev.exited(), 5000, "uWSGI's device to exit");
  assert.match(dev.log(), /tuntap server disconnected/);
});
