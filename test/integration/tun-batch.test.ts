// tun-batch.test.ts: batched tun reads (native/tun_batch.h) in the router
// and the device, and the read() fallback (MOAT_TUN_BATCH=0, what a host
// without io_uring gets). A CLI router and a CLI device in namespaces of
// their own; a backlog is made deterministic by stopping the reader
// (SIGSTOP) while 3,000 datagrams queue in its tun (txqueuelen 5000 keeps
// them all), then letting it go: every datagram must arrive, both ways, in
// both modes, and the router's stats must show the batching (packets per
// tun read call well above one) or its absence (one call or more a packet).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { Lab, requireRoot, sh, uniqueName, waitForAsync } from '../helpers/netns';
import { readStats, tempDir } from '../helpers/moat';
import { startCliDevice, startCliRouter } from '../helpers/cli-path';
import { RECEIVER_JS, UdpReceiver } from '../helpers/udp-meter';

const COUNT = 3000;

// Sends count 64-byte datagrams to dst:port as fast as the socket takes them.
const BURST_JS = `
const dgram = require('node:dgram');
const [dst, port, count] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
const b = Buffer.alloc(36, 0x62);
let sent = 0;
const next = () => { if (sent === Number(count)) return s.close(); sent++; s.send(b, Number(port), dst, next); };
next();`;

async function receiver(lab: Lab, ns: string, addr: string, port: number): Promise<UdpReceiver> {
  const r = new UdpReceiver(lab.spawn(process.execPath, ['-e', RECEIVER_JS, addr, String(port)], { ns }));
  await r.ready();
  return r;
}

/** Stops pid, sends COUNT datagrams from ns to dst:port, lets pid go; resolves when r heard them all. */
async function backlog(lab: Lab, pid: number, ns: string, dst: string, port: number, r: UdpReceiver): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  try {
    const sender = lab.spawn(process.execPath, ['-e', BURST_JS, dst, String(port), String(COUNT)], { ns });
    const code = await new Promise<number | null>((res) => sender.once('exit', res));
    assert.equal(code, 0, 'the burst was sent');
  } finally {
    process.kill(pid, 'SIGCONT');
  }
  let got = 0;
  await waitForAsync(async () => (got = (await r.all()).n) >= COUNT, 20000, `${COUNT} datagrams to ${dst}:${port}`).catch(() => undefined);
  assert.equal(got, COUNT, `every datagram of the backlog arrived at ${dst}:${port}`);
}

for (const batched of [true, false]) {
  test(`a backlog in either tun arrives whole with ${batched ? 'batched reads' : 'read() (MOAT_TUN_BATCH=0)'}`, async () => {
    requireRoot();
    if (batched) delete process.env.MOAT_TUN_BATCH;
    else process.env.MOAT_TUN_BATCH = '0';
    const lab = new Lab();
    try {
      const dir = tempDir(lab);
      const gw = lab.netns('mtb');
      const vns = lab.netns('mtv');
      const net = `10.${100 + Math.floor(Math.random() * 100)}.${Math.floor(Math.random() * 250)}.`;
      const g = { ns: gw, tun: uniqueName('mtbt'), sock: path.join(dir, 'r.sock'), stats: path.join(dir, 's.sock'), addr: `${net}1` };
      const router = await startCliRouter(lab, g);
      const dev = uniqueName('mtbu');
      const device = await startCliDevice(lab, vns, g.sock, { name: dev, addr: `${net}2`, gw: `${net}1` });
      sh('ip', ['-n', gw, 'link', 'set', g.tun, 'txqueuelen', '5000']);
      sh('ip', ['-n', vns, 'link', 'set', dev, 'txqueuelen', '5000']);

      // gateway -> vassal: the router's tun holds the backlog.
      const inVassal = await receiver(lab, vns, `${net}2`, 9000);
      const before = (await readStats(g.stats)).moat.tun;
      await backlog(lab, router.child.pid!, gw, `${net}2`, 9000, inVassal);
      const after = (await readStats(g.stats)).moat.tun;
      const packets = after.rx_packets - before.rx_packets;
      const calls = after.read_calls - before.read_calls;
      assert.ok(packets >= COUNT, `the router read the backlog (${packets})`);
      if (batched) assert.ok(packets / calls >= 4, `batched: ${packets} packets in ${calls} read calls`);
      else assert.ok(calls >= packets, `read(): ${calls} calls for ${packets} packets`);

      // vassal -> gateway: the device's tun holds the backlog.
      const inGateway = await receiver(lab, gw, `${net}1`, 9001);
      await backlog(lab, device.child.pid!, vns, `${net}1`, 9001, inGateway);
    } finally {
      delete process.env.MOAT_TUN_BATCH;
      await lab.cleanup();
    }
  });
}
