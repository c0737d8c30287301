// vassal-metrics.ts: each vassal's cgroup usage and output budget as
// Prometheus metrics labelled by vassal name, read from the emperor's status
// rows when /metrics is scraped (nothing is sampled in between).
import client from 'prom-client';
import type { VassalStatus } from './emperor';

type Row = Pick<VassalStatus, 'name' | 'cgroup' | 'outputDropped' | 'accounting' | 'trafficLimits'>;

export function registerVassalMetrics(registry: client.Registry, rows: () => Row[]): void {
  const gauge = (name: string, help: string, value: (r: Row) => number | undefined) => new client.Gauge({
    name, help, labelNames: ['vassal'], registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) {
        const v = value(r);
        if (v !== undefined) this.set({ vassal: r.name }, v);
      }
    },
  });
  const limit = (v: number | 'max' | undefined) => (v === 'max' ? -1 : v);
  gauge('moat_vassal_memory_bytes', 'Memory the vassal\'s cgroup uses', (r) => r.cgroup?.memoryBytes);
  gauge('moat_vassal_memory_max_bytes', 'The vassal\'s memory limit (-1: none)', (r) => limit(r.cgroup?.memoryMaxBytes));
  gauge('moat_vassal_pids', 'Processes and threads in the vassal\'s cgroup', (r) => r.cgroup?.pids);
  gauge('moat_vassal_pids_max', 'The vassal\'s process limit (-1: none)', (r) => limit(r.cgroup?.pidsMax));
  gauge('moat_vassal_cpu_seconds_total', 'CPU time the vassal\'s cgroup used', (r) => r.cgroup?.cpuSeconds);
  gauge('moat_vassal_cpu_max_cores', 'The vassal\'s CPU limit in cores (-1: none)', (r) => limit(r.cgroup?.cpuMaxCores));
  gauge('moat_vassal_oom_kills_total', 'Processes the OOM killer killed inside the vassal', (r) => r.cgroup?.oomKills);
  gauge('moat_vassal_output_dropped_lines_total', 'Output lines of the vassal dropped over its log budget', (r) => r.outputDropped?.lines);
  gauge('moat_vassal_output_dropped_bytes_total', 'Output bytes of the vassal dropped over its log budget', (r) => r.outputDropped?.bytes);
  // Traffic by vassal name (docs/accounting.md): counters that outlive connections and restarts.
  const perDirection = (name: string, help: string, value: (a: NonNullable<Row['accounting']>, dir: 'in' | 'out') => number) => new client.Counter({
    name, help, labelNames: ['vassal', 'direction'], registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) {
        if (!r.accounting) continue;
        for (const dir of ['in', 'out'] as const) this.inc({ vassal: r.name, direction: dir }, value(r.accounting, dir));
      }
    },
  });
  perDirection('moat_vassal_network_bytes_total', 'IPv4 bytes toward (in) and from (out) the vassal', (a, d) => (d === 'in' ? a.bytes_in : a.bytes_out));
  perDirection('moat_vassal_network_packets_total', 'IPv4 packets toward (in) and from (out) the vassal', (a, d) => (d === 'in' ? a.packets_in : a.packets_out));
  new client.Counter({
    name: 'moat_vassal_network_drops_total', help: 'Packets of the vassal the router dropped, by reason (rate_limit: over its limit)',
    labelNames: ['vassal', 'reason'], registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) for (const [reason, n] of Object.entries(r.accounting?.drops ?? {})) this.inc({ vassal: r.name, reason }, n);
    },
  });
  new client.Gauge({
    name: 'moat_vassal_network_rate_limit_bits_per_second', help: 'The vassal\'s rate limit in the router, by direction (absent: none)',
    labelNames: ['vassal', 'direction'], registers: [registry],
    collect() {
      this.reset();
      for (const r of rows()) {
        const t = r.trafficLimits;
        if (t?.rateIn) this.set({ vassal: r.name, direction: 'in' }, t.rateIn);
        if (t?.rateOut) this.set({ vassal: r.name, direction: 'out' }, t.rateOut);
      }
    },
  });
}
