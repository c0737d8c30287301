// router-config.ts: an option list to the typed configs the router (host
// side) and the device (vassal side) read. Every bad value is a ConfigError
// naming the option and where it was written; options moat reads but does
// not act on come back as warnings. Both functions run checkOptions() first,
// so their warnings also cover unknown, ignored and planned options.
import { AccountFiles, lookupGroup, lookupUser } from './accounts';
import { formatSource, splitQuoted } from './option';
import { checkOptions, parseBool } from './schema';
import { ConfigError, DeviceConfig, Option, OptionList, OptionRule, RouterConfig } from './types';

export const DEFAULT_DEVICE_SOCKET = '/tmp/tuntap.socket';
export const DEFAULT_SOCKET_MODE = 0o660;
export const DEFAULT_MAX_FRAME = 8188;        // uWSGI's 8192-byte buffer less the 4-byte header
export const DEFAULT_QUEUE_BYTES = 262144;
export const DEFAULT_RECONNECT_MIN_MS = 100;
export const DEFAULT_RECONNECT_MAX_MS = 5000;
const MIN_FRAME = 576;                         // the smallest datagram every IPv4 host must accept
const MAX_FRAME = 65535;                       // the header's 16-bit size field
const MAX_ID = 4294967294;
export const DEFAULT_BUSY_POLL_US = 100;         // docs/busy-poll.md: poll this long after traffic before sleeping
export const MAX_BUSY_POLL_US = 1000;
export const DEFAULT_HOLD_MS = 50;               // docs/scale.md: spread traffic under a backlog
const DEFAULT_OFFLOAD = true;                   // docs/offload.md: safe with uWSGI peers both ways                     // (uid_t)-1 means "unchanged"
const SUN_PATH_MAX = 107;

class Options {
  constructor(readonly list: OptionList) {}
  all(key: string): Option[] { return this.list.filter((o) => o.key === key); }
  /** The last occurrence of a single-valued option (checkOptions warned about earlier ones). */
  last(key: string): Option | undefined { const a = this.all(key); return a[a.length - 1]; }
}

const fail = (o: Option, message: string): never => { throw new ConfigError(`${o.key}: ${message}`, o.source); };

function intOption(opts: Options, key: string, def: number, min: number, max: number): number {
  const o = opts.last(key);
  if (!o) return def;
  const n = Number(o.value.trim());
  if (!Number.isSafeInteger(n) || n < min || n > max) fail(o, `'${o.value}' is outside ${min}..${max}`);
  return n;
}

function boolOption(opts: Options, key: string, def: boolean): boolean {
  const o = opts.last(key);
  if (!o) return def;
  const b = parseBool(o.value);
  if (b === undefined) fail(o, `expected true or false, got '${o.value}'`);
  return b!;
}

function deviceName(o: Option, name: string): string {
  if (!/^[A-Za-z0-9_.:-]{1,15}$/.test(name) || name === '.' || name === '..') {
    fail(o, `'${name}' is not a device name (1 to 15 letters, digits, '_', '.', ':' or '-')`);
  }
  return name;
}

function socketPath(o: Option, p: string): string {
  if (p === '') fail(o, 'empty socket path');
  if (Buffer.byteLength(p) > SUN_PATH_MAX) fail(o, `socket path longer than ${SUN_PATH_MAX} bytes: ${p}`);
  return p;
}

/** 'host:port' (TCP) is checked for its port; anything else is a unix path. */
function address(o: Option, addr: string): string {
  if (addr === '') fail(o, 'empty address');
  const colon = addr.lastIndexOf(':');
  if (colon >= 0) {
    const port = addr.slice(colon + 1);
    if (!/^[0-9]+$/.test(port) || Number(port) < 1 || Number(port) > 65535) fail(o, `bad port in '${addr}'`);
    if (/\s/.test(addr.slice(0, colon))) fail(o, `bad host in '${addr}'`);
  } else {
    socketPath(o, addr);
  }
  return addr;
}

