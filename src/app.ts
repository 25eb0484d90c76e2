import { randomUUID } from 'node:crypto';
import express, { type Express } from 'express';
import helmet from 'helmet';
import { pinoHttp } from 'pino-http';
import type { Config } from './config.js';
import type { Db } from './db/database.js';
import { adminRouter } from './http/admin.js';
import { errorHandler, notFoundHandler } from './http/error-handler.js';
import { healthRouter } from './http/health.js';
import { webhooksRouter } from './http/webhooks.js';
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
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** The Express app. Never listens: main.ts (or supertest) does. */
export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', false);
  app.use(helmet());

  // A caller's X-Request-Id is kept when it is sane, so a partner can trace its own call.
  app.use(
    pinoHttp({
      logger: deps.logger.child({ module: 'http' }),
      genReqId: (req, res) => {
        const given = req.headers['x-request-id'];
        const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
        res.setHeader('X-Request-Id', id);
        return id;
      },
      customLogLevel: (_req, res, err) =>
        err !== undefined || res.statusCode >= 500
          ? 'error'
          : res.statusCode >= 400
            ? 'warn'
            : 'info',
      // Method, path, status and timing only: headers carry credentials and signatures.
      serializers: {
        req: (req: { id: unknown; method: string; url: string }) => ({
          id: req.id,
          method: req.method,
          url: req.url,
        }),
        res: (res: { statusCode: number }) => ({ statusCode: res.statusCode }),
      },
      // Health probes every few seconds would drown the log.
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/readyz' },
    }),
  );

  app.use((req, res, next) => {
    const stop = deps.metrics.httpDuration.startTimer();
    res.on('finish', () => {
      // The matched route pattern keeps label cardinality bounded; unmatched → "unmatched".
      const matched = req.route as { path?: unknown } | undefined;
      const route =
        typeof matched?.path === 'string' ? `${req.baseUrl}${matched.path}` : 'unmatched';
      const labels = { method: req.method, route, status: String(res.statusCode) };
      deps.metrics.httpRequests.inc(labels);
      stop(labels);
    });
    next();
  });

  app.use(healthRouter(deps));
  app.use(webhooksRouter(deps));
  app.use('/admin', adminRouter(deps));
  registerOpsMetrics({ db: deps.db, registry: deps.metrics.registry, logger: deps.logger });

  app.use(notFoundHandler());
  app.use(errorHandler(deps.logger.child({ module: 'http' })));
  return app;
}
