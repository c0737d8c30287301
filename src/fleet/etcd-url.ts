// etcd-url.ts: `etcd://HOST:PORT[,HOST:PORT...]/PREFIX` (etcds:// for TLS)
// -> the endpoints etcd3 dials and the key prefix the fleet lives under.
import net from 'node:net';

export interface EtcdUrl { endpoints: string[]; prefix: string }

const FORM = 'etcd://HOST:PORT[,HOST:PORT...]/PREFIX (or etcds:// for TLS)';

export function parseEtcdUrl(value: string): EtcdUrl {
  const bad = (why: string) => new Error(`bad etcd URL ${JSON.stringify(value)}: ${why}; expected ${FORM}`);
  const m = /^(etcds?):\/\/([^/]*)(\/.*)?$/.exec(value.trim());
  if (!m) throw bad('it must start with etcd:// or etcds://');
  const scheme = m[1] === 'etcds' ? 'https' : 'http';
  const hostList = m[2];
  if (hostList === '') throw bad('no hosts');
  if (hostList.includes('@')) throw bad('user and password go in their own options, not in the URL');
  const endpoints = hostList.split(',').map((hp) => `${scheme}://${parseHostPort(hp, bad)}`);
  const prefix = (m[3] ?? '').replace(/\/+$/, '').replace(/^\/+/, '/');
  if (prefix === '' || prefix === '/') throw bad('the key prefix is missing (e.g. etcd://10.0.0.1:2379/moat)');
  if (/[?#]/.test(prefix)) throw bad('the prefix may not contain ? or #');
  if (prefix.includes('//')) throw bad('the prefix has an empty part (//)');
  return { endpoints, prefix };
}

function parseHostPort(hp: string, bad: (why: string) => Error): string {
  if (hp === '') throw bad('an empty host in the list');
  // [v6]:port, or host:port with one colon
  const m = /^\[([^\]]+)\]:(.*)$/.exec(hp) ?? /^([^:[\]]+):(.*)$/.exec(hp);
  if (!m) throw bad(`${JSON.stringify(hp)} is not HOST:PORT (an IPv6 address goes in brackets: [::1]:2379)`);
  const [, host, portText] = m;
  if (hp.startsWith('[') && net.isIPv6(host) === false) throw bad(`${JSON.stringify(host)} is not an IPv6 address`);
  if (!/^[0-9]+$/.test(portText)) throw bad(`port ${JSON.stringify(portText)} of ${JSON.stringify(hp)} is not a number`);
  const port = Number(portText);
  if (port < 1 || port > 65535) throw bad(`port ${port} of ${JSON.stringify(hp)} is out of range (1-65535)`);
  if (!hp.startsWith('[') && !/^[A-Za-z0-9.-]+$/.test(host)) throw bad(`${JSON.stringify(host)} is not a host name or address`);
  return hp.startsWith('[') ? `[${host}]:${port}` : `${host}:${port}`;
}
