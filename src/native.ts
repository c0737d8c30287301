// native.ts: loads the addon and types what it exports. Policy lives in TS:
// arguments are checked by the callers (src/router, src/device, src/rules)
// before they reach C++. MOAT_ADDON overrides the path (sanitizer builds);
// setAddonForTests() hands in a fake for the unit tests of the TS wrappers.
import path from 'node:path';

/** A firewall rule as native code takes it (src/rules compiles text to this). */
export interface NativeRule {
  action: 0 | 1 | 2;        // 0 allow, 1 deny, 2 reject (a deny that answers: native/reject.h)
  src: number;              // network address, uint32 host order, already masked
  srcBits: number;          // 0..32; 0 or src == 0 matches any (uWSGI)
  dst: number;
  dstBits: number;
  proto: number;            // -1 any, else 0..255
  sport: Array<[number, number]>;  // inclusive ranges; empty = any
  dport: Array<[number, number]>;
  icmpType: number;         // -1 any
  states?: number;          // connection states matched, bits 1 << STATES index (new, established, related, invalid); 0/absent: any
}

/** Connection states in native/conntrack.h's order (a rule's states bit i is STATES[i]). */
export const STATES = ['new', 'established', 'related', 'invalid'] as const;
export type ConnState = (typeof STATES)[number];

/** The connection table's limits (flows) and timeouts (seconds), from the
 *  option table's tuntap-router-conntrack-* rows; setRules needs them when a
 *  rule names a state. */
export interface ConntrackOptions {
  ctMax: number; ctMaxPerVassal: number;
  ctTimeoutTcpSynSent: number; ctTimeoutTcpSynRecv: number; ctTimeoutTcpEstablished: number;
  ctTimeoutTcpFinWait: number; ctTimeoutTcpCloseWait: number; ctTimeoutTcpLastAck: number;
  ctTimeoutTcpTimeWait: number; ctTimeoutTcpClose: number;
  ctTimeoutUdp: number; ctTimeoutUdpStream: number; ctTimeoutIcmp: number; ctTimeoutGeneric: number;
}

/** The router's stateful judgement without the router (native/firewall_binding.cc), for tests. */
export interface NativeFirewall {
  setRules(inRules: NativeRule[], outRules: NativeRule[], conntrack?: ConntrackOptions | null): void;
  /** state -1 without a table; refused: '' or conntrack_full / conntrack_vassal. */
  judge(chain: 'in' | 'out', pkt: Buffer, nowNs: number, vassal: number): { state: number; verdict: 'allow' | 'deny' | 'reject'; refused: string };
  sweep(nowNs: number): void;
  readonly size: number;
}

/** Packets for Classifier.match: 7 uint32 per packet, in this order. */
export const KEY_FIELDS = ['src', 'dst', 'proto', 'hasL4', 'sport', 'dport', 'icmpType'] as const;

export interface NativeClassifier {
  /** First matching rule index per packet (-1: none matched, default allow). */
  match(keys: Uint32Array): Int32Array;
  readonly size: number;
}

export interface RouterOptions {
  tunName: string;          // created if missing, attached if it exists (IFF_TUN|IFF_NO_PI)
  netns: string;            // '' or a netns file (/run/netns/NAME) the router thread enters before creating the tun
  socketPath: string;       // unix stream socket; stale file replaced, live one refused
  socketMode: number;       // chmod of the socket file
  socketUid: number;        // chown; -1 keeps
  socketGid: number;
  maxFrame: number;         // largest payload accepted from a peer; above: protocol error, peer closed
  queueBytes: number;       // bound of each peer's outbound queue
  acceptRuleBlocks: boolean;// modifier2 = 1 from peers: refused and counted unless true
  // Every value is required: the option table has the defaults, native code none.
  offload: boolean;         // virtio-net offloads with moat devices that ask (docs/offload.md)
  handoff: boolean;         // take the tun of moat devices that hand it over (docs/one-hop.md)
  holdUs: number;           // spread traffic under a backlog: how long a peer's frames may wait to share a write; 0: never
  tunQueues: number;        // queues of the tun toward the router, steered by destination (docs/multiqueue.md); 1: one
  sndbuf: number;           // each peer socket's send buffer, bytes; 0: the kernel's (native/sndbuf.h)
  sndbufBusy: number;       // a streaming peer's send buffer, bytes; 0: never grown (native/sndbuf.h, SndbufGrowth)
  sndbufBudget: number;     // the most all growths add up to, bytes as the kernel keeps them
  busyPollUs: number;       // polling after moving a packet before sleeping (native/busy_poll.h); 0: never
  bindings: PeerBinding[];
  learn: LearnNetwork | null;  // where addresses no binding gives may be learned from; null: nowhere
}

