// router-peer-limit.test.ts: a standalone `moat` router takes per-peer
// limits from tuntap-router-peer-limit lines in its config file and reads
// them again on SIGHUP: the new limit applies to a peer already connected,
// which stays connected (issue 16: "a change takes effect on reload without
// disconnecting anyone"); a bad line on reload keeps the old limits.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, sh, sleep, uniqueName, waitFor } from '../helpers/netns';
import { MoatProcess, readStats, startMoat, tempDir, waitForSocket } from '../helpers/moat';
import { FramePeer } from '../helpers/frame-peer';
import { udpPacket, encodeFrame } from '../helpers/packets';
import { RECEIVER_JS, UdpReceiver } from '../helpers/udp-meter';

const lab = new Lab();
const GW = '10.77.3.1';
const PEER = '10.77.3.2';
let ini = '';
let sock = '';
let stats = '';
let gwNs = '';
const tun = uniqueName('mpl');
let moat: MoatProcess;
let peer: FramePeer;
let rx: UdpReceiver;

const config = (limit: string) => [
  '[uwsgi]', `tuntap-router = ${tun} ${sock} ${stats}`, `tuntap-router-netns = /run/netns/${gwNs}`,
  `tuntap-router-peer-limit = ${limit}`, '',
].join('\n');

/** Sends n datagrams at once from the peer; resolves to how many the gateway got (after 600 ms). */
async function burst(n: number, port: number): Promise<number> {
  const before = (await rx.bySource())[PEER]?.n ?? 0;
  await peer.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeFrame(udpPacket(PEER, GW, 4000 + i, port, Buffer.alloc(100))))));
  await sleep(600);
  return ((await rx.bySource())[PEER]?.n ?? 0) - before;
}

before(async () => {
  requireRoot();
  const dir = tempDir(lab);
  sock = path.join(dir, 'r.sock');
  stats = path.join(dir, 's.sock');
  ini = path.join(dir, 'moat.ini');
  gwNs = lab.netns('mpg');
  fs.writeFileSync(ini, config('default out pps 5 pps-burst 1'));
  moat = startMoat(lab, ['--ini', ini]);
  await waitForSocket(stats, moat);
  sh('ip', ['-n', gwNs, 'addr', 'add', `${GW}/24`, 'dev', tun]);
  sh('ip', ['-n', gwNs, 'link', 'set', tun, 'up']);
  rx = new UdpReceiver(lab.spawn(process.execPath, ['-e', RECEIVER_JS, GW, '9300'], { ns: gwNs }));
  await rx.ready();
  peer = await FramePeer.connect(sock, { keep: false });
  lab.onCleanup(() => peer.close());
  await sleep(300);   // the burst token back
  assert.equal(await burst(1, 9300), 1, 'the peer\'s first datagram (its address learned)');
});

after(() => lab.cleanup());

test('SIGHUP rereads tuntap-router-peer-limit: the connected peer gets the new limit and stays connected; a bad line keeps the old', async () => {
  await sleep(400);
  const limited = await burst(40, 9300);
  assert.ok(limited >= 1 && limited <= 6, `5 pps (burst 1, a queue of one): ${limited} of 40 got through`);
  const id = (await readStats(stats)).peers.find((p: { addr: string }) => p.addr === PEER)?.id;
  assert.ok(id !== undefined, 'the peer is connected');

  fs.writeFileSync(ini, config('default out pps 100000'));
  moat.child.kill('SIGHUP');
  await waitFor(() => /peer limits reloaded/.test(moat.output()), 5000, 'the reload logged');
  assert.equal(await burst(40, 9300), 40, 'all 40 through at the new limit');

  fs.writeFileSync(ini, config('default out pps fast'));
  moat.child.kill('SIGHUP');
  await waitFor(() => /peer limits not reloaded/.test(moat.output()), 5000, 'the bad line reported');
  assert.match(moat.output(), /moat\.ini:4: tuntap-router-peer-limit: pps: 'fast'/);
  assert.equal(await burst(40, 9300), 40, 'the old limit (100000 pps) stays in force');

  const peers = (await readStats(stats)).peers.filter((p: { addr: string }) => p.addr === PEER);
  assert.deepEqual(peers.map((p: { id: number }) => p.id), [id], 'the same connection throughout');
});
