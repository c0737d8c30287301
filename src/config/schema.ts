// schema.ts: the one table of every option moat knows, and the checks every
// option list goes through (aliases, unknown names, refused options, values
// of bool and int options).
//
// status, for an option that comes from uWSGI, says what moat does with it:
//   implemented  moat does what uWSGI does (or better, see the note)
//   accepted     read and has no effect (no warning: nothing is lost)
//   ignored      read, has no effect, and a warning says why
//   refused      a config that sets it is an error (the note says why)
//   planned      known, not implemented yet (a warning says so)
// Options that are moat's own have origin 'moat' and status 'implemented'.
import { formatSource } from './option';
import { ConfigError, Option, OptionList } from './types';

export type OptionKind = 'string' | 'bool' | 'int' | 'repeatable';
export type OptionStatus = 'implemented' | 'accepted' | 'ignored' | 'refused' | 'planned';

export interface OptionSpec {
  name: string;
  aliases?: readonly string[];
  kind: OptionKind;
  default?: string;
  description: string;
  origin: 'uwsgi' | 'moat';
  status: OptionStatus;
  note?: string;          // why ignored/refused, or what moat does differently
}

const u = (name: string, kind: OptionKind, status: OptionStatus, description: string, more: Partial<OptionSpec> = {}): OptionSpec =>
  ({ name, kind, status, description, origin: 'uwsgi', ...more });
const m = (name: string, kind: OptionKind, description: string, more: Partial<OptionSpec> = {}): OptionSpec =>
  ({ name, kind, status: 'implemented', description, origin: 'moat', ...more });