/** A dotted-quad unicast IPv4 address (not 0.0.0.0, which rules read as "any"). */
function ipv4(o: Option, text: string): string {
  const parts = text.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > 255)) {
    fail(o, `'${text}' is not an IPv4 address`);
  }
  if (text === '0.0.0.0' || text === '255.255.255.255' || Number(parts[0]) >= 224) fail(o, `'${text}' cannot be a peer's address`);
  return text;
}

function netnsPath(o: Option | undefined): string | undefined {
  if (!o) return undefined;
  if (!o.value.startsWith('/')) fail(o, `'${o.value}' is not an absolute path (e.g. /run/netns/NAME)`);
  return o.value;
}

function userId(o: Option, user: string, accounts: AccountFiles): { uid: number; gid?: number } {
  const u = lookupUser(user, accounts);
  if (!u) fail(o, `unknown user '${user}'`);
  if (u!.uid > MAX_ID) fail(o, `uid ${user} is out of range`);
  return u!;
}

function one(opts: Options, key: string, what: string): Option {
  const list = opts.all(key);
  if (list.length === 0) throw new ConfigError(`no ${key} option: ${what}`);
  if (list.length > 1) fail(list[1], `given more than once (first at ${formatSource(list[0].source)}); moat runs one per ${key === 'tuntap-router' ? 'process' : 'vassal'}`);
  return list[0];
}

