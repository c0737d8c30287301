// vassal-network.ts: where a vassal in learned-address mode (a file with
// tuntap-device but no tuntap-device-address) may take its address from:
// the emperor's vassal network. emperor-vassal-network names it; by default
// it is the network of the IPv4 address on the router's tun device, read
// from the interface once the exec-as-root hooks have run (they usually add
// it), in the router's network namespace (tuntap-router-netns). The router
// enforces it where it learns (native/addresses.h): never outside it, never
// its network or broadcast address, never the device's own addresses.
import { spawnSync } from 'node:child_process';
import { ipv4ToInt, Ipv4Network, maskOf } from '../addr';

export interface DeviceNetwork {
  network?: Ipv4Network;       // the first IPv4 address's network with room for vassals (/30 or wider)
  addresses: string[];         // the device's IPv4 addresses, A.B.C.D/BITS
  error?: string;              // the device could not be read
}

/** The IPv4 addresses on device (in netns, a netns file, when given), by `ip -j -4 addr show`. */
export function deviceNetwork(device: string, netns?: string): DeviceNetwork {
  const ip = ['ip', '-j', '-4', 'addr', 'show', 'dev', device];
  const [bin, args] = netns ? ['nsenter', [`--net=${netns}`, ...ip]] : [ip[0], ip.slice(1)];
  const r = spawnSync(bin, args, { encoding: 'utf8', timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.status !== 0) return { addresses: [], error: (r.error?.message ?? r.stderr.trim()) || `${bin} exited with ${r.status}` };
  let links: Array<{ addr_info?: Array<{ family?: string; local?: string; prefixlen?: number }> }>;
  try {
    links = JSON.parse(r.stdout || '[]');
  } catch (err) {
    return { addresses: [], error: `cannot read ip's answer: ${(err as Error).message}` };
  }
  const out: DeviceNetwork = { addresses: [] };
  for (const a of links.flatMap((l) => l.addr_info ?? [])) {
    if (a.family !== 'inet' || !a.local || typeof a.prefixlen !== 'number') continue;
    out.addresses.push(`${a.local}/${a.prefixlen}`);
    if (!out.network && a.prefixlen <= 30) out.network = { net: (ipv4ToInt(a.local) & maskOf(a.prefixlen)) >>> 0, bits: a.prefixlen };
  }
  return out;
}
