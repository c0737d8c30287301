// scenarios.ts: the three paths measured side by side, each between a gateway
// netns (192.168.0.1) and a vassal netns (192.168.0.2) made for this run:
//   veth   the kernel's own path: a veth pair
//   uwsgi  uWSGI 2.0's tuntap router in the gateway, its tuntap device in the vassal
//   moat   moat's CLI as the router; each vassal's device the native runtime
//          (moat-vassal, as the emperor runs it), or moat's CLI (moatDevice: 'cli')
// setup() builds one, teardown() removes it (processes, namespaces, socket
// directory), restart() does both after a lost vassal. uwsgi and moat can
// serve more vassals on the one router (`vassals`: 192.168.0.2, .3, ...,
// each a namespace and device of its own; the neighbour section).
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { deviceConfig } from '../src/config/router-config';
import { deviceRuntimeLines } from '../src/vassal/spec';
import { DEFAULT_RUNTIME as VASSAL_RUNTIME } from '../src/vassal/vassal';
import { Lab, sh, uniqueName } from '../test/helpers/netns';
import { VassalCgroups } from './vassal-cgroups';
import { collect, MOAT_CLI, releaseDir, releaseLab, run, sleep, trackDir, trackLab, until } from './lib';

export type Kind = 'veth' | 'uwsgi' | 'moat';
export const KINDS: Kind[] = ['veth', 'uwsgi', 'moat'];
/** How each kind is named in printed tables. */
export const KIND_LABEL: Record<Kind, string> = { veth: 'veth', uwsgi: 'uWSGI', moat: 'moat' };
export const GW_ADDR = '192.168.0.1';
export const V_ADDR = '192.168.0.2';

/** The address of vassal i (0-based): V_ADDR for the first. */
export function vassalAddr(i: number): string {
  return `192.168.0.${2 + i}`;
}

export interface Vassal { ns: string; addr: string }

export interface ScenarioOptions {
  /** moat: a rule file for --tuntap-router-firewall-file. */
  moatFirewallFile?: string;
  /** uwsgi: lines `tuntap-router-firewall-out = RULE` go into an ini file. */
  uwsgiFirewallOut?: string[];
  /** false: do not wait for a ping through the path (its rules may deny ping). */
  waitPing?: boolean;
  /**
   * Link MTU on both ends. uWSGI's frames hold at most 8188 bytes, so its
   * links get min(mtu, 8188); moat's router and device get a frame limit of
   * the MTU (--tuntap-router-max-frame / --tuntap-device-max-frame).
   */
  mtu?: number;
  /** moat: virtio-net offloads on both ends (--tuntap-router-offload /
   *  --tuntap-device-offload; docs/offload.md). Default on. */
  offload?: boolean;
  /** moat: one hop, the device hands its tun to the router (--tuntap-router-handoff /
   *  --tuntap-device-handoff; docs/one-hop.md). true sets both; absent: moat's default (on). */
  handoff?: boolean;
  /** moat: µs of polling after traffic on both ends (--tuntap-router-busy-poll /
   *  --tuntap-device-busy-poll; docs/busy-poll.md). Absent: moat's default. */
  busyPollUs?: number;
  /** moat: more options for its router (limits.ts: --tuntap-router-peer-limit lines). */
  moatRouterArgs?: string[];
  /** uwsgi, moat: vassals on the router, each in a namespace of its own (default 1, at most 20). */
  vassals?: number;
  /** moat: which program runs each vassal's device: 'runtime' (default) is
   *  build/Release/moat-vassal driven over fd 3, the way the emperor runs every
   *  vassal; 'cli' is the standalone `moat --tuntap-device` (a Node.js process). */
  moatDevice?: 'runtime' | 'cli';
  /** uwsgi, moat: each vassal in a cgroup of its own, as moat's emperor runs them (vassal-cgroups.ts). */
  cgroups?: boolean;
}

export const UWSGI_MAX_MTU = 8188;

export interface PeerStats { addr: string; tx: number; rx: number; dropped: number }

export abstract class Scenario {
  lab!: Lab;
  gw = '';
  vns = '';
  /** Every vassal: the first is vns at V_ADDR. */
  vassals: Vassal[] = [];
  restarts = 0;
  readonly log: string[] = [];
  private cgroups?: VassalCgroups;

  /** 'relay': bench/one-hop.ts's comparison path (bench/gen/tunrelay.cc). */
  constructor(readonly kind: Kind | 'relay', protected readonly opts: ScenarioOptions = {}) {}

