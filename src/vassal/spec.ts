// spec.ts: a vassal file's options (uWSGI names) -> the config lines its
// native runtime takes over the control channel (docs/runtime-protocol.md).
// Order does not matter to the runtime (it sets up in uWSGI's order); hooks
// keep their file order. Every bad value is a ConfigError with file:line.
import { parseCronOptions, CronEntry } from '../plugins/cron';
import path from 'node:path';
import { lookupGroup, lookupUser } from '../config/accounts';
import { formatSource } from '../config/option';
import { checkOptions, findOption, OPTIONS, vassalUse } from '../config/schema';
import { deviceConfig } from '../config/router-config';
import { ConfigError, DeviceConfig, Option, OptionList } from '../config/types';
import { ipv4ToInt } from '../addr';
import { ptyRouterConfigs, sharedPtyConfig, DEFAULT_PTY_GRACE_MS, DEFAULT_PTY_MAX_SESSIONS } from '../pty/config';
import { CgroupLimits, vassalLimits } from './cgroup-limits';
import { TrafficLimits, vassalTrafficLimits } from '../config/traffic-limits';
import { vassalFirewall, VassalFirewall } from '../rules/vassal-rules';

/** Where each vassal's host directory is bind-mounted inside the vassal. */
export const VASSAL_DIR_MOUNTPOINT = '/run/moat';

export const CLONE_NAMES = ['fs', 'ipc', 'uts', 'net', 'pid'] as const;
export type CloneName = typeof CLONE_NAMES[number];

/** What the emperor gives every vassal (from its own config). */
export interface VassalContext {
  clone: CloneName[];          // emperor-use-clone
  routerSocket?: string;       // the emperor's router socket: a vassal's tuntap-device without a socket uses it
  hostDir: string;             // vassals-dir-root/NAME
  limitDefaults?: CgroupLimits;  // emperor-vassal-memory-max, -pids-max, -cpu-max
  trafficDefaults?: TrafficLimits;  // emperor-vassal-rate-out, ... (traffic-limits.ts)
}

export interface VassalSpec {
  name: string;
  lines: string[];             // config lines for the runtime, without 'start'
  address?: string;            // tuntap-device-address's address (no /BITS)
  addressSource?: string;      // file:line of it
  host?: string;               // vassal-host: in a fleet, the only host that runs it
  device?: { name: string; socket: string };
  uid?: number;
  gid?: number;
  cron: CronEntry[];           // cron, cron2, unique-cron, cron-tab: scheduled by the emperor, run by the runtime
  limits: CgroupLimits;        // its cgroup's limits (vassal-*-max, cgroup-opt, over the emperor's defaults)
  traffic: TrafficLimits;      // its traffic limits in the router (vassal-rate-out, ..., over the emperor's defaults)
  firewall: VassalFirewall;    // its own rules, after the router's (vassal-firewall-in, -out, -file; empty: none)
  ruleFiles: string[];         // vassal-firewall-file's paths, resolved (the emperor rereads them when they change)
  warnings: string[];
}

const fail = (o: Option, message: string): never => { throw new ConfigError(`${o.key}: ${message}`, o.source); };

/** emperor-use-clone's value ('mount' is 'fs'); a bad word is an error. */
export function parseClone(o: Option): CloneName[] {
  const out: CloneName[] = [];
  for (const raw of o.value.split(',').map((w) => w.trim()).filter(Boolean)) {
    const w = raw === 'mount' ? 'fs' : raw;
    if (!(CLONE_NAMES as readonly string[]).includes(w)) fail(o, `'${raw}' is not a namespace (fs, ipc, uts, net, pid)`);
    if (!out.includes(w as CloneName)) out.push(w as CloneName);
  }
  return out;
}

function oneLine(o: Option): string {
  if (/[\r\n]/.test(o.value)) fail(o, 'a value cannot span lines');
  if (Buffer.byteLength(o.value) > 60000) fail(o, 'value too long');
  return o.value;
}

