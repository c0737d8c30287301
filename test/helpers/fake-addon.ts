// fake-addon.ts: the addon's classes in plain TypeScript, so the wrappers over
// them (src/router, src/device, src/pty) are unit-tested without root, tun
// devices or a built addon. Each fake keeps the options it was built with and
// the calls made on it; a test delivers events through the callback start()
// received (emit) and sets the counters stats() returns. The contract the
// fakes follow is the one written in src/native.ts (socket file made by the
// router's start and removed by its stop, hit counters carried on setRules).
// installFakeAddon() puts a fresh one behind src/native.ts's addon().
import fs from 'node:fs';
import {
  setAddonForTests, type Addon, type DeviceEvent, type DeviceOptions, type DeviceStats, type NativeRule,
  type LearnNetwork, type PeerBinding, type PeerLimit, type PeerRuleSet, type PeerStats, type PtyEvent, type PtyServerOptions, type PtyServerStats, type RouterEvent,
  type RouterOptions, type RouterStats, type SharedPtyOptions, type OptionBounds,
} from '../../src/native';

/** What every native object shares: start(onEvents), stop(), and the calls made. */
class FakeNative<O, E> {
  readonly calls: string[] = [];
  /** start() throws this (as the real start throws a setup error). */
  startError?: Error;
  private onEvents?: (events: E[]) => void;

  constructor(readonly options: O) {}

  start(onEvents: (events: E[]) => void): void {
    this.calls.push('start');
    if (this.startError) throw this.startError;
    this.onEvents = onEvents;
  }

  stop(): void {
    this.calls.push('stop');
    this.onEvents = undefined;
  }

  get running(): boolean { return this.onEvents !== undefined; }

  /** Delivers one batch of events, as the native thread does. */
  emit(...events: E[]): void {
    if (!this.onEvents) throw new Error('fake addon: emit() before start() or after stop()');
    this.onEvents(events);
  }
}

export function peerStats(over: Partial<PeerStats> = {}): PeerStats {
  return {
    id: 1, addr: 0, uid: 0, gid: 0, pid: 0, tx: 0, rx: 0, txBytes: 0, rxBytes: 0, dropped: 0, drops: {}, queued: 0,
    offload: false, handoff: false, vnetRx: 0, gsoRx: 0, vnetTx: 0, gsoTx: 0, usoTx: 0, sndbufGrown: 0,
    shapedIn: 0, shapedOut: 0, shapeQueuedIn: 0, shapeQueuedOut: 0, shapePeakIn: 0, shapePeakOut: 0,
    ipPacketsIn: 0, ipPacketsOut: 0, ipBytesIn: 0, ipBytesOut: 0, ...over,
  };
}

export function routerStats(over: Partial<RouterStats> = {}): RouterStats {
  return {
    rxPackets: 0, rxBytes: 0, tunReadCalls: 0, tunQueues: 1, tunSteered: false, txPackets: 0, txBytes: 0, fragmented: 0, fragNeeded: 0, gsoSplit: 0, gsoSegments: 0,
    usoTx: 0, usoSegments: 0, heldFrames: 0, heldWrites: 0, sndbufGrownPeers: 0, sndbufGrownBytes: 0, sndbufGrows: 0, busyPolls: 0, busyPollCaught: 0, busyPollNs: 0,
    drops: {}, conntrack: { entries: 0, slots: 0, slotBytes: 32 }, rejects: 0, rejectsLimited: 0, peers: [], hits: { in: [], out: [] }, peerHits: [], ...over,
  };
}

export class FakeNativeRouter extends FakeNative<RouterOptions, RouterEvent> {
  rules: { in: NativeRule[]; out: NativeRule[] } = { in: [], out: [] };
  readonly carries: Array<{ in?: number[]; out?: number[] }> = [];
  bindings: PeerBinding[];
  limits: PeerLimit[] = [];
  learn: LearnNetwork | null;
  /** What stats() returns, but for hits: those are this router's own (hit() and setRules()). */
  snapshot = routerStats();
  relistenError?: Error;
  private hits = { in: [] as number[], out: [] as number[] };

  constructor(options: RouterOptions) {
    super(options);
    this.bindings = options.bindings;
    this.learn = options.learn;
  }

  override start(onEvents: (events: RouterEvent[]) => void): void {
    super.start(onEvents);
    fs.writeFileSync(this.options.socketPath, '');
  }

  override stop(): void {
    super.stop();
    fs.rmSync(this.options.socketPath, { force: true });
  }

  /** Hit counter i of a chain inherits old counter carry[i] (-1 or absent: starts at 0). */
  setRules(inRules: NativeRule[], outRules: NativeRule[], carryIn?: Int32Array, carryOut?: Int32Array): void {
    this.calls.push('setRules');
    const carried = (old: number[], n: number, carry?: Int32Array) =>
      Array.from({ length: n }, (_, i) => (carry && carry[i] >= 0 ? old[carry[i]] ?? 0 : 0));
    this.hits = { in: carried(this.hits.in, inRules.length, carryIn), out: carried(this.hits.out, outRules.length, carryOut) };
    this.rules = { in: inRules, out: outRules };
    this.carries.push({ in: carryIn && [...carryIn], out: carryOut && [...carryOut] });
  }