/** A peer is named by its SO_PEERCRED uid and pid and by that process's
 *  start time (/proc/PID/stat field 22: a new process reusing the pid number
 *  has another; native/peer_identity.h). It matches a binding when its uid
 *  equals the binding's (-1: any) and, for a pid binding, its pid and start
 *  time both do. A matching peer may use only `addr` (a pid binding wins over
 *  a uid binding); an address named by any binding may be used only by a peer
 *  matching one of its bindings, so `{uid: -1, pid: -1}` is a pure
 *  reservation (nobody may use the address). `vassal` (the emperor's key for
 *  one vassal and the address its file names): the address the vassal's
 *  peer takes, learned or bound, stays reserved for that vassal after the
 *  peer disconnects, for as long as some binding names the vassal; with
 *  `addr` 0 the vassal learns its address (native/router.h, Binding). */
export interface PeerBinding {
  uid: number;              // -1 any, else 0..4294967294
  pid?: number;             // -1 or absent: any
  start?: number;           // the pid's start time in clock ticks (required with a pid)
  vassal?: number;          // 0 or absent: none
  addr: number;             // IPv4, uint32 host order (0 only with a vassal: learned)
}

/** Where addresses no binding gives may be learned from: net (uint32 host
 *  order) / bits; bits 0: anywhere. The network's own network and broadcast
 *  addresses, and the router's own addresses, are never learned. */
export interface LearnNetwork {
  net: number;
  bits: number;             // 0..32
}

/** Learning from anywhere (a router without an emperor). */
export const LEARN_ANYWHERE: LearnNetwork = { net: 0, bits: 0 };

export type RouterEvent =
  | { type: 'peer_up'; id: number; uid: number; gid: number; pid: number; start: number }  // start: the pid's start time (0: gone)
  | { type: 'peer_addr'; id: number; addr: number }
  | { type: 'peer_down'; id: number; addr: number; reason: string; stats: PeerStats }  // stats: the peer's counters as it closed (its last: what it did since the last stats() is there)
  | { type: 'refused'; id: number; reason: string; addr: number; count: number }  // spoof, collision, gateway, bad_source, unbound, outside_network, rule_block (rate-limited, count = drops since last event)
  | { type: 'protocol_error'; id: number; reason: string; message?: string }
  | { type: 'error'; message: string }                     // something failed; the router goes on
  | { type: 'fatal'; message: string }                     // the router cannot go on (its tun device is gone): stop it
  | { type: 'notice'; message: string };                   // a recovery worth a log line

export interface DropCounts { [reason: string]: number }

export interface PeerStats {
  id: number;
  addr: number;             // 0 until learned
  uid: number; gid: number; pid: number;
  tx: number; rx: number;   // packets (tx: router -> peer, queued for it; rx: peer -> router, whole frames)
  // Bytes written to / read from the peer's socket, 4-byte frame headers
  // included: what uWSGI's tuntap stats call "tx"/"rx" (plugins/tuntap/common.c).
  txBytes: number; rxBytes: number;
  dropped: number;          // sum of drops
  drops: DropCounts;
  queued: number;           // bytes waiting in the outbound queue
  offload: boolean;         // offloads negotiated with this peer (docs/offload.md)
  handoff: boolean;         // the router holds the peer's tun: its packets skip the socket (docs/one-hop.md)
  vnetRx: number; gsoRx: number;  // kModVnet frames from the peer; of them super-packets
  vnetTx: number; gsoTx: number;  // kModVnet frames to the peer; of them super-packets
  usoTx: number;                  // of them runs of UDP datagrams merged here (one write for the peer)
  sndbufGrown: number;            // bytes its send buffer grew by (sndbufBusy); 0: not grown
  // Rate limits (setLimits): packets that waited in the peer's shaper, each
  // direction; the bytes (IPv4 lengths) waiting there now. Drops for a
  // limit are drops.rate_limit.
  shapedIn: number; shapedOut: number;
  shapeQueuedIn: number; shapeQueuedOut: number;
  /** The most packets (segments) that waited at once in each direction's shaper. */
  shapePeakIn: number; shapePeakOut: number;
  // Accounting: IPv4 packets and bytes as the wire carries them (a
  // super-packet counts its segments, each with its headers). out: from the
  // peer, counted when written to the tun; in: toward the peer, counted when
  // accepted for it (queued or sent, where tx is; a shaped packet when it
  // leaves the shaper). Dropped packets are only in drops.
  ipPacketsIn: number; ipPacketsOut: number;
  ipBytesIn: number; ipBytesOut: number;
}

