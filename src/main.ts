import type { Server } from 'node:http';
import type { Express } from 'express';
import { loadConfigOrExit, secretsOf } from './config.js';
import { logStartupFailure } from './db/data-dir-lock.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createRuntime, type Runtime } from './runtime.js';

// config → runtime (database, migrations, clients, workers, apps) → HTTP servers → start the
// workers → graceful shutdown

const config = loadConfigOrExit();
const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config) });

async function main(): Promise<void> {
  installCrashHandlers(logger);

  const runtime = await createRuntime({ config, logger });
  const servers = [await listen(runtime.app, config.port)];
  if (runtime.adminApp !== undefined)
    servers.push(await listen(runtime.adminApp, config.adminPort));
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

  runtime.service.start();
  installShutdown({
    servers,
    runtime,
    logger,
    timeoutMs: config.shutdownTimeoutMs,
    delayMs: config.shutdownDelayMs,
  });
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
  runtime: Runtime;
  logger: Logger;
  timeoutMs: number;
  delayMs: number;
}): void {
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    // 1. Unready: /readyz answers 503, and for `delayMs` the server still serves whatever the
    //    load balancer sends until it has noticed (endpoints are removed asynchronously).
    // SIGINT is a person at a terminal: no load balancer to wait for.
    const delayMs = signal === 'SIGTERM' ? ctx.delayMs : 0;
    ctx.runtime.startDraining();
    ctx.logger.info({ signal, delayMs }, 'shutting down: not ready');
    // Bounded: whatever has not drained by then is cut off; nothing accepted is lost
    // because every accepted event is already in the database.
    const deadline = setTimeout(() => {
      ctx.logger.error({ timeoutMs: ctx.timeoutMs }, 'shutdown timed out; exiting');
      ctx.logger.flush();
      process.exit(1);
    }, ctx.timeoutMs);
    deadline.unref();
    void (async () => {
      await new Promise((r) => setTimeout(r, delayMs));
      // 2. Drain: no new connections; requests in flight finish (a webhook being stored gets
      //    its 202), idle keep-alive connections are closed.
      ctx.logger.info('draining');
      await Promise.all(
        ctx.servers.map(
          (server) =>
            new Promise<void>((resolve) => {
              server.close(() => resolve());
              server.closeIdleConnections();
            }),
        ),
      );
      // 3. Pollers, dispatchers and the worker finish what they hold; anything cut short is
      //    still in the database and is picked up again by the next leader or start.
      await ctx.runtime.close();
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
  logStartupFailure(logger, err, 'start-up failed');
  process.exit(1);
});
