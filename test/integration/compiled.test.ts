import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  childServiceStore,
  cleanupAfterEach,
  freePort,
  spawnCollecting,
  startFakes,
  waitReady,
} from '../helpers/child-service.js';
import { fakesEnv } from '../helpers/fakes-env.js';

// What the container image runs, run here (no image builder on this machine, deploy/README.md):
// `npm run build`'s output in a folder holding only production dependencies
// (`npm ci --omit=dev`, as the Dockerfile's deps stage), started with plain `node`. Catches a
// module that needs a dev dependency or a TypeScript loader at run time, a build that misses
// a file, and a CLI that only works under tsx.

const exec = promisify(execFile);
const root = join(import.meta.dirname, '..', '..');
// Compiling on a loaded 2-core machine, creating an embedded database: minutes, not seconds.
const SLOW_MS = 240_000;

let app: string;
beforeAll(async () => {
  app = await mkdtemp(join(tmpdir(), 'tbpo-compiled-'));
  await exec(process.execPath, [join(root, 'scripts', 'build.js'), join(app, 'dist')], {
    cwd: root,
  });
  for (const file of ['package.json', 'package-lock.json']) {
    copyFileSync(join(root, file), join(app, file));
  }
  await exec(
    'npm',
    ['ci', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
    { cwd: app, env: { ...process.env, NODE_ENV: 'production' } },
  );
}, SLOW_MS);
afterAll(async () => {
  if (app !== undefined) await rm(app, { recursive: true, force: true });
});

const cleanup = cleanupAfterEach();

/** `node <entry>` in the production folder with exactly `env` (plus PATH). */
function node(entry: string, env: Record<string, string>) {
  return spawnCollecting('node', [entry], { POLL_INTERVAL_MS: '0', ...env }, { cwd: app });
}

describe('the compiled service with production dependencies only', () => {
  it('holds no dev dependency: no TypeScript, no loader, no test tools', () => {
    expect(existsSync(join(app, 'node_modules', 'express'))).toBe(true);
    for (const dev of ['typescript', 'tsx', 'vitest', 'esbuild', 'supertest']) {
      expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
    }
    expect(existsSync(join(app, 'dist', 'src', 'main.js'))).toBe(true);
  });

  it(
    'migrates, starts with the admin routes on ADMIN_PORT only, and stops cleanly on SIGTERM',
    async () => {
      const store = await childServiceStore(cleanup, 'tbpo-compiled-data-');
      const migrate = node('dist/src/migrate-cli.js', store.env);
      expect(await migrate.exited, migrate.output()).toBe(0);
      expect(migrate.output()).toContain('"msg":"migrations done"');

      const [port, adminPort] = [await freePort(), await freePort()];
      const token = 'admin-token-compiled-0123456789';
      const run = node('dist/src/main.js', {
        ...store.env,
        PORT: String(port),
        ADMIN_PORT: String(adminPort),
        ADMIN_TOKEN: token,
        SHUTDOWN_DELAY_MS: '0',
      });
      try {
        await waitReady(port, SLOW_MS);
        // Plain node, nothing between: no loader in its arguments or options.
        const cmdline = readFileSync(`/proc/${run.child.pid}/cmdline`, 'utf8').split('\0');
        expect(cmdline.filter(Boolean)).toEqual(['node', 'dist/src/main.js']);
        expect(run.output()).not.toMatch(/tsx/);

        const get = (p: number, path: string) =>
          fetch(`http://127.0.0.1:${p}${path}`, { headers: { authorization: `Bearer ${token}` } });
        expect((await get(port, '/healthz')).status).toBe(200);
        expect((await get(adminPort, '/readyz')).status).toBe(200);
        for (const path of ['/metrics', '/admin/links', '/console']) {
          expect((await get(port, path)).status, `public ${path}`).toBe(404);
          expect((await get(adminPort, path)).status, `admin ${path}`).not.toBe(404);
        }
        expect((await get(adminPort, '/admin/links')).status).toBe(200);
        expect(await (await get(adminPort, '/metrics')).text()).toContain('tbpo_leader');
        const listening = run
          .output()
          .split('\n')
          .find((l) => l.includes('"msg":"listening"'));
        expect(JSON.parse(listening!)).toMatchObject({ port, adminPort });
      } finally {
        run.child.kill('SIGTERM');
      }
      expect(await run.exited, run.output()).toBe(0);
      expect(run.output()).toContain('"msg":"stopped"');
    },
    2 * SLOW_MS,
  );

  it(
    '`npm run check` compiled: the table against the fakes, exit 0',
    async () => {
      const { tb, po } = await startFakes(cleanup, 1000);
      tb.seedAnsatt({ Id: 41, Fornavn: 'Kari', Etternavn: 'Nordmann' });
      const store = await childServiceStore(cleanup, 'tbpo-compiled-check-');
      const check = node('dist/src/check-cli.js', { ...store.env, ...fakesEnv(tb, po) });
      expect(await check.exited, check.output()).toBe(0);
      expect(check.output()).toMatch(
        /^tidsbanken Ansatt\s+OK\s+1 on the first page, e\.g\. Id 41$/m,
      );
      expect(check.output()).toMatch(/^poweroffice privileges\s+OK/m);
      expect(check.output()).toContain('All configured parts work.');
    },
    SLOW_MS,
  );
});
