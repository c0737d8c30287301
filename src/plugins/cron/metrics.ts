// metrics.ts: the cron counters, one set per registry, shared by every
// vassal's CronScheduler (the vassal is a label).
import client from 'prom-client';

export type CronResult = 'ok' | 'failed' | 'signal' | 'harakiri' | 'error';
export type SkipReason = 'running' | 'too-soon' | 'missed';

export class CronMetrics {
  readonly runs: client.Counter<'vassal' | 'result'>;
  readonly skipped: client.Counter<'vassal' | 'reason'>;
  readonly duration: client.Histogram<'vassal'>;

  constructor(reg: client.Registry) {
    this.runs = new client.Counter({
      name: 'moat_cron_runs_total', help: 'Cron runs that ended, by result (ok, failed = non-zero exit, signal, harakiri, error = not started)',
      labelNames: ['vassal', 'result'], registers: [reg],
    });
    this.skipped = new client.Counter({
      name: 'moat_cron_skipped_total', help: 'Cron times not run: the previous run was still going (running), the entry ran less than 60 s ago (too-soon), or the time passed unseen (missed)',
      labelNames: ['vassal', 'reason'], registers: [reg],
    });
    this.duration = new client.Histogram({
      name: 'moat_cron_duration_seconds', help: 'Duration of cron runs',
      labelNames: ['vassal'], buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600], registers: [reg],
    });
  }
}
