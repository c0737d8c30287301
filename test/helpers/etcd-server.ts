// etcd-server.ts: a real etcd (Debian's etcd-server) for fleet tests, started
// as a child process inside a network namespace the test made, on an address
// of that namespace, its data in a temporary directory; stop() kills it by
// pid and removes the directory. pause()/resume() (SIGSTOP/SIGCONT) play an
// etcd outage without losing its data. With tls (PEM files: a CA and one
// certificate valid for both server and client auth), it serves https and
// asks clients for a certificate of that CA.
import { spawn, ChildProcess, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sleep } from './netns';

export class EtcdServer {
  private child?: ChildProcess;
  private dataDir = '';
  readonly url: string;
  private output = '';

  /** ns: the namespace to run in; ip: an address of that namespace. */
  constructor(readonly ns: string, readonly ip: string, readonly port = 2379,
    readonly tls?: { ca: string; cert: string; key: string }) {
    this.url = `${tls ? 'https' : 'http'}://${ip}:${port}`;
  }

  private tlsArgs(server: boolean): string[] {
    const t = this.tls;
    if (!t) return [];
    return server
      ? ['--cert-file', t.cert, '--key-file', t.key, '--trusted-ca-file', t.ca, '--client-cert-auth']
      : ['--cacert', t.ca, '--cert', t.cert, '--key', t.key];
  }

  get pid(): number | undefined { return this.child?.pid; }

  async start(): Promise<void> {
    this.dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'moat-etcd-'));
    const peerPort = this.port + 1;
    this.child = spawn('ip', ['netns', 'exec', this.ns, 'etcd',
      '--name', 'moat-test',
      '--data-dir', this.dataDir,
      '--listen-client-urls', this.url,
      '--advertise-client-urls', this.url,
      '--listen-peer-urls', `http://${this.ip}:${peerPort}`,
      '--initial-advertise-peer-urls', `http://${this.ip}:${peerPort}`,
      '--initial-cluster', `moat-test=http://${this.ip}:${peerPort}`,
      '--log-level', 'warn',
      ...this.tlsArgs(true),
    ], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ETCD_UNSUPPORTED_ARCH: os.arch() === 'x64' ? '' : os.arch() } });
    const keep = (b: Buffer) => { this.output = (this.output + b.toString()).slice(-8000); };
    this.child.stdout!.on('data', keep);
    this.child.stderr!.on('data', keep);
    const deadline = Date.now() + 15000;
    for (;;) {
      if (this.child.exitCode !== null) throw new Error(`etcd exited (${this.child.exitCode}): ${this.output}`);
      try {
        execFileSync('ip', ['netns', 'exec', this.ns, 'etcdctl', '--endpoints', this.url, ...this.tlsArgs(false), 'endpoint', 'health'],
          { stdio: 'pipe', timeout: 5000, env: { ...process.env, ETCDCTL_API: '3' } });
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`etcd did not become healthy in 15 s: ${this.output}`);
        await sleep(200);
      }
    }
  }

  /** etcdctl against this server (from inside its namespace). */
  ctl(args: string[], input?: string): string {
    return execFileSync('ip', ['netns', 'exec', this.ns, 'etcdctl', '--endpoints', this.url, ...this.tlsArgs(false), ...args],
      { encoding: 'utf8', input, timeout: 10000, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ETCDCTL_API: '3' } });
  }

  put(key: string, value: string): void { this.ctl(['put', key], value); }
  del(key: string, prefix = false): void { this.ctl(['del', key, ...(prefix ? ['--prefix'] : [])]); }
  get(key: string): string | undefined {
    const out = this.ctl(['get', key, '--print-value-only']);
    return out === '' ? undefined : out.replace(/\n$/, '');
  }
  /** Every key under a prefix with its value. */
  list(prefix: string): Map<string, string> {
    const out = JSON.parse(this.ctl(['get', prefix, '--prefix', '-w', 'json'])) as { kvs?: Array<{ key: string; value: string }> };
    const b64 = (s: string) => Buffer.from(s, 'base64').toString('utf8');
    return new Map((out.kvs ?? []).map((kv) => [b64(kv.key), b64(kv.value)]));
  }

  /** An outage: the server stops answering (its process stopped), its data kept. */
  pause(): void { if (this.child?.pid) process.kill(this.child.pid, 'SIGSTOP'); }
  resume(): void { if (this.child?.pid) process.kill(this.child.pid, 'SIGCONT'); }

  async stop(): Promise<void> {
    const c = this.child;
    this.child = undefined;
    if (c && c.exitCode === null && c.signalCode === null) {
      try { process.kill(c.pid!, 'SIGCONT'); } catch { /* gone */ }
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      await Promise.race([exited, sleep(3000)]);
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    }
    if (this.dataDir) fs.rmSync(this.dataDir, { recursive: true, force: true });
    this.dataDir = '';
  }
}
