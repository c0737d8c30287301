// router-api.ts: the router as the components around it see it (the emperor,
// the lifecycle), and nothing more. Two classes implement it: the in-process
// Router (standalone, embedded, tests, the router demo) and, in `moat
// emperor`, RouterProcessHandle (router-process-handle.ts), the emperor's
// handle on the router running in its own unprivileged process, over IPC.
// A component contributes to the stats document and to /metrics only here
// (addStatsSection, addMetrics), wherever the router runs.
import type { RouterConfig } from '../config/types';
import type { LearnNetwork, PeerBinding, PeerLimit, PeerStats } from '../native';
import type { MetricsProvider } from '../metrics';
import type { VassalRules } from './peer-rules';

export type { MetricsProvider };

export type PeerEvent = 'peer-up' | 'peer-down' | 'peer-address';

export interface RouterApi {
  /** The vassals' socket (their default tuntap-device socket), the gateway field, the tun device and its netns (its hooks run there). */
  readonly config: Pick<RouterConfig, 'socket' | 'gateway' | 'netns' | 'device'>;
  readonly running: boolean;
  /** The pid of the router's own process (RouterProcessHandle); undefined when it runs in this one. */
  readonly pid?: number;
  /** Resolves once the data path, its socket and the stats and metrics servers are up. */
  start(): Promise<void>;
  /** Stops it and removes its socket files. Safe twice. */
  stop(): Promise<void>;
  /** Recompiles the rules and swaps them in; a bad rule keeps the old ones (logged). */
  reloadRules(why: string): void;
  /** 'peer-up' {id, uid, gid, pid}, 'peer-down' {id, addr, reason, stats} (stats:
   *  the peer's last counters, PeerStats), 'peer-address' {id, address};
   *  'fatal' (reason): the router cannot go on (emitted once). */
  on(event: PeerEvent | 'fatal', listener: (e: any) => void): unknown;
  off(event: PeerEvent | 'fatal', listener: (e: any) => void): unknown;
  /** A component's own peer bindings (the emperor's: each vassal's address to
   *  its runtime, or reserved for it) and, with learn, the network peers may
   *  learn addresses from (null: none; undefined: not restricted by this owner). */
  setBindings(owner: string, list: PeerBinding[], learn?: LearnNetwork | null): void;
  /** A component's traffic limits by peer address (the emperor's: each
   *  vassal's, address 0 its default), over the config's peer-limit lines;
   *  applied without disconnecting anyone. */
  setLimits(owner: string, list: PeerLimit[]): void;
  /** A component's vassals' own firewall rules by vassal address (the
   *  emperor's: vassal-firewall-*), after the router's: a packet passes only
   *  if both accept it. Applied without disconnecting anyone; their hits are
   *  in the stats document (moat.vassal_rules) and /metrics. */
  setPeerRules(owner: string, list: VassalRules[]): void;
  /** A component's section of the stats document (doc[key]); the value may be a promise. */
  addStatsSection(key: string, section: () => unknown): void;
  removeStatsSection(key: string): void;
  /** Metrics served beside the router's on `metrics`. */
  addMetrics(provider: MetricsProvider): void;
  removeMetrics(provider: MetricsProvider): void;
  /** The connected peers (the vassal rows' traffic). */
  stats(): { peers: PeerStats[] };
}

/** A stats section's value; a failing section reads {error} (both implementations serve it so). */
export async function sectionValue(section: () => unknown): Promise<unknown> {
  try { return await section(); } catch (err) { return { error: (err as Error).message }; }
}