export const OPTIONS: readonly OptionSpec[] = [
  // tuntap router (uWSGI's tuntap plugin)
  u('tuntap-router', 'string', 'implemented', 'run the router: `<device> <socket> [stats] [gateway]`',
    { note: 'one router per moat process; the gateway field is accepted and has no effect (see tuntap-router-route)' }),
  u('tuntap-router-firewall-in', 'repeatable', 'implemented', 'a rule for packets from the tun device toward a peer: `<allow|deny> [<src>[/<bits>] <dst>[/<bits>]]`',
    { note: 'a malformed rule is an error (uWSGI skips it, or reads a typo as allow)' }),
  u('tuntap-router-firewall-out', 'repeatable', 'implemented', 'a rule for packets from a peer toward the tun device (same syntax as -in)',
    { note: 'as tuntap-router-firewall-in' }),
  u('tuntap-router-stats', 'string', 'implemented', 'stats server: `host:port` (TCP) or a unix socket path; one JSON document per connection'),
  u('tuntap-use-credentials', 'bool', 'accepted', 'check peer credentials',
    { note: 'moat always reads SO_PEERCRED; a symbol name (uWSGI\'s address-by-credentials hook) is ignored with a warning' }),
  u('tuntap-router-route', 'repeatable', 'refused', 'forward matching peer packets as UDP datagrams to a gateway: `<src/mask> <dst/mask> <addr:port>`',
    { note: 'it would send peer packets past the firewall to a remote address; routing is the host kernel\'s job behind the tun device' }),
  u('tuntap-device-rule', 'repeatable', 'refused', 'a rule a device sends to its router (`<in|out> <src/mask> <dst/mask> <action> [target]`)',
    { note: 'a peer may not set its own firewall rules; moat routers drop such blocks' }),
  // tuntap device (the vassal side)
  u('tuntap-device', 'string', 'implemented', 'a tun device in the vassal, pumped to the router: `<device>[ <socket>]`',
    { default: 'socket /tmp/tuntap.socket', note: 'one per vassal; reconnects when the router goes away; without a socket uWSGI only creates the device, moat connects to /tmp/tuntap.socket' }),
  // moat's own router and device options
  m('tuntap-router-firewall-file', 'repeatable', 'a rule file, or a directory whose *.rules files are read in name order'),
  m('tuntap-router-socket-mode', 'string', 'permissions of the router socket (octal)', { default: '0660' }),
  m('tuntap-router-socket-owner', 'string', 'owner of the router socket: `user[:group]` (names or numbers)'),
  m('tuntap-router-max-frame', 'int', 'largest frame payload accepted from a peer (576..65535; above 8188 uWSGI peers cannot follow)', { default: '8188' }),
  m('tuntap-router-offload', 'bool', 'virtio-net offloads (TSO/USO, 64 KB frames) with moat devices that ask for them; uWSGI peers keep plain frames (docs/offload.md)', { default: 'true' }),
  m('tuntap-router-hold', 'int', 'ms a peer\'s frames may wait to share one write while the tun has a backlog (traffic spread over many peers); light traffic is never held; 0 = never (docs/scale.md)', { default: '50' }),
  m('tuntap-router-sndbuf', 'int', 'send buffer of each peer socket, bytes (0 = the kernel default; without CAP_NET_ADMIN capped by net.core.wmem_max; docs/scale.md)', { default: '0' }),
  m('tuntap-router-busy-poll', 'int', 'µs the router polls after moving a packet before it sleeps, so an answer finds it awake (lower ping RTT; at most 5% of a CPU, nothing when idle); 0 = never (docs/busy-poll.md)', { default: '100' }),
  m('tuntap-router-queue-bytes', 'int', 'bytes queued toward one peer before its packets are dropped', { default: '262144' }),
  m('tuntap-router-bind', 'repeatable', 'bind a peer uid to the one address it may use: `<uid|user> <ipv4>`'),
  m('tuntap-router-netns', 'string', 'create the router\'s tun device in this network namespace (/run/netns/NAME)'),
  m('tuntap-device-reconnect-min', 'int', 'first delay before a device reconnects to its router (ms)', { default: '100' }),
  m('tuntap-device-reconnect-max', 'int', 'longest delay between reconnect attempts (ms)', { default: '5000' }),
  m('tuntap-device-max-frame', 'int', 'largest frame payload a device accepts from its router (576..65535)', { default: '8188' }),
  m('tuntap-device-offload', 'bool', 'ask the router for virtio-net offloads (TSO/USO, 64 KB frames); a uWSGI router never answers and the device stays plain (docs/offload.md)', { default: 'true' }),
  m('tuntap-device-sndbuf', 'int', 'send buffer of the connection to the router, bytes (0 = the kernel default; docs/scale.md)', { default: '4194304' }),
  m('tuntap-device-busy-poll', 'int', 'µs a device polls after moving a packet before it sleeps (lower ping RTT; at most 5% of a CPU, nothing when idle); 0 = never (docs/busy-poll.md)', { default: '100' }),
  m('tuntap-device-queue-bytes', 'int', 'bytes a device queues toward its router', { default: '262144' }),
  m('tuntap-device-netns', 'string', 'create the device\'s tun device in this network namespace (/run/netns/NAME)'),
  m('metrics', 'string', 'serve Prometheus metrics on `host:port`'),
  m('log-level', 'string', 'log level: `trace`, `debug`, `info`, `warn`, `error` (also MOAT_LOG_LEVEL)', { default: 'info' }),
  m('log-format', 'string', 'log lines as `json` (JSON lines on stderr; pipe through pino-pretty to read them)', { default: 'json', note: 'uWSGI\'s request-log format string does not apply' }),
  // config files
  u('ini', 'repeatable', 'implemented', 'read options from an ini file (`FILE[:section]`) at this point'),
  u('yaml', 'repeatable', 'implemented', 'read options from a YAML file (`FILE[:section]`) at this point', { aliases: ['yml'] }),
  u('json', 'repeatable', 'implemented', 'read options from a JSON file (`FILE[:section]`) at this point'),
  u('xml', 'repeatable', 'implemented', 'read options from an XML file (`FILE[:id]`) at this point'),
  // process
  u('master', 'bool', 'accepted', 'uWSGI\'s master process', { note: 'moat always supervises its vassals' }),
  u('plugin', 'repeatable', 'accepted', 'load uWSGI plugins', { aliases: ['plugins'], note: 'moat\'s plugins are built in' }),
  u('vacuum', 'bool', 'accepted', 'remove sockets at exit', { note: 'moat always removes its sockets' }),
  u('die-on-term', 'bool', 'accepted', 'exit on SIGTERM', { note: 'moat exits on SIGTERM and SIGINT' }),
  u('exec-as-root', 'repeatable', 'implemented', 'run a command in the vassal before privileges are dropped, after its tun device exists (in file order)'),
  u('socket', 'repeatable', 'ignored', 'uWSGI application socket', { note: 'moat runs no application server' }),
  u('http', 'repeatable', 'ignored', 'uWSGI HTTP router', { note: 'moat runs no application server' }),
  u('processes', 'int', 'ignored', 'uWSGI worker processes', { aliases: ['workers'], note: 'moat runs no application server' }),
  u('logto', 'string', 'ignored', 'log to a file', { note: 'moat logs to stdout' }),
  u('daemonize', 'string', 'ignored', 'detach and log to a file', { note: 'run moat under a service manager' }),
  // the emperor (src/emperor) and what it hands each vassal's runtime (src/vassal, docs/runtime-protocol.md)
  u('emperor', 'string', 'implemented', 'watch a directory of vassal files (.ini, .xml, .yaml/.yml, .json)',
    { note: 'a directory only (no glob, no emperor:// scheme); a file that becomes bad keeps its running vassal and is reported' }),
  u('emperor-use-clone', 'string', 'implemented', 'spawn vassals in new namespaces: fs,ipc,uts,net,pid', { aliases: ['emperor-user-clone'], note: 'mount is read as fs' }),
  u('emperor-freq', 'int', 'implemented', 'seconds between two rescans of the emperor directory (inotify also wakes it)', { default: '3' }),
  u('pivot-root', 'string', 'implemented', '`<new_root> <put_old>`: pivot the vassal into its own root (read-only, fresh /proc, tmpfs /tmp)'),
  u('chroot', 'string', 'planned', 'chroot the vassal'),
  u('uid', 'string', 'implemented', 'in a vassal file: drop the vassal to this user (after the exec-as-root hooks; verified); in a standalone router or device: the user moat becomes once its device, sockets and hooks exist (all capabilities dropped); in an emperor\'s config: the user of the router process (default `nobody`; the emperor itself stays root)'),
  u('gid', 'string', 'implemented', 'the group to drop to, likewise (supplementary groups cleared)'),
  u('exec-post-jail', 'repeatable', 'implemented', 'run a command right after the new namespaces exist'),
  u('exec-as-user', 'repeatable', 'implemented', 'run a command after privileges are dropped'),
  u('env', 'repeatable', 'implemented', '`KEY=VALUE` in the environment of the vassal\'s hooks, daemons and jobs'),
  m('vassals-dir-root', 'string', 'host directory holding one directory per vassal (NAME = its file name without the extension: customer1.ini -> customer1), bind-mounted read-write at /run/moat inside the vassal when it has its own mount namespace', { default: '/run/moat/vassals' }),
  m('tuntap-device-address', 'string', 'the vassal\'s address `A.B.C.D/BITS`: set on its tun device (device, lo up) and bound to it by the emperor\'s router'),
  m('tuntap-device-route', 'string', 'the vassal\'s default gateway `A.B.C.D` (a default route via its tun device)'),
  u('hook-as-root', 'repeatable', 'planned', 'a uWSGI hook (e.g. `hostname:NAME`) before privileges are dropped'),
  u('hook-as-user', 'repeatable', 'planned', 'a uWSGI hook after privileges are dropped'),
  u('attach-daemon', 'repeatable', 'implemented', 'run and supervise a command in the vassal (restarted with backoff when it dies)'),
  u('cron', 'repeatable', 'implemented', '`<minute> <hour> <day> <month> <weekday> <command>` (-1 any, -N multiples of N), run inside the vassal',
    { note: 'a line uWSGI cannot read (ranges, lists, out-of-range numbers, no command) is an error; a run still going is never started twice (docs/cron.md)' }),
  u('cron2', 'repeatable', 'implemented', '`key=value,... <command>` (minute, hour, day, month, week, unique, harakiri)', { note: 'legion is refused' }),
  u('unique-cron', 'repeatable', 'implemented', 'cron that never overlaps its previous run', { note: 'in moat no cron entry overlaps its previous run' }),
  u('cron-harakiri', 'int', 'implemented', 'kill a cron run (its process group) after this many seconds; cron2 harakiri= overrides'),
  m('cron-tab', 'repeatable', 'a standard crontab line: `<minute> <hour> <day> <month> <weekday> <command>` (ranges, lists, steps, names, @daily...), run inside the vassal'),
  u('forkpty-router', 'string', 'implemented', 'raw pty server on a unix socket: a new pty and process per connection', { aliases: ['forkptyrouter'],
    note: 'closing the connection hangs up the whole session (SIGHUP, SIGKILL after a grace); unix sockets only' }),
  u('forkpty-urouter', 'string', 'implemented', 'uwsgi-framed pty server (modifier2: 0 stdin, 1-99 signal, 100 rows, 101 cols)', { aliases: ['forkptyurouter'],
    note: 'signals go to the pty\'s foreground process group (uWSGI: to the first process only)' }),
  u('forkpty-router-command', 'string', 'implemented', 'command run in each pty (with a space: `/bin/sh -c COMMAND`)', { default: '/bin/sh', aliases: ['forkptyrouter-command', 'forkptyrouter-cmd', 'forkpty-router-cmd'] }),
  u('forkptyrouter-rows', 'int', 'implemented', 'initial pty rows', { default: '24', aliases: ['forkpty-router-rows'] }),
  u('forkptyrouter-cols', 'int', 'implemented', 'initial pty columns', { default: '80', aliases: ['forkpty-router-cols'] }),
  u('pty-socket', 'string', 'implemented', 'share one pty on this unix socket: every viewer sees its output, input from any (raw, use pty-connect)',
    { note: 'the pty runs pty-exec (uWSGI attaches its own stdio instead); unix sockets only' }),
  u('pty-exec', 'string', 'implemented', 'the command run on the pty-socket pty', { note: 'standalone moat exits when it ends' }),
  u('pty-connect', 'string', 'implemented', 'raw pty client: connect this terminal to a forkpty-router or pty-socket (also `moat pty-connect ADDR`)'),
  u('pty-uconnect', 'string', 'implemented', 'framed pty client: raw terminal, window size at start and on SIGWINCH (also `moat pty-uconnect ADDR`)'),
  m('forkpty-router-socket-mode', 'string', 'permissions of the forkpty-router and pty-socket sockets (octal)', { default: '0600' }),
  m('forkpty-router-socket-owner', 'string', 'owner of those sockets: `user[:group]` (names or numbers); the user who may connect with mode 0600'),
  m('forkpty-router-user', 'string', 'run pty sessions as `user[:group]` (setgroups([]), setgid, setuid before exec)'),
  m('forkpty-router-grace', 'int', 'ms between SIGHUP and SIGKILL when a pty session is hung up', { default: '1000' }),
  m('forkpty-router-max-sessions', 'int', 'pty sessions at once per server; more connections are closed at once', { default: '64' }),
];

