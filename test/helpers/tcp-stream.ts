// tcp-stream.ts: a TCP sender and receiver for transfer tests, run as a
// process inside a network namespace (ip netns exec NS node tcp-stream.js ...):
//   recv PORT              accept one connection, read to EOF, print {bytes, sha256}
//   send HOST PORT BYTES   send BYTES random bytes, close, print {bytes, sha256}
// Both print one JSON line; comparing the two hashes proves a byte-exact transfer.
import net from 'node:net';
import crypto from 'node:crypto';

const [mode, a, b, c] = process.argv.slice(2);
const hash = crypto.createHash('sha256');
let bytes = 0;
const done = () => process.stdout.write(JSON.stringify({ bytes, sha256: hash.digest('hex') }) + '\n');

if (mode === 'recv') {
  const server = net.createServer((s) => {
    server.close();
    s.on('data', (d: Buffer) => { bytes += d.length; hash.update(d); });
    s.on('end', () => { done(); s.end(); });
    s.on('error', (e) => { console.error(e.message); process.exit(1); });
  });
  server.listen(Number(a), '0.0.0.0', () => process.stdout.write('listening\n'));
} else if (mode === 'send') {
  const total = Number(c);
  const s = net.createConnection({ host: a, port: Number(b) });
  s.on('error', (e) => { console.error(e.message); process.exit(1); });
  s.on('connect', () => {
    const pump = () => {
      while (bytes < total) {
        const chunk = crypto.randomBytes(Math.min(256 * 1024, total - bytes));
        bytes += chunk.length;
        hash.update(chunk);
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end();
    };
    pump();
  });
  s.on('close', () => done());
} else {
  console.error('usage: tcp-stream recv PORT | send HOST PORT BYTES');
  process.exit(2);
}