/** tuntap-device-address's value: a vassal's address A.B.C.D/BITS. Throws ConfigError naming o. */
export function cidr(o: Option): { addr: string; bits: number } {
  const m = /^\s*(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})\s*$/.exec(o.value);
  if (!m) fail(o, `expected A.B.C.D/BITS, got '${o.value}'`);
  const parts = m![1].split('.').map(Number);
  const bits = Number(m![2]);
  if (parts.some((p) => p > 255) || bits < 1 || bits > 32) fail(o, `'${o.value}' is not an IPv4 address with a prefix length 1..32`);
  if (parts[0] === 0 || parts[0] >= 224 || parts[0] === 127) fail(o, `'${m![1]}' cannot be a vassal's address`);
  return { addr: m![1], bits };
}

/** An IPv4 address option's value. Throws ConfigError naming o. */
export function ipv4(o: Option): string {
  const v = o.value.trim();
  const parts = v.split('.');
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255)) fail(o, `'${v}' is not an IPv4 address`);
  return v;
}

function id(o: Option, kind: 'uid' | 'gid'): number {
  const v = o.value.trim();
  const n = kind === 'uid' ? lookupUser(v)?.uid : lookupGroup(v);
  if (n === undefined) fail(o, `unknown ${kind === 'uid' ? 'user' : 'group'} '${v}'`);
  if (n! > 4294967294 || n! < 0) fail(o, `${v} is out of range`);
  return n!;
}

/** The vassal's name: its file name, as in uWSGI (unique within the directory). */
export function vassalName(file: string): string {
  return path.basename(file);
}

/** A fleet host's name (fleet-host, vassal-host): it becomes an etcd key's last part. */
export function fleetHostName(o: Option): string {
  const v = o.value.trim();
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(v)) fail(o, `'${o.value}' is not a host name (letters, digits, _ . -; 1 to 63, not starting with _ . -)`);
  return v;
}

/** A vassal's name becomes a directory, a cgroup and log fields: letters,
 *  digits and `_ . @ : -` only, 1 to 128 of them, not starting with a dot
 *  (a newline or a slash in a file name must not reach the runtime's lines). */
export const SAFE_VASSAL_NAME = /^[A-Za-z0-9_@:-][A-Za-z0-9_.@:-]{0,127}$/;

/** Why a vassal file's name is refused, or undefined when it is fine. */
export function unsafeNameReason(name: string): string | undefined {
  if (SAFE_VASSAL_NAME.test(name)) return undefined;
  return `the file name ${JSON.stringify(name)} is not a vassal name: letters, digits and _ . @ : - only (1-128, not starting with a dot)`;
}

/** The vassal's host directory under vassals-dir-root: its name without the
 *  format's extension (customer1.ini -> customer1), so the sshd recipe's
 *  /run/moat/vassals/customer1/pty.sock does not depend on the file format. */
export function vassalDirName(name: string): string {
  return name.replace(/\.(ini|json|ya?ml|xml)$/i, '');
}

