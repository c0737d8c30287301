// router-config.ts: an option list to the typed configs the router (host
// side) and the device (vassal side) read. Every bad value is a ConfigError
// naming the option and where it was written; options moat reads but does
// not act on come back as warnings. Both functions run checkOptions() first,
// so their warnings also cover unknown, ignored and planned options.
import { AccountFiles, lookupGroup, lookupUser } from './accounts';
import { formatSource, splitQuoted } from './option';
import { CheckedOptions, checkOptions, OPTIONS, parseBool, spec } from './schema';
import type { ConntrackOptions } from '../native';
import { ConfigError, DeviceConfig, Option, OptionList, OptionRule, RouterConfig } from './types';
import { parsePeerLimits } from './traffic-limits';

export const DEFAULT_DEVICE_SOCKET = '/tmp/tuntap.socket';
const MAX_ID = 4294967294;
const SUN_PATH_MAX = 107;
const UWSGI_MAX_FRAME = 8188;                    // uWSGI's 8192-byte buffer less the 4-byte header

const fail = (o: Option, message: string): never => { throw new ConfigError(`${o.key}: ${message}`, o.source); };

/** A queue must hold one whole frame (4-byte header + max-frame); the row's
 *  default (262144) holds the largest. */
/** The connection table's options: every tuntap-router-conntrack-* row, by its native field. */
function conntrackOptions(opts: CheckedOptions): ConntrackOptions {
  const out: Record<string, number> = {};
  for (const s of OPTIONS) if (s.name.startsWith('tuntap-router-conntrack-')) out[s.native!] = opts.int(s.name);
  return out as unknown as ConntrackOptions;
}

/** The connection table's options at the table's defaults (tests, embedders). */
export function conntrackDefaults(): ConntrackOptions {
  const out: Record<string, number> = {};
  for (const s of OPTIONS) if (s.name.startsWith('tuntap-router-conntrack-')) out[s.native!] = s.default as number;
  return out as unknown as ConntrackOptions;
}

