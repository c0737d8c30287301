// udp-probe.ts: a tiny UDP echo server and client for the demo and tests,
// run inside a namespace with `ip netns exec NS node udp-probe.js ...`.
//   serve HOST PORT           echo every datagram back until killed
//   ask HOST PORT TIMEOUT_MS [SRC]  send one datagram (from SRC if given);
//                             exit 0 on an echo, 1 on timeout
import dgram from 'node:dgram';

const [mode, host, portText, timeoutText, src] = process.argv.slice(2);
const port = Number(portText);

if (mode === 'serve') {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => s.send(msg, rinfo.port, rinfo.address));
  s.bind(port, host, () => process.stdout.write('ready\n'));
} else if (mode === 'ask') {
  const s = dgram.createSocket('udp4');
  const timer = setTimeout(() => { s.close(); process.exit(1); }, Number(timeoutText ?? 1000));
  s.on('message', () => { clearTimeout(timer); s.close(); process.exit(0); });
  if (src) s.bind(0, src, () => s.send(Buffer.from('moat-probe'), port, host));
  else s.send(Buffer.from('moat-probe'), port, host);
} else {
  process.stderr.write('usage: udp-probe serve HOST PORT | ask HOST PORT TIMEOUT_MS\n');
  process.exit(2);
}
