// instance.ts: what one moat instance runs, built from its options as a list
// of components in start order (a Lifecycle, src/lifecycle/, runs it). `moat
// --ini`, `moat emperor` (run.ts) and the demo build theirs here:
//   standalone: router -> exec-as-root hooks -> device -> pty servers -> privilege drop (uid/gid)
//   emperor:    router process handle -> exec-as-root hooks -> emperor (its vassals)
//               [-> device -> pty servers]; no drop: the emperor keeps root to
//               spawn vassals, uid/gid name the router process's user.
// Without tuntap-router the emperor runs alone (and its config may set no hooks).
import { deviceConfig, instanceUser, routerConfig, routerProcessUser } from '../config/router-config';
import { CheckedOptions, checkOptions } from '../config/schema';
import { parsePeerLimits } from '../config/traffic-limits';
import type { OptionList } from '../config/types';
import { Device } from '../device/device';
import { emperorConfig } from '../emperor/config';
import { Emperor } from '../emperor/emperor';
import type { Component, End } from '../lifecycle/component';
import { logger } from '../log';
import { privilegeDrop } from '../privileges';
import { ptyRouterConfigs, sharedPtyConfig } from '../pty/config';
import { PtyRouter, SharedPtyServer } from '../pty/server';
import { hooksComponent } from '../router/hooks';
import { Router } from '../router/router';
import { routerComponent } from '../router/router-component';
import { RouterProcessHandle } from '../router/router-process-handle';
import { FleetAgent } from '../fleet/fleet-agent';
import { FleetStore } from '../fleet/fleet-store';
import { defaultFleetAddress } from '../fleet/fleet-address';

export interface Instance {
  readonly components: Component[];
  readonly router?: Router;                        // standalone
  readonly routerProcess?: RouterProcessHandle;    // emperor
  readonly emperor?: Emperor;
}

/** Throws (ConfigError or Error, the message for the user) on a bad config or one that runs nothing. */
/** reread: the options read again from their files (a reload); a standalone
 *  router takes its tuntap-router-peer-limit lines from them. */
export function buildInstance(options: OptionList, checked: CheckedOptions, opts: { emperor?: boolean; reread?: () => OptionList } = {}): Instance {
  const has = (k: string) => options.some((o) => o.key === k);
  const log = logger();
  const hooks = options.filter((o) => o.key === 'exec-as-root').map((o) => o.value);
  const ptys = ptyRouterConfigs(checked.options);
  const shared = sharedPtyConfig(checked.options);
  if ((ptys.length || shared) && !has('tuntap-router') && !has('tuntap-device')) {
    for (const w of checked.warnings) log.warn(w);
  }
  if (opts.emperor && !has('emperor')) throw new Error('moat emperor: no emperor option (emperor = DIR, or --emperor DIR)');
  const emperorCfg = has('emperor') ? emperorConfig(options) : undefined;
  const emperorLog = emperorCfg ? logger().child({ component: 'emperor', dir: emperorCfg.dir }) : undefined;

  const components: Component[] = [];
  // A fleet (emperor = etcd://...): the store first, so the router starts
  // with the fleet's rules (copied into a directory it reads as rule files).
  let fleet: FleetAgent | undefined;
  if (emperorCfg?.fleet) {
    const f = emperorCfg.fleet;
    const fleetLog = logger().child({ component: 'fleet', host: f.host });
    if (!f.hostAddress) {
      f.hostAddress = defaultFleetAddress(f.endpoints);
      if (f.hostAddress) fleetLog.info({ address: f.hostAddress }, 'fleet-address not set: this host\'s source address toward etcd');
      else fleetLog.warn('fleet-address not set and no route toward etcd: the other hosts cannot route to this host\'s vassals');
    }
    fleet = new FleetAgent(f, new FleetStore({ ...f, log: fleetLog }), fleetLog);
    components.push(fleet.first);
    options = [...options, { key: 'tuntap-router-firewall-file', value: fleet.rules.dir, source: { file: `<fleet ${f.url}>` } }];
  }
  let router: Router | undefined;
  let routerProcess: RouterProcessHandle | undefined;
  if (has('tuntap-router')) {
    const cfg = routerConfig(options);
    if (emperorLog) {
      routerProcess = new RouterProcessHandle(cfg, options, routerProcessUser(options), emperorLog);
      components.push(routerComponent('router process', routerProcess));
    } else {
      const r = new Router(cfg);
      router = r;
      const reread = opts.reread;
      components.push(routerComponent('router', r, reread && ((why) => {
        try {
          r.reloadLimits(parsePeerLimits(checkOptions(reread()).all('tuntap-router-peer-limit')), why);
        } catch (err) {
          r.log.error({ why, err: (err as Error).message }, 'peer limits not reloaded, the old ones stay in force');
        }
      })));
    }
    if (hooks.length) components.push(hooksComponent(hooks, cfg.netns, router?.log ?? log));
  } else if (emperorCfg && hooks.length) {
    throw new Error('exec-as-root in the emperor\'s config needs tuntap-router (the hooks run once its device exists)');
  }
  const emperor = emperorCfg ? new Emperor(emperorCfg, {
    router: routerProcess, log: emperorLog, reread: opts.reread,
    ...(fleet ? { fleet: { describe: fleet.describe, knownAddress: fleet.knownAddress } } : {}),
  }) : undefined;
  if (emperor) components.push(emperor);
  if (emperor && fleet) components.push(fleet.second(emperor, routerProcess));
  if (has('tuntap-device')) components.push(deviceComponent(new Device(deviceConfig(options))));
  for (const c of ptys) components.push(ptyRouterComponent(new PtyRouter(c)));
  if (shared) components.push(sharedPtyComponent(shared));
  if (components.length === 0) {
    throw new Error('nothing to run: give --tuntap-router, --emperor, --tuntap-device, --forkpty-urouter or --pty-socket (see moat --help)');
  }
  const user = instanceUser(options);
  if (emperor && !routerProcess && user) {
    throw new Error('uid/gid in the emperor\'s config name the router process\'s user, and this emperor runs no router (no tuntap-router); the emperor itself keeps root to spawn vassals (set uid/gid in vassal files)');
  }
  // Hardened unless pty servers run: their sessions are shells where sudo must work.
  const harden = ptys.length === 0 && !shared;
  if (user && !emperor) components.push(privilegeDrop(user, () => router?.createdDirs ?? [], log, { harden }));
  return { components, router, routerProcess, emperor };
}

function deviceComponent(device: Device): Component {
  return { name: 'tuntap-device', start: () => device.start(), stop: () => device.stop() };
}

function ptyRouterComponent(pty: PtyRouter): Component {
  return { name: pty.cfg.framed ? 'forkpty-urouter' : 'forkpty-router', start: () => pty.start(), stop: () => pty.stop() };
}

/** pty-socket: when its pty-exec command ends, moat exits as uWSGI does, with the command's status. */
function sharedPtyComponent(cfg: NonNullable<ReturnType<typeof sharedPtyConfig>>): Component {
  let end: End | undefined;
  const server = new SharedPtyServer(cfg, (status) => end?.({ code: exitCodeOf(status), why: 'pty-exec command ended: stopping' }));
  return { name: 'pty-socket', start: () => server.start(), stop: () => server.stop(), onEnd: (e) => { end = e; } };
}

/** A wait status as an exit code: the command's own, 128 + N for signal N, 1 if unknown. */
function exitCodeOf(status: number): number {
  return status < 0 ? 1 : (status & 0x7f) === 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
}
