// fleet-lab.ts: a fleet of hosts on one machine for tests and the failover
// bench. Each host is a network namespace with its own `moat emperor` (and
// so its own router process, tun device and vassals); the hosts' datacenter
// network is a bridge in a namespace of its own, where one real etcd
// (etcd-server, a child process) listens. Names, addresses and the etcd
// prefix are unique per run; cleanup() stops what it started (by pid),
// kills what is left in the hosts' cgroups and removes them, and deletes the
// namespaces.
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { Lab, sh, sleep, uniqueName } from './netns';
import { MoatProcess, readStats, startMoat, tempDir } from './moat';
import { EtcdServer } from './etcd-server';

export interface FleetHost {
  name: string;            // its fleet-host
  ns: string;
  address: string;         // on the datacenter bridge
  ini: string;
  stats: string;           // its router's stats socket
  sock: string;
  cgroup: string;          // its emperor-cgroup (vassals below it)
  proc?: MoatProcess;      // its `moat emperor`, while running
}

export interface VassalRow { name: string; state: string; pid: number | null; address: string | null }

export class FleetLab {
  readonly lab = new Lab();
  readonly hosts: FleetHost[] = [];
  readonly prefix = `/moat-test-${crypto.randomBytes(3).toString('hex')}`;
  /** The vassals' network (the same /24 and gateway on every host). */
  readonly net = `192.168.${100 + crypto.randomInt(150)}.`;
  etcd!: EtcdServer;
  private dcNs = '';
  private bridge = '';
  private tmp = '';
  private readonly dc = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;

  get etcdUrl(): string { return `etcd://${this.dc}254:2379${this.prefix}`; }

  /** The datacenter (bridge, etcd) and n hosts, not yet running. */
  async setup(n: number, ttlSec: number, extra: string[] = []): Promise<void> {
    this.tmp = tempDir(this.lab);
    fs.chmodSync(this.tmp, 0o755);
    this.dcNs = this.lab.netns('fdc');
    this.bridge = uniqueName('fbr');
    sh('ip', ['link', 'add', this.bridge, 'type', 'bridge'], { ns: this.dcNs });
    sh('ip', ['addr', 'add', `${this.dc}254/24`, 'dev', this.bridge], { ns: this.dcNs });
    sh('ip', ['link', 'set', this.bridge, 'up'], { ns: this.dcNs });
    this.etcd = new EtcdServer(this.dcNs, `${this.dc}254`);
    this.lab.onCleanup(() => { void this.etcd.stop(); });
    await this.etcd.start();
    for (let i = 1; i <= n; i++) this.hosts.push(this.makeHost(i, ttlSec, extra, i === n));
  }

  private makeHost(i: number, ttlSec: number, extra: string[], last: boolean): FleetHost {
    const ns = this.lab.netns(`fh${i}`);
    const a = uniqueName(`fva${i}`);
    const b = uniqueName(`fvb${i}`);
    sh('ip', ['link', 'add', a, 'type', 'veth', 'peer', 'name', b]);
    sh('ip', ['link', 'set', a, 'netns', ns]);
    sh('ip', ['link', 'set', b, 'netns', this.dcNs]);
    sh('ip', ['link', 'set', b, 'master', this.bridge, 'up'], { ns: this.dcNs });
    sh('ip', ['addr', 'add', `${this.dc}${i}/24`, 'dev', a], { ns });
    sh('ip', ['link', 'set', a, 'up'], { ns });
    sh('sysctl', ['-qw', 'net.ipv4.ip_forward=1'], { ns });
    const dir = path.join(this.tmp, `h${i}`);
    fs.mkdirSync(dir, { mode: 0o755 });
    const name = `h${i}`;
    const tun = uniqueName(`fe${i}`);
    const cgroup = `moat-test-${crypto.randomBytes(3).toString('hex')}-${name}`;
    const host: FleetHost = {
      name, ns, address: `${this.dc}${i}`, ini: path.join(dir, 'emperor.ini'), stats: path.join(dir, 's.sock'), sock: path.join(dir, 't.sock'), cgroup,
    };
    fs.writeFileSync(host.ini, [
      // The last host leaves fleet-address to its default (its source address toward etcd: the same).
      '[uwsgi]', `emperor = ${this.etcdUrl}`, `fleet-host = ${name}`, ...(last ? [] : [`fleet-address = ${host.address}`]), `fleet-lease-ttl = ${ttlSec}`,
      `fleet-dir = ${path.join(dir, 'fleet')}`, 'emperor-use-clone = fs,ipc,uts,net,pid', 'emperor-freq = 1',
      `vassals-dir-root = ${path.join(dir, 'run')}`, `emperor-cgroup = ${cgroup}`,
      `tuntap-router = ${tun} ${host.sock} ${host.stats}`,
      `exec-as-root = ip addr add ${this.net}1/24 dev ${tun}`, `exec-as-root = ip link set ${tun} up`,
      ...extra, '',
    ].join('\n'));
    return host;
  }

