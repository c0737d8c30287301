// udp-meter.ts: a UDP receiver that counts what arrives per source address
// (datagrams, payload bytes, first and last arrival), and a paced UDP sender,
// each a node child process a test starts where it needs them (a namespace,
// a vassal's network namespace through nsenter). For tests that compare a
// rate, or a count, with what the router was told to let through.
import type { ChildProcess } from 'node:child_process';

// Counts datagrams on addr:port; answers each line on stdin with a JSON
// object {source: {n, bytes, first, last}} (performance.now() of arrivals).
export const RECEIVER_JS = `
const dgram = require('node:dgram');
const { performance } = require('node:perf_hooks');
const [addr, port] = process.argv.slice(1);
const s = dgram.createSocket({ type: 'udp4', recvBufferSize: 8 << 20 });
const by = {};
s.on('message', (m, r) => {
  const t = performance.now();
  const c = by[r.address] ?? (by[r.address] = { n: 0, bytes: 0, first: t, last: t });
  c.n++; c.bytes += m.length; c.last = t;
});
s.bind(Number(port), addr, () => process.stdout.write('ready\\n'));
process.stdin.on('data', () => process.stdout.write(JSON.stringify(by) + '\\n'));`;

// Sends size-byte datagrams from src (any: 0.0.0.0) to dst:port at pps for
// ms, paced every 2 ms; prints the count sent when done.
export const SENDER_JS = `
const dgram = require('node:dgram');
const { performance } = require('node:perf_hooks');
const [src, dst, port, pps, size, ms] = process.argv.slice(1).map((v, i) => i < 2 ? v : Number(v));
const s = dgram.createSocket({ type: 'udp4', sendBufferSize: 8 << 20 });
s.bind(0, src, () => {
  const buf = Buffer.alloc(size, 0x61);
  const t0 = performance.now();
  let sent = 0;
  const tick = () => {
    const el = performance.now() - t0;
    if (el >= ms) { process.stdout.write(sent + '\\n'); s.close(); return; }
    const want = Math.floor(pps * el / 1000);
    while (sent < want) { s.send(buf, port, dst); sent++; }
    setTimeout(tick, 2);
  };
  tick();
});`;

export interface Arrivals { n: number; bytes: number; first: number; last: number }

/** What a receiver child (RECEIVER_JS) heard, by source. */
export class UdpReceiver {
  private buf = '';
  private readonly waiters: Array<(line: string) => void> = [];

  constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (d: Buffer) => {
      this.buf += d.toString();
      let i;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        this.waiters.shift()?.(line);
      }
    });
  }

  /** Resolves once the child is bound (spawn it with RECEIVER_JS, ADDR, PORT). */
  async ready(timeoutMs = 5000): Promise<void> {
    const line = await Promise.race([this.line(), new Promise<string>((r) => setTimeout(() => r('timeout'), timeoutMs))]);
    if (line !== 'ready') throw new Error(`UDP receiver not ready: ${line}`);
  }

  private line(): Promise<string> { return new Promise((res) => this.waiters.push(res)); }

  async bySource(): Promise<Record<string, Arrivals>> {
    const p = this.line();
    this.child.stdin!.write('x\n');
    return JSON.parse(await p) as Record<string, Arrivals>;
  }

  /** Every source's arrivals together. */
  async all(): Promise<Arrivals> {
    const by = Object.values(await this.bySource());
    if (!by.length) return { n: 0, bytes: 0, first: 0, last: 0 };
    return by.reduce((a, b) => ({ n: a.n + b.n, bytes: a.bytes + b.bytes, first: Math.min(a.first, b.first), last: Math.max(a.last, b.last) }));
  }

  stop(): void { this.child.kill(); }
}

/** Bits per second of IPv4 traffic (payload + 28 bytes of headers each) over first..last arrival. */
export function ipBitsPerSec(a: Arrivals): number {
  const s = (a.last - a.first) / 1000;
  return s > 0 ? ((a.bytes + 28 * a.n) * 8) / s : 0;
}
