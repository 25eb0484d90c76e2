import { Router } from 'express';
import { pendingMigrations, pingDatabase, type Db } from '../db/database.js';
import type { Metrics } from '../lib/metrics.js';
import { sendProblem } from './problem.js';

export function healthRouter(deps: { db: Db }): Router {
  const router = Router();
  // Once the database has been seen fully migrated it stays so for this process (migrations
  // only ever run forward), so /readyz costs one ping after that.
  let migrated = false;

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    try {
      await pingDatabase(deps.db);
      if (!migrated) {
        const pending = await pendingMigrations(deps.db);
        if (pending.length > 0) {
          sendProblem(res, 503, 'not_ready', 'Service Unavailable', 'Migrations are pending.', {
            pending,
          });
          return;
        }
        migrated = true;
      }
      res.json({ status: 'ready', database: 'ok', migrations: 'done' });
    } catch {
      sendProblem(res, 503, 'not_ready', 'Service Unavailable', 'The database is not reachable.');
    }
  });

  return router;
}

/** GET /metrics (Prometheus text): on the admin port when ADMIN_PORT is set. */
export function metricsRouter(deps: { metrics: Metrics }): Router {
  const router = Router();
  router.get('/metrics', async (_req, res) => {
    res.type(deps.metrics.registry.contentType).send(await deps.metrics.registry.metrics());
  });
  return router;
}
