import type { Config } from './config.js';
import type { Db } from './db/database.js';
import { listFullyReadTypes } from './db/poller-cursors.js';
import { getLastReconcileStart } from './db/reconcile-runs.js';
import type { SystemName } from './db/schema.js';
import { Leadership, type HeldTerm } from './lib/leader.js';
import type { Logger } from './lib/logger.js';
import type { Metrics } from './lib/metrics.js';
import type { Pacer } from './lib/pacer.js';
import { stopPollers, type Poller } from './lib/pollers.js';
import { startRetention, type RetentionJob } from './lib/retention.js';
import { Dispatcher } from './sync/dispatcher.js';
import type { Reconciler } from './sync/reconcile.js';
import { startSyncWorker, type Clients, type SyncWorker } from './sync/worker.js';

// The background half of the service: the sync worker and one dispatcher per target system,
// over the clients, pacers and pollers built once in runtime.ts. Per system, the replica
// holding that system's lease (src/lib/leader.ts) runs its dispatcher and its pollers, so all
// outbound traffic to a vendor leaves from one process and its pacer holds the vendor's
// shared limit; every replica ingests webhooks and runs the worker.
//
//   start(): worker → recovery of abandoned reconciles (now and periodically) → one
//   leadership per system that is on, whose holder runs leaderStartUp / leaderStepDown.