  /** Builds the namespaces and the path; resolves once a ping answers through it. */
  async setup(): Promise<void> {
    this.lab = trackLab(new Lab());
    this.gw = this.lab.netns('mbg');
    this.vns = this.lab.netns('mbv');
    const n = this.opts.vassals ?? 1;
    if (!(Number.isInteger(n) && n >= 1 && n <= 20)) throw new Error(`vassals must be 1..20, not ${n}`);
    this.vassals = [{ ns: this.vns, addr: V_ADDR }];
    for (let i = 1; i < n; i++) this.vassals.push({ ns: this.lab.netns('mbv'), addr: vassalAddr(i) });
    for (const ns of [this.gw, ...this.vassals.map((v) => v.ns)]) {
      // No IPv6 on the test links: uWSGI's router drops a peer that sends an
      // IPv6 router solicitation (see uwsgi-compat.md).
      sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns });
    }
    await this.build();
    if (this.opts.cgroups) this.cgroups = await VassalCgroups.place(this.lab, this.vassals);
    if (this.opts.waitPing === false) { await sleep(500); return; }
    for (const v of this.vassals) {
      let ok = false;
      for (let i = 0; i < 50 && !ok; i++) ok = await this.alive(v.ns);
      if (!ok) throw new Error(`${this.kind}: no ping answer through the new path from ${v.addr}\n${this.diagnostics()}`);
    }
  }

  protected abstract build(): Promise<void>;

  async teardown(): Promise<void> {
    if (this.cgroups) await this.cgroups.destroy().catch((e) => this.log.push(`cgroups: ${(e as Error).message}`));
    this.cgroups = undefined;
    if (this.lab) await releaseLab(this.lab);
  }

  async restart(): Promise<void> {
    this.restarts++;
    await this.teardown();
    await this.setup();
  }

  /** A ping from the vassal (the first, or the one in ns) to the gateway answers (one try, 1 s). */
  async alive(ns = this.vns): Promise<boolean> {
    const r = await run(this.lab, ns, 'ping', ['-n', '-c', '1', '-W', '1', GW_ADDR], 4000);
    return r.code === 0;
  }

  /** Per-peer counters from the router's stats socket, where there is one. */
  async stats(): Promise<PeerStats[] | null> {
    return null;
  }

  diagnostics(): string {
    return this.log.join('\n');
  }
}

export class VethScenario extends Scenario {
  constructor(opts: ScenarioOptions = {}) { super('veth', opts); }

  protected async build(): Promise<void> {
    if (this.vassals.length > 1) throw new Error('veth: one vassal only');
    const a = uniqueName('mba');
    const b = uniqueName('mbb');
    sh('ip', ['link', 'add', a, 'netns', this.gw, 'type', 'veth', 'peer', 'name', b, 'netns', this.vns]);
    sh('ip', ['-n', this.gw, 'addr', 'add', `${GW_ADDR}/24`, 'dev', a]);
    sh('ip', ['-n', this.vns, 'addr', 'add', `${V_ADDR}/24`, 'dev', b]);
    if (this.opts.mtu) {
      sh('ip', ['-n', this.gw, 'link', 'set', a, 'mtu', String(this.opts.mtu)]);
      sh('ip', ['-n', this.vns, 'link', 'set', b, 'mtu', String(this.opts.mtu)]);
    }
    sh('ip', ['-n', this.gw, 'link', 'set', a, 'up']);
    sh('ip', ['-n', this.vns, 'link', 'set', b, 'up']);
  }
}

/** uWSGI or moat: a router process in the gateway, a device process in the vassal. */
export class TuntapScenario extends Scenario {
  dir = '';
  statsPath = '';
  router?: ChildProcess;
  /** The first vassal's device. */
  device?: ChildProcess;
  /** Every vassal's device, in the order of `vassals`. */
  devices: ChildProcess[] = [];

  constructor(kind: 'uwsgi' | 'moat', opts: ScenarioOptions = {}) { super(kind, opts); }

