// offload-uwsgi.test.ts: moat's offload negotiation (docs/offload.md) is
// harmless to Debian's real uWSGI 2.0 both ways:
//   (a) moat device, offload on: its hello follows its first packet (uWSGI's
//       router writes it to its tun, the kernel drops it for its bad header
//       checksum); uWSGI never answers: the device stays plain, ping and TCP
//       flow both ways, the peer is not dropped;
//   (b) uWSGI's device and moat's router with offload on: uWSGI never sends
//       a hello, gets only plain frames (the router splits the host's TSO
//       super-packets), ping and TCP flow both ways.
import assert from 'node:assert/strict';
import path from 'node:path';
import test from 'node:test';
import { deviceConfigFor } from '../../src/config/router-config';

import { Device } from '../../src/device/device';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { readStats, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { tcpTransfer } from '../helpers/transfer';
import { jailSocketDir, startUwsgiDevice, startUwsgiRouter } from '../helpers/uwsgi';

const GW = '192.168.0.1';
const VASSAL = '192.168.0.2';
const BYTES = 8 * 1024 * 1024;
// Through uWSGI's router: small enough that its socket to our device never
// fills. uWSGI 2.0's router writes one skb per packet (~1 KB of send buffer
// even for an ACK) and, when a write to a peer returns EAGAIN, logs
// "uwsgi_tuntap_peer_enqueue()/write()" and destroys that peer; after that
// its router stops reading (seen here 1 run in 3 with 8 MB under load). A
// 192 KB transfer keeps every burst below its 208 KB default send buffer.
const UWSGI_ROUTER_BYTES = 192 * 1024;

function ping(ns: string, addr: string): string {
  return sh('ping', ['-c', '3', '-W', '1', '-i', '0.2', addr], { ns, timeoutMs: 15000 });
}

test('(a) moat device with offload on + uWSGI router: the hello is harmless, traffic flows both ways', async (t) => {
  requireRoot();
  const lab = new Lab();
  let device: Device | undefined;
  t.after(async () => { device?.stop(); await lab.cleanup(); });
  const gwNs = lab.netns('mgw');
  const vNs = lab.netns('mvs');
  sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns: vNs });
  const socket = path.join(tempDir(lab), 'router.sock');
  const devName = uniqueName('mdv');
  const gwTun = uniqueName('ugw');
  device = new Device(deviceConfigFor(devName, socket, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 50, reconnectMaxMs: 200, offload: true }),
    { netns: `/run/netns/${vNs}` });
  const seen: string[] = [];
  device.on('connected', () => seen.push('connected'));
  device.on('disconnected', (r) => seen.push(`disconnected: ${r}`));
  device.start();
  const d = device;
  sh('ip', ['-n', vNs, 'addr', 'add', `${VASSAL}/24`, 'dev', devName]);
  sh('ip', ['-n', vNs, 'link', 'set', devName, 'up']);
  const inHdrErrors = () => Number(/Ip:.*\nIp: (.*)/.exec(sh('cat', ['/proc/net/snmp'], { ns: gwNs }))![1].split(' ')[3]);

  const router = await startUwsgiRouter(lab, { ns: gwNs, tun: gwTun, socket, addr: `${GW}/24` });
  await waitFor(() => d.stats().connected, 5000, 'device connected to uWSGI');
  const errorsBefore = inHdrErrors();
  assert.match(ping(vNs, GW), /3 packets transmitted, 3 received/);
  // The hello followed the first ping: uWSGI wrote it to its tun, where the
  // kernel dropped it (InHdrErrors: bad header checksum).
  await waitFor(() => inHdrErrors() === errorsBefore + 1, 5000, 'the hello dropped by the gateway kernel');
  assert.match(ping(gwNs, VASSAL), /3 packets transmitted, 3 received/);
  const diag = (e: unknown) => { throw new Error(`${(e as Error).message}\ndevice: ${JSON.stringify(d.stats())}\nuWSGI: ${router.log().slice(-1500)}`); };
  await tcpTransfer(lab, vNs, gwNs, GW, UWSGI_ROUTER_BYTES, 30000).catch(diag);
  await tcpTransfer(lab, gwNs, vNs, VASSAL, UWSGI_ROUTER_BYTES, 30000).catch(diag);
  const s = d.stats();
  assert.equal(s.offload, false, 'uWSGI never answers: no offloads');
  assert.equal(s.vnetTx, 0, 'no offload frame sent to uWSGI');
  assert.ok(s.gsoSplit === 0 || s.gsoSegments > 0);
  assert.deepEqual(seen, ['connected'], 'never dropped by uWSGI: ' + router.log().slice(-3000));
  assert.equal(router.exited(), false);
  await router.stop();
});

test('(b) uWSGI device + moat router with offload on: plain frames, traffic flows both ways', async (t) => {
  requireRoot();
  const lab = new Lab();
  t.after(() => lab.cleanup());
  const dir = tempDir(lab);
  const sock = path.join(dir, 'tuntap.sock');
  const stats = path.join(dir, 'stats.sock');
  const gwNs = lab.netns('mgw');
  const vNs = lab.netns('mvs');
  const tun = uniqueName('mrt');
  const router = startMoat(lab, [
    '--tuntap-router', `${tun} ${sock} ${stats}`,
    '--tuntap-router-netns', `/run/netns/${gwNs}`,
    '--tuntap-router-offload=true',
    '--exec-as-root', `ip addr add ${GW}/24 dev ${tun}`,
  ]);
  await waitForSocket(sock, router);
  const dev = await startUwsgiDevice(lab, {
    ns: vNs, tun: uniqueName('udv'), router: sock, socket: path.join(jailSocketDir(lab), 'dev.sock'), addr: `${VASSAL}/24`,
  });
  assert.match(ping(vNs, GW), /3 packets transmitted, 3 received/);
  assert.match(ping(gwNs, VASSAL), /3 packets transmitted, 3 received/);
  await tcpTransfer(lab, vNs, gwNs, GW, BYTES);
  await tcpTransfer(lab, gwNs, vNs, VASSAL, BYTES);
  const doc = await readStats(stats);
  assert.equal(doc.peers.length, 1);
  assert.equal(doc.peers[0].addr, VASSAL);
  assert.equal(doc.peers[0].offload, false, 'uWSGI never asks');
  assert.equal(doc.peers[0].vnet_tx, 0, 'no offload frame sent to uWSGI');
  assert.ok(doc.moat.offload.gso_split > 0, `the host's super-packets were split for uWSGI: ${JSON.stringify(doc.moat.offload)}`);
  assert.equal(dev.exited(), false, 'uWSGI\'s device still running');
  await dev.stop();
});
