// native-relisten.test.ts: the native Router's relisten() and fatal event
// through the addon: a no-op while the socket file is ours, a new socket when
// it was removed (a connected peer stays), a refusal that keeps the old
// socket, and a 'fatal' event (not just 'error') when the tun device goes.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { RouterEvent } from '../../src/native';
import { Lab, requireRoot, sh, waitFor } from '../helpers/netns';
import { startNativeRouter } from '../helpers/native-router';
import { FramePeer } from '../helpers/frame-peer';

const lab = new Lab();
after(() => lab.cleanup());

test('relisten(): no-op, rebind after removal, refusal keeps the old socket; a deleted tun is fatal', async () => {
  requireRoot();
  const ns = lab.netns('mfr');
  const events: RouterEvent[] = [];
  const { router, tun, sock } = startNativeRouter(lab, ns, 'mfr', { maxFrame: 1500, queueBytes: 65536 }, (evs) => events.push(...evs));
  const ups = () => events.filter((e) => e.type === 'peer_up').length;

  const ino0 = fs.statSync(sock).ino;
  router.relisten();
  assert.equal(fs.statSync(sock).ino, ino0, 'a socket file that is still ours is kept');

  const first = await FramePeer.connect(sock);
  await waitFor(() => ups() === 1, 3000, 'first peer up');
  fs.unlinkSync(sock);
  router.relisten();
  assert.notEqual(fs.statSync(sock).ino, ino0, 'a new socket file');
  const second = await FramePeer.connect(sock);
  await waitFor(() => ups() === 2, 3000, 'second peer up');
  assert.equal(router.stats().peers.length, 2, 'the first peer stayed');

  fs.unlinkSync(sock);
  fs.writeFileSync(sock, 'not a socket');
  assert.throws(() => router.relisten(), /exists and is not a socket/);
  assert.equal(router.stats().peers.length, 2, 'a refused relisten leaves the peers alone');
  fs.unlinkSync(sock);

  first.close();
  second.close();
  sh('ip', ['-n', ns, 'link', 'del', tun]);
  await waitFor(() => events.some((e) => e.type === 'fatal'), 3000, 'fatal event');
  const fatal = events.find((e) => e.type === 'fatal') as { message: string };
  assert.match(fatal.message, new RegExp(`tun device ${tun} failed`));
  router.stop();
  assert.equal(fs.existsSync(sock), false);
});
