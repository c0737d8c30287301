// options-table.ts: the one table of every option moat knows. Each row says
// what the option is (kind, default, bounds or allowed values), which
// component consumes it, and how it travels: `native` names the field of the
// addon's options object it becomes (its bounds must fit native/
// option_bounds.h: a unit test compares them), `runtime` the line of the
// vassal runtime's protocol that carries it from a vassal file (docs/
// runtime-protocol.md). Values are parsed, defaulted and bounded once, from
// these rows, by checkOptions() (schema.ts); nothing downstream has defaults
// of its own. docs/options.md and the README's table are generated from it.
import type { Consumer, OptionKind, OptionSpec, OptionStatus } from './schema';

type More = Partial<Omit<OptionSpec, 'name' | 'kind' | 'status' | 'description' | 'origin' | 'consumer'>>;

/** A uWSGI option, with what moat does with it (status). */
const u = (name: string, kind: OptionKind, status: OptionStatus, consumer: Consumer, description: string, more: More = {}): OptionSpec =>
  ({ name, kind, status, consumer, description, origin: 'uwsgi', ...more });
/** One of moat's own options. */
const m = (name: string, kind: OptionKind, consumer: Consumer, description: string, more: More = {}): OptionSpec =>
  ({ name, kind, status: 'implemented', consumer, description, origin: 'moat', ...more });

const MAX_FRAME = { min: 576, max: 65535, default: 8188, unit: 'bytes' };   // 576: every IPv4 host's minimum; 65535: the header's 16-bit size
const QUEUE_BYTES = { min: 580, max: 1 << 30, default: 262144, unit: 'bytes' }; // at least one frame (max-frame + 4, checked against it too)
const BUSY_POLL = { min: 0, max: 1000, default: 100, unit: 'µs' };           // docs/busy-poll.md
const SNDBUF_MAX = 1 << 26;
const CT_MAX = { min: 1, max: 1 << 24, unit: 'flows' };                   // native/option_bounds.h: 32 bytes a slot, 1.5 slots a flow
/** A connection-table timeout row: nftables' default, in seconds. */
const ctTimeout = (what: string, native: string, def: number, about: string): OptionSpec =>
  m(`tuntap-router-conntrack-timeout-${what}`, 'int', 'router', `seconds a tracked flow ${about} is kept without a packet (nftables' default)`,
    { min: 1, max: 30 * 86400, default: def, unit: 's', native });