export function vassalSpec(file: string, options: OptionList, ctx: VassalContext): VassalSpec {
  const checked = checkOptions(options);
  const warnings = [...checked.warnings];
  const opts = checked.options;
  const all = (k: string) => opts.filter((o) => o.key === k);
  const last = (k: string) => all(k).pop();
  const name = vassalName(file);
  const lines: string[] = [`name ${name}`];
  if (ctx.clone.length) lines.push(`clone ${ctx.clone.join(',')}`);

  let device: VassalSpec['device'];
  const dev = last('tuntap-device');
  if (dev) {
    // moat: a device without a socket connects to the emperor's own router.
    const d = deviceConfig(checked, { socket: ctx.routerSocket });
    warnings.push(...d.warnings.filter((w) => !checked.warnings.includes(w)));
    if (/\s/.test(d.socket)) fail(dev, 'the socket path cannot contain blanks');
    device = { name: d.device, socket: d.socket };
    lines.push(`device ${d.device} ${d.socket}`, ...deviceRuntimeLines(d));
  }
  let address: string | undefined;
  let addressSource: string | undefined;
  const addrOpt = last('tuntap-device-address');
  if (addrOpt) {
    if (!device) fail(addrOpt, 'needs a tuntap-device');
    const c = cidr(addrOpt);
    address = c.addr;
    addressSource = formatSource(addrOpt.source);
    ipv4ToInt(address);
    lines.push(`device-address ${c.addr}/${c.bits}`);
  }
  const route = last('tuntap-device-route');
  if (route) {
    if (!device) fail(route, 'needs a tuntap-device');
    lines.push(`device-route ${ipv4(route)}`);
  }
  if (ctx.clone.includes('fs')) {
    // Only with a mount namespace of its own: in the host's it would cover the host's /run/moat.
    lines.push(`vassal-dir ${ctx.hostDir} ${VASSAL_DIR_MOUNTPOINT}`);
  }
  const pivot = last('pivot-root');
  if (pivot) {
    const f = pivot.value.trim().split(/\s+/);
    if (f.length !== 2 || !f.every((p) => p.startsWith('/'))) fail(pivot, `expected <new_root> <put_old> (absolute paths), got '${pivot.value}'`);
    if (!ctx.clone.includes('fs')) fail(pivot, 'needs emperor-use-clone with fs (a mount namespace of its own)');
    lines.push(`pivot-root ${f[0]} ${f[1]}`);
  }
  let uid: number | undefined;
  let gid: number | undefined;
  const uidOpt = last('uid');
  const gidOpt = last('gid');
  if (gidOpt) { gid = id(gidOpt, 'gid'); lines.push(`gid ${gid}`); }
  if (uidOpt) { uid = id(uidOpt, 'uid'); lines.push(`uid ${uid}`); }
  // pty-socket: the shared pty runs pty-exec, or else the first attach-daemon (its stdio moves to the pty).
  const shared = sharedPtyConfig(opts);
  let ptyDaemon: Option | undefined;
  if (shared) ptyDaemon = last('pty-exec') ?? all('attach-daemon')[0];
  lines.push(...ptyLines(opts, ctx, uid, gid, ptyDaemon, warnings));
  for (const o of opts) {
    if (o === ptyDaemon && o.key === 'attach-daemon') continue;
    switch (o.key) {
      case 'exec-post-jail': case 'exec-as-root': case 'exec-as-user': case 'attach-daemon':
        if (o.value.trim() === '') fail(o, 'empty command');
        lines.push(`${o.key} ${oneLine(o)}`);
        break;
      case 'env':
        if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(o.value)) fail(o, `expected KEY=VALUE, got '${o.value}'`);
        lines.push(`env ${oneLine(o)}`);
        break;
    }
  }
  warnings.push(...notForVassals(opts));
  const cg = vassalLimits(opts, ctx.limitDefaults);
  warnings.push(...cg.warnings, ...unsafeDefaults(file, opts, ctx));
  const fw = vassalFirewall(file, opts, warnings, path.dirname(ctx.hostDir));
  if ((fw.firewall.in.length || fw.firewall.out.length) && !device) {
    fail(opts.find((o) => o.key.startsWith('vassal-firewall-'))!, 'needs a tuntap-device (the rules judge its traffic)');
  }
  const hostOpt = last('vassal-host');
  const host = hostOpt ? fleetHostName(hostOpt) : undefined;
  return { name, lines, address, addressSource, ...(host ? { host } : {}), device, uid, gid, cron: parseCronOptions(opts), limits: cg.limits,
    traffic: vassalTrafficLimits(opts, ctx.trafficDefaults), firewall: fw.firewall, ruleFiles: fw.ruleFiles, warnings };
}

/** A warning naming the file for each way the vassal is less contained than
 *  moat can make it: root inside, the host's root filesystem, the host's
 *  network or process table. */
function unsafeDefaults(file: string, opts: OptionList, ctx: VassalContext): string[] {
  const has = (k: string) => opts.some((o) => o.key === k);
  const out: string[] = [];
  if (!has('uid')) out.push(`${file}: no uid: the vassal runs as root inside its namespaces (set uid and gid)`);
  if (!has('pivot-root')) out.push(`${file}: no pivot-root: the vassal sees the host's root filesystem`);
  if (!ctx.clone.includes('net')) out.push(`${file}: no net namespace (emperor-use-clone): the vassal shares the host's network`);
  if (!ctx.clone.includes('pid')) out.push(`${file}: no pid namespace (emperor-use-clone): the vassal sees the host's processes`);
  return out;
}

/** The runtime's device lines: one per row of the option table with a
 *  runtime line, valued from the checked device config (defaults included:
 *  the runtime has none of its own). */
export function deviceRuntimeLines(d: DeviceConfig): string[] {
  return OPTIONS.filter((s) => s.runtime).map((s) => {
    const v = d[s.native as keyof DeviceConfig];
    if (typeof v !== 'number' && typeof v !== 'boolean') throw new Error(`schema: ${s.name}'s native field ${s.native} is not in DeviceConfig`);
    return `${s.runtime} ${typeof v === 'boolean' ? (v ? 'on' : 'off') : v}`;
  });
}