export function routerConfig(options: OptionList, accounts: AccountFiles = {}): RouterConfig {
  const checked = checkOptions(options);
  const warnings = [...checked.warnings];
  const opts = new Options(checked.options);

  const r = one(opts, 'tuntap-router', 'tuntap-router = <device> <socket> [stats] [gateway]');
  const fields = splitQuoted(r.value, r.source, 'tuntap-router');
  if (fields.length < 2 || fields.length > 4) fail(r, 'expected <device> <socket> [stats] [gateway]');
  const device = deviceName(r, fields[0]);
  const socket = socketPath(r, fields[1]);

  let stats = fields[2] !== undefined ? address(r, fields[2]) : undefined;
  const statsOpt = opts.last('tuntap-router-stats');
  if (statsOpt) {
    const s = address(statsOpt, statsOpt.value);
    if (stats !== undefined && stats !== s) fail(statsOpt, `'${s}' differs from the stats field of tuntap-router (${formatSource(r.source)}): '${stats}'`);
    stats = s;
  }
  const gateway = fields[3];
  if (gateway !== undefined) warnings.push(`${formatSource(r.source)}: tuntap-router gateway '${gateway}' accepted and ignored (moat does not forward over UDP)`);

  let socketMode = DEFAULT_SOCKET_MODE;
  const modeOpt = opts.last('tuntap-router-socket-mode');
  if (modeOpt) {
    if (!/^[0-7]{3,4}$/.test(modeOpt.value)) fail(modeOpt, `bad mode '${modeOpt.value}' (octal, e.g. 0660)`);
    socketMode = parseInt(modeOpt.value, 8);
  }

  let socketOwner: RouterConfig['socketOwner'];
  const ownerOpt = opts.last('tuntap-router-socket-owner');
  if (ownerOpt) {
    const [user, group, ...rest] = ownerOpt.value.split(':');
    if (rest.length || !user) fail(ownerOpt, `expected user[:group], got '${ownerOpt.value}'`);
    const u = userId(ownerOpt, user, accounts);
    let gid = u.gid;
    if (group !== undefined) {
      gid = lookupGroup(group, accounts);
      if (gid === undefined) fail(ownerOpt, `unknown group '${group}'`);
      if (gid! > MAX_ID) fail(ownerOpt, `gid ${group} is out of range`);
    }
    if (gid === undefined) fail(ownerOpt, `uid ${user} has no passwd entry; name a group (user:group)`);
    socketOwner = { uid: u.uid, gid: gid! };
  }

  const maxFrame = intOption(opts, 'tuntap-router-max-frame', DEFAULT_MAX_FRAME, MIN_FRAME, MAX_FRAME);
  if (maxFrame > DEFAULT_MAX_FRAME) {
    warnings.push(`${formatSource(opts.last('tuntap-router-max-frame')!.source)}: tuntap-router-max-frame ${maxFrame} is above 8188: uWSGI peers cannot send or take such frames`);
  }
  const queueBytes = intOption(opts, 'tuntap-router-queue-bytes', DEFAULT_QUEUE_BYTES, maxFrame + 4, 1 << 30);
  const offload = boolOption(opts, 'tuntap-router-offload', DEFAULT_OFFLOAD);
  const holdMs = intOption(opts, 'tuntap-router-hold', DEFAULT_HOLD_MS, 0, 1000);
  const sndbuf = sndbufOption(opts, 'tuntap-router-sndbuf');
  const busyPollUs = intOption(opts, 'tuntap-router-busy-poll', DEFAULT_BUSY_POLL_US, 0, MAX_BUSY_POLL_US);

  const rules: OptionRule[] = [];
  for (const o of checked.options) {
    if (o.key !== 'tuntap-router-firewall-in' && o.key !== 'tuntap-router-firewall-out') continue;
    if (o.value.trim() === '') fail(o, 'empty rule');
    rules.push({ chain: o.key === 'tuntap-router-firewall-in' ? 'in' : 'out', text: o.value, index: rules.length + 1, source: o.source });
  }
  const ruleFiles = opts.all('tuntap-router-firewall-file').map((o) => (o.value === '' ? fail(o, 'empty path') : o.value));

  const bindings: RouterConfig['bindings'] = [];
  const boundBy = new Map<string, { uid: number; o: Option }>();
  for (const o of opts.all('tuntap-router-bind')) {
    const f = o.value.trim().split(/\s+/);
    if (f.length !== 2) fail(o, `expected <uid|user> <ipv4>, got '${o.value}'`);
    const uid = userId(o, f[0], accounts).uid;
    const addr = ipv4(o, f[1]);
    const before = boundBy.get(addr);
    if (before && before.uid !== uid) fail(o, `${addr} is already bound to uid ${before.uid} (${formatSource(before.o.source)})`);
    if (!before) { boundBy.set(addr, { uid, o }); bindings.push({ uid, addr }); }
  }

  let useCredentials = false;
  const credOpt = opts.last('tuntap-use-credentials');
  if (credOpt) {
    const b = parseBool(credOpt.value);
    useCredentials = b ?? true;
    if (b === undefined) warnings.push(`${formatSource(credOpt.source)}: tuntap-use-credentials '${credOpt.value}' (a uWSGI symbol hook) ignored; moat reads SO_PEERCRED`);
  }

  const metricsOpt = opts.last('metrics');
  const metrics = metricsOpt ? address(metricsOpt, metricsOpt.value) : undefined;
  if (metricsOpt && !metrics!.includes(':')) fail(metricsOpt, `expected host:port, got '${metricsOpt.value}'`);

  return {
    device, socket, stats, gateway, socketMode, socketOwner, maxFrame, queueBytes, offload, holdMs, busyPollUs, ...sndbuf, rules, ruleFiles, bindings,
    useCredentials, metrics, netns: netnsPath(opts.last('tuntap-router-netns')), warnings,
  };
}

/** A connection's send buffer: only when given (absent: the native default, native/sndbuf.h). */
function sndbufOption(opts: Options, key: string): { sndbuf?: number } {
  return opts.last(key) ? { sndbuf: intOption(opts, key, 0, 0, 1 << 26) } : {};
}

