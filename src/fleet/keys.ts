// keys.ts: the fleet's etcd keys (layout in types.ts) and their values,
// shared by the store and `moat fleet status`.
import type { FleetSnapshot, HostRecord, PlacementRecord } from './types';

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

/** Applies one key (put, or deleted) to snap; its kind if it is one of the
 *  fleet's keys. onBad hears of a host or placement value it cannot read
 *  (such a key counts as absent). */
export function applyFleetKey(prefix: string, snap: FleetSnapshot, key: string, value: string, lease: string,
  deleted: boolean, onBad: (key: string) => void): Kind | undefined {
  const k = parseFleetKey(prefix, key);
  if (!k) return undefined;
  switch (k.kind) {
    case 'vassals': if (deleted) snap.vassals.delete(k.name); else snap.vassals.set(k.name, value); break;
    case 'rules': if (deleted) snap.rules.delete(k.name); else snap.rules.set(k.name, value); break;
    case 'addresses': if (deleted) snap.addresses.delete(k.name); else snap.addresses.set(k.name, value); break;
    case 'hosts': {
      const h = deleted ? undefined : parseHostValue(value, lease);
      if (!deleted && !h) onBad(key);
      if (h) snap.hosts.set(k.name, h); else snap.hosts.delete(k.name);
      break;
    }
    case 'placement': {
      const p = deleted ? undefined : parsePlacementValue(value);
      if (!deleted && !p) onBad(key);
      if (p) snap.placements.set(k.name, p); else snap.placements.delete(k.name);
      break;
    }
  }
  return k.kind;
}

export function emptySnapshot(): FleetSnapshot {
  return { revision: '0', vassals: new Map(), rules: new Map(), hosts: new Map(), placements: new Map(), addresses: new Map() };
}
