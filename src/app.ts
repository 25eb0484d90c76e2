import express, { type Express } from 'express';
import type { Config } from './config.js';
import type { Db } from './db/database.js';
import type { InboxWriter } from './db/inbox-writer.js';
import { adminRouter } from './http/admin.js';
import { consoleRouter } from './http/console.js';
import type { SystemStatus } from './service.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { healthRouter, metricsRouter } from './http/health.js';
import { requestLog } from './http/request-log.js';
import { apiSecurityHeaderSetter, apiSecurityHeaders } from './http/security-headers.js';
import { answerWebhooksFirst, registerWebhookRoutes, webhookRoutes } from './http/webhooks.js';
import type { Logger } from './lib/logger.js';
import type { Metrics } from './lib/metrics.js';
import { registerOpsMetrics } from './lib/ops-metrics.js';
import type { Reconciler } from './sync/reconcile.js';

export interface AppDeps {
  config: Readonly<Config>;
  db: Db;
  logger: Logger;
  metrics: Metrics;
  /** Serves POST /admin/reconcile; without it that route answers 503. */
  reconciler?: Reconciler;
  /** Which systems this replica leads and their credentials' state (console, GET /admin/systems). */
  systemStatus?: () => SystemStatus[];
  /** The webhooks' inbox writer; by default a bounded group-committing one on `db`. */
  inbox?: InboxWriter;
  /** True once the process is shutting down: /readyz answers 503. */
  draining?: () => boolean;
}

/**
 * Which routes an app serves: everything (one port), or with ADMIN_PORT set the public part
 * (webhooks and probes) and the admin part (probes, /metrics, /admin, the console) apart, so
 * only the webhook port need be reachable from outside.
 */
export type AppPart = 'all' | 'public' | 'admin';

/** The Express app. Never listens: main.ts (or supertest) does. */
export function createApp(deps: AppDeps, part: AppPart = 'all'): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  // Nothing here is cacheable (webhooks, health, admin, metrics): no ETag, which would cost
  // every response a SHA-1 of its body.
  app.set('etag', false);
  const log = requestLog(deps.logger, deps.metrics);
  const webhooks = part === 'admin' ? undefined : webhookRoutes(deps);
  if (webhooks !== undefined) {
    answerWebhooksFirst(app, webhooks, {
      setSecurityHeaders: apiSecurityHeaderSetter(),
      track: log.track,
    });
  }
  app.use(apiSecurityHeaders());
  app.use(log.middleware);

  // Webhooks first: they are the hot path, and routes are tried in order.
  if (webhooks !== undefined) registerWebhookRoutes(app, webhooks);
  app.use(healthRouter(deps));
  if (part !== 'public') {
    app.use(metricsRouter(deps));
    app.use('/admin', adminRouter(deps));
    app.use('/console', consoleRouter(deps));
    registerOpsMetrics({ db: deps.db, registry: deps.metrics.registry, logger: deps.logger });
  }

  app.use(notFoundHandler());
  app.use(errorHandler(deps.logger.child({ module: 'http' })));
  return app;
}
