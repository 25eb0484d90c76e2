import type { Express } from 'express';
import { createApp } from './app.js';
import type { Config } from './config.js';
import { migrateToLatest, openDatabase, type DatabaseHandle } from './db/database.js';
import type { SystemName } from './db/schema.js';
import type { Logger } from './lib/logger.js';
import { createMetrics, type Metrics } from './lib/metrics.js';
import { Pacer } from './lib/pacer.js';
import type { Poller } from './lib/pollers.js';
import { PowerOfficeClient } from './poweroffice/client.js';
import { createPowerOfficePollers } from './poweroffice/poller.js';
import { createService, type Service } from './service.js';
import { Reconciler } from './sync/reconcile.js';
import { linkGateEngine } from './sync/sweep.js';
import type { Clients } from './sync/worker.js';
import { TidsbankenClient } from './tidsbanken/client.js';
import { createTidsbankenPollers } from './tidsbanken/poller.js';

// The one place the parts are put together: database (migrated), metrics, one pacer and one
// client per configured vendor, the change pollers, the reconciler, the background service
// (worker, dispatchers, leadership) and the HTTP app. src/main.ts, the reconcile command,
// the test harness and the benchmarks all build their process with createRuntime.

export interface RuntimeOptions {
  config: Readonly<Config>;
  logger: Logger;
  /**
   * An already open database (tests and benchmarks bring their own scratch database); by
   * default it is opened from the config. close() closes it either way.
   */
  database?: DatabaseHandle;
  /**
   * The PostgreSQL connection string for the leadership locks when `database` is given
   * (undefined on PGlite); otherwise the config's DATABASE_URL.
   */
  databaseUrl?: string | undefined;
  /** Client overrides (tests: shorter timeouts and backoffs). */
  clientOptions?: {
    timeoutMs?: number;
    maxAttempts?: number;
    backoffBaseMs?: number;
    /** How long refused credentials pause a system before they are tried again (30 s). */
    credentialsRetryMs?: number;
  };
  /** How long the sync worker sleeps when nothing is due (tests: shorter). */
  workerIdleMs?: number;
  /** How often a running reconcile stores its progress (the reconcile command: often). */
  reconcileHeartbeatMs?: number;
  /** Delay before the first retention pass (tests: 0). */
  retentionFirstRunMs?: number;
}

export interface Runtime {
  config: Readonly<Config>;
  logger: Logger;
  database: DatabaseHandle;
  metrics: Metrics;
  clients: Clients;
  pollers: Poller[];
  reconciler: Reconciler;
  /** Worker, dispatchers and pollers under leadership: nothing runs until service.start(). */
  service: Service;
  /**
   * The HTTP app (it never listens by itself): every route, or with ADMIN_PORT set apart from
   * PORT only the webhooks and probes, the rest being `adminApp`'s.
   */
  app: Express;
  adminApp: Express | undefined;
  /** Shutting down: /readyz answers 503 from now on, so load balancers stop sending here. */
  startDraining(): void;
  /** Stops the service (if started) and closes the database. */
  close(): Promise<void>;
}

export async function createRuntime(options: RuntimeOptions): Promise<Runtime> {
  const { config, logger } = options;
  const database = await openMigratedDatabase(options);
  const databaseUrl = options.database !== undefined ? options.databaseUrl : config.databaseUrl;
  const db = database.db;
  const metrics = createMetrics();
  const { pacers, clients } = createClients(options, metrics);
  const pollers = createPollers(config, logger, db, metrics, clients);
  const reconciler = new Reconciler({
    db,
    logger,
    config,
    pollers,
    engine: linkGateEngine,
    heartbeatMs: options.reconcileHeartbeatMs,
    leaseTtlMs: config.leaseTtlMs,
  });
  const service = createService({
    config,
    db,
    databaseUrl,
    logger,
    metrics,
    clients,
    pacers,
    pollers,
    reconciler,
    workerIdleMs: options.workerIdleMs,
    // A failed command backs off in the outbox as a request would in the client.
    commandBackoffBaseMs: options.clientOptions?.backoffBaseMs,
    retentionFirstRunMs: options.retentionFirstRunMs,
  });
  let draining = false;
  const appDeps = {
    draining: () => draining,
    config,
    db,
    logger,
    metrics,
    reconciler,
    systemStatus: () => service.systemStatus(),
  };
  // With ADMIN_PORT, /metrics, /admin and the console listen apart from the webhooks.
  const split = config.adminPort !== undefined && config.adminPort !== config.port;
  const app = createApp(appDeps, split ? 'public' : 'all');
  const adminApp = split ? createApp(appDeps, 'admin') : undefined;

  return {
    config,
    logger,
    database,
    metrics,
    clients,
    pollers,
    reconciler,
    service,
    app,
    adminApp,
    startDraining() {
      draining = true;
    },
    async close() {
      await service.stop();
      await database.close();
    },
  };
}

/** The database given, or the one the config names, migrated to the latest schema. */
async function openMigratedDatabase(options: RuntimeOptions): Promise<DatabaseHandle> {
  const { config, logger } = options;
  const database = options.database ?? (await openDatabase(config));
  logger.info(
    {
      database: database.kind,
      dataDir:
        database.kind === 'pglite' && options.database === undefined ? config.dataDir : undefined,
    },
    'database opened',
  );
  const applied = await migrateToLatest(database.db);
  logger.info({ applied }, 'migrations done');
  return database;
}

/** One pacer per system, and a client for each system whose credentials are set. */
function createClients(
  options: RuntimeOptions,
  metrics: Metrics,
): { pacers: Record<SystemName, Pacer>; clients: Clients } {
  const { config, logger } = options;
  const { credentialsRetryMs, ...clientOptions } = options.clientOptions ?? {};
  const pacers: Record<SystemName, Pacer> = {
    tidsbanken: new Pacer('tidsbanken', config.tidsbanken.rateLimitPerSecond, {
      credentialsRetryMs,
    }),
    poweroffice: new Pacer('poweroffice', config.poweroffice.rateLimitPerSecond, {
      credentialsRetryMs,
    }),
  };
  for (const pacer of Object.values(pacers)) {
    metrics.watchCredentials(pacer.system, () => pacer.credentialsState !== undefined);
  }
  const clients: Clients = {};
  if (config.tidsbanken.credentials !== undefined) {
    clients.tidsbanken = new TidsbankenClient({
      config: config.tidsbanken.credentials,
      pacer: pacers.tidsbanken,
      logger: logger.child({ module: 'tidsbanken' }),
      metrics,
      ...clientOptions,
    });
  }
  if (config.poweroffice.credentials !== undefined) {
    clients.poweroffice = new PowerOfficeClient({
      config: config.poweroffice.credentials,
      pacer: pacers.poweroffice,
      logger: logger.child({ module: 'poweroffice' }),
      metrics,
      ...clientOptions,
    });
  }
  return { pacers, clients };
}

/** The pollers of both systems' record types. */
function createPollers(
  config: Readonly<Config>,
  logger: Logger,
  db: DatabaseHandle['db'],
  metrics: Metrics,
  clients: Clients,
): Poller[] {
  const pollerLogger = logger.child({ module: 'poller' });
  return [
    ...createTidsbankenPollers({
      client: clients.tidsbanken,
      db,
      logger: pollerLogger,
      metrics,
      intervalMs: config.pollIntervalMs,
    }),
    ...createPowerOfficePollers({
      client: clients.poweroffice,
      db,
      logger: pollerLogger,
      metrics,
      intervalMs: config.pollIntervalMs,
    }),
  ];
}
