// rules-reload-flood.test.ts: a rule set reloaded under a running flood is
// swapped whole. The flood alternates packets to two ports with increasing
// sequence numbers; each rule set allows exactly one of the ports. If no
// packet is judged by a mix of old and new rules, the received packets,
// ordered by sequence number, switch port only at the reloads: at most
// reloads + 1 runs, never the interleaving a half-swapped table would let in.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Router } from '../../src/router/router';
import type { RouterConfig } from '../../src/config/types';
import { Lab, requireRoot, uniqueName, waitFor } from '../helpers/netns';
import { tempDir } from '../helpers/moat';
import { encodeFrame, udpPacket } from '../helpers/packets';
import { FramePeer } from '../helpers/frame-peer';
import { conntrackDefaults } from '../../src/config/router-config';

const lab = new Lab();
after(() => lab.cleanup());

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function ruleSet(allowPort: number, denyPort: number): string {
  // Filler rules first, so each reload compiles a real table.
  const filler: string[] = [];
  for (let i = 0; i < 1000; i++) filler.push(`out deny 172.${16 + (i % 16)}.${i >> 4}.0/24 10.0.0.0/8 proto tcp dport ${1 + i}`);
  return [...filler, `out deny 0.0.0.0 0.0.0.0 proto udp dport ${denyPort}`, `out allow 0.0.0.0 0.0.0.0 proto udp dport ${allowPort}`, 'out deny', ''].join('\n');
}

test('a reload under a flood never judges a packet by a mix of old and new rules', async () => {
  requireRoot();
  const dir = tempDir(lab);
  const ns = lab.netns('mrl');
  const net24 = `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}.`;
  const rules = path.join(dir, 'flip.rules');
  fs.writeFileSync(rules, ruleSet(2000, 1000));
  const cfg: RouterConfig = {
    device: uniqueName('mrl'), socket: path.join(dir, 'r.sock'), socketMode: 0o660, maxFrame: 1500, queueBytes: 1 << 20,
    offload: false, handoff: false, holdMs: 50, tunQueues: 8, busyPollUs: 100, sndbuf: 0, sndbufBusy: 524288, sndbufBudget: 67108864, conntrack: conntrackDefaults(),
    rules: [], ruleFiles: [rules], bindings: [], peerLimits: [], useCredentials: false, netns: `/run/netns/${ns}`, warnings: [],
  };
  const router = new Router(cfg);
  await router.start();
  lab.onCleanup(() => { void router.stop(); });
  const { execFileSync } = await import('node:child_process');
  execFileSync('ip', ['-n', ns, 'addr', 'add', `${net24}1/24`, 'dev', cfg.device]);

  // The receiver, inside the gateway namespace: records "seq port" per datagram.
  const recv = lab.spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', `
    const dgram = require('dgram'); const got = [];
    for (const port of [1000, 2000]) {
      const s = dgram.createSocket('udp4'); s.bind(port, '${net24}1');
      s.on('message', (m) => got.push(m.readUInt32BE(0) + ' ' + port));
    }
    process.stdout.write('ready\\n');
    process.on('SIGTERM', () => { process.stdout.write(got.join('\\n') + '\\nend\\n', () => process.exit(0)); });`]);
  let out = '';
  recv.stdout!.on('data', (d) => { out += d; });
  await waitFor(() => out.includes('ready'), 10000, 'receiver ready');

  const peer = await FramePeer.connect(cfg.socket, { keep: false });
  let seq = 0;
  let flooding = true;
  const flood = (async () => {
    const end = Date.now() + 6000;
    while (flooding && Date.now() < end && seq < 2_000_000) {
      const frames: Buffer[] = [];
      for (let i = 0; i < 64; i++, seq++) {
        const data = Buffer.alloc(8);
        data.writeUInt32BE(seq, 0);
        frames.push(encodeFrame(udpPacket(`${net24}2`, `${net24}1`, 40000, seq % 2 ? 2000 : 1000, data)));
      }
      await peer.write(Buffer.concat(frames));
      await new Promise((r) => setImmediate(r));
    }
  })();

  const flips = 6;
  for (let i = 0; i < flips; i++) {
    await sleep(400);
    fs.writeFileSync(rules, i % 2 === 0 ? ruleSet(1000, 2000) : ruleSet(2000, 1000));
    assert.ok(router.reloadRules(`flip ${i}`), 'reload accepted');
  }
  await sleep(400);
  flooding = false;
  await flood;
  await sleep(300);
  recv.kill('SIGTERM');
  await waitFor(() => out.includes('end'), 10000, 'receiver report');
  peer.close();

  const got = out.split('\n').filter((l) => /^\d+ \d+$/.test(l)).map((l) => l.split(' ').map(Number)).sort((a, b) => a[0] - b[0]);
  assert.ok(got.length > 1000, `enough packets arrived (${got.length} of ${seq} sent)`);
  let runs = 1;
  for (let i = 1; i < got.length; i++) if (got[i][1] !== got[i - 1][1]) runs++;
  assert.ok(runs >= 2, `the reloads took effect (${runs} runs)`);
  assert.ok(runs <= flips + 1, `${runs} port runs for ${flips} reloads: some packets were judged by a mixed table`);
  console.log(`received ${got.length} of ${seq} sent, ${runs} runs for ${flips} reloads`);
  const hits = router.stats().hits.out;
  assert.equal(hits.length, 1003);
  await router.stop();
});
