// pty.ts: `moat pty-connect ADDR` (raw) and `moat pty-uconnect ADDR` (framed):
// this terminal connected to a forkpty router or a shared pty. The work is
// native (pty_client.h): raw mode, window size, restore on every way out.
// Exit code: 0 when the remote session ended, 1 on errors, 2 bad usage,
// 128+N when signal N ended the client.
import { addon } from '../native';

export const PTY_USAGE = `usage: moat pty-connect ADDR     raw: bytes both ways (forkpty-router, pty-socket)
       moat pty-uconnect ADDR    framed: window size and stdin in uwsgi frames (forkpty-urouter)
`;

export function ptyClient(path: string, framed: boolean): number {
  const r = addon().ptyClient({ path, framed });
  if (r.error) process.stderr.write(`moat: ${r.error}\n`);
  return r.code;
}

export function ptyCommand(word: 'pty-connect' | 'pty-uconnect', args: string[]): number {
  if (args.length !== 1 || args[0].startsWith('-') || !args[0]) {
    process.stderr.write(PTY_USAGE);
    return 2;
  }
  return ptyClient(args[0], word === 'pty-uconnect');
}