const byName = new Map<string, OptionSpec>();
for (const s of OPTIONS) {
  for (const n of [s.name, ...(s.aliases ?? [])]) {
    if (byName.has(n)) throw new Error(`schema: ${n} listed twice`);
    byName.set(n, s);
  }
}

/** The spec of an option by name or alias ('_' read as '-'), or undefined. */
export function findOption(key: string): OptionSpec | undefined {
  return byName.get(key.toLowerCase().replace(/_/g, '-'));
}

/** The canonical name of an option, or the key itself when unknown. */
export function canonicalKey(key: string): string {
  return findOption(key)?.name ?? key;
}

/** Options given as flags without a value (`--master`). */
export function takesNoValue(key: string): boolean {
  return findOption(key)?.kind === 'bool';
}

export function parseBool(value: string): boolean | undefined {
  switch (value.trim().toLowerCase()) {
    case '': case 'true': case '1': case 'yes': case 'on': return true;
    case 'false': case '0': case 'no': case 'off': return false;
    default: return undefined;
  }
}

function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0];
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j];
      row[j] = Math.min(row[j] + 1, row[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length];
}

/** The known option name nearest to key, if it is near enough to be a typo. */
export function didYouMean(key: string): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const name of byName.keys()) {
    const d = distance(key, name);
    if (d < bestD) { best = name; bestD = d; }
  }
  const limit = key.length <= 5 ? 1 : key.length <= 12 ? 2 : 3;
  return bestD <= limit ? best : undefined;
}

