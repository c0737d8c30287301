// fake-router.ts: a scripted router for device tests: accepts a Device's
// connections on a unix socket and splits what it reads into uwsgi frames
// (the router's side of the framing; frame-peer.ts plays the device's).
import net from 'node:net';
import { FrameReader } from './packets';

export interface ReadFrame { conn: number; mod2: number; payload: Buffer }

export class FakeRouter {
  readonly conns: net.Socket[] = [];
  readonly frames: ReadFrame[] = [];
  private server: net.Server;

  constructor(readonly socketPath: string) {
    this.server = net.createServer((c) => {
      const id = this.conns.push(c) - 1;
      const reader = new FrameReader();
      c.on('data', (d: Buffer) => {
        for (const f of reader.push(d)) this.frames.push({ conn: id, mod2: f.mod2, payload: f.payload });
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
