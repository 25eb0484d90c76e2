import type { Server } from 'node:http';
import type { Express } from 'express';
import { createApp } from './app.js';
import { loadConfigOrExit, secretsOf } from './config.js';
import { migrateToLatest, openDatabase, type DatabaseHandle } from './db/database.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createMetrics } from './lib/metrics.js';
import { createService, type Service } from './service.js';

// config → database → migrations → HTTP server + workers → graceful shutdown

const config = loadConfigOrExit();
const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config) });

async function main(): Promise<void> {
  installCrashHandlers(logger);

  const database = await openDatabase(config);
  logger.info(
    { database: database.kind, dataDir: database.kind === 'pglite' ? config.dataDir : undefined },
    'database opened',
  );
  const applied = await migrateToLatest(database.db);
  logger.info({ applied }, 'migrations done');

  const metrics = createMetrics();
  const service = createService({
    config,
    db: database.db,
    databaseUrl: config.databaseUrl,
    logger,
    metrics,
  });
  const deps = { config, db: database.db, logger, metrics, reconciler: service.reconciler };
  // With ADMIN_PORT, /metrics, /admin and the console listen apart from the webhooks.
  const split = config.adminPort !== undefined && config.adminPort !== config.port;
  const servers = [await listen(createApp(deps, split ? 'public' : 'all'), config.port)];
  if (split) servers.push(await listen(createApp(deps, 'admin'), config.adminPort));
  logger.info(
    {
      port: portOf(servers[0]!),
      adminPort: portOf(servers[1] ?? servers[0]!),
      tidsbanken: sideState(config.tidsbanken),
      poweroffice: sideState(config.poweroffice),
      dryRun: config.dryRun,
    },
    'listening',
  );

  service.start();
  installShutdown({ servers, service, database, logger, timeoutMs: config.shutdownTimeoutMs });
}

async function listen(app: Express, port: number | undefined): Promise<Server> {
  const server = app.listen(port);
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  return server;
}

function portOf(server: Server): number | undefined {
  const address = server.address();
  return typeof address === 'object' && address !== null ? address.port : undefined;
}

/** `on`, `off`, or — never silently off — which credential variables are missing. */
function sideState(side: { credentials: unknown; credentialsMissing: string[] }): string {
  if (side.credentials !== undefined && side.credentialsMissing.length === 0) return 'on';
  if (side.credentialsMissing.length === 0) return 'off';
  return `partly configured: ${side.credentialsMissing.join(', ')} missing`;
}

function installShutdown(ctx: {
  servers: Server[];
  service: Service;
  database: DatabaseHandle;
  logger: Logger;
  timeoutMs: number;
}): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    ctx.logger.info({ signal }, 'shutting down');
    // Bounded: whatever has not drained by then is cut off; nothing accepted is lost
    // because every accepted event is already in the database.
    const deadline = setTimeout(() => {
      ctx.logger.error({ timeoutMs: ctx.timeoutMs }, 'shutdown timed out; exiting');
      process.exit(1);
    }, ctx.timeoutMs);
    deadline.unref();
    void (async () => {
      await Promise.all(
        ctx.servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeIdleConnections();
            }),
        ),
      );
      // Pollers, dispatchers and the worker finish what they hold; anything cut short is
      // still in the database and is picked up again at the next start.
      await ctx.service.stop();
      await ctx.database.close();
      ctx.logger.info('stopped');
      clearTimeout(deadline);
      process.exit(0);
    })().catch((err: unknown) => {
      ctx.logger.error({ err }, 'shutdown failed');
      process.exit(1);
    });
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

function installCrashHandlers(logger: Logger): void {
  // An error nobody caught leaves the process in an unknown state: log it, then die, and let
  // the orchestrator restart us (the database holds everything that matters).
  const crash = (kind: string) => (err: unknown) => {
    logger.fatal({ err }, kind);
    logger.flush();
    process.exit(1);
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled rejection'));
}

main().catch((err: unknown) => {
  // A JSON line like every other, through the logger that scrubs configured secrets.
  logger.fatal({ err }, 'start-up failed');
  logger.flush();
  process.exit(1);
});