/** One direction's limit: a bytes bucket and a packets bucket. A rate of 0:
 *  that bucket is unlimited; a burst of 0: 10 ms of its rate (at least 8 KiB
 *  / one packet; a bigger packet passes on debt: the buckets are deficit buckets). Over the rate, packets wait in a queue of
 *  50 ms of the rate (an empty queue takes one packet), then are dropped
 *  as rate_limit. */
export interface RateLimit { bitsPerSec: number; packetsPerSec: number; burstBytes: number; burstPackets: number }
/** A peer's limits by its address. out: from the peer (the vassal) toward
 *  the tun; in: toward the peer. A missing direction is unlimited. */
export interface PeerLimit { addr: number /* IPv4 host order; 0 = the default for every peer without its own */; in?: RateLimit; out?: RateLimit }

/** One peer's own firewall rules (native/peer_rules.h), by its address: a
 *  packet toward it (in) or from it (out) passes only if the router's chain
 *  and these both accept it; no rule matching is allow. key: the caller's
 *  name for the set (counters follow it: carry[i] = index of the rule in the
 *  previous call's set with this key whose counter rule i inherits, or -1).
 *  Addresses and keys are unique in one call; addr is never 0. */
export interface PeerRuleSet { key: number; addr: number; in: NativeRule[]; out: NativeRule[]; carryIn?: Int32Array; carryOut?: Int32Array }

export interface RouterStats {
  rxPackets: number; rxBytes: number;   // read from the tun device
  tunReadCalls: number;                  // system calls that read them (several packets a call when batched: native/tun_batch.h)
  tunQueues: number; tunSteered: boolean; // the tun's queues read (tunQueues option), steered by destination (else by flow hash)
  txPackets: number; txBytes: number;   // written to the tun device
  fragmented: number;                    // packets (DF clear) split to fit a peer's frame limit
  fragNeeded: number;                    // ICMP fragmentation-needed answers sent (DF set, too big)
  gsoSplit: number;                      // super-packets split here for a plain peer
  gsoSegments: number;                   // the packets those splits made
  usoTx: number; usoSegments: number;    // UDP runs merged into one super-packet for offload peers; datagrams in them
  heldFrames: number; heldWrites: number; // frames held to share a write (holdUs); the writes that carried them
  sndbufGrownPeers: number; sndbufGrownBytes: number; sndbufGrows: number; // peers whose send buffer is grown now (sndbufBusy); what the growths add up to; growths so far
  busyPolls: number; busyPollCaught: number; busyPollNs: number; // polls before sleeping (busyPollUs); those an event ended; ns spent in them
  drops: DropCounts;
  conntrack: { entries: number; slots: number; slotBytes: number }; // tracked flows; the table's slots and their size (0 slots: no rule names a state)
  rejects: number; rejectsLimited: number; // answers sent to rejected packets; not sent, over 100 a second
  peers: PeerStats[];
  hits: { in: number[]; out: number[] }; // per-rule hit counters of the current rule set
  peerHits: Array<{ key: number; addr: number; in: number[]; out: number[] }>; // setPeerRules: each set's per-rule counters
}

export interface NativeRouter {
  start(onEvents: (events: RouterEvent[]) => void): void;
  stop(): void;
  /** Swaps both chains atomically between two batches. carry[i] = index in the
   *  old chain whose hit counter rule i inherits, or -1. */
  setRules(inRules: NativeRule[], outRules: NativeRule[], carryIn?: Int32Array, carryOut?: Int32Array, conntrack?: ConntrackOptions | null): void;
  /** The bindings and the learnable network, swapped in together between two batches. */
  setBindings(bindings: PeerBinding[], learn: LearnNetwork | null): void;
  /** Replaces the whole set of rate limits (one per address at most), between
   *  two batches; connected peers keep their connections and counters, their
   *  buckets take the new rates. */
  setLimits(limits: PeerLimit[]): void;
  /** Replaces every peer's own rules (PeerRuleSet), between two batches;
   *  connections stay, counters follow each set's key. */
  setPeerRules(sets: PeerRuleSet[]): void;
  /** The socket file or its directory was removed (recreate the directory
   *  first): binds a new listening socket at socketPath; connected peers stay.
   *  Throws with the reason (the old socket stays then). */
  relisten(): void;
  stats(): RouterStats;
}

