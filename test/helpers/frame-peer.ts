// frame-peer.ts: a vassal's device as far as a router can tell: a client of
// the router's unix socket speaking uWSGI's tuntap framing ([mod1][size lo]
// [size hi][mod2] then the payload; packets.ts builds and reads frames). The
// one hand-played peer for every test that drives a router (native or the
// CLI) below the device: hostile peers, batching, holding, offload frames.
import net from 'node:net';
import { encodeFrame, FrameReader, icmpEcho, parseIpv4, PROTO_ICMP, type Frame } from './packets';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export interface FramePeerOptions {
  /** Keep what arrives in `frames`/`packets` (default). false: only count it
   *  (floods and soaks, where a kept copy would be the memory measured). */
  keep?: boolean;
  /** Sees every frame as it arrives. */
  onFrame?: (f: Frame) => void;
}

export class FramePeer {
  readonly frames: Frame[] = [];       // every frame received (keep)
  readonly packets: Buffer[] = [];     // of them the plain packets (modifier2 0)
  received = 0;                        // frames received
  bytes = 0;                           // socket bytes received
  closed = false;
  readonly reader = new FrameReader();
  private readonly echoWaiters = new Map<number, (reply: Buffer) => void>();   // echo id -> waiter

  private constructor(readonly sock: net.Socket, opts: FramePeerOptions) {
    const keep = opts.keep ?? true;
    sock.on('data', (d: Buffer) => {
      this.bytes += d.length;
      for (const f of this.reader.push(d)) {
        this.received++;
        if (keep) {
          this.frames.push(f);
          if (f.mod2 === 0) this.packets.push(f.payload);
        }
        if (f.mod2 === 0) this.wakeEcho(f.payload);
        opts.onFrame?.(f);
      }
    });
    sock.on('close', () => { this.closed = true; });
    sock.on('error', () => { /* seen as close */ });
  }

  static connect(path: string, opts: FramePeerOptions = {}): Promise<FramePeer> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection(path);
      s.once('connect', () => resolve(new FramePeer(s, opts)));
      s.once('error', reject);
    });
  }

  /** One frame around pkt. */
  send(pkt: Buffer, mod2 = 0, mod1 = 0): void {
    this.sock.write(encodeFrame(pkt, mod2, mod1));
  }

  /** Sends one frame a byte per write(), 1 ms apart (each byte its own read at the router). */
  async sendBytewise(pkt: Buffer, mod2 = 0): Promise<void> {
    const f = encodeFrame(pkt, mod2);
    for (let i = 0; i < f.length; i++) {
      this.sock.write(f.subarray(i, i + 1));
      await sleep(1);
    }
  }

  /** Writes raw bytes, waiting for 'drain' when the socket buffer is full. */
  async write(buf: Buffer): Promise<void> {
    if (this.closed) throw new Error('peer closed');
    if (this.sock.write(buf)) return;
    await new Promise<void>((resolve) => {
      const done = () => { this.sock.off('drain', done); this.sock.off('close', done); resolve(); };
      this.sock.on('drain', done);
      this.sock.on('close', done);
    });
  }

  /** The first kept packet pred accepts, waiting up to ms. */
  async waitPacket(pred: (p: Buffer) => boolean, ms: number): Promise<Buffer | undefined> {
    const end = Date.now() + ms;
    for (;;) {
      const hit = this.packets.find(pred);
      if (hit || Date.now() > end) return hit;
      await sleep(10);
    }
  }

  /** Forgets what was kept so far. */
  clear(): void {
    this.frames.length = 0;
    this.packets.length = 0;
  }

  private static nextId = 1;
  /** One echo request src -> dst; true if its reply (dst -> src, the
   *  header checksum right) came back framed within ms. */
  ping(src: string, dst: string, ms = 2000, bytewise = false): Promise<boolean> {
    const id = FramePeer.nextId = (FramePeer.nextId % 65535) + 1;
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      this.echoWaiters.set(id, (reply) => {
        const ip = parseIpv4(reply);
        if (ip.src !== dst || ip.dst !== src || !ip.headerOk) return;
        clearTimeout(timer);
        this.echoWaiters.delete(id);
        resolve(true);
      });
      const arm = () => { timer = setTimeout(() => { this.echoWaiters.delete(id); resolve(false); }, ms); };
      const pkt = icmpEcho(src, dst, id, 1);
      if (bytewise) void this.sendBytewise(pkt).then(arm);
      else { this.send(pkt); arm(); }
    });
  }

  close(): void {
    this.sock.destroy();
  }

  /** An ICMP echo reply (type 0) for one of our pings wakes its waiter. */
  private wakeEcho(p: Buffer): void {
    if (this.echoWaiters.size === 0 || p.length < 28 || p[0] >> 4 !== 4 || p[9] !== PROTO_ICMP) return;
    const l4 = (p[0] & 15) * 4;
    if (p.length >= l4 + 8 && p[l4] === 0) this.echoWaiters.get(p.readUInt16BE(l4 + 4))?.(p);
  }
}

/** A peer that pings dst every intervalMs until stopped, counting answers. */
export class Pinger {
  sent = 0;
  answered = 0;
  late: number[] = [];          // sequence numbers not answered in time
  private stopped = false;
  private done: Promise<void>;

  constructor(readonly peer: FramePeer, readonly src: string, readonly dst: string, intervalMs = 100, timeoutMs = 3000) {
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
