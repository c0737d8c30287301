// scenarios.ts: the three paths measured side by side, each between a gateway
// netns (192.168.0.1) and a vassal netns (192.168.0.2) made for this run:
//   veth   the kernel's own path: a veth pair
//   uwsgi  uWSGI 2.0's tuntap router in the gateway, its tuntap device in the vassal
//   moat   moat's CLI in the same two roles
// setup() builds one, teardown() removes it (processes, namespaces, socket
// directory), restart() does both after a lost vassal.
import { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Lab, sh, uniqueName } from '../test/helpers/netns';
import { collect, MOAT_CLI, releaseDir, releaseLab, run, sleep, trackDir, trackLab, until } from './lib';

export type Kind = 'veth' | 'uwsgi' | 'moat';
export const KINDS: Kind[] = ['veth', 'uwsgi', 'moat'];
export const GW_ADDR = '192.168.0.1';
export const V_ADDR = '192.168.0.2';

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
  /** moat: µs of polling after traffic on both ends (--tuntap-router-busy-poll /
   *  --tuntap-device-busy-poll; docs/busy-poll.md). Absent: moat's default. */
  busyPollUs?: number;
  /** moat: more options for its router (limits.ts: --tuntap-router-peer-limit lines). */
  moatRouterArgs?: string[];
}

export const UWSGI_MAX_MTU = 8188;

export interface PeerStats { addr: string; tx: number; rx: number; dropped: number }

export abstract class Scenario {
  lab!: Lab;
  gw = '';
  vns = '';
  restarts = 0;
  readonly log: string[] = [];

  constructor(readonly kind: Kind, protected readonly opts: ScenarioOptions = {}) {}

  /** Builds the namespaces and the path; resolves once a ping answers through it. */
  async setup(): Promise<void> {
    this.lab = trackLab(new Lab());
    this.gw = this.lab.netns('mbg');
    this.vns = this.lab.netns('mbv');
    for (const ns of [this.gw, this.vns]) {
      // No IPv6 on the test links: uWSGI's router drops a peer that sends an
      // IPv6 router solicitation (see uwsgi-compat.md).
      sh('sysctl', ['-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1'], { ns });
    }
    await this.build();
    if (this.opts.waitPing === false) { await sleep(500); return; }
    let ok = false;
    for (let i = 0; i < 50 && !ok; i++) ok = await this.alive();
    if (!ok) throw new Error(`${this.kind}: no ping answer through the new path\n${this.diagnostics()}`);
  }

  protected abstract build(): Promise<void>;

  async teardown(): Promise<void> {
    if (this.lab) await releaseLab(this.lab);
  }

  async restart(): Promise<void> {
    this.restarts++;
    await this.teardown();
    await this.setup();
  }

  /** A ping from the vassal to the gateway answers (one try, 1 s). */
  async alive(): Promise<boolean> {
    const r = await run(this.lab, this.vns, 'ping', ['-n', '-c', '1', '-W', '1', GW_ADDR], 4000);
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
  device?: ChildProcess;

  constructor(kind: 'uwsgi' | 'moat', opts: ScenarioOptions = {}) { super(kind, opts); }

  protected async build(): Promise<void> {
    this.dir = trackDir(fs.mkdtempSync(path.join(os.tmpdir(), 'moat-bench-')));
    fs.chmodSync(this.dir, 0o755);
    const vdir = path.join(this.dir, 'v');
    fs.mkdirSync(vdir);
    fs.chownSync(vdir, 65534, 65534); // uWSGI's jailed device binds its own socket here after dropping to 65534
    const sock = path.join(this.dir, 'router.sock');
    this.statsPath = path.join(this.dir, 'stats.sock');
    const gtun = uniqueName('mbt');
    const vtun = uniqueName('mbu');

    let routerArgs: string[];
    let deviceArgs: string[];
    if (this.kind === 'uwsgi') {
      const ini = path.join(this.dir, 'router.ini');
      const lines = ['[uwsgi]', 'plugin = tuntap', `tuntap-router = ${gtun} ${sock} ${this.statsPath}`, 'master = true'];
      for (const r of this.opts.uwsgiFirewallOut ?? []) lines.push(`tuntap-router-firewall-out = ${r}`);
      fs.writeFileSync(ini, lines.join('\n') + '\n');
      routerArgs = ['uwsgi', '--ini', ini];
      deviceArgs = ['uwsgi', '--plugin', 'tuntap', '--tuntap-device', `${vtun} ${sock}`, '--master',
        '--jailed', '--uid', '65534', '--gid', '65534', '--socket', path.join(vdir, 'device.sock')];
    } else {
      routerArgs = [process.execPath, MOAT_CLI, '--tuntap-router', `${gtun} ${sock}`, '--tuntap-router-stats', this.statsPath];
      if (this.opts.moatFirewallFile) routerArgs.push('--tuntap-router-firewall-file', this.opts.moatFirewallFile);
      routerArgs.push(...(this.opts.moatRouterArgs ?? []));
      deviceArgs = [process.execPath, MOAT_CLI, '--tuntap-device', `${vtun} ${sock}`];
      const offload = this.opts.offload ?? true;
      routerArgs.push(`--tuntap-router-offload=${offload}`);
      deviceArgs.push(`--tuntap-device-offload=${offload}`);
      if (this.opts.busyPollUs !== undefined) {
        routerArgs.push('--tuntap-router-busy-poll', String(this.opts.busyPollUs));
        deviceArgs.push('--tuntap-device-busy-poll', String(this.opts.busyPollUs));
      }
      if (this.opts.mtu && this.opts.mtu > UWSGI_MAX_MTU) {
        routerArgs.push('--tuntap-router-max-frame', String(this.opts.mtu));
        deviceArgs.push('--tuntap-device-max-frame', String(this.opts.mtu));
      }
    }
    const mtu = this.opts.mtu ? String(this.kind === 'uwsgi' ? Math.min(this.opts.mtu, UWSGI_MAX_MTU) : this.opts.mtu) : undefined;

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

    this.device = this.lab.spawn(deviceArgs[0], deviceArgs.slice(1), { ns: this.vns });
    const dout = collect(this.device);
    dout.done.then((r) => this.log.push(`device exited code=${r.code} signal=${r.signal}`));
    try {
      await until(() => tunExists(this.vns, vtun), 15000, `${this.kind} device ${vtun}`);
    } catch (e) {
      await sleep(200);
      this.log.push(`device: ${deviceArgs.join(' ')}`, dout.err().slice(-3000), dout.out().slice(-1000));
      throw new Error(`${this.kind} device did not come up: ${(e as Error).message}\n${this.diagnostics()}`);
    }
    this.addAddr(this.vns, vtun, `${V_ADDR}/24`);
    if (mtu) sh('ip', ['-n', this.vns, 'link', 'set', vtun, 'mtu', mtu]);
    sh('ip', ['-n', this.vns, 'link', 'set', vtun, 'up']);
    sh('ip', ['-n', this.vns, 'route', 'replace', 'default', 'via', GW_ADDR, 'dev', vtun]);
  }

  private addAddr(ns: string, dev: string, cidr: string): void {
    try {
      sh('ip', ['-n', ns, 'addr', 'add', cidr, 'dev', dev]);
    } catch (e) {
      // The program may have set the address itself.
      if (!/File exists/.test(String((e as { stderr?: string }).stderr ?? e))) throw e;
    }
  }

  deviceRunning(): boolean {
    return !!this.device && this.device.exitCode === null && this.device.signalCode === null;
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

export function moatBuilt(): boolean {
  return fs.existsSync(MOAT_CLI);
}