export interface DeviceOptions {
  name: string;             // tun device to create
  netns: string;            // '' (current) or a netns file the device thread enters first
  socketPath: string;       // router socket; resolved relative to dirFd when given
  dirFd: number;            // -1, or a directory fd kept open to reconnect after pivot_root
  maxFrame: number;
  queueBytes: number;
  reconnectMinMs: number;
  reconnectMaxMs: number;
  offload: boolean;         // ask the router for offloads (docs/offload.md)
  handoff: boolean;         // hand the tun to a router that offers to take it (docs/one-hop.md)
  sndbuf: number;           // the connection's send buffer, bytes; 0: the kernel's (native/sndbuf.h)
  busyPollUs: number;       // polling after moving a packet before sleeping (native/busy_poll.h); 0: never
}

export type DeviceEvent =
  | { type: 'connected' }
  | { type: 'disconnected'; reason: string }
  | { type: 'connect_failed'; attempt: number; error: string; retryMs: number }
  | { type: 'error'; message: string };

export interface DeviceStats {
  connected: boolean;
  reconnects: number;
  toRouterPackets: number; toRouterBytes: number;
  fromRouterPackets: number; fromRouterBytes: number;
  drops: DropCounts;
  offload: boolean;                 // offloads negotiated with the current router
  handoff: boolean;                 // the current router holds the tun (docs/one-hop.md)
  handoffs: number;                 // tuns handed over (one per connection at most)
  vnetTx: number; gsoTx: number;    // kModVnet frames sent; of them super-packets
  vnetRx: number; gsoRx: number;    // kModVnet frames written to the tun; of them super-packets
  gsoSplit: number; gsoSegments: number;  // super-packets split for a plain router; segments made
  busyPolls: number; busyPollCaught: number; busyPollNs: number; // polls before sleeping (busyPollUs); those an event ended; ns spent in them
  usoTx: number; usoSegments: number;     // UDP runs merged into one super-packet; datagrams in them
}

export interface NativeDevice {
  start(onEvents: (events: DeviceEvent[]) => void): void;
  stop(): void;
  stats(): DeviceStats;
}

/** Where a pty server listens and what its sessions run (pty_socket.h, pty_process.h). */
export interface PtyCommonOptions {
  path: string;             // unix socket; stale file replaced, live one refused
  mode: number;             // chmod before listen()
  uid: number;              // chown of the socket; -1 keeps
  gid: number;
  command: string;          // '' = /bin/sh; with a space: /bin/sh -c COMMAND
  env: string[];            // the session's environment; [] = the server's
  cwd: string;              // '' = keep
  sessionUid: number;       // -1 keeps
  sessionGid: number;
  rows: number;             // initial window size
  cols: number;
}

export interface PtyServerOptions extends PtyCommonOptions {
  framed: boolean;          // forkpty-urouter (true) or forkpty-router (false)
  maxSessions: number;
  queueBytes: number;       // per direction per session
  hangupGraceMs: number;    // SIGHUP -> SIGKILL
}

export interface SharedPtyOptions extends PtyCommonOptions {
  maxViewers: number;
  queueBytes: number;       // a viewer this far behind is disconnected
  scrollbackBytes: number;  // recent output replayed to a new viewer
}

/** status: a wait status (exit code << 8, or the signal number), -1 unknown. */
export type PtyEvent =
  | { type: 'session_start'; session: number; pid: number; peerUid: number; peerPid: number }
  | { type: 'session_end'; session: number; pid: number; status: number; reason: string }
  | { type: 'refused'; peerUid: number; peerPid: number; reason: string }
  | { type: 'error'; message: string };

export interface PtyServerStats {
  sessionsStarted: number; sessionsEnded: number; refused: number; active: number;
  bytesIn: number; bytesOut: number; signals: number; resizes: number; ignoredFrames: number;
}

export interface NativePtyServer {
  start(onEvents: (events: PtyEvent[]) => void): void;
  /** Hangs up every session (waits up to hangupGraceMs), removes the socket. */
  stop(): void;
  stats(): PtyServerStats;
}

export interface NativeSharedPty {
  start(onEvents: (events: PtyEvent[]) => void): void;
  stop(): void;
  stats(): { commandPid: number };
}

