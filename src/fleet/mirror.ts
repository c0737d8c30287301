// mirror.ts: a directory of files that copies etcd values for the parts of
// moat that read files: this host's vassal files for its emperor, the
// fleet's rule files for its router. A file is replaced whole (written
// beside it under a dot-name, then renamed), so a reader never sees half of
// one; only the emperor writes here (root). Rule files are readable by the
// router's user; vassal files (their env may hold a tenant's secrets) by root only.
import fs from 'node:fs';
import path from 'node:path';

export class MirrorDir {
  private readonly written = new Map<string, string>();   // what this run wrote, by name

  constructor(readonly dir: string, private readonly fileMode: number) {}

  /** Makes the directory (and its parents), emptied of what an earlier run left. */
  reset(): void {
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
    for (const n of fs.readdirSync(this.dir)) fs.rmSync(path.join(this.dir, n), { force: true, recursive: true });
    this.written.clear();
  }

  path(name: string): string { return path.join(this.dir, name); }

  /** Writes name's text unless it already holds it; true if it changed. */
  write(name: string, text: string): boolean {
    // Compared with what this run wrote, not read back: the agent asks every second.
    if (this.written.get(name) === text && fs.existsSync(this.path(name))) return false;
    const file = this.path(name);
    const tmp = path.join(this.dir, `.${name}.${process.pid}.tmp`);
    fs.writeFileSync(tmp, text, { mode: this.fileMode });
    fs.chmodSync(tmp, this.fileMode);   // whatever the umask
    fs.renameSync(tmp, file);
    this.written.set(name, text);
    return true;
  }

  /** Removes name; true if it was there. */
  remove(name: string): boolean {
    this.written.delete(name);
    try { fs.unlinkSync(this.path(name)); return true; } catch { return false; }
  }

  names(): string[] {
    try { return fs.readdirSync(this.dir).filter((n) => !n.startsWith('.')); } catch { return []; }
  }
}