  protected async build(): Promise<void> {
    this.dir = trackDir(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-bench-')));
    fs.chmodSync(this.dir, 0o755);
    const sock = path.join(this.dir, 'router.sock');
    this.statsPath = path.join(this.dir, 'stats.sock');
    const gtun = uniqueName('mbt');

    let routerArgs: string[];
    /** A device's command line: its tun, and a directory of its own (uWSGI binds a socket there). */
    let deviceArgs: (vtun: string, vdir: string) => string[];
    /** The runtime's control lines for a device (moat's 'runtime' device only). */
    let runtimeLines: ((vtun: string) => string[]) | undefined;
    if (this.kind === 'uwsgi') {
      const ini = path.join(this.dir, 'router.ini');
      const lines = ['[uwsgi]', 'plugin = tuntap', `tuntap-router = ${gtun} ${sock} ${this.statsPath}`, 'master = true'];
      for (const r of this.opts.uwsgiFirewallOut ?? []) lines.push(`tuntap-router-firewall-out = ${r}`);
      fs.writeFileSync(ini, lines.join('\n') + '\n');
      routerArgs = ['uwsgi', '--ini', ini];
      deviceArgs = (vtun, vdir) => ['uwsgi', '--plugin', 'tuntap', '--tuntap-device', `${vtun} ${sock}`, '--master',
        '--jailed', '--uid', '65534', '--gid', '65534', '--socket', path.join(vdir, 'device.sock')];
    } else {
      routerArgs = [process.execPath, MOAT_CLI, '--tuntap-router', `${gtun} ${sock}`, '--tuntap-router-stats', this.statsPath];
      if (this.opts.moatFirewallFile) routerArgs.push('--tuntap-router-firewall-file', this.opts.moatFirewallFile);
      routerArgs.push(...(this.opts.moatRouterArgs ?? []));
      // MOAT_BENCH_ROUTER_ARGS: more options for moat's router, blank-separated (to compare settings).
      routerArgs.push(...(process.env.MOAT_BENCH_ROUTER_ARGS ?? '').split(/\s+/).filter(Boolean));
      // moat's device options, once: CLI flags for the CLI device, or read by
      // deviceConfig into the runtime's lines, as the emperor reads a vassal file.
      const deviceOpts: Array<[string, string]> = [];
      const offload = this.opts.offload ?? true;
      routerArgs.push(`--tuntap-router-offload=${offload}`);
      deviceOpts.push(['tuntap-device-offload', String(offload)]);
      if (this.opts.handoff) {
        routerArgs.push('--tuntap-router-handoff=true');
        deviceOpts.push(['tuntap-device-handoff', 'true']);
      }
      if (this.opts.busyPollUs !== undefined) {
        routerArgs.push('--tuntap-router-busy-poll', String(this.opts.busyPollUs));
        deviceOpts.push(['tuntap-device-busy-poll', String(this.opts.busyPollUs)]);
      }
      if (this.opts.mtu && this.opts.mtu > UWSGI_MAX_MTU) {
        routerArgs.push('--tuntap-router-max-frame', String(this.opts.mtu));
        deviceOpts.push(['tuntap-device-max-frame', String(this.opts.mtu)]);
      }
      if ((this.opts.moatDevice ?? 'runtime') === 'runtime') {
        deviceArgs = () => [VASSAL_RUNTIME];
        runtimeLines = (vtun) => {
          const list = [['tuntap-device', `${vtun} ${sock}`], ...deviceOpts].map(([key, value]) => ({ key, value, source: { file: '<bench>' } }));
          return ['name bench', `device ${vtun} ${sock}`, ...deviceRuntimeLines(deviceConfig(list)), 'start'];
        };
      } else {
        deviceArgs = (vtun) => [process.execPath, MOAT_CLI, '--tuntap-device', `${vtun} ${sock}`, ...deviceOpts.map(([k, v]) => `--${k}=${v}`)];
      }
    }
    const mtu = this.opts.mtu ? String(this.kind === 'uwsgi' ? Math.min(this.opts.mtu, UWSGI_MAX_MTU) : this.opts.mtu) : undefined;

    // MOAT_BENCH_PATHD=FILE: moat's router is that bench/bin/pathd build (the
    // router's native core without Node.js; its defaults: busy polling 100 µs,
    // hold 50 ms), to tell what the Node.js process around the loop costs.
    const pathd = process.env.MOAT_BENCH_PATHD;
    if (this.kind === 'moat' && pathd) routerArgs = [pathd, 'router', gtun, sock, '--hold-us', '50000', ...(this.opts.offload ?? true ? ['--offload'] : [])];
    this.router = this.lab.spawn(routerArgs[0], routerArgs.slice(1), { ns: this.gw });
    const rout = collect(this.router);
    rout.done.then((r) => this.log.push(`router exited code=${r.code} signal=${r.signal}`));
    const routerDied = () => this.router!.exitCode !== null || this.router!.signalCode !== null;
    const tunExists = (ns: string, dev: string) => { try { sh('ip', ['-n', ns, 'link', 'show', dev]); return true; } catch { return false; } };
    try {
      await until(() => { if (routerDied()) throw new Error('router exited'); return fs.existsSync(sock) && tunExists(this.gw, gtun); }, 30000, `${this.kind} router socket and ${gtun}`);
    } catch (e) {
      await sleep(200);
      this.log.push(`router: ${routerArgs.join(' ')}`, rout.err().slice(-3000), rout.out().slice(-1000));
      throw new Error(`${this.kind} router did not come up: ${(e as Error).message}\n${this.diagnostics()}`);
    }
    this.addAddr(this.gw, gtun, `${GW_ADDR}/24`);
    if (mtu) sh('ip', ['-n', this.gw, 'link', 'set', gtun, 'mtu', mtu]);
    sh('ip', ['-n', this.gw, 'link', 'set', gtun, 'up']);

    this.devices = [];
    for (const [i, v] of this.vassals.entries()) {
      const vdir = path.join(this.dir, i === 0 ? 'v' : `v${i}`);
      fs.mkdirSync(vdir);
      fs.chownSync(vdir, 65534, 65534); // uWSGI's jailed device binds its own socket here after dropping to 65534
      const vtun = uniqueName('mbu');
      const args = deviceArgs(vtun, vdir);
      const device = this.lab.spawn(args[0], args.slice(1), { ns: v.ns, fd3: runtimeLines !== undefined });
      // The runtime runs as long as its channel is open (the lab stops it with SIGINT).
      if (runtimeLines) (device.stdio[3] as Writable).write(runtimeLines(vtun).map((l) => l + '\n').join(''));
      this.devices.push(device);
      const dout = collect(device);
      dout.done.then((r) => this.log.push(`device ${v.addr} exited code=${r.code} signal=${r.signal}`));
      try {
        await until(() => tunExists(v.ns, vtun), 15000, `${this.kind} device ${vtun}`);
      } catch (e) {
        await sleep(200);
        this.log.push(`device: ${args.join(' ')}`, dout.err().slice(-3000), dout.out().slice(-1000));
        throw new Error(`${this.kind} device did not come up: ${(e as Error).message}\n${this.diagnostics()}`);
      }
      this.addAddr(v.ns, vtun, `${v.addr}/24`);
      if (mtu) sh('ip', ['-n', v.ns, 'link', 'set', vtun, 'mtu', mtu]);
      sh('ip', ['-n', v.ns, 'link', 'set', vtun, 'up']);
      sh('ip', ['-n', v.ns, 'route', 'replace', 'default', 'via', GW_ADDR, 'dev', vtun]);
    }
    this.device = this.devices[0];
  }

  private addAddr(ns: string, dev: string, cidr: string): void {
    try {
      sh('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', dev]);
    } catch (e) {
      // The program may have set the address itself.
      if (!/File exists/.test(String((e as { stderr?: string }).stderr ?? e))) throw e;
    }
  }

