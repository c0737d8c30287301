// targets.ts: the throughput issue's "done when" checks (and the limits
// issue's, 16), computed from one `npm run bench` run's figures (no I/O),
// printed under its table so a run says for itself which targets it met.
// Each line names the figures it used.
import type { LimitsSection } from './limits';
import type { Dir } from './measure';
import { NEIGHBOUR_P99_MS, type NeighbourSection } from './neighbour';
import type { KindResult, ScaleSection, TcpBound } from './run';
import { rulesTargetLine, type RulesSection } from './rules-cost';
import { SCALE_TARGET } from './scale';

type Results = Partial<Record<'veth' | 'uwsgi' | 'moat', KindResult>>;

const DIR_NAMES: Record<Dir, string> = { v2g: 'vassal->gateway', g2v: 'gateway->vassal' };
const n0 = (v: number) => Math.round(v).toLocaleString('en-US');
const yes = (ok: boolean) => (ok ? 'met' : 'NOT met');
const ok = (v: number | undefined): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0;

/** uWSGI's highest sustained rate in dir: the most its router delivered, paced (<1% loss) or flooded. */
function uwsgiSustained(r: Results, dir: Dir): number | undefined {
  const d = r.uwsgi?.dirs[dir];
  const v = Math.max(d?.paced?.maxPps ?? 0, d?.flood?.rxPps ?? 0);
  return v > 0 ? v : undefined;
}

/**
 * tcpBound: TCP through a bare tun relay in the same turns (run.ts), printed
 * beside moat's figure: the floor of the tun interface under moat's path.
 */
export function targetLines(r: Results, scale?: ScaleSection, limits?: LimitsSection, neighbour?: NeighbourSection, rules?: RulesSection, tcpBound?: TcpBound): string[] {
  const out: string[] = [];
  for (const dir of ['v2g', 'g2v'] as Dir[]) {
    const m = r.moat?.dirs[dir];
    const v = r.veth?.dirs[dir];
    const u = r.uwsgi?.dirs[dir];
    const name = DIR_NAMES[dir];
    const flood = m?.flood?.rxPps;
    const best = uwsgiSustained(r, dir);
    const vflood = v?.flood?.rxPps;
    if (ok(flood) && ok(best) && ok(vflood)) {
      out.push(`64 B flood ${name}: moat ${n0(flood)} pps = ${(flood / best).toFixed(2)}x uWSGI's best sustained ${n0(best)} (>= 3): ${yes(flood >= 3 * best)}; ` +
        `${(flood / vflood).toFixed(2)} of veth (issue 19: >= ${FLOOD_OF_VETH}): ${yes(flood >= FLOOD_OF_VETH * vflood)}`);
    } else out.push(`64 B flood ${name}: not measured for all three`);
    const tm = m?.tcp?.mbps, tu = u?.tcp?.mbps, tv = v?.tcp?.mbps;
    if (ok(tm) && ok(tu) && ok(tv)) {
      const tb = tcpBound?.[dir]?.mbps;
      const floor = ok(tb) ? ` (a bare tun relay in the same turns: ${(tb / tv).toFixed(2)} of veth; moat ${(tm / tb).toFixed(2)} of the relay)` : '';
      out.push(`TCP ${name}: ${(tm / tu).toFixed(2)}x uWSGI (>= 5): ${yes(tm >= 5 * tu)}; ${(tm / tv).toFixed(2)} of veth (issue 19: >= ${TCP_OF_VETH}): ${yes(tm >= TCP_OF_VETH * tv)}${floor}`);
    } else out.push(`TCP ${name}: not measured for all three`);
    const pm = m?.rtt?.p50, pu = u?.rtt?.p50, pv = v?.rtt?.p50;
    if (ok(pm) && ok(pu) && ok(pv)) {
      const am = pm - pv, au = pu - pv;
      out.push(`ping p50 ${name}: moat adds ${am.toFixed(3)} ms over veth, uWSGI ${au.toFixed(3)} ms (issue 19: moat at most half): ${yes(am <= 0.5 * au)}`);
      const qm = m?.rtt?.p99, qu = u?.rtt?.p99;
      if (ok(qm) && ok(qu)) out.push(`ping p99 ${name}: moat ${qm.toFixed(3)} ms, uWSGI ${qu.toFixed(3)}, veth ${v?.rtt?.p99.toFixed(3)} (issue 19: moat at most uWSGI's): ${yes(qm <= qu)}`);
    } else out.push(`ping ${name}: not measured for all three`);
  }
  if (scale && scale.status === 'ok' && scale.ratio !== undefined && Number.isFinite(scale.ratio)) {
    // moat's own vassals hand their tuns over (one hop, the default); uWSGI's
    // and framed moat devices send frames: each kind against its own 1 peer.
    if (scale.ratioOneHop !== undefined && Number.isFinite(scale.ratioOneHop)) {
      out.push(`${scale.peers} peers / 1 peer, one hop (moat's vassals): ${scale.ratioOneHop.toFixed(2)} (>= ${SCALE_TARGET.toFixed(2)}): ${yes(scale.ratioOneHop >= SCALE_TARGET)}`);
    }
    out.push(`${scale.peers} peers / 1 peer, framed (uWSGI's vassals, framed devices): ${scale.ratio.toFixed(2)} (>= ${SCALE_TARGET.toFixed(2)}): ${yes(scale.ratio >= SCALE_TARGET)}`);
    if (scale.ratioKernel !== undefined && Number.isFinite(scale.ratioKernel)) {
      out.push(`  beside it, without moat (the kernel's path to ${scale.peers} UDP sockets, same generator): ${scale.ratioKernel.toFixed(2)}`);
    }
  } else out.push('scale: not measured');
  out.push(rules ? rulesTargetLine(rules) : 'rules: not measured');
  if (neighbour) out.push(...neighbourTargetLines(neighbour));
  if (limits) out.push(...limitsTargetLines(limits));
  return out;
}