export const OPTIONS: readonly OptionSpec[] = [
  // tuntap router (uWSGI's tuntap plugin)
  u('tuntap-router', 'string', 'implemented', 'router', 'run the router: `<device> <socket> [stats] [gateway]`',
    { note: 'one router per moat process; the gateway field is accepted and has no effect (see tuntap-router-route)' }),
  u('tuntap-router-firewall-in', 'repeatable', 'implemented', 'router', 'a rule for packets from the tun device toward a peer: `<allow|deny> [<src>[/<bits>] <dst>[/<bits>]]`',
    { note: 'a malformed rule is an error (uWSGI skips it, or reads a typo as allow)' }),
  u('tuntap-router-firewall-out', 'repeatable', 'implemented', 'router', 'a rule for packets from a peer toward the tun device (same syntax as -in)',
    { note: 'as tuntap-router-firewall-in' }),
  u('tuntap-router-stats', 'string', 'implemented', 'router', 'stats server: `host:port` (TCP) or a unix socket path; one JSON document per connection'),
  u('tuntap-use-credentials', 'bool', 'accepted', 'router', 'check peer credentials',
    { note: 'moat always reads SO_PEERCRED; a symbol name (uWSGI\'s address-by-credentials hook) is ignored with a warning' }),
  u('tuntap-router-route', 'repeatable', 'refused', 'router', 'forward matching peer packets as UDP datagrams to a gateway: `<src/mask> <dst/mask> <addr:port>`',
    { note: 'it would send peer packets past the firewall to a remote address; routing is the host kernel\'s job behind the tun device' }),
  u('tuntap-device-rule', 'repeatable', 'refused', 'device', 'a rule a device sends to its router (`<in|out> <src/mask> <dst/mask> <action> [target]`)',
    { note: 'a peer may not set its own firewall rules; moat routers drop such blocks' }),
  // tuntap device (the vassal side)
  u('tuntap-device', 'string', 'implemented', 'device', 'a tun device in the vassal, pumped to the router: `<device>[ <socket>]`',
    { note: 'one per vassal; reconnects when the router goes away; without a socket uWSGI only creates the device, moat connects to /tmp/tuntap.socket (in a vassal: to the emperor\'s router)' }),
  // moat's own router and device options
  m('tuntap-router-firewall-file', 'repeatable', 'router', 'a rule file, or a directory whose *.rules files are read in name order'),
  m('tuntap-router-socket-mode', 'string', 'router', 'permissions of the router socket (octal)', { default: '0660' }),
  m('tuntap-router-socket-owner', 'string', 'router', 'owner of the router socket: `user[:group]` (names or numbers)'),
  m('tuntap-router-max-frame', 'int', 'router', 'largest frame payload accepted from a peer (above 8188 uWSGI peers cannot follow)', { ...MAX_FRAME, native: 'maxFrame' }),
  m('tuntap-router-offload', 'bool', 'router', 'virtio-net offloads (TSO/USO, 64 KB frames) with moat devices that ask for them; uWSGI peers keep plain frames (docs/offload.md)', { default: true, native: 'offload' }),
  m('tuntap-router-hold', 'int', 'router', 'how long a peer\'s frames may wait to share one write while the tun has a backlog (traffic spread over many peers); light traffic is never held; 0 = never (docs/scale.md)',
    { min: 0, max: 1000, default: 50, unit: 'ms', native: 'holdUs' }),
  m('tuntap-router-sndbuf', 'int', 'router', 'send buffer of each peer socket (0 = the kernel default; without CAP_NET_ADMIN capped by net.core.wmem_max; docs/scale.md)',
    { min: 0, max: SNDBUF_MAX, default: 0, unit: 'bytes', native: 'sndbuf' }),
  m('tuntap-router-busy-poll', 'int', 'router', 'how long the router polls after moving a packet before it sleeps, so an answer finds it awake (lower ping RTT; at most 5% of a CPU, nothing when idle); 0 = never (docs/busy-poll.md)',
    { ...BUSY_POLL, native: 'busyPollUs' }),
  m('tuntap-router-queue-bytes', 'int', 'router', 'bytes queued toward one peer before its packets are dropped (at least max-frame + 4)', { ...QUEUE_BYTES, native: 'queueBytes' }),
  m('tuntap-router-conntrack-max', 'int', 'router', 'flows the connection table holds, all vassals together (tracked only while a rule names a `state`; 64 bytes a flow at most); a new flow over it is refused (conntrack_full)',
    { ...CT_MAX, default: 262144, native: 'ctMax' }),
  m('tuntap-router-conntrack-max-per-vassal', 'int', 'router', 'flows of one vassal (its address) in the connection table; a new flow over it is refused (conntrack_vassal), so one vassal cannot fill the table',
    { ...CT_MAX, default: 65536, native: 'ctMaxPerVassal' }),
  ctTimeout('tcp-syn-sent', 'ctTimeoutTcpSynSent', 120, 'whose SYN is unanswered'),
  ctTimeout('tcp-syn-recv', 'ctTimeoutTcpSynRecv', 60, 'whose SYN-ACK is unacknowledged'),
  ctTimeout('tcp-established', 'ctTimeoutTcpEstablished', 432000, 'established over TCP'),
  ctTimeout('tcp-fin-wait', 'ctTimeoutTcpFinWait', 120, 'after the first FIN'),
  ctTimeout('tcp-close-wait', 'ctTimeoutTcpCloseWait', 60, 'whose first FIN was acknowledged'),
  ctTimeout('tcp-last-ack', 'ctTimeoutTcpLastAck', 30, 'after both FINs'),
  ctTimeout('tcp-time-wait', 'ctTimeoutTcpTimeWait', 120, 'closed by both sides'),
  ctTimeout('tcp-close', 'ctTimeoutTcpClose', 10, 'reset (RST)'),
  ctTimeout('udp', 'ctTimeoutUdp', 30, 'over UDP, unanswered'),
  ctTimeout('udp-stream', 'ctTimeoutUdpStream', 180, 'over UDP, answered'),
  ctTimeout('icmp', 'ctTimeoutIcmp', 30, 'of ICMP echo'),
  ctTimeout('generic', 'ctTimeoutGeneric', 600, 'of another protocol'),
  m('tuntap-router-bind', 'repeatable', 'router', 'bind a peer uid to the one address it may use: `<uid|user> <ipv4>`'),
  m('tuntap-router-netns', 'string', 'router', 'create the router\'s tun device in this network namespace (/run/netns/NAME)'),
  m('tuntap-device-reconnect-min', 'int', 'device', 'first delay before a device reconnects to its router',
    { min: 1, max: 3_600_000, default: 100, unit: 'ms', native: 'reconnectMinMs', runtime: 'device-reconnect-min' }),
  m('tuntap-device-reconnect-max', 'int', 'device', 'longest delay between reconnect attempts (at least reconnect-min)',
    { min: 1, max: 3_600_000, default: 5000, unit: 'ms', native: 'reconnectMaxMs', runtime: 'device-reconnect-max' }),
  m('tuntap-device-max-frame', 'int', 'device', 'largest frame payload a device accepts from its router', { ...MAX_FRAME, native: 'maxFrame', runtime: 'device-max-frame' }),
  m('tuntap-device-offload', 'bool', 'device', 'ask the router for virtio-net offloads (TSO/USO, 64 KB frames); a uWSGI router never answers and the device stays plain (docs/offload.md)',
    { default: true, native: 'offload', runtime: 'device-offload' }),
  m('tuntap-device-sndbuf', 'int', 'device', 'send buffer of the connection to the router (0 = the kernel default; docs/scale.md)',
    { min: 0, max: SNDBUF_MAX, default: 4194304, unit: 'bytes', native: 'sndbuf', runtime: 'device-sndbuf' }),
  m('tuntap-device-busy-poll', 'int', 'device', 'how long a device polls after moving a packet before it sleeps (lower ping RTT; at most 5% of a CPU, nothing when idle); 0 = never (docs/busy-poll.md)',
    { ...BUSY_POLL, native: 'busyPollUs', runtime: 'device-busy-poll' }),
  m('tuntap-device-queue-bytes', 'int', 'device', 'bytes a device queues toward its router (at least max-frame + 4)', { ...QUEUE_BYTES, native: 'queueBytes', runtime: 'device-queue-bytes' }),
  m('tuntap-device-netns', 'string', 'device', 'create the device\'s tun device in this network namespace (/run/netns/NAME)',
    { vassal: 'a vassal\'s device is created in the vassal\'s own network namespace' }),
  m('metrics', 'string', 'metrics', 'serve Prometheus metrics on `host:port`'),
  m('log-level', 'string', 'log', 'log level (also MOAT_LOG_LEVEL)', { default: 'info', values: ['trace', 'debug', 'info', 'warn', 'error'] }),
  m('log-format', 'string', 'log', 'log lines as `json` (JSON lines on stderr; pipe through pino-pretty to read them)', { default: 'json', values: ['json'], note: 'uWSGI\'s request-log format string does not apply' }),
  // config files (the loaders replace them by the options they read)
  u('ini', 'repeatable', 'implemented', 'config', 'read options from an ini file (`FILE[:section]`) at this point'),
  u('yaml', 'repeatable', 'implemented', 'config', 'read options from a YAML file (`FILE[:section]`) at this point', { aliases: ['yml'] }),
  u('json', 'repeatable', 'implemented', 'config', 'read options from a JSON file (`FILE[:section]`) at this point'),
  u('xml', 'repeatable', 'implemented', 'config', 'read options from an XML file (`FILE[:id]`) at this point'),
  // process: what moat always does (accepted), or what it runs none of (ignored)
  u('master', 'bool', 'accepted', 'none', 'uWSGI\'s master process', { note: 'moat always supervises its vassals' }),
  u('plugin', 'repeatable', 'accepted', 'none', 'load uWSGI plugins', { aliases: ['plugins'], note: 'moat\'s plugins are built in' }),
  u('vacuum', 'bool', 'accepted', 'none', 'remove sockets at exit', { note: 'moat always removes its sockets' }),
  u('die-on-term', 'bool', 'accepted', 'none', 'exit on SIGTERM', { note: 'moat exits on SIGTERM and SIGINT' }),
  u('exec-as-root', 'repeatable', 'implemented', 'vassal', 'run a command in the vassal before privileges are dropped, after its tun device exists (in file order); in a router\'s config: on the host once the router\'s device exists'),
  u('socket', 'repeatable', 'ignored', 'none', 'uWSGI application socket', { note: 'moat runs no application server' }),
  u('http', 'repeatable', 'ignored', 'none', 'uWSGI HTTP router', { note: 'moat runs no application server' }),
  u('processes', 'int', 'ignored', 'none', 'uWSGI worker processes', { aliases: ['workers'], note: 'moat runs no application server' }),
  u('logto', 'string', 'ignored', 'none', 'log to a file', { note: 'moat logs to stdout' }),
  u('daemonize', 'string', 'ignored', 'none', 'detach and log to a file', { note: 'run moat under a service manager' }),
  // the emperor (src/emperor) and what it hands each vassal's runtime (src/vassal, docs/runtime-protocol.md)
  u('emperor', 'string', 'implemented', 'emperor', 'watch a directory of vassal files (.ini, .xml, .yaml/.yml, .json), or a fleet\'s vassals in etcd: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (`etcds://` for TLS; docs/fleet.md)',
    { note: 'a directory or etcd (no glob, no pg:// mongodb:// amqp:// zmq://); a file that becomes bad keeps its running vassal and is reported' }),
  // the fleet (issue 18; src/fleet, docs/fleet.md): many hosts, one set of vassals in etcd
  m('fleet-host', 'string', 'emperor', 'this host\'s name in the fleet (with emperor = etcd://...): unique among live hosts; refused while another live host holds it'),
  m('fleet-address', 'string', 'emperor', 'this host\'s IPv4 address on the network between the hosts: the other hosts route its vassals\' addresses there; default: the source address of this host\'s route toward the first etcd endpoint'),
  m('fleet-lease-ttl', 'int', 'emperor', 'seconds of this host\'s etcd lease: a host silent that long is dead and its vassals start elsewhere; it stops them itself once ttl - margin passed without a renewal (renewal and margin: a fifth of it each, at least 0.5 s and 1 s)',
    { min: 3, max: 600, default: 10, unit: 's' }),
  m('fleet-dir', 'string', 'emperor', 'the host directory where the emperor keeps this host\'s copies of its vassal files and the fleet\'s rule files from etcd (subdirectory per fleet-host)', { default: '/run/moat/fleet' }),
  m('fleet-etcd-ca', 'string', 'emperor', 'PEM file of the CA that signed the etcd servers\' certificates (etcds://)'),
  m('fleet-etcd-cert', 'string', 'emperor', 'PEM client certificate for etcd (with fleet-etcd-key)'),
  m('fleet-etcd-key', 'string', 'emperor', 'PEM private key of fleet-etcd-cert'),
  m('fleet-etcd-user', 'string', 'emperor', 'etcd user name (etcd authentication; with fleet-etcd-password-file)'),
  m('fleet-etcd-password-file', 'string', 'emperor', 'a file holding the etcd user\'s password (kept out of the config)'),
  m('vassal-host', 'string', 'vassal', 'in a fleet: run this vassal only on the host whose fleet-host is NAME (pinned); without it vassals spread over the live hosts by count'),
  u('emperor-use-clone', 'string', 'implemented', 'emperor', 'spawn vassals in new namespaces: fs,ipc,uts,net,pid (any subset; empty: none)', { default: 'fs,ipc,uts,net,pid', aliases: ['emperor-user-clone'],
    note: 'mount is read as fs; moat\'s default is every namespace (uWSGI\'s: none)' }),
  m('emperor-cgroup', 'string', 'emperor', 'the emperor\'s cgroup, below each hierarchy\'s root (e.g. `moat.slice/emperor-a`); default: `moat-emperor-PID` under the emperor\'s own cgroup (docs/cgroups.md)'),
  m('emperor-vassal-memory-max', 'string', 'emperor', 'every vassal\'s memory limit unless its file sets vassal-memory-max: bytes with K/M/G/T, or `max`'),
  m('emperor-vassal-pids-max', 'string', 'emperor', 'every vassal\'s process (task) limit unless its file sets vassal-pids-max, or `max`'),
  m('emperor-vassal-cpu-max', 'string', 'emperor', 'every vassal\'s CPU limit in cores (e.g. `0.5`) unless its file sets vassal-cpu-max, or `max`'),
  m('emperor-vassal-log-lines', 'int', 'emperor', 'lines a vassal\'s output may add to the emperor\'s log per second; the rest is counted and dropped',
    { min: 1, max: 1_000_000, default: 100, unit: 'lines/s' }),
  m('emperor-vassal-log-bytes', 'int', 'emperor', 'bytes a vassal\'s output may add to the emperor\'s log per second; the rest is counted and dropped',
    { min: 1024, max: 1 << 30, default: 65536, unit: 'bytes/s' }),
  m('vassal-memory-max', 'string', 'vassal', 'the vassal\'s memory limit (its cgroup: every process of it): bytes with K/M/G/T, or `max`; over it the kernel\'s OOM killer acts inside the vassal'),
  m('vassal-pids-max', 'string', 'vassal', 'the most processes and threads the vassal may have at once, or `max`'),
  m('vassal-cpu-max', 'string', 'vassal', 'the CPU the vassal may use, in cores (e.g. `0.5`), or `max`'),
  // per-vassal traffic limits (issue 16; src/config/traffic-limits.ts, native/limiter.h): out = from the vassal, in = toward it
  m('vassal-rate-out', 'string', 'vassal', 'the most bits per second the vassal may send, as tc writes rates (`10mbit`, `512kbit`, `1gbit`; `bps` is bytes), or `max`; over it packets wait up to 50 ms, then are dropped (rate_limit)'),
  m('vassal-rate-in', 'string', 'vassal', 'the most bits per second toward the vassal, likewise'),
  m('vassal-pps-out', 'string', 'vassal', 'the most packets per second the vassal may send (a TSO super-packet counts its segments), or `max`'),
  m('vassal-pps-in', 'string', 'vassal', 'the most packets per second toward the vassal, likewise'),
  m('vassal-burst', 'string', 'vassal', 'bytes a rate limit lets through at once after an idle spell (bytes with K/M/G); default: 10 ms of the rate, at least one 8 KiB frame'),
  m('vassal-pps-burst', 'string', 'vassal', 'packets a pps limit lets through at once; default: 10 ms of the rate, at least 1'),
  // each vassal's own firewall (issue 17; src/rules/vassal-rules.ts, native/peer_rules.h): after the router's, narrowing only
  m('vassal-firewall-in', 'repeatable', 'vassal', 'a rule of the vassal\'s own for packets toward it (same syntax as tuntap-router-firewall-in); a packet passes only if the router\'s rules and the vassal\'s both allow it, so these can narrow what the router allows, never widen it; unmatched: allow. Dropped as vassal_firewall_in'),
  m('vassal-firewall-out', 'repeatable', 'vassal', 'a rule of the vassal\'s own for packets from it, likewise (vassal_firewall_out)'),
  m('vassal-firewall-file', 'repeatable', 'vassal', 'a rule file of the vassal\'s own (`in|out RULE` lines), or a directory whose *.rules files are read in name order, after its vassal-firewall-in/out options; a path on the host, relative to the vassal file\'s directory, read by the emperor when the vassal file loads and again when the rule file changes (at the next rescan)'),
  m('emperor-vassal-rate-out', 'string', 'emperor', 'every vassal\'s vassal-rate-out unless its file sets one (`max` there lifts it)'),
  m('emperor-vassal-rate-in', 'string', 'emperor', 'every vassal\'s vassal-rate-in unless its file sets one'),
  m('emperor-vassal-pps-out', 'string', 'emperor', 'every vassal\'s vassal-pps-out unless its file sets one'),
  m('emperor-vassal-pps-in', 'string', 'emperor', 'every vassal\'s vassal-pps-in unless its file sets one'),
  m('emperor-vassal-burst', 'string', 'emperor', 'every vassal\'s vassal-burst unless its file sets one'),
  m('emperor-vassal-pps-burst', 'string', 'emperor', 'every vassal\'s vassal-pps-burst unless its file sets one'),
  m('tuntap-router-peer-limit', 'repeatable', 'router', 'a peer\'s traffic limit by its address: `<address|default> <in|out> [rate R] [pps N] [burst B] [pps-burst N]` (rates as tc writes them; in = toward the peer); default: every peer without a line of its own; applied again on reload (SIGHUP) without disconnecting anyone'),
  m('accounting-log', 'string', 'emperor', 'append one JSON line per vassal every accounting-interval to this file: its traffic in and out (bytes, packets) and drops, fsync\'d (docs/accounting.md)'),
  m('accounting-interval', 'int', 'emperor', 'seconds between two accounting-log records', { min: 1, max: 86400, default: 60, unit: 's' }),
  u('cgroup', 'repeatable', 'ignored', 'vassal', 'put the vassal in this cgroup', { note: 'moat puts each vassal in a cgroup of its own under the emperor\'s (docs/cgroups.md); cgroup-opt and vassal-*-max set its limits' }),
  u('cgroup-opt', 'repeatable', 'implemented', 'vassal', 'set a cgroup file: `KEY=VALUE`', { note: 'memory.limit_in_bytes / memory.max, pids.max, cpu.cfs_quota_us + cpu.cfs_period_us / cpu.max map onto moat\'s limits; any other file is refused with the reason (docs/cgroups.md)' }),
  u('emperor-freq', 'number', 'implemented', 'emperor', 'seconds between two rescans of the emperor directory (inotify also wakes it)', { default: 3, min: 0.001, max: 3600, unit: 's' }),
  u('pivot-root', 'string', 'implemented', 'vassal', '`<new_root> <put_old>`: pivot the vassal into its own root (read-only, fresh /proc, tmpfs /tmp)'),
  u('chroot', 'string', 'planned', 'vassal', 'chroot the vassal'),
  u('uid', 'string', 'implemented', 'vassal', 'in a vassal file: drop the vassal to this user (after the exec-as-root hooks; verified); in a standalone router or device: the user moat becomes once its device, sockets and hooks exist (all capabilities dropped); in an emperor\'s config: the user of the router process (default `nobody`; the emperor itself stays root)'),
  u('gid', 'string', 'implemented', 'vassal', 'the group to drop to, likewise (supplementary groups cleared)'),
  u('exec-post-jail', 'repeatable', 'implemented', 'vassal', 'run a command right after the new namespaces exist'),
  u('exec-as-user', 'repeatable', 'implemented', 'vassal', 'run a command after privileges are dropped'),
  u('env', 'repeatable', 'implemented', 'vassal', '`KEY=VALUE` in the environment of the vassal\'s hooks, daemons and jobs'),
  m('emperor-vassal-network', 'string', 'emperor', 'the network `A.B.C.D/BITS` vassals learn their address from (a vassal file without tuntap-device-address: from its first packet); never its network, broadcast or gateway address, nor an address a vassal file names',
    { note: 'default: the network of the IPv4 address on the router\'s tun device once the exec-as-root hooks have run; without one no address is learned (a warning says so)' }),
  m('vassals-dir-root', 'string', 'emperor', 'host directory holding one directory per vassal (NAME = its file name without the extension: customer1.ini -> customer1), bind-mounted read-write at /run/moat inside the vassal when it has its own mount namespace', { default: '/run/moat/vassals' }),
  m('tuntap-device-address', 'string', 'device', 'the vassal\'s address `A.B.C.D/BITS`: set on its tun device (device, lo up) and bound to it by the emperor\'s router'),
  m('tuntap-device-route', 'string', 'device', 'the vassal\'s default gateway `A.B.C.D` (a default route via its tun device)'),
  u('hook-as-root', 'repeatable', 'planned', 'vassal', 'a uWSGI hook (e.g. `hostname:NAME`) before privileges are dropped'),
  u('hook-as-user', 'repeatable', 'planned', 'vassal', 'a uWSGI hook after privileges are dropped'),
  u('attach-daemon', 'repeatable', 'implemented', 'vassal', 'run and supervise a command in the vassal (restarted with backoff when it dies)'),
  u('cron', 'repeatable', 'implemented', 'cron', '`<minute> <hour> <day> <month> <weekday> <command>` (-1 any, -N multiples of N), run inside the vassal',
    { note: 'a line uWSGI cannot read (ranges, lists, out-of-range numbers, no command) is an error; a run still going is never started twice (docs/cron.md)' }),
  u('cron2', 'repeatable', 'implemented', 'cron', '`key=value,... <command>` (minute, hour, day, month, week, unique, harakiri)', { note: 'legion is refused' }),
  u('unique-cron', 'repeatable', 'implemented', 'cron', 'cron that never overlaps its previous run', { note: 'in moat no cron entry overlaps its previous run' }),
  u('cron-harakiri', 'int', 'implemented', 'cron', 'kill a cron run (its process group) after this many seconds; cron2 harakiri= overrides; 0 = never', { min: 0, max: 31_536_000, default: 0, unit: 's' }),
  m('cron-tab', 'repeatable', 'cron', 'a standard crontab line: `<minute> <hour> <day> <month> <weekday> <command>` (ranges, lists, steps, names, @daily...), run inside the vassal'),
  u('forkpty-router', 'string', 'implemented', 'pty', 'raw pty server on a unix socket: a new pty and process per connection', { aliases: ['forkptyrouter'],
    note: 'closing the connection hangs up the whole session (SIGHUP, SIGKILL after a grace); unix sockets only' }),
  u('forkpty-urouter', 'string', 'implemented', 'pty', 'uwsgi-framed pty server (modifier2: 0 stdin, 1-99 signal, 100 rows, 101 cols)', { aliases: ['forkptyurouter'],
    note: 'signals go to the pty\'s foreground process group (uWSGI: to the first process only)' }),
  u('forkpty-router-command', 'string', 'implemented', 'pty', 'command run in each pty (with a space: `/bin/sh -c COMMAND`)', { default: '/bin/sh', aliases: ['forkptyrouter-command', 'forkptyrouter-cmd', 'forkpty-router-cmd'] }),
  u('forkptyrouter-rows', 'int', 'implemented', 'pty', 'initial pty rows', { min: 1, max: 65535, default: 24, aliases: ['forkpty-router-rows'] }),
  u('forkptyrouter-cols', 'int', 'implemented', 'pty', 'initial pty columns', { min: 1, max: 65535, default: 80, aliases: ['forkpty-router-cols'] }),
  u('pty-socket', 'string', 'implemented', 'pty', 'share one pty on this unix socket: every viewer sees its output, input from any (raw, use pty-connect)',
    { note: 'the pty runs pty-exec (uWSGI attaches its own stdio instead); unix sockets only' }),
  u('pty-exec', 'string', 'implemented', 'pty', 'the command run on the pty-socket pty', { note: 'standalone moat exits when it ends' }),
  u('pty-connect', 'string', 'implemented', 'pty-client', 'raw pty client: connect this terminal to a forkpty-router or pty-socket (also `moat pty-connect ADDR`)'),
  u('pty-uconnect', 'string', 'implemented', 'pty-client', 'framed pty client: raw terminal, window size at start and on SIGWINCH (also `moat pty-uconnect ADDR`)'),
  m('forkpty-router-socket-mode', 'string', 'pty', 'permissions of the forkpty-router and pty-socket sockets (octal)', { default: '0600' }),
  m('forkpty-router-socket-owner', 'string', 'pty', 'owner of those sockets: `user[:group]` (names or numbers); the user who may connect with mode 0600'),
  m('forkpty-router-user', 'string', 'pty', 'run pty sessions as `user[:group]` (setgroups([]), setgid, setuid before exec)'),
  m('forkpty-router-grace', 'int', 'pty', 'time between SIGHUP and SIGKILL when a pty session is hung up', { min: 1, max: 600_000, default: 1000, unit: 'ms' }),
  m('forkpty-router-max-sessions', 'int', 'pty', 'pty sessions at once per server; more connections are closed at once', { min: 1, max: 65535, default: 64 }),
];
