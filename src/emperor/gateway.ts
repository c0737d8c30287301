// gateway.ts: what the emperor needs from the router, and nothing more. The
// in-process Router implements it (embedding, tests, `moat demo`); in
// `moat emperor` the router runs in its own unprivileged process and
// RouterProcess (src/router/router-process.ts) implements it over IPC.
import type client from 'prom-client';
import type { RouterConfig } from '../config/types';
import type { PeerBinding, PeerStats } from '../native';

export interface EmperorGateway {
  /** The vassals' socket (their default tuntap-device socket) and the gateway field. */
  readonly config: Pick<RouterConfig, 'socket' | 'gateway'>;
  /** Where the emperor's own metrics (cron) go; served on the router's `metrics`. */
  readonly registry: client.Registry;
  readonly running: boolean;
  /** 'peer-up' {id, uid, gid, pid}, 'peer-down' {id}, 'peer-address' {id, address}. */
  on(event: 'peer-up' | 'peer-down' | 'peer-address', listener: (e: any) => void): unknown;
  off(event: 'peer-up' | 'peer-down' | 'peer-address', listener: (e: any) => void): unknown;
  /** The emperor's bindings (each vassal's address to its runtime's pid). */
  setPluginBindings(owner: string, list: PeerBinding[]): void;
  /** The emperor's section of the stats document. */
  addStatsSection(key: string, section: () => unknown): void;
  removeStatsSection(key: string): void;
  /** The connected peers (the vassal rows' traffic). */
  stats(): { peers: PeerStats[] };
}
