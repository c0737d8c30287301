// types.ts: what the fleet's parts agree on. The etcd layout under PREFIX
// (emperor = etcd://HOST:PORT[,HOST:PORT...]/PREFIX):
//   PREFIX/vassals/NAME.ext   a vassal file (written by operators; ext picks the format)
//   PREFIX/rules/NAME.rules   a rule file of every host's router (name order)
//   PREFIX/hosts/HOST         {"address","since"}: a live host, under its lease
//   PREFIX/placement/NAME     {"host","address"?,"state"?}: where a vassal runs, under that host's lease
//   PREFIX/addresses/A.B.C.D  NAME: the vassal holding the address (no lease:
//                             it stays while the vassal moves; freed when its key is removed)
import type { Logger } from '../log';

export interface FleetEndpointOptions {
  endpoints: string[];         // http://HOST:PORT or https://HOST:PORT
  prefix: string;              // '/moat' (leading slash, no trailing one)
  tls?: { ca?: string; cert?: string; key?: string };   // PEM file paths (https endpoints)
  auth?: { username: string; password: string };
  callTimeoutMs?: number;      // deadline of each etcd call (default 2000): an outage never hangs a call
}

export interface FleetStoreOptions extends FleetEndpointOptions {
  host: string;                // fleet-host: unique among live hosts
  hostAddress?: string;        // fleet-address: where the other hosts route this host's vassals
  ttlSec: number;              // fleet-lease-ttl
  renewMs: number;             // keepalive period
  marginMs: number;            // fenced once ttl - margin passed since the last renewal sent
  log: Logger;
}

export interface HostRecord { address?: string; since: string; lease: string }
export interface PlacementRecord { host: string; address?: string; state?: string }

/** The fleet as this host last read it (a watch keeps it current). Vassal
 *  and rule maps are keyed by the key's last part (the file name). */
export interface FleetSnapshot {
  revision: string;
  vassals: Map<string, string>;
  rules: Map<string, string>;
  hosts: Map<string, HostRecord>;
  placements: Map<string, PlacementRecord>;
  addresses: Map<string, string>;     // address -> vassal (file name)
}

export type ClaimResult =
  | { ok: true }
  | { ok: false; reason: 'placed'; host: string }
  | { ok: false; reason: 'address'; holder: string }
  | { ok: false; reason: 'fenced' | 'error'; message: string };
