// router-process-handle.ts: the emperor's handle on its router process. In
// `moat emperor` the emperor (root: it spawns vassals) forks moat's own CLI as
// `moat _router-process`; that child creates the tun device and the sockets
// as root, then drops to the router user with no capability left (see
// src/commands/router-process.ts). RouterProcessHandle implements RouterApi
// over the IPC channel (messages: ipc-messages.ts): the emperor's stats
// sections and metrics stay here and the router process asks for them on
// each stats read and scrape; its peer events and peer counters come here.
import { fork, ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import client from 'prom-client';
import type { OptionList, RouterConfig } from '../config/types';
import type { LearnNetwork, PeerBinding, PeerLimit, PeerStats } from '../native';
import type { DropTo } from '../privileges';
import { logDropped, logger, Logger } from '../log';
import { renderMetrics } from '../metrics';
import { parseStatsAddress } from './stats-server';
import { MetricsProvider, RouterApi, sectionValue } from './router-api';
import type { VassalRules } from './peer-rules';
import { decodeFromRouterProcess, ROUTER_PROCESS_COMMAND, ToRouterProcess } from './ipc-messages';

const CLI = path.resolve(__dirname, '..', 'cli.js');

/** Events: the peer events of RouterApi, and 'fatal' (reason): the
 *  router process failed or ended without being asked to (once). */
export class RouterProcessHandle extends EventEmitter implements RouterApi {
  /** This process's own metrics; the router process appends them, and the added ones, to its own. */
  private readonly registry = new client.Registry();
  private readonly metricsProviders = new Set<MetricsProvider>([this.registry]);
  private child?: ChildProcess;
  private peers: PeerStats[] = [];
  private readonly sections = new Map<string, () => unknown>();
  private started = false;
  private stopping = false;
  private fatalSent = false;
  private fatalReason?: string;
  private exited?: Promise<void>;
  private readonly log: Logger;

  constructor(readonly config: RouterConfig, private readonly options: OptionList, readonly user: DropTo, log?: Logger) {
    super();
    this.log = log ?? logger().child({ component: 'emperor' });
    new client.Counter({
      name: 'moat_emperor_log_dropped_total', help: 'Log lines of the emperor process (the spawner) that could not be written and were dropped', registers: [this.registry],
      collect() { this.reset(); const n = logDropped(); if (n > 0) this.inc(n); },
    });
  }

  get running(): boolean {
    return this.started && !this.stopping && this.child?.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** Forks the router process; resolves once its device and sockets exist
   *  and it dropped its privileges, rejects with its reason otherwise. */
  start(): Promise<void> {
    if (this.child) throw new Error('the router process is already started');
    const child = fork(CLI, [ROUTER_PROCESS_COMMAND], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv: [] });
    this.child = child;
    this.exited = new Promise((resolve) => child.once('exit', () => resolve()));
    return new Promise<void>((resolve, reject) => {
      child.on('message', (raw: unknown) => {
        const m = decodeFromRouterProcess(raw);
        switch (m?.t) {
          case 'started':
            this.started = true;
            this.log.info({ routerPid: child.pid, uid: this.user.uid, gid: this.user.gid }, 'router process started');
            resolve();
            break;
          case 'failed':
            if (m.created) this.removeSockets();
            reject(new Error(m.reason));
            break;
          case 'event':
            this.emit(m.name, m.e);
            break;
          case 'fatal':
            this.fatalReason ??= m.reason;
            this.fatal(m.reason);
            break;
          case 'peers':
            this.peers = m.peers;
            break;
          case 'stats-request':
            this.peers = m.peers;
            void this.sectionOf(m.key).then((value) => this.send({ t: 'stats-reply', id: m.id, value }));
            break;
          case 'metrics-request':
            void renderMetrics(this.metricsProviders, this.log).then((text) => this.send({ t: 'metrics-reply', id: m.id, text }));
            break;
        }
      });
      child.on('error', (err) => {
        if (!this.started) reject(err);
        else this.log.error({ err: err.message }, 'router process IPC error');
      });
      child.once('exit', (code, signal) => {
        const how = signal ? `killed by ${signal}` : `exited with status ${code}`;
        if (!this.started) {
          reject(new Error(this.fatalReason ?? `the router process ${how} before it started`));
          return;
        }
        this.removeSockets();
        if (this.stopping) return;
        this.fatal(this.fatalReason ?? `the router process (pid ${child.pid}) ${how}`);
      });
      this.send({ t: 'start', options: this.options, user: this.user, sections: [...this.sections.keys()] });
    });
  }

  /** Asks the router process to stop and waits for its exit; after timeoutMs
   *  it is killed (SIGKILL, by pid). Its socket files are removed if it
   *  could not (its user may not write their directory). */
  async stop(timeoutMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child) return;
    this.stopping = true;
    if (child.exitCode === null && child.signalCode === null) {
      this.send({ t: 'stop' });
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(true), timeoutMs); });
      const killed = await Promise.race([this.exited!.then(() => false), late]);
      clearTimeout(timer);
      if (killed) {
        this.log.error({ routerPid: child.pid, timeoutMs }, 'router process did not stop in time: killing it');
        try { process.kill(child.pid!, 'SIGKILL'); } catch { /* gone meanwhile */ }
        await this.exited;
      }
    }
    if (this.started) this.removeSockets();
  }

  /** SIGHUP: the router process reloads its rules (as its user: rule files must be readable by it). */
  reloadRules(why: string): void {
    this.send({ t: 'reload', why });
  }

  setBindings(owner: string, list: PeerBinding[], learn?: LearnNetwork | null): void {
    this.send({ t: 'bindings', owner, list, learn });
  }

  setLimits(owner: string, list: PeerLimit[]): void {
    this.send({ t: 'limits', owner, list });
  }

  setPeerRules(owner: string, list: VassalRules[]): void {
    this.send({ t: 'peer-rules', owner, list });
  }

  addStatsSection(key: string, section: () => unknown): void {
    this.sections.set(key, section);
    this.send({ t: 'sections', keys: [...this.sections.keys()] });
  }

  removeStatsSection(key: string): void {
    this.sections.delete(key);
    this.send({ t: 'sections', keys: [...this.sections.keys()] });
  }

  addMetrics(provider: MetricsProvider): void {
    this.metricsProviders.add(provider);
  }

  removeMetrics(provider: MetricsProvider): void {
    this.metricsProviders.delete(provider);
  }

  /** The peers as the router process last sent them: every second, and
   *  with each stats socket read (before the emperor's section is built). */
  stats(): { peers: PeerStats[] } {
    return { peers: this.peers };
  }

  private sectionOf(key: string): Promise<unknown> {
    const section = this.sections.get(key);
    return section ? sectionValue(section) : Promise.resolve(undefined);
  }

  private send(m: ToRouterProcess): void {
    const c = this.child;
    if (!c || !c.connected) return;
    c.send(m, (err) => { if (err && !this.stopping) this.log.warn({ err: err.message, msg: m.t }, 'cannot reach the router process'); });
  }

  private fatal(reason: string): void {
    if (this.fatalSent || this.stopping) return;
    this.fatalSent = true;
    this.emit('fatal', reason);
  }

  /** The socket files the router process served (only once it had made
   *  them: never another instance's). */
  private removeSockets(): void {
    const files = [this.config.socket];
    if (this.config.stats) {
      const a = parseStatsAddress(this.config.stats);
      if ('path' in a) files.push(a.path);
    }
    for (const f of files) {
      try {
        if (fs.lstatSync(f).isSocket()) fs.unlinkSync(f);
      } catch { /* already gone */ }
    }
  }
}