  /** Every vassal's device is still running. */
  deviceRunning(): boolean {
    return this.devices.length > 0 && this.devices.every((d) => d.exitCode === null && d.signalCode === null);
  }

  override async stats(): Promise<PeerStats[] | null> {
    if (!this.statsPath || !fs.existsSync(this.statsPath)) return null;
    const text = await new Promise<string>((resolve) => {
      let buf = '';
      const s = net.connect(this.statsPath);
      const t = setTimeout(() => { s.destroy(); resolve(buf); }, 2000);
      s.on('data', (d) => { buf += d.toString(); });
      s.on('end', () => { clearTimeout(t); resolve(buf); });
      s.on('error', () => { clearTimeout(t); resolve(buf); });
    });
    try {
      const j = JSON.parse(text) as { peers?: PeerStats[] };
      return (j.peers ?? []).map((p) => ({ addr: p.addr, tx: p.tx, rx: p.rx, dropped: p.dropped }));
    } catch {
      return null;
    }
  }

  override async teardown(): Promise<void> {
    await super.teardown();
    if (this.dir) releaseDir(this.dir);
    this.dir = '';
  }
}

export function makeScenario(kind: Kind, opts: ScenarioOptions = {}): Scenario {
  return kind === 'veth' ? new VethScenario(opts) : new TuntapScenario(kind, opts);
}

// uWSGI's device sometimes exits while its path is being built (its tun
// vanishes under `ip addr add`): a failed setup is retried, twice at most.
export async function setUp(sc: Scenario, step: (what: string) => void): Promise<void> {
  step('setting up');
  for (let attempt = 1; ; attempt++) {
    try {
      await sc.setup();
      return;
    } catch (err) {
      if (attempt >= 3) throw err;
      step(`setup failed (${(err as Error).message.split('\n')[0]}); retrying`);
      await sc.teardown();
    }
  }
}

export function moatBuilt(): boolean {
  return fs.existsSync(MOAT_CLI);
}