/** Issue 19's rate targets: fractions of veth's rate in the same run. */
export const FLOOD_OF_VETH = 0.8;
export const TCP_OF_VETH = 0.7;

/** Issue 19's interactive neighbour: its p99 under two floods through moat at most 2 ms and at most uWSGI's. */
export function neighbourTargetLines(s: NeighbourSection): string[] {
  const m = s.kinds.moat, u = s.kinds.uwsgi;
  const f = (v: number) => (Number.isFinite(v) ? `${v.toFixed(3)} ms` : 'lost');
  if (!m || m.status !== 'ok' || !m.loaded) return [`interactive neighbour: moat ${m ? `${m.status}${m.reason ? ': ' + m.reason : ''}` : 'not measured'}`];
  const pm = m.loaded.p99;
  const floods = s.direction === 'g2v' ? 'two floods from the gateway to other vassals' : 'two floods';
  const parts = [`interactive neighbour's ping p99 under ${floods}: moat ${f(pm)} (<= ${NEIGHBOUR_P99_MS} ms): ${yes(pm <= NEIGHBOUR_P99_MS)}`];
  if (u && u.status === 'ok' && u.loaded) parts.push(`uWSGI ${f(u.loaded.p99)} (moat at most): ${yes(pm <= u.loaded.p99)}`);
  else parts.push(`uWSGI ${u ? `${u.status}${u.reason ? ': ' + u.reason : ''}` : 'not measured'}`);
  return [parts.join('; ') + ` (p50 moat ${f(m.loaded.p50)}${u?.loaded ? `, uWSGI ${f(u.loaded.p50)}` : ''})`];
}

/** The targets of the sections run alone (--limits-only, --neighbour-only, --rules-only). */
export function sectionTargetsText(limits?: LimitsSection, neighbour?: NeighbourSection, rules?: RulesSection): string {
  const lines = [...(rules ? [rulesTargetLine(rules)] : []), ...(neighbour ? neighbourTargetLines(neighbour) : []), ...(limits ? limitsTargetLines(limits) : [])];
  return ['targets (one run):', ...lines.map((x) => '  ' + x)].join('\n');
}

/** Issue 16's limits: each received rate within +-10% of its limit; N limited peers >= 0.95 of N unlimited. */
export function limitsTargetLines(l: LimitsSection): string[] {
  const out: string[] = [];
  if (l.rates) {
    const rows = l.rates;
    const good = rows.filter((x) => x.within === true);
    const off = rows.filter((x) => x.within !== true).map((x) =>
      `${x.limit} ${x.traffic} ${x.dir === 'g2v' ? 'in' : 'out'} ${x.ratio !== undefined ? x.ratio.toFixed(2) : 'error'}`);
    out.push(`limits: ${good.length} of ${rows.length} received rates within 10% of the limit: ${yes(rows.length > 0 && off.length === 0)}` +
      (off.length ? ` (off: ${off.join(', ')})` : ''));
  } else out.push('limits rates: not measured');
  const s = l.scale;
  if (s && s.ratio !== undefined && Number.isFinite(s.ratio)) {
    const pairs = s.pairRatio !== undefined && Number.isFinite(s.pairRatio) ? ` (median of the rounds' own ratios ${s.pairRatio.toFixed(3)})` : '';
    out.push(`limits at scale: ${s.peers} peers each limited / unlimited pps, best of each: ${s.ratio.toFixed(3)} (>= ${s.target.toFixed(2)}): ${yes(s.ratio >= s.target)}` +
      pairs + (s.status !== 'ok' ? ` (incomplete: ${s.status})` : ''));
  } else out.push('limits at scale: not measured');
  return out;
}

export function limitsTargetsText(l: LimitsSection): string {
  return ['targets (one run):', ...limitsTargetLines(l).map((x) => '  ' + x)].join('\n');
}

export function targetsText(r: Results, scale?: ScaleSection, limits?: LimitsSection, neighbour?: NeighbourSection, rules?: RulesSection, tcpBound?: TcpBound): string {
  return ['targets (one run):', ...targetLines(r, scale, limits, neighbour, rules, tcpBound).map((l) => '  ' + l)].join('\n');
}