function queueBytes(opts: CheckedOptions, key: string, maxFrame: number): number {
  const n = opts.int(key);
  const o = opts.last(key);
  if (o && n < maxFrame + 4) fail(o, `'${o.value}' is outside ${maxFrame + 4}..${spec(key).max} (at least max-frame + 4)`);
  return n;
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

function one(opts: CheckedOptions, key: string, what: string): Option {
  const list = opts.all(key);
  if (list.length === 0) throw new ConfigError(`no ${key} option: ${what}`);
  if (list.length > 1) fail(list[1], `given more than once (first at ${formatSource(list[0].source)}); moat runs one per ${key === 'tuntap-router' ? 'process' : 'vassal'}`);
  return list[0];
}

export function routerConfig(options: OptionList | CheckedOptions, accounts: AccountFiles = {}): RouterConfig {
  const opts = checkOptions(options);
  const warnings = [...opts.warnings];

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

  const modeOpt = opts.last('tuntap-router-socket-mode');
  const mode = opts.string('tuntap-router-socket-mode')!;
  if (!/^[0-7]{3,4}$/.test(mode)) fail(modeOpt!, `bad mode '${mode}' (octal, e.g. 0660)`);
  const socketMode = parseInt(mode, 8);

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

  const maxFrame = opts.int('tuntap-router-max-frame');
  if (maxFrame > UWSGI_MAX_FRAME) {
    warnings.push(`${formatSource(opts.last('tuntap-router-max-frame')!.source)}: tuntap-router-max-frame ${maxFrame} is above ${UWSGI_MAX_FRAME}: uWSGI peers cannot send or take such frames`);
  }

  const rules: OptionRule[] = [];
  for (const o of opts.options) {
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
    device, socket, stats, gateway, socketMode, socketOwner, maxFrame,
    queueBytes: queueBytes(opts, 'tuntap-router-queue-bytes', maxFrame),
    offload: opts.bool('tuntap-router-offload'),
    handoff: opts.bool('tuntap-router-handoff'),
    holdMs: opts.int('tuntap-router-hold'),
    tunQueues: opts.int('tuntap-router-queues'),
    busyPollUs: opts.int('tuntap-router-busy-poll'),
    sndbuf: opts.int('tuntap-router-sndbuf'),
    sndbufBusy: opts.int('tuntap-router-sndbuf-busy'),
    sndbufBudget: opts.int('tuntap-router-sndbuf-budget'),
    conntrack: conntrackOptions(opts),
    rules, ruleFiles, bindings, peerLimits: parsePeerLimits(opts.all('tuntap-router-peer-limit')),
    useCredentials, metrics, netns: netnsPath(opts.last('tuntap-router-netns')), warnings,
  };
}

/** `fallback.socket`: where a tuntap-device without a socket connects (in a
 *  vassal: the emperor's router), instead of /tmp/tuntap.socket with a warning. */
export function deviceConfig(options: OptionList | CheckedOptions, fallback: { socket?: string } = {}): DeviceConfig {
  const opts = checkOptions(options);
  const warnings = [...opts.warnings];

  // uWSGI splits at the first space: the device, then the socket path.
  const d = one(opts, 'tuntap-device', 'tuntap-device = <device>[ <socket>]');
  const value = d.value.trim();
  const space = value.search(/[ \t]/);
  const device = deviceName(d, space < 0 ? value : value.slice(0, space));
  let socket = space < 0 ? '' : value.slice(space + 1).trim();
  if (socket === '' && fallback.socket) {
    socket = fallback.socket;
  } else if (socket === '') {
    socket = DEFAULT_DEVICE_SOCKET;
    warnings.push(`${formatSource(d.source)}: tuntap-device without a socket: moat connects to ${DEFAULT_DEVICE_SOCKET} (uWSGI would only create the device)`);
  }
  socketPath(d, socket);

  const maxFrame = opts.int('tuntap-device-max-frame');
  const reconnectMinMs = opts.int('tuntap-device-reconnect-min');
  const maxOpt = opts.last('tuntap-device-reconnect-max');
  // Unset, the longest delay is its default or the first delay, whichever is longer.
  const reconnectMaxMs = maxOpt ? opts.int('tuntap-device-reconnect-max') : Math.max(opts.int('tuntap-device-reconnect-max'), reconnectMinMs);
  if (reconnectMaxMs < reconnectMinMs) fail(maxOpt!, `${reconnectMaxMs} is below tuntap-device-reconnect-min ${reconnectMinMs}`);
  return {
    device, socket, maxFrame,
    queueBytes: queueBytes(opts, 'tuntap-device-queue-bytes', maxFrame),
    offload: opts.bool('tuntap-device-offload'),
    handoff: opts.bool('tuntap-device-handoff'),
    busyPollUs: opts.int('tuntap-device-busy-poll'),
    sndbuf: opts.int('tuntap-device-sndbuf'),
    reconnectMinMs, reconnectMaxMs, netns: netnsPath(opts.last('tuntap-device-netns')), warnings,
  };
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

const IN_CODE = { file: '<code>' };

/** A router config built in code (tests, bench, an embedder): what
 *  `tuntap-router = DEVICE SOCKET` gives, the table's defaults included, with
 *  `more` over it. */
export function routerConfigFor(device: string, socket: string, more: Partial<RouterConfig> = {}): RouterConfig {
  return { ...routerConfig([{ key: 'tuntap-router', value: `${device} ${socket}`, source: IN_CODE }]), ...more };
}

/** A device config built in code, likewise (`tuntap-device = DEVICE SOCKET`). */
export function deviceConfigFor(device: string, socket: string, more: Partial<DeviceConfig> = {}): DeviceConfig {
  return { ...deviceConfig([{ key: 'tuntap-device', value: `${device} ${socket}`, source: IN_CODE }]), ...more };
}
