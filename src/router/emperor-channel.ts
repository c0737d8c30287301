// emperor-channel.ts: the router process's side of its IPC channel to the
// emperor (the other side: router-process-handle.ts; the messages:
// ipc-messages.ts). It takes the start message, forwards the router's peer
// events, applies what the emperor sends (bindings, reloads, stop), and
// mirrors the emperor's stats sections and metrics into the Router as
// sections and a metrics provider that ask over the channel. Every question
// is answered or times out: a busy or stopping emperor never blocks a stats
// read or a scrape.
import type { Lifecycle } from '../lifecycle/lifecycle';
import type { Logger } from '../log';
import { decodeToRouterProcess, FromRouterProcess, ToRouterProcess } from './ipc-messages';
import type { Router } from './router';

const REQUEST_TIMEOUT_MS = 2000;
const FLUSH_WAIT_MS = 1000;

export type StartMessage = Extract<ToRouterProcess, { t: 'start' }>;

export class EmperorChannel {
  private readonly inFlight = new Set<Promise<void>>();
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; fallback: unknown }>();
  private nextId = 1;

  /** The start message; undefined if the channel closed first (or another message came). */
  startMessage(): Promise<StartMessage | undefined> {
    return new Promise((resolve) => {
      process.once('message', (raw: unknown) => {
        const m = decodeToRouterProcess(raw);
        resolve(m?.t === 'start' ? m : undefined);
      });
      process.once('disconnect', () => resolve(undefined));
    });
  }

  send(m: FromRouterProcess): void {
    if (!process.connected) return;
    const p = new Promise<void>((resolve) => { process.send!(m, undefined, {}, () => resolve()); });
    this.inFlight.add(p);
    void p.then(() => this.inFlight.delete(p));
  }

  /** process.send is asynchronous and the process exits right after its last
   *  message (see cli.ts): waits until every message was handed over (at most a second). */
  async flush(): Promise<void> {
    await Promise.race([Promise.all([...this.inFlight]), new Promise((r) => setTimeout(r, FLUSH_WAIT_MS).unref())]);
  }

  /** From now on: the emperor's messages act on the router and the
   *  lifecycle ('stop' ends it; the channel closing ends it with exit 1). */
  serve(router: Router, life: Lifecycle, sections: string[], log: Logger): void {
    for (const name of ['peer-up', 'peer-down', 'peer-address'] as const) {
      router.on(name, (e: unknown) => this.send({ t: 'event', name, e }));
    }
    router.addMetrics({ metrics: () => this.ask<string>((id) => ({ t: 'metrics-request', id }), '') });
    const mirrored = new Set<string>();
    const mirror = (keys: string[]) => {
      for (const key of [...mirrored]) {
        if (!keys.includes(key)) { router.removeStatsSection(key); mirrored.delete(key); }
      }
      for (const key of keys) {
        if (mirrored.has(key)) continue;
        mirrored.add(key);
        // No answer in time: the key is left out of the document.
        router.addStatsSection(key, () => this.ask((id) => ({ t: 'stats-request', id, key, peers: router.running ? router.stats().peers : [] }), undefined));
      }
    };
    mirror(sections);
    process.on('message', (raw: unknown) => {
      const m = decodeToRouterProcess(raw);
      switch (m?.t) {
        case 'sections': mirror(m.keys); break;
        case 'bindings': router.setBindings(m.owner, m.list, m.learn); break;
        case 'limits': router.setLimits(m.owner, m.list); break;
        case 'peer-rules': router.setPeerRules(m.owner, m.list); break;
        case 'reload': router.reloadRules(m.why); break;
        case 'stop': life.end({ code: 0 }); break;
        case 'stats-reply': this.pending.get(m.id)?.resolve(m.value); break;
        case 'metrics-reply': this.pending.get(m.id)?.resolve(m.text); break;
        case 'start': log.warn('a second start message: ignored'); break;
      }
    });
    process.on('disconnect', () => {
      for (const p of [...this.pending.values()]) p.resolve(p.fallback);
      life.end({ code: 1, why: 'the emperor process is gone: stopping the router', error: true });
    });
  }

  /** A question to the emperor: its answer, or `fallback` after the timeout or without a channel. */
  private ask<T>(message: (id: number) => FromRouterProcess, fallback: T): Promise<T> {
    return new Promise((resolve) => {
      const id = this.nextId++;
      const timer = setTimeout(() => done(fallback), REQUEST_TIMEOUT_MS);
      const done = (v: unknown) => { clearTimeout(timer); this.pending.delete(id); resolve(v as T); };
      this.pending.set(id, { resolve: done, fallback });
      if (process.connected) this.send(message(id)); else done(fallback);
    });
  }
}
