// First-reconcile benchmark (bench/README.md, "reconcile").
//
//   npx tsx bench/reconcile/run.ts
//   env: BENCH_RECORDS (per record type and side, default 20000, at most 100000),
//        DATABASE_URL (server; default postgres://postgres@127.0.0.1:5432/postgres),
//        BENCH_RATE (requests/s for the fakes and our pacers, default 1000),
//        BENCH_TIMEOUT_MS (default 20 min), BENCH_LOG_LEVEL (default warn; to stderr)
//
// Seeds the fake APIs with N Ansatte, N Kunder, N Employees, N Customers and N/10 contact
// persons (half of each matching a counterpart by its merge rule), then runs one reconcile
// exactly as the service does — Reconciler + the engine's link gate, worker and sweep —
// against a fresh PostgreSQL database this script creates and drops. The fakes and our
// pacers run at BENCH_RATE so the numbers measure our code; what the real limits would cost
// (pages × pace) is computed from the requests the fakes received.
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { migrateToLatest, openPostgres } from '../../src/db/database.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import type { Poller } from '../../src/lib/pollers.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { createPowerOfficePollers } from '../../src/poweroffice/poller.js';
import { Reconciler, type ReconcileProgress } from '../../src/sync/reconcile.js';
import { linkGateEngine } from '../../src/sync/sweep.js';
import { startSyncWorker } from '../../src/sync/worker.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import { createTidsbankenPollers } from '../../src/tidsbanken/poller.js';
import { startFakePowerOffice } from '../../test/fakes/poweroffice.js';
import { startFakeTidsbanken } from '../../test/fakes/tidsbanken.js';

const N = Math.min(100_000, Math.max(1, Number(process.env.BENCH_RECORDS ?? 20_000)));
const RATE = Math.max(1, Number(process.env.BENCH_RATE ?? 1000));
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 20 * 60_000);
const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
// The defaults of DESIGN.md §4: what a real first reconcile is paced at.
const REAL_RATE = { tidsbanken: 5, poweroffice: 10 };

function databaseUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

