// fake-router.ts: a scripted router for device tests: accepts a Device's
// connections on a unix socket and splits what it reads into uwsgi frames.
import net from 'node:net';

export interface ReadFrame { conn: number; mod2: number; payload: Buffer }

export class FakeRouter {
  readonly conns: net.Socket[] = [];
  readonly frames: ReadFrame[] = [];
  private server: net.Server;

  constructor(readonly socketPath: string) {
    this.server = net.createServer((c) => {
      const id = this.conns.push(c) - 1;
      let buf = Buffer.alloc(0);
      c.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        while (buf.length >= 4) {
          const size = buf[1] | (buf[2] << 8);
          if (buf.length < 4 + size) break;
          this.frames.push({ conn: id, mod2: buf[3], payload: Buffer.from(buf.subarray(4, 4 + size)) });
          buf = buf.subarray(4 + size);
        }
      });
      c.on('error', () => { /* the device went away */ });
    });
  }

  /** The payloads of plain packet frames (modifier2 0), in arrival order. */
  get packets(): Buffer[] {
    return this.frames.filter((f) => f.mod2 === 0).map((f) => f.payload);
  }

  listen(): Promise<void> {
    return new Promise((r) => this.server.listen(this.socketPath, () => r()));
  }

  close(): Promise<void> {
    for (const c of this.conns) c.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }
}