  /** Starts a host's emperor; resolves once its router's stats answer. */
  async start(h: FleetHost): Promise<void> {
    try { fs.rmSync(h.stats, { force: true }); } catch { /* none */ }
    h.proc = startMoat(this.lab, ['emperor', '--ini', h.ini], h.ns);
    const t0 = Date.now();
    for (;;) {
      if (h.proc.child.exitCode !== null) throw new Error(`host ${h.name}'s emperor exited:\n${h.proc.output()}`);
      if (fs.existsSync(h.stats)) {
        try { await readStats(h.stats); return; } catch { /* not yet */ }
      }
      if (Date.now() - t0 > 20000) throw new Error(`host ${h.name}'s router did not start:\n${h.proc.output()}`);
      await sleep(100);
    }
  }

  /** A vassal file's text: its device, a named address, a daemon to keep it up. */
  vassal(n: number, extra: string[] = []): string {
    return ['[uwsgi]', 'tuntap-device = uwsgi0', `tuntap-device-address = ${this.net}${n}/24`, `tuntap-device-route = ${this.net}1`,
      'attach-daemon = sleep 3600', ...extra, ''].join('\n');
  }

  putVassal(file: string, text: string): void { this.etcd.put(`${this.prefix}/vassals/${file}`, text); }
  delVassal(file: string): void { this.etcd.del(`${this.prefix}/vassals/${file}`); }
  putRules(file: string, text: string): void { this.etcd.put(`${this.prefix}/rules/${file}`, text); }

  /** The vassals a host's emperor runs, from its router's stats document. */
  async rows(h: FleetHost): Promise<VassalRow[]> {
    if (!h.proc || h.proc.child.exitCode !== null || h.proc.child.signalCode !== null) return [];
    try {
      const doc = await readStats(h.stats);
      return (doc.emperor?.vassals ?? []) as VassalRow[];
    } catch { return []; }
  }

  /** Where each vassal runs now: name -> host names with it running. */
  async where(): Promise<Map<string, string[]>> {
    const m = new Map<string, string[]>();
    for (const h of this.hosts) {
      for (const r of await this.rows(h)) {
        if (r.state !== 'running') continue;
        m.set(r.name, [...(m.get(r.name) ?? []), h.name]);
      }
    }
    return m;
  }

  /** A vassal's runtime pid (pid 1 of its namespaces) on the host running it. */
  async pidOf(vassal: string): Promise<{ host: FleetHost; pid: number } | undefined> {
    for (const h of this.hosts) {
      const r = (await this.rows(h)).find((x) => x.name === vassal && x.state === 'running' && x.pid);
      if (r) return { host: h, pid: r.pid! };
    }
    return undefined;
  }

