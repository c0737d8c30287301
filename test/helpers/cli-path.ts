// cli-path.ts: the moat program on the path an admin sets up, in namespaces a
// test made: a CLI router (moat --tuntap-router) whose tun device and hooks
// live in a gateway namespace while the process stays in the host namespace
// (so --metrics and stats on loopback work), and CLI devices (moat
// --tuntap-device) in vassal namespaces, addressed, routed and checked to
// reach the gateway. The lines every router-and-device test would write.
import { Lab, sh, waitFor } from './netns';
import { MoatProcess, startMoat, waitForSocket } from './moat';

/** The router's side: its namespace, tun name, sockets, and the gateway address (a /24) its tun gets. */
export interface CliGateway {
  ns: string;
  tun: string;
  sock: string;
  stats?: string;       // a stats socket, as tuntap-router's third field
  addr?: string;        // given to the tun by an --exec-as-root hook
}

/** true if one of `count` pings from ns to dst is answered. */
export function pings(ns: string, dst: string, count = 1): boolean {
  try {
    sh('ping', ['-c', String(count), '-W', '1', '-i', '0.2', '-q', dst], { ns });
    return true;
  } catch {
    return false;
  }
}

/** moat's arguments for the router of g, then extra. */
export function cliRouterArgs(g: CliGateway, extra: string[] = []): string[] {
  return [
    '--tuntap-router', [g.tun, g.sock, ...(g.stats ? [g.stats] : [])].join(' '),
    '--tuntap-router-netns', `/run/netns/${g.ns}`,
    ...(g.addr ? ['--exec-as-root', `ip addr add ${g.addr}/24 dev ${g.tun}`] : []),
    ...extra,
  ];
}

/** Starts the router of g; resolves once its socket (and stats socket) exist. */
export async function startCliRouter(lab: Lab, g: CliGateway, extra: string[] = []): Promise<MoatProcess> {
  const p = startMoat(lab, cliRouterArgs(g, extra));
  await waitForSocket(g.sock, p);
  if (g.stats) await waitForSocket(g.stats, p);
  return p;
}

export interface CliDeviceOptions {
  name?: string;        // its tun device (default uwsgi0)
  addr?: string;        // given to the tun (a /24)
  gw?: string;          // the default route; the device is ready once a ping to it is answered
  args?: string[];      // more moat options
}

/** Starts a device in vassal namespace ns connecting to sock; resolves once
 *  its tun exists (addressed, and the gateway answering, when asked). */
export async function startCliDevice(lab: Lab, ns: string, sock: string, o: CliDeviceOptions = {}): Promise<MoatProcess> {
  const name = o.name ?? 'uwsgi0';
  const p = startMoat(lab, ['--tuntap-device', `${name} ${sock}`, ...(o.args ?? [])], ns);
  const exited = () => p.child.exitCode !== null;
  await waitFor(() => exited() || sh('ip', ['-n', ns, 'link', 'show']).includes(name), 10000, `device ${name}`);
  if (exited()) throw new Error(`moat --tuntap-device exited (${p.child.exitCode}):\n${p.output()}`);
  if (o.addr) sh('ip', ['-n', ns, 'addr', 'add', `${o.addr}/24`, 'dev', name]);
  if (o.gw) {
    sh('ip', ['-n', ns, 'route', 'add', 'default', 'via', o.gw]);
    await waitFor(() => pings(ns, o.gw!), 15000, `${o.addr ?? ns} pings the gateway ${o.gw}\n${p.output().slice(-2000)}`);
  }
  return p;
}
