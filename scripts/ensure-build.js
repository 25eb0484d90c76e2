// Runs before `npm start`, `npm run check`, `npm run migrate` and `npm run reconcile`: builds
// dist/ when it is missing or older than any source, so a fresh clone needs only
// `npm install && npm start` and the running process is plain `node dist/src/…`.
import { readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { build } from './build.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function newestMtime(path) {
  const stat = statSync(path, { throwIfNoEntry: false });
  if (stat === undefined) return 0;
  if (!stat.isDirectory()) return stat.mtimeMs;
  let newest = stat.mtimeMs; // a deleted file changes only its folder's mtime
  for (const entry of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, entry)));
  return newest;
}

const built = statSync(join(root, 'dist', 'src', 'main.js'), { throwIfNoEntry: false });
const sources = Math.max(
  ...['src', 'migrations', 'tsconfig.json', 'tsconfig.build.json'].map((p) =>
    newestMtime(join(root, p)),
  ),
);
if (built === undefined || built.mtimeMs < sources) {
  process.stderr.write(
    built === undefined ? 'dist/ missing: building…\n' : 'dist/ older than src/: building…\n',
  );
  try {
    build();
  } catch (err) {
    process.stderr.write(`build: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
