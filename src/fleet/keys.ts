// keys.ts: the fleet's etcd keys (layout in types.ts) and their values,
// shared by the store and `moat fleet status`.
import type { HostRecord, PlacementRecord } from './types';

export const KINDS = ['vassals', 'rules', 'hosts', 'placement', 'addresses'] as const;
export type Kind = typeof KINDS[number];

export function fleetKey(prefix: string, kind: Kind, name: string): string {
  return `${prefix}/${kind}/${name}`;
}

/** PREFIX/KIND/NAME -> {kind, name}; undefined for keys outside the layout
 *  (unknown kinds, names with a slash: a name is the key's last part). */
export function parseFleetKey(prefix: string, key: string): { kind: Kind; name: string } | undefined {
  if (!key.startsWith(prefix + '/')) return undefined;
  const rest = key.slice(prefix.length + 1);
  const slash = rest.indexOf('/');
  if (slash <= 0) return undefined;
  const kind = rest.slice(0, slash) as Kind;
  const name = rest.slice(slash + 1);
  if (!KINDS.includes(kind) || name === '' || name.includes('/')) return undefined;
  return { kind, name };
}

/** A name usable as a key's last part (a fleet-host, a vassal file name). */
export function checkName(what: string, name: string): void {
  if (name === '' || name.includes('/') || name === '.' || name === '..') {
    throw new Error(`${what} ${JSON.stringify(name)} cannot be an etcd key's last part (empty, '.', '..' or with a '/')`);
  }
}

export function parseHostValue(value: string, lease: string): HostRecord | undefined {
  try {
    const v = JSON.parse(value) as { address?: unknown; since?: unknown };
    if (typeof v !== 'object' || v === null) return undefined;
    return {
      ...(typeof v.address === 'string' ? { address: v.address } : {}),
      since: typeof v.since === 'string' ? v.since : '',
      lease,
    };
  } catch {
    return undefined;
  }
}

export function parsePlacementValue(value: string): PlacementRecord | undefined {
  try {
    const v = JSON.parse(value) as { host?: unknown; address?: unknown; state?: unknown };
    if (typeof v !== 'object' || v === null || typeof v.host !== 'string') return undefined;
    return {
      host: v.host,
      ...(typeof v.address === 'string' ? { address: v.address } : {}),
      ...(typeof v.state === 'string' ? { state: v.state } : {}),
    };
  } catch {
    return undefined;
  }
}

export function placementValue(p: PlacementRecord): string {
  return JSON.stringify({ host: p.host, ...(p.address ? { address: p.address } : {}), ...(p.state ? { state: p.state } : {}) });
}
