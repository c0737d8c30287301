// config.ts: options -> the pty servers' configs (forkpty-router,
// forkpty-urouter, pty-socket) and the client's (pty-connect, pty-uconnect).
// Every bad value is a ConfigError naming the option and where it was set.
import { AccountFiles, lookupGroup, lookupUser } from '../config/accounts';
import { CheckedOptions, checkOptions, spec } from '../config/schema';
import { ConfigError, Option, OptionList } from '../config/types';

/** The table's defaults, for the runtime lines that are sent only when they differ. */
export const DEFAULT_PTY_GRACE_MS = spec('forkpty-router-grace').default as number;
export const DEFAULT_PTY_MAX_SESSIONS = spec('forkpty-router-max-sessions').default as number;
const SUN_PATH_MAX = 107;
const MAX_ID = 4294967294;

export interface PtyRouterConfig {
  framed: boolean;
  path: string;
  socketMode: number;
  socketOwner?: { uid: number; gid: number };
  command: string;              // '' = /bin/sh
  rows: number;
  cols: number;
  session?: { uid: number; gid: number };   // forkpty-router-user
  graceMs: number;
  maxSessions: number;
}

export interface SharedPtyConfig {
  path: string;
  socketMode: number;
  socketOwner?: { uid: number; gid: number };
  command: string;              // pty-exec ('' = /bin/sh)
  rows: number;
  cols: number;
  session?: { uid: number; gid: number };
}

const fail = (o: Option, message: string): never => { throw new ConfigError(`${o.key}: ${message}`, o.source); };
type Options = OptionList | CheckedOptions;
const last = (opts: Options, key: string): Option | undefined => checkOptions(opts).last(key);

function socketPath(o: Option): string {
  const p = o.value.trim();
  if (!p) fail(o, 'empty socket path');
  if (p.includes(':') && !p.includes('/')) fail(o, `'${p}' looks like a TCP address; moat's pty servers take unix socket paths only`);
  if (Buffer.byteLength(p) > SUN_PATH_MAX) fail(o, `socket path longer than ${SUN_PATH_MAX} bytes`);
  return p;
}

/** `user[:group]` to numbers (a user's primary group when no group is named). */
export function userGroup(o: Option, accounts: AccountFiles = {}): { uid: number; gid: number } {
  const [user, group, ...rest] = o.value.trim().split(':');
  if (rest.length || !user) fail(o, `expected user[:group], got '${o.value}'`);
  const u = lookupUser(user, accounts);
  if (!u) fail(o, `unknown user '${user}'`);
  if (u!.uid > MAX_ID) fail(o, `uid ${user} is out of range`);
  let gid = u!.gid;
  if (group !== undefined) {
    gid = lookupGroup(group, accounts);
    if (gid === undefined) fail(o, `unknown group '${group}'`);
  }
  if (gid === undefined) fail(o, `uid ${user} has no passwd entry; name a group (user:group)`);
  if (gid! > MAX_ID) fail(o, `gid ${group} is out of range`);
  return { uid: u!.uid, gid: gid! };
}

function common(opts: Options, accounts: AccountFiles) {
  const checked = checkOptions(opts);
  const mode = checked.string('forkpty-router-socket-mode')!.trim();
  if (!/^[0-7]{3,4}$/.test(mode)) fail(checked.last('forkpty-router-socket-mode')!, `bad mode '${mode}' (octal, e.g. 0600)`);
  const socketMode = parseInt(mode, 8);
  const ownerOpt = last(opts, 'forkpty-router-socket-owner');
  const userOpt = last(opts, 'forkpty-router-user');
  return {
    socketMode,
    socketOwner: ownerOpt ? userGroup(ownerOpt, accounts) : undefined,
    session: userOpt ? userGroup(userOpt, accounts) : undefined,
    rows: checked.int('forkptyrouter-rows'),
    cols: checked.int('forkptyrouter-cols'),
  };
}

/** One config per forkpty-router / forkpty-urouter option given (0, 1 or 2). */
export function ptyRouterConfigs(opts: Options, accounts: AccountFiles = {}): PtyRouterConfig[] {
  const out: PtyRouterConfig[] = [];
  const c = common(opts, accounts);
  const checked = checkOptions(opts);
  const command = last(opts, 'forkpty-router-command')?.value.trim() ?? '';
  const graceMs = checked.int('forkpty-router-grace');
  const maxSessions = checked.int('forkpty-router-max-sessions');
  for (const [key, framed] of [['forkpty-router', false], ['forkpty-urouter', true]] as const) {
    const o = last(opts, key);
    if (!o) continue;
    out.push({ framed, path: socketPath(o), command, graceMs, maxSessions, ...c });
  }
  if (out.length === 2 && out[0].path === out[1].path) {
    fail(last(opts, 'forkpty-urouter')!, 'forkpty-router and forkpty-urouter need different sockets');
  }
  return out;
}

export function sharedPtyConfig(opts: Options, accounts: AccountFiles = {}): SharedPtyConfig | undefined {
  const o = last(opts, 'pty-socket');
  if (!o) return undefined;
  const c = common(opts, accounts);
  return { path: socketPath(o), command: last(opts, 'pty-exec')?.value.trim() ?? '', ...c };
}

/** The client named by pty-connect / pty-uconnect, if any. */
export function ptyClientConfig(opts: Options): { path: string; framed: boolean } | undefined {
  const u = last(opts, 'pty-uconnect');
  const r = last(opts, 'pty-connect');
  if (u && r) fail(u, 'give pty-connect or pty-uconnect, not both');
  const o = u ?? r;
  return o ? { path: socketPath(o), framed: o === u } : undefined;
}
