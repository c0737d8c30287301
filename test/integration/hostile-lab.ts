// hostile-lab.ts: what the hostile-peer and soak tests share: a native Router
// (through the addon, in this process) whose tun device lives in a gateway
// namespace the test makes, raw peers (unix-socket clients speaking uwsgi
// frames), pings to the gateway, and the process's fd count and RSS (the
// router lives in this process, so its fds and memory are ours).
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import v8 from 'node:v8';
import vm from 'node:vm';
import { addon, NativeRouter, RouterEvent, RouterOptions } from '../../src/native';
import { Lab, sh, uniqueName } from '../helpers/netns';
import { encodeFrame, FrameReader, icmpEcho, ipToInt, PROTO_ICMP } from '../helpers/packets';

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The router's recent events (the last `keep`), and a count per type of all of them. */
export class EventLog {
  readonly events: RouterEvent[] = [];
  readonly counts = new Map<string, number>();
  constructor(readonly keep = 20000) {}
  push(evs: RouterEvent[]): void {
    for (const e of evs) this.counts.set(e.type, (this.counts.get(e.type) ?? 0) + 1);
    this.events.push(...evs);
    if (this.events.length > this.keep) this.events.splice(0, this.events.length - this.keep);
  }
  count(type: RouterEvent['type']): number { return this.counts.get(type) ?? 0; }
  some(pred: (e: RouterEvent) => boolean): boolean { return this.events.some(pred); }
}

export class RouterLab {
  readonly lab = new Lab();
  readonly log = new EventLog();
  get events(): RouterEvent[] { return this.log.events; }
  ns = '';
  net24 = '';
  gw = '';
  router!: NativeRouter;
  sockPath = '';
  tun = '';
  private routers: NativeRouter[] = [];

  host(n: number): string { return this.net24 + n; }

  tmpSock(tag: string): string {
    const p = path.join(os.tmpdir(), `moat-${tag}-${crypto.randomBytes(4).toString('hex')}.sock`);
    this.lab.onCleanup(() => { try { fs.unlinkSync(p); } catch { /* gone */ } });
    return p;
  }

  options(over: Partial<RouterOptions> = {}): RouterOptions {
    return {
      tunName: this.tun, netns: `/run/netns/${this.ns}`, socketPath: this.sockPath, socketMode: 0o660, socketUid: -1, socketGid: -1,
      maxFrame: 8188, queueBytes: 256 * 1024, acceptRuleBlocks: false, bindings: [], ...over,
    };
  }

  /** The gateway namespace, its router (tun address .1/24) and socket. */
  start(prefix: string, over: Partial<RouterOptions> = {}): void {
    this.ns = this.lab.netns(prefix);
    this.tun = uniqueName(prefix + 't');
    this.sockPath = this.tmpSock(prefix);
    this.net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
    this.gw = this.host(1);
    this.router = new (addon().Router)(this.options(over));
    this.router.start((evs) => this.log.push(evs));
    this.routers.push(this.router);
    sh('ip', ['-n', this.ns, 'addr', 'add', `${this.gw}/24`, 'dev', this.tun]);
  }

  /** Another router in the same namespace (stopped at cleanup). */
  extraRouter(opts: RouterOptions, events: RouterEvent[] = []): NativeRouter {
    const r = new (addon().Router)(opts);
    r.start((evs) => { events.push(...evs); });
    this.routers.push(r);
    return r;
  }

  async cleanup(): Promise<void> {
    for (const r of this.routers) r.stop();
    await this.lab.cleanup();
  }

  peerStats(addr: string) {
    const p = this.router.stats().peers.find((x) => x.addr === ipToInt(addr));
    if (!p) throw new Error(`no peer holds ${addr}`);
    return p;
  }
}

