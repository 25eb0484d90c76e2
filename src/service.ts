import type { Config } from './config.js';
import type { Db } from './db/database.js';
import { listFullyReadTypes } from './db/poller-cursors.js';
import type { SystemName } from './db/schema.js';
import { Leadership } from './lib/leader.js';
import type { Logger } from './lib/logger.js';
import type { Metrics } from './lib/metrics.js';
import type { Pacer } from './lib/pacer.js';
import { stopPollers, type Poller } from './lib/pollers.js';
import { startRetention, type RetentionJob } from './lib/retention.js';
import { Dispatcher } from './sync/dispatcher.js';
import type { Reconciler } from './sync/reconcile.js';
import { startSyncWorker, type Clients, type SyncWorker } from './sync/worker.js';

// The background half of the service: the sync worker and one dispatcher per target system,
// over the clients, pacers and pollers built once in runtime.ts. Per system, the replica holding that system's leadership
// (a PostgreSQL advisory lock) runs its dispatcher and its pollers, so all outbound traffic to
// a vendor leaves from one process and its pacer holds the vendor's shared limit; every
// replica ingests webhooks and runs the worker.

export interface ServiceDeps {
  config: Readonly<Config>;
  db: Db;
  /** The PostgreSQL connection string for leadership locks; undefined on embedded PGlite. */
  databaseUrl: string | undefined;
  logger: Logger;
  metrics: Metrics;
  clients: Clients;
  /** One per vendor: the vendor's clients and its dispatcher share it. */
  pacers: Record<SystemName, Pacer>;
  /** The change pollers; each runs on the replica leading its system. */
  pollers: Poller[];
  /** Stopped with the service. */
  reconciler: Reconciler;
  workerIdleMs?: number | undefined;
  /** Base of a failed command's backoff in the outbox (tests: shorter). */
  commandBackoffBaseMs?: number | undefined;
  /** Delay before the first retention pass (tests: 0). */
  retentionFirstRunMs?: number | undefined;
}

/** Per system: configured here, whether this replica leads it, and its credentials' state. */
export interface SystemStatus {
  system: SystemName;
  configured: boolean;
  /** Whether this replica holds the system's dispatcher and pollers; undefined when off. */
  leader: boolean | undefined;
  /** Since when and why the system refuses our credentials (paused); undefined while they work. */
  credentials: { since: Date; message: string } | undefined;
}

export interface Service {
  clients: Clients;
  pollers: Poller[];
  dispatchers: Dispatcher[];
  reconciler: Reconciler;
  worker: SyncWorker | undefined;
  /** Per system: configured here, and whether this replica leads it (console overview). */
  systemStatus(): SystemStatus[];
  start(): void;
  stop(): Promise<void>;
}

export function createService(deps: ServiceDeps): Service {
  const { config, db, logger, metrics, clients, pacers, pollers, reconciler } = deps;
  const dispatchers = (['tidsbanken', 'poweroffice'] as const)
    .filter((system) => clients[system] !== undefined || config.dryRun)
    .map(
      (system) =>
        new Dispatcher({
          system,
          db,
          config,
          logger: logger.child({ module: 'dispatcher' }),
          clients,
          metrics,
          pacer: pacers[system],
          backoffBaseMs: deps.commandBackoffBaseMs,
        }),
    );
  // Merge-rule linking waits for a first full read of every side that is on.
  const sweep = { fullReads: pollers.map((p) => ({ system: p.system, recordType: p.recordType })) };

  let worker: SyncWorker | undefined;
  let retention: RetentionJob | undefined;
  const leaderships: Leadership[] = [];
  const leaderOf: Partial<Record<SystemName, Leadership>> = {};
  const stopAborts: AbortController[] = [];

  const leadFor = (system: SystemName): Leadership => {
    const dispatcher = dispatchers.find((d) => d.system === system);
    const own = pollers.filter((p) => p.system === system);
    let firstReads: Promise<unknown> | undefined;
    const abort = new AbortController();
    stopAborts.push(abort);
    return new Leadership({
      name: `tbpo-dispatcher-${system}`,
      databaseUrl: deps.databaseUrl,
      logger,
      onAcquire: async () => {
        // A predecessor's last requests may still be inside the vendor's sliding second, and
        // this process's pacer has not seen them: let one window pass before the first one.
        if (deps.databaseUrl !== undefined) await new Promise((r) => setTimeout(r, 1100));
        await dispatcher?.start();
        // A fresh database reads each side in full first (docs/ARCHITECTURE.md "Linking": the link gate); with polling on,
        // a poller's first poll is that full read.
        const fullyRead = await listFullyReadTypes(db);
        const missing = own.filter((p) => !fullyRead.has(`${p.system}/${p.recordType}`));
        if (config.pollIntervalMs > 0) {
          for (const p of own) p.start();
        } else if (missing.length > 0) {
          firstReads = Promise.all(missing.map((p) => p.fullRead({ origin: 'poller' }))).catch(
            (err: unknown) =>
              logger.error(
                { err, system },
                'first full read failed; it is retried at the next start or reconcile',
              ),
          );
        }
      },
      onLose: async () => {
        await stopPollers(own, { abort: true });
        await firstReads;
        await dispatcher?.stop();
      },
    });
  };

  return {
    clients,
    pollers,
    dispatchers,
    reconciler,
    get worker() {
      return worker;
    },
    systemStatus() {
      return (['tidsbanken', 'poweroffice'] as const).map((system) => ({
        system,
        configured: clients[system] !== undefined,
        leader: leaderOf[system]?.isLeader,
        credentials: pacers[system].credentialsState,
      }));
    },
    start() {
      worker = startSyncWorker(
        {
          db,
          config,
          logger: logger.child({ module: 'sync' }),
          clients,
          sweep,
          leads: (system) => leaderOf[system]?.isLeader ?? true,
          metrics,
        },
        { idleMs: deps.workerIdleMs ?? 250 },
      );
      for (const system of ['tidsbanken', 'poweroffice'] as const) {
        if (clients[system] === undefined && !dispatchers.some((d) => d.system === system))
          continue;
        const leadership = leadFor(system);
        leaderships.push(leadership);
        leaderOf[system] = leadership;
        metrics.watchLeader(system, () => leadership.isLeader);
        leadership.start();
      }
      // One replica prunes: the leader of the first system that is on (with none on, every
      // replica may; the deletes skip rows another one holds).
      retention = startRetention({
        db,
        logger: logger.child({ module: 'retention' }),
        metrics,
        retentionDays: config.retentionDays,
        leads: () => leaderships[0]?.isLeader ?? true,
        ...(deps.retentionFirstRunMs !== undefined ? { firstRunMs: deps.retentionFirstRunMs } : {}),
      });
    },
    async stop() {
      await retention?.stop();
      for (const abort of stopAborts) abort.abort();
      await reconciler.stop?.();
      await Promise.all(leaderships.map((l) => l.stop()));
      await worker?.stop();
    },
  };
}
