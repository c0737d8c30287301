// fleet-config.ts: the fleet options of an emperor whose `emperor` is an
// etcd URL (fleet-host, fleet-address, fleet-lease-ttl, fleet-dir, the etcd
// TLS and user options), checked once here. The lease's timing follows its
// TTL: a renewal every fifth of it (at least 0.5 s) and a host stops its
// vassals when TTL minus a margin (a fifth, at least 1 s) passed since the
// last renewal it sent that etcd answered; docs/fleet.md explains why.
import fs from 'node:fs';
import path from 'node:path';
import type { CheckedOptions } from '../config/schema';
import { ConfigError, Option } from '../config/types';
import { fleetHostName, ipv4 } from '../vassal/spec';
import { parseEtcdUrl } from './etcd-url';
import type { FleetEndpointOptions } from './types';

export interface FleetConfig extends FleetEndpointOptions {
  url: string;                 // the emperor option's value, for logs
  host: string;
  hostAddress?: string;
  ttlSec: number;
  renewMs: number;
  marginMs: number;
  dir: string;                 // fleet-dir/HOST: vassals/ (the emperor's directory) and rules/ (the router's)
}

export const isEtcdUrl = (v: string): boolean => /^etcds?:\/\//.test(v.trim());

/** The lease's timing for a TTL (seconds). */
export function leaseTiming(ttlSec: number): { renewMs: number; marginMs: number } {
  return { renewMs: Math.max(500, Math.round(ttlSec * 200)), marginMs: Math.max(1000, Math.round(ttlSec * 200)) };
}

export function fleetConfig(opts: CheckedOptions, emperor: Option): FleetConfig {
  let where: { endpoints: string[]; prefix: string };
  try { where = parseEtcdUrl(emperor.value.trim()); } catch (err) { throw new ConfigError(`emperor: ${(err as Error).message}`, emperor.source); }
  const need = (key: string): Option => {
    const o = opts.last(key);
    if (!o || o.value.trim() === '') throw new ConfigError(`${key}: needed with emperor = ${emperor.value.trim()} (this host's name in the fleet)`, emperor.source);
    return o;
  };
  const host = fleetHostName(need('fleet-host'));
  const a = opts.last('fleet-address');
  const hostAddress = a ? ipv4(a) : undefined;
  const ttlSec = opts.int('fleet-lease-ttl');
  const root = opts.string('fleet-dir')!.trim();
  if (!root.startsWith('/')) throw new ConfigError(`fleet-dir: '${root}' is not an absolute path`, opts.last('fleet-dir')?.source);
  const file = (key: string): string | undefined => {
    const o = opts.last(key);
    if (!o) return undefined;
    const v = o.value.trim();
    if (!fs.existsSync(v)) throw new ConfigError(`${key}: ${v}: no such file`, o.source);
    return v;
  };
  const tls = { ca: file('fleet-etcd-ca'), cert: file('fleet-etcd-cert'), key: file('fleet-etcd-key') };
  if (!!tls.cert !== !!tls.key) throw new ConfigError('fleet-etcd-cert and fleet-etcd-key go together', (opts.last('fleet-etcd-cert') ?? opts.last('fleet-etcd-key'))?.source);
  const user = opts.last('fleet-etcd-user')?.value.trim();
  const pwFile = file('fleet-etcd-password-file');
  if (!!user !== !!pwFile) throw new ConfigError('fleet-etcd-user and fleet-etcd-password-file go together', (opts.last('fleet-etcd-user') ?? opts.last('fleet-etcd-password-file'))?.source);
  const auth = user && pwFile ? { username: user, password: fs.readFileSync(pwFile, 'utf8').replace(/\r?\n$/, '') } : undefined;
  return {
    url: emperor.value.trim(), ...where, host, ...(hostAddress ? { hostAddress } : {}), ttlSec, ...leaseTiming(ttlSec),
    dir: path.join(root, host),
    ...(tls.ca || tls.cert ? { tls } : {}), ...(auth ? { auth } : {}),
  };
}