/** A vassal's device as the router sees it: a socket speaking frames. */
export class Peer {
  closed = false;
  frames = 0;
  private reader = new FrameReader();
  private waiters = new Map<number, () => void>();   // echo id -> resolve

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      for (const f of this.reader.push(d)) {
        this.frames++;
        const p = f.payload;
        // An echo reply (ICMP type 0) for one of our pings: wake its waiter.
        if (f.mod2 === 0 && p.length >= 28 && p[0] >> 4 === 4 && p[9] === PROTO_ICMP) {
          const l4 = (p[0] & 15) * 4;
          if (p[l4] === 0) this.waiters.get(p.readUInt16BE(l4 + 4))?.();
        }
      }
    });
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => { /* seen as close */ });
  }

  static connect(p: string): Promise<Peer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(p);
      s.once('connect', () => resolve(new Peer(s)));
      s.once('error', reject);
    });
  }

  send(pkt: Buffer, mod2 = 0): void { this.sock.write(encodeFrame(pkt, mod2)); }

  /** Sends one frame a byte per write(), 1 ms apart (each byte its own read at the router). */
  async sendBytewise(pkt: Buffer, mod2 = 0): Promise<void> {
    const f = encodeFrame(pkt, mod2);
    for (let i = 0; i < f.length; i++) {
      this.sock.write(f.subarray(i, i + 1));
      await sleep(1);
    }
  }

  /** Writes, waiting for 'drain' when the socket buffer is full. */
  async write(buf: Buffer): Promise<void> {
    if (this.closed) throw new Error('peer closed');
    if (this.sock.write(buf)) return;
    await new Promise<void>((resolve) => {
      const done = () => { this.sock.off('drain', done); this.sock.off('close', done); resolve(); };
      this.sock.on('drain', done);
      this.sock.on('close', done);
    });
  }

  private static nextId = 1;
  /** One echo request src -> dst; true if the reply came back within ms. */
  ping(src: string, dst: string, ms = 2000, bytewise = false): Promise<boolean> {
    const id = Peer.nextId = (Peer.nextId % 65535) + 1;
    return new Promise((resolve) => {
      let t: NodeJS.Timeout | undefined;
      this.waiters.set(id, () => { clearTimeout(t); this.waiters.delete(id); resolve(true); });
      const arm = () => { t = setTimeout(() => { this.waiters.delete(id); resolve(false); }, ms); };
      const pkt = icmpEcho(src, dst, id, 1);
      if (bytewise) void this.sendBytewise(pkt).then(arm);
      else { this.send(pkt); arm(); }
    });
  }

  close(): void { this.sock.destroy(); }
}

/** A peer that pings the gateway every intervalMs until stopped, counting. */
export class Pinger {
  sent = 0;
  answered = 0;
  late: number[] = [];          // sequence numbers not answered in time
  private stopped = false;
  private done: Promise<void>;

  constructor(readonly peer: Peer, readonly src: string, readonly dst: string, intervalMs = 100, timeoutMs = 3000) {
    this.done = (async () => {
      while (!this.stopped) {
        const seq = ++this.sent;
        if (await peer.ping(src, dst, timeoutMs)) this.answered++;
        else this.late.push(seq);
        await sleep(intervalMs);
      }
    })();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.done;
  }
}

export function fdCount(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

/** RSS and the V8 heap, for a log line. */
export function memText(): string {
  const m = process.memoryUsage();
  const mib = (n: number) => (n / 1048576).toFixed(1);
  return `RSS ${mib(rssKiB() * 1024)} MiB (V8 heap ${mib(m.heapTotal)} MiB, external ${mib(m.external)} MiB)`;
}

/** Under AddressSanitizer freed memory is held in its quarantine by design,
 *  so RSS bounds say nothing there (fd bounds still hold). */
export const UNDER_ASAN = /libasan/.test(process.env.LD_PRELOAD ?? '');

/** Resident set size in KiB. */
export function rssKiB(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) : 0;
}

let gcFn: (() => void) | undefined;
/** A full garbage collection, so RSS figures compare like with like. */
export async function settle(): Promise<void> {
  if (!gcFn) {
    v8.setFlagsFromString('--expose-gc');
    gcFn = vm.runInNewContext('gc') as () => void;
  }
  for (let i = 0; i < 3; i++) {
    gcFn();
    await sleep(50);
  }
}

/** Runs a node script inside ns (e.g. a UDP sender in the gateway namespace). */
export function nodeInNs(lab: Lab, ns: string, code: string, args: string[]) {
  return lab.spawn(process.execPath, ['-e', code, ...args], { ns });
}

export const UDP_SENDER = `
const dgram = require('node:dgram');
const [src, dst, port, count, size] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.bind(0, src, async () => {
  const buf = Buffer.alloc(Number(size), 0x61);
  for (let i = 0; i < Number(count); i++) {
    await new Promise((r) => s.send(buf, Number(port), dst, r));
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 1));
  }
  s.close();
});`;

export function exitCode(child: ReturnType<Lab['spawn']>): Promise<number | null> {
  return new Promise((resolve) => {
    if (child.exitCode !== null) return resolve(child.exitCode);
    child.once('exit', (code) => resolve(code));
  });
}
