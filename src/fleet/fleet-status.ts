// fleet-status.ts: what `moat fleet status` shows, read straight from etcd
// (one range read of the prefix, one lease lookup per host): the hosts with
// their lease, each vassal with its host, address and state, the rule files.
import { EtcdConnection } from './etcd-client';
import { applyFleetKey, emptySnapshot } from './keys';
import type { FleetEndpointOptions } from './types';

export interface FleetHostStatus {
  name: string;
  address: string | null;
  since: string;
  lease: string;
  ttl: number | 'expired' | 'none';     // seconds left; 'none': a key without a lease
}

export interface FleetVassalStatus {
  name: string;
  host: string | null;
  address: string | null;
  state: string;                         // the placement's state, 'placed' before a report, or 'unplaced'
  keyMissing?: true;                     // placed, but its vassal key is gone (the host is stopping it)
}

export interface FleetStatus {
  prefix: string;
  revision: string;
  hosts: FleetHostStatus[];
  vassals: FleetVassalStatus[];
  rules: string[];
}

export async function readFleetStatus(opts: FleetEndpointOptions): Promise<FleetStatus> {
  const etcd = new EtcdConnection(opts);
  try {
    const res = await etcd.client.getAll().prefix(opts.prefix + '/').exec();
    const snap = emptySnapshot();
    for (const kv of res.kvs) {
      applyFleetKey(opts.prefix, snap, kv.key.toString('utf8'), kv.value.toString('utf8'), kv.lease, false, () => undefined);
    }
    const hosts = await Promise.all([...snap.hosts].map(async ([name, h]): Promise<FleetHostStatus> => {
      let ttl: FleetHostStatus['ttl'] = 'none';
      if (h.lease !== '0') {
        const left = Number((await etcd.client.leaseClient.leaseTimeToLive({ ID: h.lease })).TTL);
        ttl = left > 0 ? left : 'expired';
      }
      return { name, address: h.address ?? null, since: h.since, lease: h.lease, ttl };
    }));
    const claimed = new Map<string, string>();   // vassal -> address held in addresses/
    for (const [addr, vassal] of [...snap.addresses].sort(([a], [b]) => a.localeCompare(b))) if (!claimed.has(vassal)) claimed.set(vassal, addr);
    const names = new Set([...snap.vassals.keys(), ...snap.placements.keys()]);
    const vassals = [...names].sort().map((name): FleetVassalStatus => {
      const p = snap.placements.get(name);
      return {
        name,
        host: p?.host ?? null,
        address: p?.address ?? claimed.get(name) ?? null,
        state: p ? p.state ?? 'placed' : 'unplaced',
        ...(snap.vassals.has(name) ? {} : { keyMissing: true as const }),
      };
    });
    return {
      prefix: opts.prefix, revision: res.header.revision,
      hosts: hosts.sort((a, b) => a.name.localeCompare(b.name)), vassals, rules: [...snap.rules.keys()].sort(),
    };
  } finally {
    etcd.close();
  }
}

/** Tables for people, like `moat emperor --status`. */
export function formatFleetStatus(s: FleetStatus): string {
  const out = [`fleet ${s.prefix} (etcd revision ${s.revision}): ${s.hosts.length} hosts, ${s.vassals.length} vassals, ${s.rules.length} rule files`, ''];
  out.push(...table(['HOST', 'ADDRESS', 'LEASE LEFT', 'SINCE'],
    s.hosts.map((h) => [h.name, h.address ?? '-', typeof h.ttl === 'number' ? `${h.ttl} s` : h.ttl, h.since || '-'])));
  out.push('');
  out.push(...table(['VASSAL', 'HOST', 'ADDRESS', 'STATE'],
    s.vassals.map((v) => [v.name, v.host ?? '-', v.address ?? '-', v.state + (v.keyMissing ? ' (vassal key removed)' : '')])));
  out.push('', `rules: ${s.rules.length ? s.rules.join(' ') : '(none)'}`);
  return out.join('\n') + '\n';
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd();
  return [line(head), ...rows.map(line)];
}
