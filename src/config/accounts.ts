// accounts.ts: user and group names to numbers, read from /etc/passwd and
// /etc/group (no NSS: moat resolves names the way the files say).
import fs from 'node:fs';

export interface AccountFiles {
  passwd?: string;   // default /etc/passwd
  group?: string;    // default /etc/group
}

function readTable(file: string): string[][] {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split(':'));
}

const NUMBER = /^[0-9]+$/;

/** A user by name or number: its uid and primary gid (gid undefined for a number with no entry). */
export function lookupUser(user: string, files: AccountFiles = {}): { uid: number; gid?: number } | undefined {
  const rows = readTable(files.passwd ?? '/etc/passwd');
  if (NUMBER.test(user)) {
    const uid = Number(user);
    const row = rows.find((r) => Number(r[2]) === uid && NUMBER.test(r[2] ?? ''));
    return { uid, gid: row ? Number(row[3]) : undefined };
  }
  const row = rows.find((r) => r[0] === user);
  return row && NUMBER.test(row[2] ?? '') && NUMBER.test(row[3] ?? '') ? { uid: Number(row[2]), gid: Number(row[3]) } : undefined;
}

/** A group by name or number. */
export function lookupGroup(group: string, files: AccountFiles = {}): number | undefined {
  if (NUMBER.test(group)) return Number(group);
  const row = readTable(files.group ?? '/etc/group').find((r) => r[0] === group);
  return row && NUMBER.test(row[2] ?? '') ? Number(row[2]) : undefined;
}
