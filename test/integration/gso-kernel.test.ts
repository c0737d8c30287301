// gso-kernel.test.ts: the segments gso_split makes are packets a real kernel
// accepts. A UDP and a TCP super-packet are split through the addon's
// gsoSplit and written, one frame each, to a moat Device (a plain tun, no vnet
// header) in a netns this test creates:
//   - UDP: a socket bound in that netns (a node child inside it) receives every
//     datagram, in order, with its exact content;
//   - TCP: to a closed port; the kernel answers each segment with a RST only
//     after verifying its checksum (tcp_v4_rcv, no socket), and the RST's ack
//     number (seq + length, + 1 for FIN) names the segment.
// A negative control with one payload byte flipped after the split must be
// refused by the kernel (InCsumErrors + 1, nothing delivered, no RST), so the
// test can fail.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import test from 'node:test';
import { deviceConfigFor } from '../../src/config/router-config';

import { Device } from '../../src/device/device';
import { addon } from '../../src/native';
import { Lab, requireRoot, sh, uniqueName, waitFor } from '../helpers/netns';
import { FakeRouter as BaseRouter } from '../helpers/fake-router';

const GW = [192, 168, 77, 1];      // the far side: source of the super-packets
const VASSAL = [192, 168, 77, 2];  // the tun's address in the netns
const UDP_PORT = 40777;
const TCP_CLOSED_PORT = 40778;

function sum16(b: Buffer, start = 0, end = b.length): number {
  let s = 0;
  for (let i = start; i + 1 < end; i += 2) s += b.readUInt16BE(i);
  if ((end - start) % 2) s += b[end - 1] << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** vnet header (host order) + IPv4 super-packet GW -> VASSAL; L4 checksum field
 *  left at 0: gso_split must compute it all. */
function superPacket(proto: number, payload: Buffer, mss: number, tcpFlags = 0): Buffer {
  const l4h = proto === 6 ? 20 : 8;
  const len = 20 + l4h + payload.length;
  const p = Buffer.alloc(len);
  p[0] = 0x45;
  p.writeUInt16BE(len, 2);
  p.writeUInt16BE(0x7000, 4);
  p.writeUInt16BE(0x4000, 6);
  p[8] = 64;
  p[9] = proto;
  Buffer.from(GW).copy(p, 12);
  Buffer.from(VASSAL).copy(p, 16);
  p.writeUInt16BE(0xffff & ~sum16(p, 0, 20), 10);
  if (proto === 6) {
    p.writeUInt16BE(50000, 20);
    p.writeUInt16BE(TCP_CLOSED_PORT, 22);
    p.writeUInt32BE(0x10000000, 24);
    p[32] = 5 << 4;
    p[33] = tcpFlags;
    p.writeUInt16BE(1000, 34);
  } else {
    p.writeUInt16BE(50001, 20);
    p.writeUInt16BE(UDP_PORT, 22);
    p.writeUInt16BE(len - 20, 24);
  }
  payload.copy(p, 20 + l4h);
  const h = Buffer.alloc(10);
  const w = (v: number, at: number) => (os.endianness() === 'LE' ? h.writeUInt16LE(v, at) : h.writeUInt16BE(v, at));
  h[0] = 1;                        // NEEDS_CSUM
  h[1] = proto === 6 ? 1 : 5;      // TCPV4 / UDP_L4
  w(20 + l4h, 2);
  w(mss, 4);
  w(20, 6);
  w(proto === 6 ? 16 : 6, 8);
  return Buffer.concat([h, p]);
}

function segments(buf: Buffer): Buffer[] {
  const r = addon().gsoSplit(buf);
  if (r.error !== undefined) throw new Error(`gsoSplit refused: ${r.error}`);
  return r.segments;
}

function frame(payload: Buffer): Buffer {
  return Buffer.concat([Buffer.from([0, payload.length & 0xff, payload.length >> 8, 0]), payload]);
}

/** /proc/net/snmp of ns: { Udp: { InCsumErrors: n, ... }, Tcp: {...} }. */
function snmp(ns: string): Record<string, Record<string, number>> {
  const lines = sh('cat', ['/proc/net/snmp'], { ns }).trim().split('\n');
  const out: Record<string, Record<string, number>> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [k, ...names] = lines[i].split(/\s+/);
    const vals = lines[i + 1].split(/\s+/).slice(1).map(Number);
    out[k.replace(':', '')] = Object.fromEntries(names.map((n, j) => [n, vals[j]]));
  }
  return out;
}

/** The fake router, reading the kernel's answers. */
class FakeRouter extends BaseRouter {
  /** ack numbers of the RSTs from VASSAL to GW's port 50000. */
  rstAcks(): number[] {
    return this.packets
      .filter((p) => p.length >= 40 && p[9] === 6 && p.readUInt16BE(22) === 50000 && (p[33] & 0x04) !== 0)
      .map((p) => p.readUInt32BE(28));
  }
}

