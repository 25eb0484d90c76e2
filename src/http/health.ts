import { Router } from 'express';
import { pendingMigrations, pingDatabase, type Db } from '../db/database.js';
import type { Metrics } from '../lib/metrics.js';
import { sendProblem } from './problem.js';

// Under the orchestrator's probe timeout (and the 2 s promised in the README): a hung database
// makes the replica unready quickly instead of hanging the probe.
const READY_TIMEOUT_MS = 1000;

/** `work`, or a rejection once `ms` have passed (the work itself goes on). */
function within<T>(ms: number, work: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer in ${ms} ms`)), ms);
  });
  // A check that fails after the timeout has no one to tell.
  work.catch(() => undefined);
  return Promise.race([work, timeout]).finally(() => clearTimeout(timer));
}

export function healthRouter(deps: {
  db: Db;
  /** True once the process is shutting down (SIGTERM): /readyz answers 503 from then on. */
  draining?: () => boolean;
}): Router {
  const router = Router();
  // Once the database has been seen fully migrated it stays so for this process (migrations
  // only ever run forward), so /readyz costs one ping after that.
  let migrated = false;

  router.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req, res) => {
    if (deps.draining?.() === true) {
      // Shutting down: the load balancer takes this replica out before it stops listening.
      sendProblem(res, 503, 'not_ready', 'Service Unavailable', 'The service is shutting down.');
      return;
    }
    const check = async (): Promise<string[]> => {
      await pingDatabase(deps.db);
      return migrated ? [] : pendingMigrations(deps.db);
    };
    try {
      const pending = await within(READY_TIMEOUT_MS, check());
      if (pending.length > 0) {
        sendProblem(res, 503, 'not_ready', 'Service Unavailable', 'Migrations are pending.', {
          pending,
        });
        return;
      }
      migrated = true;
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