async function main(): Promise<void> {
  const tb = await startFakeTidsbanken({ rateLimitPerSecond: RATE });
  const po = await startFakePowerOffice({ rateLimitPerSecond: RATE });
  const contacts = Math.max(2, Math.floor(N / 10));

  const seedStart = performance.now();
  // Half of every type matches a counterpart: Ansatt i ↔ Employee Number i, Kunde i ↔
  // Customer by e-mail, Ansatt i ↔ contact person by e-mail.
  for (let i = 1; i <= N; i++) {
    tb.seedAnsatt({
      Id: i,
      Fornavn: `Ansatt${i}`,
      Etternavn: 'Bench',
      Epost: `ansatt${i}@bench.no`,
    });
    tb.seedKunde({ Id: `K${i}`, Navn: `Kunde ${i}`, Epost: `kunde${i}@bench.no` });
    po.seedEmployee({
      FirstName: `Employee${i}`,
      LastName: 'Bench',
      ...(i % 2 === 0 ? {} : { EmailAddress: `employee${i}@bench.no` }),
    });
    po.seedCustomer({
      Name: `Customer ${i}`,
      EmailAddress: i % 2 === 0 ? `kunde${i}@bench.no` : `customer${i}@bench.no`,
    });
  }
  // Employee Numbers run 1..N: make the odd ones miss (Number + 10N) so half match.
  for (const employee of po.employees.values()) {
    const number = employee.Number as number;
    if (number % 2 === 1) employee.Number = number + 10 * N;
  }
  const customerIds = [...po.customers.keys()];
  for (let i = 1; i <= contacts; i++) {
    po.seedContactPerson(customerIds[i % customerIds.length]!, {
      FirstName: `Kontakt${i}`,
      LastName: 'Bench',
      EmailAddress: i % 2 === 0 ? `ansatt${i}@bench.no` : `kontakt${i}@bench.no`,
    });
  }
  const seedMs = performance.now() - seedStart;

  const name = `tbpo_bench_reconcile_${randomBytes(4).toString('hex')}`;
  await admin(`create database ${name}`);
  const handle = openPostgres(databaseUrl(name), 10);
  const logger = createLogger({
    level: process.env.BENCH_LOG_LEVEL ?? 'warn',
    destination: process.stderr,
  });
  try {
    await migrateToLatest(handle.db);
    const config = loadConfig({
      DATABASE_URL: databaseUrl(name),
      POLL_INTERVAL_MS: '0',
      TIDSBANKEN_BASE_URL: tb.url,
      TIDSBANKEN_API_KEY: tb.apiKey,
      TIDSBANKEN_SUBSCRIPTION_KEY: tb.subscriptionKey,
      TIDSBANKEN_RATE_LIMIT_PER_SECOND: String(RATE),
      POWEROFFICE_BASE_URL: po.baseUrl,
      POWEROFFICE_TOKEN_URL: po.tokenUrl,
      POWEROFFICE_APPLICATION_KEY: po.applicationKey,
      POWEROFFICE_CLIENT_KEY: po.clientKey,
      POWEROFFICE_SUBSCRIPTION_KEY: po.subscriptionKey,
      POWEROFFICE_RATE_LIMIT_PER_SECOND: String(RATE),
    });
    const metrics = createMetrics();
    const clients = {
      tidsbanken: new TidsbankenClient({
        config: config.tidsbanken.credentials!,
        pacer: new Pacer('tidsbanken', RATE),
        logger,
        metrics,
      }),
      poweroffice: new PowerOfficeClient({
        config: config.poweroffice.credentials!,
        pacer: new Pacer('poweroffice', RATE),
        logger,
        metrics,
      }),
    };
    const db = handle.db;
    const pollers: Poller[] = [
      ...createTidsbankenPollers({ client: clients.tidsbanken, db, logger, intervalMs: 0 }),
      ...createPowerOfficePollers({ client: clients.poweroffice, db, logger, intervalMs: 0 }),
    ];
    const worker = startSyncWorker({ db, config, logger, clients });
    const reconciler = new Reconciler({
      db,
      logger,
      config,
      pollers,
      engine: linkGateEngine,
      heartbeatMs: 5000,
      drainTimeoutMs: TIMEOUT_MS,
    });

    // Phase timings and peak RSS, sampled while the run goes.
    const phaseAt: Record<string, number> = {};
    let peakRss = process.memoryUsage().rss;
    const sampler = setInterval(() => {
      peakRss = Math.max(peakRss, process.memoryUsage().rss);
    }, 100);
    const start = performance.now();
    reconciler.onProgress((p: ReconcileProgress) => {
      phaseAt[p.phase] ??= performance.now() - start;
      process.stderr.write(
        `  ${((performance.now() - start) / 1000).toFixed(1)}s ${p.phase} ${p.recordsRead} records read\n`,
      );
    });
    const timeout = setTimeout(() => void reconciler.stop(), TIMEOUT_MS);
    const run = await reconciler.run();
    const wallMs = performance.now() - start;
    clearTimeout(timeout);
    clearInterval(sampler);
    await worker.stop();

    const progress = run.progress as ReconcileProgress;
    const requests = {
      tidsbanken: tb.requests.length,
      poweroffice: po.requests.length,
    };
    const pages = Object.fromEntries(
      progress.read.map((r) => [`${r.system}/${r.recordType}`, r.pages]),
    );
    const realReadSeconds = {
      tidsbanken: requests.tidsbanken / REAL_RATE.tidsbanken,
      poweroffice: requests.poweroffice / REAL_RATE.poweroffice,
    };
    const links = await db
      .selectFrom('links')
      .select(['flow', (eb) => eb.fn.countAll<string>().as('n')])
      .where('unlinked_at', 'is', null)
      .groupBy('flow')
      .execute();
    const result = {
      at: new Date().toISOString(),
      status: run.status,
      error: run.error,
      recordsPerSide: N,
      contactPersons: contacts,
      recordsRead: progress.recordsRead,
      seedSeconds: +(seedMs / 1000).toFixed(1),
      wallSeconds: +(wallMs / 1000).toFixed(1),
      phaseStartSeconds: Object.fromEntries(
        Object.entries(phaseAt).map(([k, v]) => [k, +(v / 1000).toFixed(1)]),
      ),
      recordsPerSecond: Math.round(progress.recordsRead / (wallMs / 1000)),
      peakRssMiB: Math.round(Math.max(peakRss, process.resourceUsage().maxRSS * 1024) / 2 ** 20),
      linksMade: progress.linksMade,
      linksByFlow: Object.fromEntries(links.map((l) => [l.flow, Number(l.n)])),
      conflicts: progress.conflicts,
      commandsQueued: progress.commandsQueued,
      pages,
      requests,
      benchRatePerSecond: RATE,
      realLimitReadSeconds: realReadSeconds,
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? 'unknown',
        memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
        node: process.version,
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    await writeFile(
      new URL('./last-result.json', import.meta.url),
      `${JSON.stringify(result, null, 2)}\n`,
    );
  } finally {
    await handle.close();
    await admin(`drop database if exists ${name} with (force)`);
    await tb.close();
    await po.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(
      `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
