// `npm run build`: src/ and migrations/ compiled to dist/ (dist/src/main.js is the service);
// `node scripts/build.js <dir>` compiles to <dir> instead. The output folder is emptied first so a deleted source file leaves no stale module behind; files in
// src/ that are not TypeScript (served assets) are copied beside the compiled modules.
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export function build(dist = join(root, 'dist')) {
  rmSync(dist, { recursive: true, force: true });
  let tsc;
  try {
    tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  } catch {
    throw new Error(
      'dist/ needs building but TypeScript is not installed: run `npm install` (with dev dependencies) first',
    );
  }
  const result = spawnSync(
    process.execPath,
    [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', dist],
    { cwd: root, stdio: 'inherit' },
  );
  if (result.status !== 0) {
    // Nothing half-built may look fresh to the next start.
    rmSync(dist, { recursive: true, force: true });
    throw new Error('TypeScript build failed (see the errors above)');
  }
  cpSync(join(root, 'src'), join(dist, 'src'), {
    recursive: true,
    filter: (source) => !source.endsWith('.ts'),
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    build(process.argv[2] === undefined ? undefined : resolve(process.argv[2]));
  } catch (err) {
    process.stderr.write(`build: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
}