  setBindings(bindings: PeerBinding[], learn: LearnNetwork | null): void {
    this.calls.push('setBindings');
    this.bindings = bindings;
    this.learn = learn;
  }

  setLimits(limits: PeerLimit[]): void {
    this.calls.push('setLimits');
    this.limits = limits;
  }

  peerRules: PeerRuleSet[] = [];
  setPeerRules(sets: PeerRuleSet[]): void {
    this.calls.push('setPeerRules');
    this.peerRules = sets;
  }

  relisten(): void {
    this.calls.push('relisten');
    if (this.relistenError) throw this.relistenError;
    fs.writeFileSync(this.options.socketPath, '');
  }

  /** Counts n packets judged by rule i of a chain. */
  hit(chain: 'in' | 'out', i: number, n = 1): void {
    this.hits[chain][i] += n;
  }

  stats(): RouterStats {
    return { ...this.snapshot, hits: { in: [...this.hits.in], out: [...this.hits.out] } };
  }
}

export class FakeNativeDevice extends FakeNative<DeviceOptions, DeviceEvent> {
  snapshot: DeviceStats = {
    connected: false, reconnects: 0, toRouterPackets: 0, toRouterBytes: 0, fromRouterPackets: 0, fromRouterBytes: 0,
    drops: {}, offload: false, handoff: false, handoffs: 0, vnetTx: 0, gsoTx: 0, vnetRx: 0, gsoRx: 0, gsoSplit: 0, gsoSegments: 0,
    busyPolls: 0, busyPollCaught: 0, busyPollNs: 0, usoTx: 0, usoSegments: 0,
  };
  stats(): DeviceStats { return this.snapshot; }
}

export class FakeNativeClassifier {
  /** What match() answers for every packet (-1: no rule matched). */
  answer = -1;
  constructor(readonly rules: NativeRule[]) {}
  get size(): number { return this.rules.length; }
  match(keys: Uint32Array): Int32Array { return new Int32Array(keys.length / 7).fill(this.answer); }
}

export class FakeNativePtyServer extends FakeNative<PtyServerOptions, PtyEvent> {
  snapshot: PtyServerStats = { sessionsStarted: 0, sessionsEnded: 0, refused: 0, active: 0, bytesIn: 0, bytesOut: 0, signals: 0, resizes: 0, ignoredFrames: 0 };
  stats(): PtyServerStats { return this.snapshot; }
}

export class FakeNativeSharedPty extends FakeNative<SharedPtyOptions, PtyEvent> {
  commandPid = 4242;
  stats(): { commandPid: number } { return { commandPid: this.commandPid }; }
}

function notFaked(name: string): () => never {
  return () => { throw new Error(`fake addon: ${name} is not faked (a native test covers it)`); };
}

export class FakeAddon implements Addon {
  readonly routers: FakeNativeRouter[] = [];
  readonly devices: FakeNativeDevice[] = [];
  readonly classifiers: FakeNativeClassifier[] = [];
  readonly ptyServers: FakeNativePtyServer[] = [];
  readonly sharedPtys: FakeNativeSharedPty[] = [];
  readonly Router = this.recorded(FakeNativeRouter, this.routers);
  readonly Device = this.recorded(FakeNativeDevice, this.devices);
  readonly Classifier = this.recorded(FakeNativeClassifier, this.classifiers);
  readonly PtyServer = this.recorded(FakeNativePtyServer, this.ptyServers);
  readonly SharedPty = this.recorded(FakeNativeSharedPty, this.sharedPtys);
  readonly parseFrames = notFaked('parseFrames');
  readonly checkIpv4 = notFaked('checkIpv4');
  readonly Firewall = class { constructor() { notFaked('Firewall')(); } } as unknown as Addon['Firewall'];
  readonly rejectAnswer = notFaked('rejectAnswer');
  readonly ptyClient = notFaked('ptyClient');
  readonly gsoSplit = notFaked('gsoSplit');
  // The real limits are compared with the option table by a native test; nothing here reads them.
  readonly optionBounds = {} as OptionBounds;
  readonly usoMerge = notFaked('usoMerge');
  readonly removeTree = notFaked('removeTree');
  readonly hardenProcess = notFaked('hardenProcess');
  private nextStartError?: Error;

  /** The next native object built throws err from its start() (a setup error such as a busy tun). */
  failNextStart(err: Error): void {
    this.nextStartError = err;
  }

  /** A constructor that builds Base and keeps what it built in `made`. */
  private recorded<O, T extends object>(Base: new (o: O) => T, made: T[]): new (o: O) => T {
    const take = (t: T) => {
      if (t instanceof FakeNative && this.nextStartError) {
        t.startError = this.nextStartError;
        this.nextStartError = undefined;
      }
      made.push(t);
      return t;
    };
    // `new` on a function that returns an object yields that object.
    return function (o: O): T { return take(new Base(o)); } as unknown as new (o: O) => T;
  }
}

/** A fresh fake behind addon() (each test its own, so no state leaks between tests). */
export function installFakeAddon(): FakeAddon {
  const fake = new FakeAddon();
  setAddonForTests(fake);
  return fake;
}
