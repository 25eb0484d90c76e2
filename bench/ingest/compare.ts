// Paired comparison of two builds of the app (bench/README.md, "ingest"):
//
//   npx tsx bench/ingest/compare.ts <git-ref> [--slices 20] [--connections 32]
//
// "base" is <git-ref>, checked out into a temporary git worktree; "head" is this working
// tree. Both apps (createApp, real config, pino at info to /dev/null, each on its own fresh
// database) listen in this process, and autocannon (a child process, as in run.ts) loads them
// in alternating 1 s slices, `slices` per side after a warm-up pair. Per slice: main-thread
// busy time (event-loop utilization), this process's CPU and PostgreSQL's CPU per answered
// request, and req/s. Medians are printed and written to bench/ingest/last-result-compare.json.
//
// Why: on this 2-core VM the speed drifts by tens of per cent within minutes, so two full
// runs of run.ts cannot show a 5 % change; alternating 1 s slices cancel the drift. Same code
// on both sides gives ratios within about ±5 % (bench/README.md).
import { execFileSync } from 'node:child_process';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import type { createApp as CreateApp } from '../../src/app.js';
import type * as ConfigModule from '../../src/config.js';
import type * as DatabaseModule from '../../src/db/database.js';
import type * as LoggerModule from '../../src/lib/logger.js';
import type * as MetricsModule from '../../src/lib/metrics.js';
import { createScratchDatabase, newWebhookSecret } from '../lib/common.js';
import { alternatingSlices, arg, listen, measuredLoad, type SliceMedians } from './load.js';

const git = (...args: string[]) =>
  execFileSync('git', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();

/** One side: the app of the source tree at `root`, on a fresh database. */
async function startSide(root: string, secret: string) {
  const load = <T>(path: string) => import(pathToFileURL(join(root, path)).href) as Promise<T>;
  const [{ createApp }, config, database, logging, metrics] = await Promise.all([
    load<{ createApp: typeof CreateApp }>('src/app.ts'),
    load<typeof ConfigModule>('src/config.ts'),
    load<typeof DatabaseModule>('src/db/database.ts'),
    load<typeof LoggerModule>('src/lib/logger.ts'),
    load<typeof MetricsModule>('src/lib/metrics.ts'),
  ]);
  const scratch = await createScratchDatabase('bench_compare');
  const handle = database.openPostgres(scratch.url, 10);
  try {
    await database.migrateToLatest(handle.db);
    const cfg = config.loadConfig({
      DATABASE_URL: scratch.url,
      TIDSBANKEN_WEBHOOK_SECRET: secret,
      POLL_INTERVAL_MS: '0',
    });
    const logger = logging.createLogger({
      level: 'info',
      secrets: config.secretsOf(cfg),
      destination: pino.destination({ dest: '/dev/null', sync: false }),
    });
    const server = await listen(
      createApp({ config: cfg, db: handle.db, logger, metrics: metrics.createMetrics() }),
    );
    return {
      url: `${server.url}/webhooks/tidsbanken`,
      async close() {
        await server.close();
        await handle.close();
        await scratch.drop();
      },
    };
  } catch (err) {
    await handle.close();
    await scratch.drop();
    throw err;
  }
}

async function main(): Promise<void> {
  const ref = process.argv[2];
  if (ref === undefined || ref.startsWith('--')) {
    console.error(
      'usage: npx tsx bench/ingest/compare.ts <git-ref> [--slices 20] [--connections 32]',
    );
    process.exit(2);
  }
  const slices = arg('slices', undefined, 20);
  const connections = arg('connections', undefined, 32);
  const top = git('rev-parse', '--show-toplevel');
  const commit = git('rev-parse', '--verify', `${ref}^{commit}`);
  const dir = await mkdtemp(join(tmpdir(), 'ingest-compare-'));
  git('worktree', 'add', '--detach', dir, commit);
  const secret = newWebhookSecret();
  const closers: (() => Promise<void>)[] = [];
  try {
    await symlink(join(top, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const base = await startSide(dir, secret);
    closers.push(() => base.close());
    const head = await startSide(top, secret);
    closers.push(() => head.close());

    // `slices` per side after the warm-up pair.
    const [b, h] = await alternatingSlices(
      2 * (slices + 1),
      (url) => measuredLoad({ url, secret, duration: 1, connections, overallRate: undefined }),
      [base.url, head.url],
    );
    const summary = (key: keyof SliceMedians) => ({
      base: Math.round(b[key] * 10) / 10,
      head: Math.round(h[key] * 10) / 10,
      headOverBase: Math.round((h[key] / b[key]) * 1000) / 1000,
    });
    const report = {
      base: { ref, commit },
      head: {
        commit: git('rev-parse', 'HEAD'),
        uncommittedChanges: git('status', '--porcelain') !== '',
      },
      slices,
      connections,
      mainThreadUsPerRequest: summary('mainThreadUs'),
      processCpuUsPerRequest: summary('processCpuUs'),
      postgresCpuUsPerRequest: summary('postgresCpuUs'),
      requestsPerSecond: summary('rps'),
    };
    await writeFile(
      new URL('./last-result-compare.json', import.meta.url),
      `${JSON.stringify(report, null, 2)}\n`,
    );
    const line = (label: string, s: ReturnType<typeof summary>) =>
      `${label.padEnd(34)} base ${String(s.base).padStart(8)}   head ${String(s.head).padStart(8)}   head/base ${s.headOverBase.toFixed(3)}`;
    console.log(
      `${slices} slices of 1 s per side, base ${ref} (${commit.slice(0, 8)}) vs this working tree`,
    );
    console.log(line('main thread µs per request', report.mainThreadUsPerRequest));
    console.log(line('process CPU µs per request', report.processCpuUsPerRequest));
    console.log(line('PostgreSQL CPU µs per request', report.postgresCpuUsPerRequest));
    console.log(line('req/s', report.requestsPerSecond));
  } finally {
    for (const close of closers.reverse()) await close().catch(() => undefined);
    git('worktree', 'remove', '--force', dir);
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
