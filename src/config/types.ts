// types.ts: what every config source (ini, json, yaml, xml, flags) becomes,
// and the typed configs the router and device read from it.
import type { ConntrackOptions, PeerLimit } from '../native';

/** Where a value came from, for error messages: file:line, or a flag. */
export interface Source {
  file: string;       // path, or '<flags>' for the command line
  line?: number;      // 1-based, where the format gives one
}

/** One option occurrence. Order is file order; repeated keys all count. */
export interface Option {
  key: string;        // uWSGI spelling, lower case, '_' read as '-'
  value: string;      // verbatim ('true' for a bare flag)
  source: Source;
}

export type OptionList = Option[];

export class ConfigError extends Error {
  constructor(message: string, readonly source?: Source) {
    super(source ? `${source.file}${source.line ? ':' + source.line : ''}: ${message}` : message);
  }
}

/** A firewall rule written as a config option (tuntap-router-firewall-in/out). */
export interface OptionRule {
  chain: 'in' | 'out';
  text: string;       // the value, verbatim
  index: number;      // 1-based among firewall options (trace prints option:N)
  source: Source;
}

export interface RouterConfig {
  device: string;               // tun device name (tuntap-router field 1)
  socket: string;               // unix socket path (field 2)
  stats?: string;               // stats address: ':' means TCP host:port, else a unix path (field 3 or tuntap-router-stats)
  gateway?: string;             // field 4, accepted for compatibility
  socketMode: number;           // moat: tuntap-router-socket-mode (octal, default 0660)
  socketOwner?: { uid: number; gid: number };  // moat: tuntap-router-socket-owner = user[:group]
  maxFrame: number;             // moat: tuntap-router-max-frame (options-table.ts has every default)
  queueBytes: number;           // moat: tuntap-router-queue-bytes
  offload: boolean;             // moat: tuntap-router-offload (docs/offload.md)
  handoff: boolean;             // moat: tuntap-router-handoff (docs/one-hop.md)
  holdMs: number;               // moat: tuntap-router-hold (docs/scale.md)
  tunQueues: number;            // moat: tuntap-router-queues (docs/multiqueue.md)
  busyPollUs: number;           // moat: tuntap-router-busy-poll (docs/busy-poll.md)
  sndbuf: number;               // moat: tuntap-router-sndbuf (0: the kernel's default)
  sndbufBusy: number;           // moat: tuntap-router-sndbuf-busy (a streaming peer's buffer; 0: never grown)
  sndbufBudget: number;         // moat: tuntap-router-sndbuf-budget (all growths together)
  conntrack: ConntrackOptions;  // moat: tuntap-router-conntrack-* (used while a rule names a state)
  rules: OptionRule[];          // firewall options, in file order
  ruleFiles: string[];          // tuntap-router-firewall-file (file or directory of *.rules), in order
  bindings: Array<{ uid: number; addr: string }>; // moat: tuntap-router-bind = uid|user addr
  peerLimits: PeerLimit[];      // moat: tuntap-router-peer-limit, merged by address (addr 0: the default)
  useCredentials: boolean;      // tuntap-use-credentials (accepted; SO_PEERCRED is always read)
  metrics?: string;             // moat: metrics = host:port
  netns?: string;               // moat: tuntap-router-netns = /run/netns/NAME (create the device there)
  warnings: string[];           // ignored uWSGI options etc., each naming the option and its source
}

export interface DeviceConfig {
  device: string;               // tuntap-device field 1
  socket: string;               // field 2; absent: moat connects to /tmp/tuntap.socket (uWSGI would only create the device)
  maxFrame: number;             // moat: tuntap-device-max-frame
  queueBytes: number;           // moat: tuntap-device-queue-bytes
  offload: boolean;             // moat: tuntap-device-offload (docs/offload.md)
  handoff: boolean;             // moat: tuntap-device-handoff (docs/one-hop.md)
  sndbuf: number;               // moat: tuntap-device-sndbuf (0: the kernel's default)
  busyPollUs: number;           // moat: tuntap-device-busy-poll (docs/busy-poll.md)
  reconnectMinMs: number;       // moat: tuntap-device-reconnect-min 
  reconnectMaxMs: number;       // moat: tuntap-device-reconnect-max 
  netns?: string;               // moat: tuntap-device-netns
  warnings: string[];           // as RouterConfig.warnings (added by h-config)
}