export interface ServiceDeps {
  config: Readonly<Config>;
  db: Db;
  /** The PostgreSQL connection string; undefined on embedded PGlite (one process). */
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

const SYSTEMS = ['tidsbanken', 'poweroffice'] as const;

/** One dispatcher per system that is on (configured, or everything in DRY_RUN). */
function createDispatchers(deps: ServiceDeps): Dispatcher[] {
  const { config, db, logger, metrics, clients, pacers } = deps;
  return SYSTEMS.filter((system) => clients[system] !== undefined || config.dryRun).map(
    (system) =>
      new Dispatcher({
        system,
        db,
        config,
        logger: logger.child({ module: 'dispatcher' }),
        clients,
        metrics,
        pacer: pacers[system],
        pollers: config.pollIntervalMs > 0 ? deps.pollers.filter((p) => p.system === system) : [],
        backoffBaseMs: deps.commandBackoffBaseMs,
      }),
  );
}

/** What the holder of one system's lease runs, and how it starts and stops it. */
interface SystemWork {
  system: SystemName;
  dispatcher: Dispatcher | undefined;
  pollers: Poller[];
  firstReads: Promise<unknown> | undefined;
}

/**
 * A new holder's start-up steps (retried by Leadership until they succeed): wait out the
 * predecessor's last sliding second, start the dispatcher (it requeues what the predecessor
 * left in flight), recover an abandoned reconcile, then the pollers — or, with polling off,
 * the first full reads a fresh database still lacks.
 */
async function leaderStartUp(deps: ServiceDeps, work: SystemWork, term: HeldTerm): Promise<void> {
  const { config, db, logger, reconciler } = deps;
  // A predecessor's last requests may still be inside the vendor's sliding second, and this
  // process's pacer has not seen them: let one window pass before the first one.
  if (deps.databaseUrl !== undefined) await new Promise((r) => setTimeout(r, 1100));
  await work.dispatcher?.start(term);
  await reconciler.recoverAbandoned();
  // A fresh database reads each side in full first (docs/ARCHITECTURE.md "Linking": the link
  // gate); with polling on, a poller's first poll is that full read.
  const fullyRead = await listFullyReadTypes(db);
  const missing = work.pollers.filter((p) => !fullyRead.has(`${p.system}/${p.recordType}`));
  if (config.pollIntervalMs > 0) {
    for (const p of work.pollers) p.start(term);
  } else if (missing.length > 0 && work.firstReads === undefined) {
    work.firstReads = Promise.all(missing.map((p) => p.fullRead({ origin: 'poller', term }))).catch(
      (err: unknown) =>
        logger.error(
          { err, system: work.system },
          'first full read failed; it is retried at the next start or reconcile',
        ),
    );
  }
}

/** The holder lost (or gave up) the lease: its pollers and dispatcher stop. */
async function leaderStepDown(work: SystemWork): Promise<void> {
  await stopPollers(work.pollers, { abort: true });
  await work.firstReads;
  work.firstReads = undefined;
  await work.dispatcher?.stop();
}

function createLeadership(deps: ServiceDeps, work: SystemWork): Leadership {
  return new Leadership({
    system: work.system,
    db: deps.db,
    logger: deps.logger,
    ttlMs: deps.config.leaseTtlMs,
    exclusive: deps.databaseUrl === undefined,
    onAcquire: (term) => leaderStartUp(deps, work, term),
    onLose: () => leaderStepDown(work),
    onStartFailure: () => deps.metrics.leaderStartFailures.inc({ system: work.system }),
  });
}

/**
 * Recovery without an operator, on every replica: at start and then once per lease period,
 * a reconcile whose process died is failed and the link gate it held closed is released.
 */
function startRecovery(deps: ServiceDeps): () => void {
  const recover = () =>
    deps.reconciler
      .recoverAbandoned()
      .catch((err: unknown) =>
        deps.logger.warn({ err }, 'could not look for an abandoned reconcile run'),
      );
  void recover();
  const timer = setInterval(() => void recover(), deps.config.leaseTtlMs);
  timer.unref();
  return () => clearInterval(timer);
}

/**
 * The scheduled full reconcile (RECONCILE_INTERVAL_HOURS): the change filters miss some edits
 * (a PowerOffice address-only edit does not move LastChangedDateTimeOffset), so everything is
 * read again now and then. Run by the leader of the first system that is on; due when the
 * newest run (any replica, also one an operator started) began an interval ago, or an interval
 * after start-up (a fresh start reads everything anyway). Its reads go through the pacers at
 * polling priority, so live writes go first.
 */
function scheduleReconcile(deps: ServiceDeps, leads: () => boolean): NodeJS.Timeout | undefined {
  const interval = deps.config.reconcileIntervalMs;
  if (interval <= 0) return undefined;
  const log = deps.logger.child({ module: 'reconcile-schedule' });
  const startedAt = new Date();
  let checking = false;
  const check = async () => {
    if (checking || !leads()) return;
    checking = true;
    try {
      const last = (await getLastReconcileStart(deps.db)) ?? startedAt;
      if (Date.now() - last.getTime() < interval) return;
      const { run, started } = await deps.reconciler.start();
      if (started) log.info({ runId: run.id }, 'scheduled full reconcile started');
    } catch (err) {
      log.warn({ err }, 'could not start the scheduled reconcile; trying again later');
    } finally {
      checking = false;
    }
  };
  const timer = setInterval(() => void check(), Math.min(interval, 60_000));
  timer.unref();
  return timer;
}

export function createService(deps: ServiceDeps): Service {
  const { config, db, logger, metrics, clients, pacers, pollers, reconciler } = deps;
  const dispatchers = createDispatchers(deps);
  // Merge-rule linking waits for a first full read of every side that is on.
  const sweep = { fullReads: pollers.map((p) => ({ system: p.system, recordType: p.recordType })) };

  let worker: SyncWorker | undefined;
  let retention: RetentionJob | undefined;
  let reconcileTimer: NodeJS.Timeout | undefined;
  let stopRecovery: (() => void) | undefined;
  const leaderships: Leadership[] = [];
  const leaderOf: Partial<Record<SystemName, Leadership>> = {};

  return {
    clients,
    pollers,
    dispatchers,
    reconciler,
    get worker() {
      return worker;
    },
    systemStatus() {
      return SYSTEMS.map((system) => ({
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
      stopRecovery = startRecovery(deps);
      for (const system of SYSTEMS) {
        const dispatcher = dispatchers.find((d) => d.system === system);
        if (clients[system] === undefined && dispatcher === undefined) continue;
        const work: SystemWork = {
          system,
          dispatcher,
          pollers: pollers.filter((p) => p.system === system),
          firstReads: undefined,
        };
        const leadership = createLeadership(deps, work);
        leaderships.push(leadership);
        leaderOf[system] = leadership;
        metrics.watchLeader(system, leadership);
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
      reconcileTimer = scheduleReconcile(deps, () => leaderships[0]?.isLeader ?? true);
    },
    async stop() {
      clearInterval(reconcileTimer);
      await retention?.stop();
      stopRecovery?.();
      await reconciler.stop?.();
      await Promise.all(leaderships.map((l) => l.stop()));
      await worker?.stop();
    },
  };
}
