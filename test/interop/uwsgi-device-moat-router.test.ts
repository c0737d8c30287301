// uwsgi-device-moat-router.test.ts: Debian's real uWSGI 2.0 device
// (`--tuntap-device`) connected to moat's router (the moat program). uWSGI's
// own router drops a peer on the IPv6 router solicitation its link sends when
// it comes up; moat's must count that frame, drop it and keep the peer.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, sh, waitFor } from '../helpers/netns';
import { tempDir, readStats, REPO, MoatProcess } from '../helpers/moat';
import { pings, startCliRouter } from '../helpers/cli-path';
import { startUwsgiDevice, jailSocketDir, UwsgiDevice } from '../helpers/uwsgi';

const lab = new Lab();
const GW = '192.168.0.1';
const A1 = '192.168.0.2';
let gw = '';
let v1 = '';
let stats = '';
let router: MoatProcess;
let device: UwsgiDevice;

const ping = (ns: string, dst: string, count = 3): boolean => pings(ns, dst, count);

before(async () => {
  requireRoot();
  const dir = tempDir(lab);
  const sock = path.join(dir, 'tuntap.sock');
  stats = path.join(dir, 'stats.sock');
  gw = lab.netns('mgw');
  v1 = lab.netns('mv1');
  router = await startCliRouter(lab, { ns: gw, tun: 'emperor0', sock, stats, addr: GW }, [
    '--tuntap-router-firewall-file', path.join(REPO, 'rules', 'isolation.rules'),
  ]);
  device = await startUwsgiDevice(lab, {
    ns: v1, tun: 'uwsgi0', router: sock, socket: path.join(jailSocketDir(lab), 'dev.sock'),
    addr: `${A1}/24`, keepIpv6: true,
  });
  sh('ip', ['-n', v1, 'route', 'add', 'default', 'via', GW]);
});

after(async () => {
  await device?.stop();
  await lab.cleanup();
});

test('uWSGI\'s device reaches moat\'s gateway and back', () => {
  assert.ok(ping(v1, GW), 'uWSGI vassal -> moat gateway');
  assert.ok(ping(gw, A1), 'moat gateway -> uWSGI vassal');
});

test('the IPv6 frames of its link coming up are dropped and counted; the peer stays', async () => {
  await waitFor(() => fs.existsSync(stats), 5000, 'stats socket');
  let doc: any;
  // The kernel sends its router solicitations a second or two after link up.
  const deadline = Date.now() + 8000;
  do {
    doc = await readStats(stats);
    if ((doc.moat.drops.ipv6 ?? 0) > 0) break;
    await new Promise((r) => setTimeout(r, 300));
  } while (Date.now() < deadline);
  assert.ok(doc.moat.drops.ipv6 > 0, `an IPv6 frame was counted: ${JSON.stringify(doc.moat.drops)}`);
  assert.equal(device.exited(), false, 'uWSGI\'s device is still running');
  assert.equal(doc.peers.length, 1);
  assert.equal(doc.peers[0].addr, A1);
  assert.ok(ping(v1, GW, 2), 'and still routes');
});