export function deviceConfig(options: OptionList): DeviceConfig {
  const checked = checkOptions(options);
  const warnings = [...checked.warnings];
  const opts = new Options(checked.options);

  // uWSGI splits at the first space: the device, then the socket path.
  const d = one(opts, 'tuntap-device', 'tuntap-device = <device>[ <socket>]');
  const value = d.value.trim();
  const space = value.search(/[ \t]/);
  const device = deviceName(d, space < 0 ? value : value.slice(0, space));
  let socket = space < 0 ? '' : value.slice(space + 1).trim();
  if (socket === '') {
    socket = DEFAULT_DEVICE_SOCKET;
    warnings.push(`${formatSource(d.source)}: tuntap-device without a socket: moat connects to ${DEFAULT_DEVICE_SOCKET} (uWSGI would only create the device)`);
  }
  socketPath(d, socket);

  const maxFrame = intOption(opts, 'tuntap-device-max-frame', DEFAULT_MAX_FRAME, MIN_FRAME, MAX_FRAME);
  const queueBytes = intOption(opts, 'tuntap-device-queue-bytes', DEFAULT_QUEUE_BYTES, maxFrame + 4, 1 << 30);
  const reconnectMinMs = intOption(opts, 'tuntap-device-reconnect-min', DEFAULT_RECONNECT_MIN_MS, 1, 3_600_000);
  const reconnectMaxMs = intOption(opts, 'tuntap-device-reconnect-max', Math.max(DEFAULT_RECONNECT_MAX_MS, reconnectMinMs), 1, 3_600_000);
  if (reconnectMaxMs < reconnectMinMs) {
    fail(opts.last('tuntap-device-reconnect-max')!, `${reconnectMaxMs} is below tuntap-device-reconnect-min ${reconnectMinMs}`);
  }
  const offload = boolOption(opts, 'tuntap-device-offload', DEFAULT_OFFLOAD);
  const busyPollUs = intOption(opts, 'tuntap-device-busy-poll', DEFAULT_BUSY_POLL_US, 0, MAX_BUSY_POLL_US);
  return { device, socket, maxFrame, queueBytes, offload, busyPollUs, ...sndbufOption(opts, 'tuntap-device-sndbuf'), reconnectMinMs, reconnectMaxMs, netns: netnsPath(opts.last('tuntap-device-netns')), warnings };
}

/** The instance's own `uid`/`gid` (names or numbers): who a standalone router
 *  or device becomes once its device and sockets exist. A uid without gid
 *  takes the user's primary group. */
export function instanceUser(options: OptionList, accounts: AccountFiles = {}): { uid: number; gid: number } | undefined {
  const last = (k: string) => options.filter((o) => o.key === k).pop();
  const u = last('uid');
  const g = last('gid');
  if (!u && !g) return undefined;
  if (!u) fail(g!, 'gid without uid: name the user to become too');
  const user = userId(u!, u!.value.trim(), accounts);
  let gid = user.gid;
  if (g) {
    const name = g.value.trim();
    gid = /^\d+$/.test(name) ? Number(name) : lookupGroup(name, accounts);
    if (gid === undefined) fail(g, `unknown group '${name}'`);
  }
  if (gid === undefined) fail(u!, `uid ${u!.value.trim()} has no passwd entry: set gid too`);
  return { uid: user.uid, gid: gid! };
}

/** Who the router process of `moat emperor` becomes once its device and
 *  sockets exist: the emperor config's `uid`/`gid`, else `nobody` with group
 *  `nogroup` (or `nobody`, or nobody's primary group). Never root: the point
 *  is a data path without privilege. */
export function routerProcessUser(options: OptionList, accounts: AccountFiles = {}): { uid: number; gid: number } {
  const set = instanceUser(options, accounts);
  if (set) {
    if (set.uid === 0) fail(options.filter((o) => o.key === 'uid').pop()!, 'the router process cannot stay root: name an unprivileged user (default: nobody)');
    return set;
  }
  const nobody = lookupUser('nobody', accounts);
  if (!nobody) {
    throw new ConfigError('the router process drops to user nobody by default, and this system has none in /etc/passwd: set uid (and gid) in the emperor\'s config');
  }
  const gid = lookupGroup('nogroup', accounts) ?? lookupGroup('nobody', accounts) ?? nobody.gid;
  if (gid === undefined) throw new ConfigError('no group for the router process (nogroup, nobody): set gid in the emperor\'s config');
  return { uid: nobody.uid, gid };
}
