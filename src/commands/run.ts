// run.ts: `moat --OPTION VALUE ...`: runs the router, the emperor and/or the
// device the options name, until SIGTERM or SIGINT; SIGHUP reloads the
// router's rules. With `emperor` (as `moat emperor` does) and tuntap-router,
// the router runs in a process of its own (privilege separation): this
// process stays root to spawn vassals, the router process drops to the
// config's uid/gid (default nobody) once its device and sockets exist. The
// exec-as-root hooks run here once the router process started, then the
// emperor; on stop the vassals stop before the router. Without tuntap-router
// the emperor runs on its own.
import { loadArgv } from '../config/load';
import { routerConfig, deviceConfig, instanceUser, routerProcessUser } from '../config/router-config';
import { dropPrivileges, handOver } from '../privileges';
import { ConfigError, OptionList } from '../config/types';
import { Router } from '../router/router';
import { hooksPlugin, runHooks } from '../router/hooks';
import { RouterProcess } from '../router/router-process';
import { Device } from '../device/device';
import { logger, setLogLevel } from '../log';
import { Emperor } from '../emperor/emperor';
import { emperorConfig } from '../emperor/config';
import { checkOptions } from '../config/schema';
import { ptyClientConfig, ptyRouterConfigs, sharedPtyConfig } from '../pty/config';
import { PtyRouter, SharedPtyServer } from '../pty/server';
import { ptyClient } from './pty';

export async function runOptions(argv: string[], opts: { emperor?: boolean } = {}): Promise<number> {
  let options: OptionList;
  try {
    options = loadArgv(argv);
  } catch (err) {
    process.stderr.write(`moat: ${(err as Error).message}\n`);
    return 2;
  }
  const has = (k: string) => options.some((o) => o.key === k);
  const level = options.filter((o) => o.key === 'log-level').pop();
  if (level) setLogLevel(level.value);
  const log = logger();

  let router: Router | undefined;
  let routerProc: RouterProcess | undefined;
  let device: Device | undefined;
  let ptys: PtyRouter[] = [];
  let shared: SharedPtyServer | undefined;
  let sharedExit: ((status: number) => void) | undefined;
  let emperor: Emperor | undefined;
  const hooks = options.filter((o) => o.key === 'exec-as-root').map((o) => o.value);
  try {
    // pty options (aliases resolved): a client runs alone; servers run beside the rest.
    const checked = checkOptions(options);
    const client = ptyClientConfig(checked.options);
    if (client) return ptyClient(client.path, client.framed);
    ptys = ptyRouterConfigs(checked.options).map((c) => new PtyRouter(c));
    const sharedCfg = sharedPtyConfig(checked.options);
    if (sharedCfg) shared = new SharedPtyServer(sharedCfg, (status) => sharedExit?.(status));
    if ((ptys.length || shared) && !has('tuntap-router') && !has('tuntap-device')) {
      for (const w of checked.warnings) log.warn(w);
    }
    if (opts.emperor && !has('emperor')) throw new Error('moat emperor: no emperor option (emperor = DIR, or --emperor DIR)');
    if (has('emperor')) emperor = new Emperor(emperorConfig(options));
    if (has('tuntap-router')) {
      const cfg = routerConfig(options);
      if (emperor) {
        routerProc = new RouterProcess(cfg, options, routerProcessUser(options), emperor.log);
      } else {
        router = new Router(cfg);
        if (hooks.length) router.use(hooksPlugin(hooks, cfg.netns));
      }
    } else if (emperor && hooks.length) {
      throw new Error('exec-as-root in the emperor\'s config needs tuntap-router (the hooks run once its device exists)');
    }
    if (has('tuntap-device')) device = new Device(deviceConfig(options));
  } catch (err) {
    if (err instanceof ConfigError || err instanceof Error) {
      process.stderr.write(`moat: ${err.message}\n`);
      return 2;
    }
    throw err;
  }
  if (!router && !routerProc && !device && !emperor && !ptys.length && !shared) {
    process.stderr.write('moat: nothing to run: give --tuntap-router, --emperor, --tuntap-device, --forkpty-urouter or --pty-socket (see moat --help)\n');
    return 2;
  }

  const stopAll = async () => {
    for (const p of ptys) p.stop();
    shared?.stop();
    await device?.stop();
    await emperor?.stop();       // the vassals first, then the router
    await routerProc?.stop();
    await router?.stop();
  };
  let dropTo: ReturnType<typeof instanceUser>;
  try {
    // The emperor spawns vassals in new namespaces: that needs root, so it
    // keeps it (the vassals drop their own, per vassal file); uid/gid in its
    // config name the router process's user.
    dropTo = emperor ? undefined : instanceUser(options);
    if (emperor && !routerProc && instanceUser(options)) {
      throw new Error('uid/gid in the emperor\'s config name the router process\'s user, and this emperor runs no router (no tuntap-router); the emperor itself keeps root to spawn vassals (set uid/gid in vassal files)');
    }
  } catch (err) {
    process.stderr.write(`moat: ${(err as Error).message}\n`);
    return 2;
  }
  // A fatal router event (see below) may come while the rest still starts.
  let onFatal: ((reason: string) => void) | undefined;
  let fatalEarly: string | undefined;
  const fatal = (reason: string) => {
    if (onFatal) onFatal(reason);
    else fatalEarly ??= reason;
  };
  router?.on('fatal', fatal);
  routerProc?.on('fatal', fatal);
  try {
    await router?.start();
    if (routerProc) {
      await routerProc.start();
      runHooks(hooks, routerProc.config.netns, log);
    }
    if (emperor) await emperor.start(routerProc);
    device?.start();
    for (const p of ptys) p.start();
    shared?.start();
    if (dropTo) {
      handOver([...(router?.createdDirs ?? [])], dropTo);
      dropPrivileges(dropTo, log);
    }
  } catch (err) {
    log.error({ err: (err as Error).message }, 'start failed');
    await stopAll();
    return 1;
  }

  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig }, 'stopping');
      stopAll().then(() => resolve(0), (err: Error) => {
        log.error({ err: err.message }, 'stop failed');
        resolve(1);
      });
    };
    // The router cannot go on (its tun device deleted, its socket gone and not
    // bindable): stop everything cleanly and exit 1, so a supervisor
    // (systemd Restart=on-failure) starts it again.
    onFatal = (reason: string) => {
      if (stopping) return;
      stopping = true;
      log.error({ reason }, 'stopping: the router failed');
      stopAll().then(() => resolve(1), () => resolve(1));
    };
    if (fatalEarly !== undefined) onFatal(fatalEarly);
    // pty-exec ended: moat exits as uWSGI does, with the command's status.
    sharedExit = (status) => {
      if (stopping) return;
      stopping = true;
      log.info('pty-exec command ended: stopping');
      const code = status < 0 ? 1 : (status & 0x7f) === 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
      stopAll().then(() => resolve(code), () => resolve(1));
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      router?.reloadRules('SIGHUP');
      routerProc?.reload('SIGHUP');
    });
  });
}
