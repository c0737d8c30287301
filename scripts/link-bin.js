// link-bin.js: after a build, makes `moat` runnable from this checkout:
// dist/src/cli.js executable, and node_modules/.bin/moat pointing at it so
// `npx moat ...` finds the local program. (npm links bins only for dependencies.)
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const cli = path.join(root, 'dist', 'src', 'cli.js');
if (!fs.existsSync(cli)) process.exit(0);
fs.chmodSync(cli, 0o755);
const binDir = path.join(root, 'node_modules', '.bin');
if (fs.existsSync(path.dirname(binDir))) {
  fs.mkdirSync(binDir, { recursive: true });
  const link = path.join(binDir, 'moat');
  try { fs.unlinkSync(link); } catch { /* none yet */ }
  fs.symlinkSync(path.relative(binDir, cli), link);
}