// Prints "ready", then one line of hex per datagram received on UDP_PORT.
const RECEIVER = `
const s = require('node:dgram').createSocket('udp4');
s.on('message', (m) => process.stdout.write(m.toString('hex') + '\\n'));
s.bind(${UDP_PORT}, '${VASSAL.join('.')}', () => process.stdout.write('ready\\n'));
setTimeout(() => process.exit(0), 30000);
`;

test('segments of UDP and TCP super-packets written to a real tun are accepted by the kernel', async (t) => {
  requireRoot();
  const lab = new Lab();
  const dir = fs.mkdtempSync('/tmp/moat-gso-');
  let dev: Device | undefined;
  const router = new FakeRouter(path.join(dir, 'r.sock'));
  t.after(async () => {
    dev?.stop();
    await router.close().catch(() => undefined);
    await lab.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const ns = lab.netns('mgs');
  await router.listen();
  const name = uniqueName('mgs');
  dev = new Device(deviceConfigFor(name, router.socketPath, { maxFrame: 8188, queueBytes: 1 << 20, reconnectMinMs: 20, reconnectMaxMs: 200, offload: false }),
    { netns: `/run/netns/${ns}` });
  dev.start();
  sh('ip', ['-n', ns, 'addr', 'add', `${VASSAL.join('.')}/24`, 'dev', name]);
  sh('ip', ['-n', ns, 'link', 'set', 'dev', name, 'up']);
  await waitFor(() => router.conns.length === 1 && dev!.stats().connected, 3000, 'device connected');
  const conn = router.conns[0];

  const rx = lab.spawn(process.execPath, ['-e', RECEIVER], { ns });
  let out = '';
  rx.stdout!.on('data', (d) => { out += d.toString(); });
  await waitFor(() => out.startsWith('ready\n'), 5000, 'UDP receiver ready');
  const datagrams = () => out.split('\n').slice(1).filter(Boolean).map((h) => Buffer.from(h, 'hex'));
  const before = snmp(ns);

  // UDP: 12 datagrams of 1200 bytes and a last one of 345.
  const payload = Buffer.alloc(12 * 1200 + 345);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 31 + (i >> 8)) & 0xff;
  const udpSegs = segments(superPacket(17, payload, 1200));
  assert.equal(udpSegs.length, 13);
  for (const s of udpSegs) conn.write(frame(s));
  await waitFor(() => datagrams().length >= 13, 5000, 'all 13 datagrams received');
  const got = datagrams();
  assert.equal(got.length, 13);
  got.forEach((d, i) => assert.deepEqual(d, payload.subarray(i * 1200, Math.min(payload.length, (i + 1) * 1200)), `datagram ${i}`));

  // TCP to a closed port: one RST per segment, each acking that segment's end.
  const tcpPayload = Buffer.alloc(5 * 1000 + 17, 0x5a);
  const tcpSegs = segments(superPacket(6, tcpPayload, 1000, 0x08 | 0x01));  // PSH|FIN: on the last only
  assert.equal(tcpSegs.length, 6);
  for (const s of tcpSegs) conn.write(frame(s));
  const want = tcpSegs.map((s, i) => (0x10000000 + i * 1000 + (s.length - 40) + (i === 5 ? 1 : 0)) >>> 0);
  await waitFor(() => router.rstAcks().length >= 6, 5000, 'six RSTs');
  assert.deepEqual(router.rstAcks().sort((a, b) => a - b), want);

  // Negative control: the same splits with one payload byte flipped afterwards.
  const badUdp = Buffer.from(udpSegs[0]);
  badUdp[40] ^= 0x01;
  const badTcp = Buffer.from(tcpSegs[0]);
  badTcp[50] ^= 0x01;
  conn.write(frame(badUdp));
  conn.write(frame(badTcp));
  await waitFor(() => { const s = snmp(ns); return s.Udp.InCsumErrors > before.Udp.InCsumErrors && s.Tcp.InCsumErrors > before.Tcp.InCsumErrors; },
    5000, 'the kernel to count both corrupted segments as checksum errors');
  await new Promise((r) => setTimeout(r, 200));
  const after = snmp(ns);
  assert.equal(after.Udp.InCsumErrors - before.Udp.InCsumErrors, 1, 'only the corrupted datagram failed its checksum');
  assert.equal(after.Tcp.InCsumErrors - before.Tcp.InCsumErrors, 1, 'only the corrupted segment failed its checksum');
  assert.equal(after.Ip.InHdrErrors - before.Ip.InHdrErrors, 0, 'no IPv4 header errors');
  assert.equal(datagrams().length, 13, 'the corrupted datagram was not delivered');
  assert.equal(router.rstAcks().length, 6, 'the corrupted segment got no RST');
  assert.equal(after.Udp.InDatagrams - before.Udp.InDatagrams, 13);
});
