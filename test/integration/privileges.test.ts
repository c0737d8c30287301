// privileges.test.ts: a standalone router with uid/gid gives up root once its
// device, sockets and hooks exist: no capability left, traffic still flows,
// rules still reload, and its socket is still removed on SIGTERM.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, requireRoot, waitFor } from '../helpers/netns';
import { tempDir, REPO } from '../helpers/moat';
import { startCliDevice, startCliRouter } from '../helpers/cli-path';
import { procStatus } from '../helpers/proc';

const lab = new Lab();
after(() => lab.cleanup());

const status = procStatus;

test('uid/gid: the router runs without root or capabilities after start', async () => {
  requireRoot();
  const dir = tempDir(lab);
  fs.chmodSync(dir, 0o755);
  const runDir = path.join(dir, 'run', 'moat');      // made by moat, handed to the new user
  const sock = path.join(runDir, 'tuntap.sock');
  const rules = path.join(dir, 'policy.rules');
  fs.copyFileSync(path.join(REPO, 'rules', 'isolation.rules'), rules);
  fs.chmodSync(rules, 0o644);
  const gw = lab.netns('mpg');
  const v1 = lab.netns('mpv');
  const router = await startCliRouter(lab, { ns: gw, tun: 'emperor0', sock, addr: '192.168.0.1' }, [
    '--tuntap-router-firewall-file', rules, '--uid', '65534', '--gid', '65534',
  ]);
  await waitFor(() => /privileges dropped/.test(router.output()), 10000, 'privilege drop');
  const st = status(router.child.pid!);
  assert.match(st.Uid, /^65534\s+65534\s+65534\s+65534$/, 'every uid is 65534');
  assert.match(st.Gid, /^65534\s+65534\s+65534\s+65534$/);
  assert.equal(st.CapEff, '0000000000000000', 'no effective capability');
  assert.equal(st.CapPrm, '0000000000000000', 'no permitted capability');
  assert.equal(st.Groups, '', 'no supplementary group');
  assert.equal(st.CapBnd, '0000000000000000', 'empty capability bounding set (no pty servers: hardened)');
  assert.equal(st.NoNewPrivs, '1', 'no_new_privs');

  // Ready once it pings the gateway through the unprivileged router.
  const dev = await startCliDevice(lab, v1, sock, { addr: '192.168.0.2', gw: '192.168.0.1' });

  fs.writeFileSync(rules, 'out deny\nin deny\n');
  router.child.kill('SIGHUP');
  await waitFor(() => /rules reloaded/.test(router.output()), 5000, 'reload as 65534');

  router.child.kill('SIGTERM');
  assert.equal(await router.exited, 0, router.output().slice(-2000));
  assert.equal(fs.existsSync(sock), false, 'socket removed by the unprivileged router');
  dev.child.kill('SIGTERM');
  await dev.exited;
});
