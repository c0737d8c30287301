// fleet-address.ts: this host's address on the hosts' network when
// fleet-address is not set: the source address the kernel would use toward
// the first etcd endpoint (`ip route get`), which on the usual layout (etcd
// on the hosts' network) is that network's address of this host.
import { execFileSync } from 'node:child_process';

export function defaultFleetAddress(endpoints: readonly string[]): string | undefined {
  for (const e of endpoints) {
    let host: string;
    try { host = new URL(e).hostname.replace(/^\[|\]$/g, ''); } catch { continue; }
    const ip = /^\d{1,3}(\.\d{1,3}){3}$/.test(host) ? host : resolve(host);
    if (!ip) continue;
    try {
      const out = execFileSync('ip', ['-4', '-o', 'route', 'get', ip], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
      const src = /\bsrc (\d{1,3}(?:\.\d{1,3}){3})\b/.exec(out)?.[1];
      if (src && !src.startsWith('127.')) return src;
    } catch { /* no route: try the next endpoint */ }
  }
  return undefined;
}

function resolve(name: string): string | undefined {
  try {
    const out = execFileSync('getent', ['ahostsv4', name], { encoding: 'utf8', timeout: 5000, stdio: ['ignore', 'pipe', 'ignore'] });
    return /^(\d{1,3}(?:\.\d{1,3}){3})\s/m.exec(out)?.[1];
  } catch { return undefined; }
}
