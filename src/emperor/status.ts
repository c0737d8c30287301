// status.ts: `moat emperor --status`: one stats document from the router's
// stats socket, its emperor section printed as a table (or as JSON).
import net from 'node:net';
import type { VassalStatus } from './emperor';
import { formatRate } from '../config/traffic-limits';

export function fetchStats(addr: string, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const colon = addr.lastIndexOf(':');
    const s = colon >= 0 ? net.connect(Number(addr.slice(colon + 1)), addr.slice(0, colon) || '127.0.0.1') : net.connect(addr);
    s.setTimeout(timeoutMs, () => s.destroy(new Error(`no answer from ${addr} within ${timeoutMs} ms`)));
    s.on('data', (d) => chunks.push(d));
    s.on('end', () => {
      try { resolve(JSON.parse(Buffer.concat(chunks).toString('utf8'))); } catch (e) { reject(e); }
    });
    s.on('error', reject);
  });
}

const pad = (s: string, n: number) => (s.length >= n ? s : s + ' '.repeat(n - s.length));

export function formatStatus(vassals: VassalStatus[]): string {
  const head = ['NAME', 'STATE', 'PID', 'RESTARTS', 'ADDRESS', 'OUT NOW/LIMIT', 'IN NOW/LIMIT', 'OUT TOTAL', 'IN TOTAL', 'DROPPED', 'MEMORY', 'PIDS', 'CPU S', 'OOM', 'LIMITS', 'NOTE'];
  const mib = (n?: number) => (n === undefined ? '-' : `${(n / 2 ** 20).toFixed(1)}M`);
  const num = (n?: number, digits = 0) => (n === undefined ? '-' : n.toFixed(digits));
  const rows = vassals.map((v) => [
    v.name, v.state, v.pid === null ? '-' : String(v.pid), String(v.restarts),
    v.address ? v.address + (v.addressFrom === 'first packet' ? '*' : '') : '-',
    rateCell(v, 'out'), rateCell(v, 'in'),
    v.accounting ? bytes(v.accounting.bytes_out) : '-', v.accounting ? bytes(v.accounting.bytes_in) : '-',
    v.accounting ? String(Object.values(v.accounting.drops).reduce((a, b) => a + b, 0)) : '-',
    mib(v.cgroup?.memoryBytes), num(v.cgroup?.pids), num(v.cgroup?.cpuSeconds, 1), num(v.cgroup?.oomKills), v.limits ?? '-',
    v.error ?? (v.state !== 'running' && v.lastExit ? `last exit: ${v.lastExit}` : ''),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i]))).join('  ').trimEnd();
  const out = [line(head), ...rows.map(line)];
  if (vassals.some((v) => v.addressFrom === 'first packet')) out.push('* address learned from the vassal\'s first packet');
  return out.join('\n') + '\n';
}

/** The current rate beside the limit: `3.9mbit/4mbit`, `120pps/1000pps`; `-` when not counted. */
function rateCell(v: VassalStatus, dir: 'in' | 'out'): string {
  const a = v.accounting;
  const t = v.trafficLimits ?? {};
  const bits = dir === 'in' ? t.rateIn : t.rateOut;
  const pps = dir === 'in' ? t.ppsIn : t.ppsOut;
  if (!a) return bits || pps ? `-/${bits ? formatRate(bits) : `${pps}pps`}` : '-';
  const nowBits = dir === 'in' ? a.rate_in_bps : a.rate_out_bps;
  const nowPps = dir === 'in' ? a.rate_in_pps : a.rate_out_pps;
  const parts = [`${formatRate(nowBits)}${bits ? `/${formatRate(bits)}` : ''}`];
  if (pps) parts.push(`${nowPps}pps/${pps}pps`);
  return parts.join(' ');
}

/** Bytes in a short form: 1536 -> 1.5K. */
function bytes(n: number): string {
  for (const [u, f] of [['T', 2 ** 40], ['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) if (n >= f) return `${(n / f).toFixed(1)}${u}`;
  return String(n);
}
