// etcd-client.ts: an Etcd3 client for the fleet, with a deadline on every
// call and a count of the requests it makes.
//
// etcd3 1.1.2 puts no deadline on anything by itself: a call to a stopped
// (SIGSTOPped) etcd waits forever. Its `defaultCallOptions` factory runs for
// every request it sends (each unary attempt, each stream opened, the auth
// token exchange), so it sets the grpc deadline and counts the request there.
// Watch streams get no deadline (they are meant to stay open).
// Its default fault handling (3 retries, then a circuit breaker that fails
// every call for 5 s after 3 failures) would stretch a call past its deadline
// and keep failing after etcd is back: the fleet's own loops retry, so both
// are off. (A broken watch stream is opened again by the fleet store itself:
// etcd3's own retry waits up to 30 s.)
import fs from 'node:fs';
import { Etcd3, IOptions } from 'etcd3';
import { noop } from 'cockatiel';
import { parseEtcdUrl } from './etcd-url';
import type { FleetEndpointOptions } from './types';

export const DEFAULT_CALL_TIMEOUT_MS = 2000;

export class EtcdConnection {
  readonly client: Etcd3;
  readonly callTimeoutMs: number;
  /** Requests sent, by etcd method (range, txn, leaseKeepAlive, watch, ...). */
  readonly requests = new Map<string, number>();

  constructor(opts: FleetEndpointOptions) {
    this.callTimeoutMs = opts.callTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const options: IOptions = {
      hosts: opts.endpoints,
      dialTimeout: this.callTimeoutMs,
      defaultCallOptions: (ctx) => {
        this.requests.set(ctx.method, (this.requests.get(ctx.method) ?? 0) + 1);
        return ctx.isStream && ctx.method === 'watch' ? {} : { deadline: Date.now() + this.callTimeoutMs };
      },
      faultHandling: {
        host: () => noop,
        global: noop,
      },
      grpcOptions: {
        // notice a dead connection under an open watch (etcd refuses pings more often than every 5 s)
        'grpc.keepalive_time_ms': 10000,
        'grpc.keepalive_timeout_ms': 5000,
      },
    };
    if (opts.tls && (opts.tls.ca || opts.tls.cert || opts.tls.key)) {
      if (!opts.tls.cert !== !opts.tls.key) throw new Error('etcd TLS: give both the client certificate and its key, or neither');
      options.credentials = {
        rootCertificate: opts.tls.ca ? readPem(opts.tls.ca, 'CA') : (undefined as unknown as Buffer),   // undefined: the system's CAs
        certChain: opts.tls.cert ? readPem(opts.tls.cert, 'client certificate') : undefined,
        privateKey: opts.tls.key ? readPem(opts.tls.key, 'client key') : undefined,
      };
      if (!opts.endpoints.every((e) => e.startsWith('https://'))) throw new Error('etcd TLS files given for an etcd:// URL: use etcds://');
    }
    if (opts.auth) options.auth = { username: opts.auth.username, password: opts.auth.password };
    this.client = new Etcd3(options);
  }

  /** A deadline for one call that should wait less than callTimeoutMs. */
  deadline(ms = this.callTimeoutMs): { deadline: number } {
    return { deadline: Date.now() + ms };
  }

  totalRequests(): number {
    let n = 0;
    for (const v of this.requests.values()) n += v;
    return n;
  }

  close(): void {
    this.client.close();
  }
}

function readPem(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new Error(`etcd TLS ${what} ${file}: ${(err as Error).message}`);
  }
}

/** The password from --etcd-password-file / fleet-etcd-password-file (first line). */
export function readPasswordFile(file: string): string {
  const text = fs.readFileSync(file, 'utf8');
  return text.split(/\r?\n/)[0];
}

/** What the etcd options say (the CLI's --etcd-* flags, the emperor's
 *  fleet options): the URL with its TLS files and user. */
export interface EtcdFlags {
  url: string;
  ca?: string; cert?: string; key?: string;
  user?: string; passwordFile?: string;
  callTimeoutMs?: number;
}

export function endpointOptions(f: EtcdFlags): FleetEndpointOptions {
  const { endpoints, prefix } = parseEtcdUrl(f.url);
  const opts: FleetEndpointOptions = { endpoints, prefix };
  if (f.ca || f.cert || f.key) {
    if (!endpoints[0].startsWith('https://')) throw new Error('etcd TLS files given for an etcd:// URL: use etcds://');
    opts.tls = { ca: f.ca, cert: f.cert, key: f.key };
  }
  if (!f.user !== !f.passwordFile) throw new Error('etcd auth needs both the user and the password file');
  if (f.user && f.passwordFile) {
    let password: string;
    try {
      password = readPasswordFile(f.passwordFile);
    } catch (err) {
      throw new Error(`etcd password file ${f.passwordFile}: ${(err as Error).message}`);
    }
    opts.auth = { username: f.user, password };
  }
  if (f.callTimeoutMs !== undefined) opts.callTimeoutMs = f.callTimeoutMs;
  return opts;
}