export interface Addon {
  Router: new (opts: RouterOptions) => NativeRouter;
  Device: new (opts: DeviceOptions) => NativeDevice;
  Classifier: new (rules: NativeRule[]) => NativeClassifier;
  Firewall: new (inRules: NativeRule[], outRules: NativeRule[], conntrack?: ConntrackOptions | null) => NativeFirewall;
  /** native/reject.h's answer to a rejected packet, or null (none is sent). */
  rejectAnswer(pkt: Buffer): Buffer | null;
  /** The frame reassembler, exposed for tests: frames found at the front of buf. */
  parseFrames(buf: Buffer, maxPayload: number): { frames: Array<{ mod1: number; mod2: number; payload: Buffer }>; consumed: number; status: 'ok' | 'need_more' | 'oversize' };
  /** The IPv4 check a peer's packet goes through: null if fine, else the drop reason. */
  checkIpv4(pkt: Buffer): string | null;
  PtyServer: new (opts: PtyServerOptions) => NativePtyServer;
  SharedPty: new (opts: SharedPtyOptions) => NativeSharedPty;
  /** The terminal client; blocks until the session ends. code: 0 ended, 1 error, 128+N signal N. */
  ptyClient(opts: { path: string; framed: boolean }): { code: number; error: string };
  /** gso_split for tests: buf = 10-byte virtio_net_hdr (host order) + IPv4
   *  packet; scratchLen (default 65535) is the scratch buffer gso_split gets. */
  gsoSplit(buf: Buffer, scratchLen?: number): { segments: Buffer[]; error?: undefined } | { error: GsoErrorName; segments?: undefined };
  /** The USO merge (native/coalesce.h, uso_merge_frames) for tests: bufs =
   *  virtio_net_hdr + IPv4 packet each, frames of type mods[i] (default 3,
   *  kModVnet), merged as the router merges a held peer's queue; one frame
   *  payload per run or frame left as it was (maxLen: IPv4 bytes, 65000). */
  usoMerge(bufs: Buffer[], maxLen?: number, mods?: number[]): Buffer[];
  /** The hard limits native code enforces on option values (native/option_bounds.h),
   *  [lo, hi] inclusive, by the field names of RouterOptions and DeviceOptions:
   *  TypeScript's bounds must lie within them. Not defaults. */
  optionBounds: OptionBounds;
  /** Removes NAME inside the absolute directory PARENT without following a
   *  link anywhere (native/remove_tree.h), on a pool thread. PARENT is walked
   *  from / with O_NOFOLLOW; nothing there is fine (existed: false). A mount
   *  point inside is neither entered nor removed. Rejects with an Error
   *  naming the path (a limit reached, a mount point, a name that kept
   *  changing); what was not removed stays. maxDepth 0..1024, maxEntries >= 1. */
  removeTree(parent: string, name: string, limits: RemoveTreeLimits): Promise<{ existed: boolean; removed: number }>;
  /** While root: no_new_privs on every thread and an empty capability
   *  bounding set on the calling thread (native/harden.h says what holds
   *  where). Throws when it failed; allThreads false (with a note) when the
   *  kernel could not spread no_new_privs to the other threads. */
  hardenProcess(): { lastCap: number; allThreads: boolean; note: string };
}

export interface RemoveTreeLimits {
  maxDepth: number;         // directory levels below the one removed
  maxEntries: number;       // directory entries looked at, in all
}

export type OptionBounds = Readonly<Record<
  'maxFrame' | 'queueBytes' | 'busyPollUs' | 'holdUs' | 'tunQueues' | 'sndbuf' | 'reconnectMinMs' | 'reconnectMaxMs' | 'socketMode',
  readonly [number, number]>>;

export type GsoErrorName = 'bad_header' | 'bad_ip' | 'unsupported' | 'too_many';

let cached: Addon | undefined;

/** The one injection point for tests that run without root or a built addon
 *  (test/helpers/fake-addon.ts): every later addon() returns `fake`;
 *  undefined goes back to loading the real addon. Nothing else calls it. */
export function setAddonForTests(fake: Addon | undefined): void {
  cached = fake;
}

export function addon(): Addon {
  if (!cached) {
    const file = process.env.MOAT_ADDON ?? path.join(__dirname, '..', '..', 'build', 'Release', 'moat.node');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    cached = require(file) as Addon;
  }
  return cached;
}