export interface CheckedOptions {
  options: OptionList;   // same order, keys canonical (aliases resolved)
  warnings: string[];    // each 'file:line: ...' naming the option
}

/**
 * Checks a raw option list against the table: resolves aliases, warns about
 * unknown options (uWSGI ignores options of plugins it has not loaded; a near
 * miss gets a hint), ignored and planned ones and single options set twice;
 * throws ConfigError for a refused option or a bad bool/int value.
 */
export function checkOptions(options: OptionList): CheckedOptions {
  const warnings: string[] = [];
  const seen = new Map<string, Option>();
  const out: OptionList = [];
  for (const o of options) {
    const spec = findOption(o.key);
    const where = formatSource(o.source);
    if (!spec) {
      const hint = didYouMean(o.key);
      warnings.push(`${where}: unknown option '${o.key}' ignored${hint ? ` (did you mean '${hint}'?)` : ''}`);
      out.push(o);
      continue;
    }
    const opt = spec.name === o.key ? o : { ...o, key: spec.name };
    if (spec.status === 'refused') throw new ConfigError(`${o.key} is refused: ${spec.note}`, o.source);
    if (spec.status === 'ignored') warnings.push(`${where}: ${o.key} ignored: ${spec.note}`);
    if (spec.status === 'planned') warnings.push(`${where}: ${o.key} is not implemented yet, ignored`);
    if (spec.kind === 'bool' && parseBool(o.value) === undefined && spec.name !== 'tuntap-use-credentials') {
      throw new ConfigError(`${o.key}: '${o.value}' is not a boolean (true/false, 1/0, yes/no, on/off)`, o.source);
    }
    if (spec.kind === 'int' && !/^-?[0-9]+$/.test(o.value.trim())) {
      throw new ConfigError(`${o.key}: '${o.value}' is not an integer`, o.source);
    }
    if (spec.kind !== 'repeatable') {
      const before = seen.get(spec.name);
      if (before && before.value !== o.value) {
        warnings.push(`${where}: ${o.key} set again (first at ${formatSource(before.source)}); the last one counts`);
      }
      seen.set(spec.name, opt);
    }
    out.push(opt);
  }
  return { options: out, warnings };
}

const STATUS_TEXT: Record<OptionStatus, string> = {
  implemented: 'implemented', accepted: 'accepted, no effect', ignored: 'ignored (warning)',
  refused: 'refused', planned: 'planned',
};

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');

/** The README option table: name (and aliases), default, description, uWSGI status. */
export function optionTableMarkdown(): string {
  const rows = OPTIONS.map((s) => {
    const name = '`' + s.name + '`' + (s.aliases?.length ? ' (' + s.aliases.map((a) => '`' + a + '`').join(', ') + ')' : '');
    const status = s.origin === 'moat' ? 'moat only' : STATUS_TEXT[s.status] + (s.note ? ': ' + s.note : '');
    const desc = s.description + (s.origin === 'moat' && s.note ? ` (${s.note})` : '');
    return `| ${cell(name)} | ${s.default ? cell('`' + s.default + '`') : ''} | ${cell(desc)} | ${cell(status)} |`;
  });
  return ['| Option | Default | Description | uWSGI |', '|---|---|---|---|', ...rows].join('\n') + '\n';
}
