// stats-server.ts: uWSGI's tuntap-router-stats: one JSON document per
// connection, then close. ADDR with a ':' is TCP host:port, else a unix path.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export function parseStatsAddress(addr: string): { path: string } | { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  if (i < 0) return { path: addr };
  const port = Number(addr.slice(i + 1));
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`bad stats address ${JSON.stringify(addr)}: port must be 0-65535`);
  return { host: addr.slice(0, i).replace(/^\[|\]$/g, '') || '127.0.0.1', port };
}

export class StatsServer {
  private server?: net.Server;
  private path?: string;

  constructor(private readonly addr: string, private readonly document: () => unknown) {}

  /** The unix socket path, or undefined for a TCP address. */
  get unixPath(): string | undefined {
    const where = parseStatsAddress(this.addr);
    return 'path' in where ? where.path : undefined;
  }

  async start(): Promise<void> {
    const where = parseStatsAddress(this.addr);
    const server = net.createServer((sock) => {
      sock.on('error', () => sock.destroy());
      // The document may be built asynchronously (parts of it come from the
      // emperor's process in `moat emperor`).
      Promise.resolve().then(() => this.document()).then(
        (doc) => JSON.stringify(doc),
        (err: Error) => JSON.stringify({ error: String(err.message) }),
      ).then((body) => sock.end(body), (err: Error) => sock.end(JSON.stringify({ error: String(err.message) })));
    });
    if ('path' in where) {
      this.path = where.path;
      // A stale file from a previous run is replaced; a live server is not.
      if (fs.existsSync(where.path)) {
        const live = await new Promise<boolean>((resolve) => {
          const c = net.connect(where.path, () => { c.destroy(); resolve(true); });
          c.on('error', () => resolve(false));
        });
        if (live) throw new Error(`stats socket ${where.path} is in use by another process`);
        fs.unlinkSync(where.path);
      }
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      if ('path' in where) server.listen(where.path, resolve);
      else server.listen(where.port, where.host, resolve);
    });
    if (this.path) fs.chmodSync(this.path, 0o660);
    this.server = server;
  }

  /** The bound TCP port (for ':0'), or undefined for a unix socket. */
  port(): number | undefined {
    const a = this.server?.address();
    return a && typeof a === 'object' ? a.port : undefined;
  }

  /** The socket file was removed: a new listening socket at the same path
   *  (its directory made again). The old one is closed first (libuv unlinks
   *  its path on close: harmless, the file is gone). Throws with the reason. */
  async rebind(): Promise<void> {
    const old = this.server;
    this.server = undefined;
    if (old) await new Promise<void>((resolve) => old.close(() => resolve()));
    if (this.path) fs.mkdirSync(path.dirname(path.resolve(this.path)), { recursive: true });
    await this.start();
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((resolve) => s.close(() => resolve()));
    if (this.path) {
      try { fs.unlinkSync(this.path); } catch { /* already gone */ }
    }
  }
}