  /** Polls pred every 50 ms until true; the elapsed ms. A timeout says where
   *  the vassals run and each host's last log lines. */
  async until(pred: () => Promise<boolean> | boolean, ms: number, what: string): Promise<number> {
    const t0 = Date.now();
    for (;;) {
      if (await pred()) return Date.now() - t0;
      if (Date.now() - t0 > ms) {
        const where = JSON.stringify(Object.fromEntries(await this.where()));
        const tails = this.hosts.map((h) => `--- ${h.name}:\n${(h.proc?.output() ?? '').split('\n').slice(-25).join('\n')}`).join('\n');
        throw new Error(`timed out after ${ms} ms waiting for ${what}; running: ${where}\n${tails}`);
      }
      await sleep(50);
    }
  }

  /** One ping from inside a running vassal to an address; false if it runs nowhere or no answer. */
  async pingFrom(vassal: string, to: string): Promise<boolean> {
    const p = await this.pidOf(vassal);
    return p !== undefined && this.ping(p.pid, to);
  }

  /** Whether a host's router has loaded the fleet rule file `file` (its out chain). */
  async hasRule(h: FleetHost, file: string): Promise<boolean> {
    try {
      const doc = await readStats(h.stats);
      return (doc.moat.rules.out as Array<{ rule: string }>).some((r) => r.rule.includes(`/rules/${file}:`));
    } catch { return false; }
  }

  /** One ping from inside a vassal (its network namespace) to an address; true if answered. */
  ping(pid: number, to: string, timeoutS = 1): boolean {
    try {
      sh('nsenter', ['-t', String(pid), '-n', 'ping', '-c', '1', '-W', String(timeoutS), to], { timeoutMs: (timeoutS + 3) * 1000 });
      return true;
    } catch { return false; }
  }

  /** A host dies: SIGKILL to its emperor, its router process and every
   *  process in its vassals' cgroups, at once. */
  kill(h: FleetHost): number[] {
    const pids = new Set<number>();
    const emperor = h.proc?.child.pid;
    if (emperor) {
      pids.add(emperor);
      for (const p of childrenOf(emperor)) pids.add(p);
    }
    for (const p of cgroupPids(h.cgroup)) pids.add(p);
    for (const p of pids) { try { process.kill(p, 'SIGKILL'); } catch { /* gone */ } }
    return [...pids];
  }

  async cleanup(): Promise<void> {
    for (const h of this.hosts) {
      const c = h.proc?.child;
      if (c && c.exitCode === null && c.signalCode === null) {
        c.kill('SIGTERM');
        await Promise.race([h.proc!.exited, sleep(15000)]);
      }
    }
    for (const h of this.hosts) this.kill(h);
    await sleep(200);
    for (const h of this.hosts) removeCgroups(h.cgroup);
    await this.etcd?.stop();
    await this.lab.cleanup();
  }
}

/** Direct children of a process (the router process, vassal launchers). */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, 'utf8').replace(/^.*\) /, '').split(' ');
      if (Number(stat[1]) === pid) out.push(Number(d));
    } catch { /* gone */ }
  }
  return out;
}

/** Every directory named `name` below each cgroup hierarchy (depth <= 4). */
function cgroupDirs(name: string): string[] {
  const found: string[] = [];
  const walk = (d: string, depth: number) => {
    let ents: fs.Dirent[];
    try { ents = fs.readdirSync(d, { withFileTypes: true }); } catch { return; }
    for (const e of ents) {
      if (!e.isDirectory()) continue;
      const p = path.join(d, e.name);
      if (e.name === name) found.push(p);
      else if (depth < 4) walk(p, depth + 1);
    }
  };
  walk('/sys/fs/cgroup', 0);
  return found;
}

function cgroupPids(name: string): number[] {
  const pids: number[] = [];
  const collect = (d: string) => {
    try {
      for (const l of fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n')) if (l) pids.push(Number(l));
    } catch { /* none */ }
    try {
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) collect(path.join(d, e.name));
    } catch { /* gone */ }
  };
  for (const d of cgroupDirs(name)) collect(d);
  return pids;
}

function removeCgroups(name: string): void {
  const rm = (d: string) => {
    try { for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(path.join(d, e.name)); } catch { /* gone */ }
    try { fs.rmdirSync(d); } catch { /* busy or gone */ }
  };
  for (const d of cgroupDirs(name)) rm(d);
}
