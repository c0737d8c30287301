// native-router.ts: moat's native router (the addon's Router in this process,
// no CLI) on a new tun device inside a test's network namespace, its socket
// in the temp directory; stopped and the socket removed at the lab's cleanup.
// RouterLab adds what most router tests want around it: a gateway namespace
// of its own, a /24 on the tun (.1 the gateway, the kernel answering), the
// router's events, and UDP sent from the gateway side.
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, LEARN_ANYWHERE, NativeRouter, RouterEvent, RouterOptions } from '../../src/native';
import { ipToInt } from './packets';
import { Lab, sh, uniqueName, waitFor } from './netns';
import { Device } from '../../src/device/device';
import { deviceConfigFor } from '../../src/config/router-config';

export interface StartedRouter { router: NativeRouter; tun: string; sock: string }

/** A socket path in the temp directory, removed at the lab's cleanup. */
export function tmpSock(lab: Lab, tag: string): string {
  const p = path.join(os.tmpdir(), `moat-${tag}-${crypto.randomBytes(4).toString('hex')}.sock`);
  lab.onCleanup(() => { try { fs.unlinkSync(p); } catch { /* gone */ } });
  return p;
}

/** The tests' defaults for a router on tun in ns, listening on sock. */
export function nativeRouterOptions(tun: string, ns: string, sock: string, over: Partial<RouterOptions> = {}): RouterOptions {
  return {
    tunName: tun, netns: `/run/netns/${ns}`, socketPath: sock, socketMode: 0o600, socketUid: -1, socketGid: -1,
    maxFrame: 8188, queueBytes: 1 << 20, acceptRuleBlocks: false, offload: false, handoff: false, holdUs: 0, tunQueues: 1, sndbuf: 0, sndbufBusy: 0, sndbufBudget: 0, busyPollUs: 0, bindings: [], learn: LEARN_ANYWHERE, ...over,
  };
}

/** tag names the tun (tag + 't' + suffix) and the socket; opts override the defaults. */
export function startNativeRouter(lab: Lab, ns: string, tag: string, opts: Partial<RouterOptions> = {},
  onEvents: (events: RouterEvent[]) => void = () => undefined): StartedRouter {
  const tun = uniqueName(`${tag}t`);
  const sock = tmpSock(lab, tag);
  const router = new (addon().Router)(nativeRouterOptions(tun, ns, sock, opts));
  router.start(onEvents);
  lab.onCleanup(() => router.stop());
  return { router, tun, sock };
}

/** The router's recent events (the last `keep`), and a count per type of all of them. */
export class EventLog {
  readonly events: RouterEvent[] = [];
  readonly counts = new Map<string, number>();
  constructor(readonly keep = 20000) {}
  push(evs: RouterEvent[]): void {
    for (const e of evs) this.counts.set(e.type, (this.counts.get(e.type) ?? 0) + 1);
    this.events.push(...evs);
    if (this.events.length > this.keep) this.events.splice(0, this.events.length - this.keep);
  }
  count(type: RouterEvent['type']): number { return this.counts.get(type) ?? 0; }
  some(pred: (e: RouterEvent) => boolean): boolean { return this.events.some(pred); }
}

// Sends count datagrams of size bytes from src to dst:port, pausing 1 ms every 200.
const UDP_SENDER = `
const dgram = require('node:dgram');
const [src, dst, port, count, size] = process.argv.slice(1);
const s = dgram.createSocket('udp4');
s.bind(0, src, async () => {
  const buf = Buffer.alloc(Number(size), 0x61);
  for (let i = 0; i < Number(count); i++) {
    await new Promise((r) => s.send(buf, Number(port), dst, r));
    if (i % 200 === 199) await new Promise((r) => setTimeout(r, 1));
  }
  s.close();
});`;

export class RouterLab {
  readonly lab = new Lab();
  readonly log = new EventLog();
  get events(): RouterEvent[] { return this.log.events; }
  ns = '';
  net24 = '';                   // e.g. '10.37.201.'
  gw = '';
  router!: NativeRouter;
  sockPath = '';
  tun = '';

  host(n: number): string { return this.net24 + n; }

  tmpSock(tag: string): string { return tmpSock(this.lab, tag); }

  /** Options for another router in the gateway namespace (this one's tun and socket unless overridden). */
  options(over: Partial<RouterOptions> = {}): RouterOptions {
    return nativeRouterOptions(this.tun, this.ns, this.sockPath, over);
  }

  /** The gateway namespace, its router (tun address .1/24) and socket. */
  start(prefix: string, over: Partial<RouterOptions> = {}): void {
    this.ns = this.lab.netns(prefix);
    this.net24 = `10.${16 + crypto.randomInt(200)}.${crypto.randomInt(250)}.`;
    this.gw = this.host(1);
    ({ router: this.router, tun: this.tun, sock: this.sockPath } = startNativeRouter(this.lab, this.ns, prefix, over, (evs) => this.log.push(evs)));
    sh('ip', ['-n', this.ns, 'addr', 'add', `${this.gw}/24`, 'dev', this.tun]);
  }

  /** Another router in the same namespace (stopped at cleanup). */
  extraRouter(opts: RouterOptions, events: RouterEvent[] = []): NativeRouter {
    const r = new (addon().Router)(opts);
    r.start((evs) => { events.push(...evs); });
    this.lab.onCleanup(() => r.stop());
    return r;
  }

  /** Runs a node script inside the gateway namespace; resolves to its exit code. */
  runInGateway(code: string, args: string[]): Promise<number | null> {
    const child = this.lab.spawn(process.execPath, ['-e', code, ...args], { ns: this.ns });
    return new Promise((resolve) => child.once('exit', (c) => resolve(c)));
  }

  /** count datagrams of size bytes from the gateway to dst:port; resolves to the sender's exit code. */
  udpFromGateway(dst: string, port: number, count: number, size: number): Promise<number | null> {
    return this.runInGateway(UDP_SENDER, [this.gw, dst, String(port), String(count), String(size)]);
  }

  peerStats(addr: string) {
    const p = this.router.stats().peers.find((x) => x.addr === ipToInt(addr));
    if (!p) throw new Error(`no peer holds ${addr}`);
    return p;
  }

  /**
   * A vassal as the emperor's runtime would give it: a moat device (in this
   * process) in a namespace of its own with addr/24, up, and learned by the
   * router (one ping to the gateway). Returns the namespace.
   */
  async deviceVassal(addr: string, tag: string): Promise<string> {
    const ns = this.lab.netns(tag);
    const name = uniqueName(tag);
    const d = new Device(deviceConfigFor(name, this.sockPath, { maxFrame: 8188, queueBytes: 262144, reconnectMinMs: 20, reconnectMaxMs: 200 }),
      { netns: `/run/netns/${ns}` });
    d.start();
    this.lab.onCleanup(() => d.stop());
    sh('ip', ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', name]);
    sh('ip', ['-n', ns, 'link', 'set', name, 'up']);
    sh('ping', ['-n', '-c', '1', '-W', '2', this.gw], { ns });
    await waitFor(() => this.router.stats().peers.some((p) => p.addr === ipToInt(addr)), 5000, `${addr} learned`);
    return ns;
  }

  async cleanup(): Promise<void> {
    await this.lab.cleanup();
  }
}
