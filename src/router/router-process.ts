// router-process.ts: the parent side of the router process of `moat emperor`.
// The emperor (root: it spawns vassals) forks moat's own CLI as
// `moat _router-process`; that child creates the tun device and the sockets
// as root, then drops to the router user with no capability left (see
// src/commands/router-process.ts). RouterProcess is the emperor's handle on
// it: it implements EmperorGateway over the IPC channel.
//
// IPC messages (JSON). Parent -> child: start {options, user}, bindings
// {owner, list}, reload {why}, stop, stats-reply {id, sections},
// metrics-reply {id, text}. Child -> parent: started, failed {reason},
// event {name, e} (peer-up, peer-down, peer-address), fatal {reason},
// stats-request {id, peers}, metrics-request {id}, peers {peers} (every second).
import { fork, ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import client from 'prom-client';
import type { OptionList, RouterConfig } from '../config/types';
import type { PeerBinding, PeerStats } from '../native';
import type { EmperorGateway } from '../emperor/gateway';
import type { DropTo } from '../privileges';
import { logDropped, logger, Logger } from '../log';
import { parseStatsAddress } from './stats-server';

export const ROUTER_PROCESS_COMMAND = '_router-process';
const CLI = path.resolve(__dirname, '..', 'cli.js');

export type ToChild =
  | { t: 'start'; options: OptionList; user: DropTo }
  | { t: 'bindings'; owner: string; list: PeerBinding[] }
  | { t: 'reload'; why: string }
  | { t: 'stop' }
  | { t: 'stats-reply'; id: number; sections: Record<string, unknown> }
  | { t: 'metrics-reply'; id: number; text: string };

export type ToParent =
  | { t: 'started'; pid: number }
  | { t: 'failed'; reason: string; created?: boolean }   // created: its sockets existed (the parent removes them)
  | { t: 'event'; name: 'peer-up' | 'peer-down' | 'peer-address'; e: unknown }
  | { t: 'fatal'; reason: string }
  | { t: 'stats-request'; id: number; peers: PeerStats[] }
  | { t: 'peers'; peers: PeerStats[] }
  | { t: 'metrics-request'; id: number };

/** Events: the peer events of EmperorGateway, and 'fatal' (reason): the
 *  router process failed or ended without being asked to (once). */
export class RouterProcess extends EventEmitter implements EmperorGateway {
  /** The emperor's metrics (cron): the router process appends them to its own. */
  readonly registry = new client.Registry();
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
      child.on('message', (m: ToParent) => {
        switch (m.t) {
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
            this.send({ t: 'stats-reply', id: m.id, sections: this.sectionValues() });
            break;
          case 'metrics-request':
            this.registry.metrics().then(
              (text) => this.send({ t: 'metrics-reply', id: m.id, text }),
              (err: Error) => {
                this.log.warn({ err: err.message }, 'emperor metrics failed');
                this.send({ t: 'metrics-reply', id: m.id, text: '' });
              },
            );
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
      this.send({ t: 'start', options: this.options, user: this.user });
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
  reload(why = 'SIGHUP'): void {
    this.send({ t: 'reload', why });
  }

  setPluginBindings(owner: string, list: PeerBinding[]): void {
    this.send({ t: 'bindings', owner, list });
  }

  addStatsSection(key: string, section: () => unknown): void {
    this.sections.set(key, section);
  }

  removeStatsSection(key: string): void {
    this.sections.delete(key);
  }

  /** The peers as the router process last sent them: every second, and
   *  with each stats socket read (before the emperor's section is built). */
  stats(): { peers: PeerStats[] } {
    return { peers: this.peers };
  }

  private sectionValues(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, f] of this.sections) {
      try { out[k] = f(); } catch (err) { out[k] = { error: (err as Error).message }; }
    }
    return out;
  }

  private send(m: ToChild): void {
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
