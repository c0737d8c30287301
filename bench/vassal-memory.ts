// vassal-memory.ts: what an idle vassal costs in memory (issue: at most 7 MB
// PSS per vassal, runtime and its tun device). Starts 1, 10 and 100 vassals
// directly with build/Release/moat-vassal (no emperor): each in new
// fs,ipc,uts,net,pid namespaces, pivot-rooted into a busybox root, its tun
// device connected to a router (the addon's, in a gateway netns made here)
// and addressed, privileges dropped; then sums Pss from
// /proc/PID/smaps_rollup over each vassal's launcher and runtime.
//
//   node dist/bench/vassal-memory.js [--counts 1,10,100] [--idle-ms 1000] [--pty]
//
// --pty: each vassal also serves a forkpty router and a shared pty (its
// daemon, a `sleep`, is a process of the vassal's and not counted).
//
// Kernel memory of the tun device and namespaces is not in PSS (it is not
// any process's); the table lists userland PSS, which is what uWSGI's 3.5 MB
// figure counts too.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, LEARN_ANYWHERE, NativeRouter } from '../src/native';
import { Lab, requireRoot, sh, uniqueName } from '../test/helpers/netns';
import { makeRootFs } from '../test/helpers/rootfs';
import { pssKb, VassalRuntime } from '../test/helpers/vassal-runtime';
import { deviceConfigFor } from '../src/config/router-config';
import { deviceRuntimeLines } from '../src/vassal/spec';

interface Row { count: number; totalKb: number; perVassalKb: number; launcherKb: number; runtimeKb: number; rssKb: number }

function rssKb(pid: number): number {
  const m = /^Rss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  return m ? Number(m[1]) : 0;
}

async function main(): Promise<void> {
  requireRoot();
  const args = process.argv.slice(2);
  let counts = [1, 10, 100];
  let idleMs = 1000;
  let pty = false;
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--counts') counts = (args[++i] ?? '').split(',').map(Number).filter((n) => n > 0 && n <= 250);
    else if (args[i] === '--idle-ms') idleMs = Number(args[++i]);
    else if (args[i] === '--pty') pty = true;
    else throw new Error(`unknown option ${args[i]} (--counts 1,10,100 --idle-ms 1000 --pty)`);
  }
  const lab = new Lab();
  const vassals: VassalRuntime[] = [];
  let router: NativeRouter | undefined;
  const root = makeRootFs();
  lab.onCleanup(() => root.remove());
  if (pty) {
    fs.mkdirSync(path.join(root.dir, 'dev', 'pts'));
    fs.symlinkSync('pts/ptmx', path.join(root.dir, 'dev', 'ptmx'));
  }
  try {
    const ns = lab.netns('vmg');
    const tun = uniqueName('vmt');
    const sock = path.join(os.tmpdir(), `moat-vm-${crypto.randomBytes(4).toString('hex')}.sock`);
    lab.onCleanup(() => fs.rmSync(sock, { force: true }));
    const net16 = `10.${16 + crypto.randomInt(200)}.`;
    const { Router } = addon();
    router = new Router({
      tunName: tun, netns: `/run/netns/${ns}`, socketPath: sock, socketMode: 0o666, socketUid: -1, socketGid: -1,
      maxFrame: 1500, queueBytes: 64 * 1024, acceptRuleBlocks: false, offload: false, handoff: false, holdUs: 0, tunQueues: 1, sndbuf: 0, sndbufBusy: 0, sndbufBudget: 0, busyPollUs: 0, bindings: [], learn: LEARN_ANYWHERE,
    });
    router.start(() => { /* events not needed */ });
    sh('ip', ['-n', ns, 'addr', 'add', `${net16}0.1/16`, 'dev', tun]);

    const rows: Row[] = [];
    for (const count of counts) {
      const batch: VassalRuntime[] = [];
      for (let i = 0; i < count; i++) {
        const n = i + 2;
        const v = new VassalRuntime([
          `name mem${i}`, 'clone fs,ipc,uts,net,pid', `device vm${i} ${sock}`,
          ...deviceRuntimeLines(deviceConfigFor(`vm${i}`, sock)),
          `device-address ${net16}${n >> 8}.${n & 255}/16`, `device-route ${net16}0.1`,
          `pivot-root ${root.dir} ${root.putOld}`, 'gid 65534', 'uid 65534',
          ...(pty ? ['pty-router framed /tmp/pty.sock', 'pty-socket /tmp/shared.sock', 'pty-daemon exec sleep 100000'] : []),
        ]);
        vassals.push(v);
        batch.push(v);
      }
      await Promise.all(batch.map((v) => v.waitEvent('ready', () => true, 60000)));
      await Promise.all(batch.map((v) => v.waitEvent('device', (x) => x === 'connected', 10000)));
      await new Promise((r) => setTimeout(r, idleMs));
      let launcherKb = 0;
      let runtimeKb = 0;
      let rss = 0;
      for (const v of batch) {
        const lp = v.child.pid as number;
        const rp = v.hostPid as number;
        launcherKb += pssKb([lp]);
        runtimeKb += pssKb([rp]);
        rss += rssKb(lp) + rssKb(rp);
      }
      const totalKb = launcherKb + runtimeKb;
      rows.push({ count, totalKb, perVassalKb: totalKb / count, launcherKb: launcherKb / count, runtimeKb: runtimeKb / count, rssKb: rss / count });
      for (const v of batch) v.send('stop');
      await Promise.all(batch.map((v) => v.waitExit(15000)));
    }
    const mb = (kb: number): string => (kb / 1024).toFixed(2);
    console.log(`Idle vassals (moat-vassal: launcher + runtime as pid 1, tun device connected, pivot-rooted, uid 65534${pty ? ', forkpty router and shared pty' : ''})`);
    console.log('vassals | PSS total MB | PSS per vassal MB | launcher MB | runtime MB | RSS per vassal MB (not shared-adjusted)');
    console.log('------: | -----------: | ----------------: | ----------: | ---------: | ---------:');
    for (const r of rows) {
      console.log(`${r.count} | ${mb(r.totalKb)} | ${mb(r.perVassalKb)} | ${mb(r.launcherKb)} | ${mb(r.runtimeKb)} | ${mb(r.rssKb)}`);
    }
    console.log('limit (issue 5): 7 MB PSS per idle vassal; uWSGI vassal with its tun device: about 3.5 MB PSS');
    if (rows.some((r) => r.perVassalKb > 7 * 1024)) process.exitCode = 1;
  } finally {
    for (const v of vassals) v.kill();
    await Promise.all(vassals.map((v) => v.waitExit(3000).catch(() => undefined)));
    router?.stop();
    await lab.cleanup();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