/** A warning, naming file:line, for each option a vassal file may not set
 *  (the emperor's, the router's, ...): unknown, ignored and planned ones
 *  were warned about by checkOptions already. */
function notForVassals(opts: OptionList): string[] {
  const out: string[] = [];
  for (const o of opts) {
    const s = findOption(o.key);
    const u = s ? vassalUse(s) : undefined;
    if (!s || u?.use !== 'warns' || s.status === 'ignored' || s.status === 'planned') continue;
    out.push(`${formatSource(o.source)}: ${o.key} in a vassal file is ignored: ${u.reason}`);
  }
  return out;
}

/**
 * forkpty-router / forkpty-urouter / pty-socket -> the runtime's pty lines.
 * Paths are inside the vassal: with `fs`, /run/moat/NAME.sock there is
 * vassals-dir-root/VASSAL/NAME.sock on the host. The socket's owner is
 * forkpty-router-socket-owner, else the vassal's uid/gid (so the host user
 * with that uid can connect with the default mode 0600), else root.
 */
function ptyLines(opts: OptionList, ctx: VassalContext, uid: number | undefined, gid: number | undefined,
  ptyDaemon: Option | undefined, warnings: string[]): string[] {
  const routers = ptyRouterConfigs(opts);
  const shared = sharedPtyConfig(opts);
  if (!routers.length && !shared) return [];
  const out: string[] = [];
  const key = (framed: boolean) => opts.filter((o) => o.key === (framed ? 'forkpty-urouter' : 'forkpty-router')).pop()!;
  const where = (o: Option, p: string): string => {
    if (!p.startsWith('/') || /\s/.test(p)) fail(o, `'${p}' must be an absolute path inside the vassal, without blanks`);
    if (ctx.clone.includes('pid') && !ctx.clone.includes('fs')) fail(o, 'a pty server in a pid namespace needs emperor-use-clone with fs too');
    if (ctx.clone.includes('fs') && !p.startsWith(VASSAL_DIR_MOUNTPOINT + '/')) {
      warnings.push(`${formatSource(o.source)}: ${p} is not under ${VASSAL_DIR_MOUNTPOINT}, the vassal's directory: the host cannot reach it`);
    }
    return p;
  };
  const first = routers[0] ?? shared!;
  const owner = first.socketOwner ?? { uid: uid ?? -1, gid: gid ?? -1 };
  const sock = (p: string) => `${p} ${first.socketMode.toString(8).padStart(4, '0')} ${owner.uid} ${owner.gid}`;
  for (const r of routers) out.push(`pty-router ${r.framed ? 'framed' : 'raw'} ${sock(where(key(r.framed), r.path))}`);
  if (shared) {
    const o = opts.filter((x) => x.key === 'pty-socket').pop()!;
    out.push(`pty-socket ${sock(where(o, shared.path))}`);
    out.push(`pty-daemon ${ptyDaemon ? oneLine(ptyDaemon) : '/bin/sh'}`);
  }
  if (routers.length) {
    const r = routers[0];
    if (r.command) out.push(`pty-command ${oneLine(opts.filter((o) => o.key === 'forkpty-router-command').pop()!).trim()}`);
    if (r.graceMs !== DEFAULT_PTY_GRACE_MS) out.push(`pty-grace ${r.graceMs}`);
    if (r.maxSessions !== DEFAULT_PTY_MAX_SESSIONS) out.push(`pty-max-sessions ${Math.min(r.maxSessions, 65535)}`);
  }
  if (first.rows !== 24) out.push(`pty-rows ${first.rows}`);
  if (first.cols !== 80) out.push(`pty-cols ${first.cols}`);
  if (first.session) {
    const userOpt = opts.filter((o) => o.key === 'forkpty-router-user').pop()!;
    if (uid !== undefined && (first.session.uid !== uid || first.session.gid !== (gid ?? -1))) {
      fail(userOpt, `sessions run as the vassal's uid/gid (${uid}:${gid}); forkpty-router-user may only repeat them`);
    }
    if (uid === undefined) out.push(`pty-user ${first.session.uid} ${first.session.gid}`);
  }
  return out;
}
