import { Gauge, type Registry } from 'prom-client';
import { readOpsSnapshot, type OpsSnapshot } from '../db/ops-snapshot.js';
import type { Db } from '../db/database.js';
import type { Logger } from './logger.js';

// Gauges an operator alerts on, read from the database at scrape time (README "Operating
// it"). PostgreSQL is the only state and every replica sees the same rows, so any replica's
// /metrics shows the whole service; alert on max() across replicas, not sum().
//
// One query serves all gauges of a scrape (prom-client calls each gauge's collect() in
// turn; they share one snapshot promise). When the database is down or slow the gauges are
// left empty and tbpo_ops_metrics_up is 0: a scrape never fails because of them.

const SNAPSHOT_TTL_MS = 1000;
const DEFAULT_TIMEOUT_MS = 2000;

export interface OpsMetricsOptions {
  db: Db;
  registry: Registry;
  logger?: Logger;
  /** Longest a scrape waits for the database. */
  timeoutMs?: number;
}

const registered = new WeakSet<Registry>();

/** Registers the database-derived gauges on `registry`; a second call is a no-op. */
export function registerOpsMetrics(options: OpsMetricsOptions): void {
  const { db, registry } = options;
  if (registered.has(registry)) return;
  registered.add(registry);
  const logger = options.logger?.child({ module: 'ops-metrics' });
  const registers = [registry];
  const snapshot = sharedSnapshot(db, options.timeoutMs ?? DEFAULT_TIMEOUT_MS, logger);

  new Gauge({
    name: 'tbpo_ops_metrics_up',
    help: '1 when the database answered the query behind the database-derived gauges at this scrape, 0 when they were skipped.',
    registers,
    async collect() {
      this.set((await snapshot()) !== undefined ? 1 : 0);
    },
  });
  const gauge = snapshotGauges(registers, snapshot);
  inboxGauges(gauge);
  outboxGauges(gauge);
  linkPollerAndReconcileGauges(gauge);
}

/** The snapshot a scrape's gauges share: read at most once a second, undefined on failure. */
function sharedSnapshot(
  db: Db,
  timeoutMs: number,
  logger: Logger | undefined,
): () => Promise<OpsSnapshot | undefined> {
  let cached: { at: number; value: Promise<OpsSnapshot | undefined> } | undefined;
  return () => {
    const now = Date.now();
    if (cached !== undefined && now - cached.at < SNAPSHOT_TTL_MS) return cached.value;
    const value = withTimeout(readOpsSnapshot(db), timeoutMs).catch((err: unknown) => {
      logger?.warn({ err }, 'operations gauges skipped: the database did not answer');
      return undefined;
    });
    cached = { at: now, value };
    return value;
  };
}

/** Declares one gauge filled from the shared snapshot. */
type SnapshotGauge = <L extends string>(
  name: string,
  help: string,
  labelNames: readonly L[],
  fill: (g: Gauge<L>, s: OpsSnapshot) => void,
) => void;

/**
 * Each gauge: reset (a label set that disappeared must not linger), then set from the
 * shared snapshot, or show no sample at all when there is none.
 */
function snapshotGauges(
  registers: Registry[],
  snapshot: () => Promise<OpsSnapshot | undefined>,
): SnapshotGauge {
  return <L extends string>(
    name: string,
    help: string,
    labelNames: readonly L[],
    fill: (g: Gauge<L>, s: OpsSnapshot) => void,
  ) => {
    const g: SkippableGauge<L> = new SkippableGauge<L>({
      name,
      help,
      labelNames,
      registers,
      async collect() {
        const s = await snapshot();
        g.reset();
        g.skipped = s === undefined;
        if (s !== undefined) fill(g, s);
      },
    });
  };
}

function inboxGauges(gauge: SnapshotGauge): void {
  gauge('tbpo_inbox_pending_events', 'Inbox events waiting for the sync worker.', [], (g, s) => {
    g.set(s.inbox.pending);
  });
  gauge(
    'tbpo_inbox_oldest_pending_age_seconds',
    'Age of the oldest inbox event still waiting for the sync worker (0 when none).',
    [],
    (g, s) => {
      g.set(s.inbox.oldestPendingAgeSeconds ?? 0);
    },
  );
  gauge(
    'tbpo_inbox_dead_events',
    'Inbox events the worker gave up on (a change that did not sync), by source system and record type.',
    ['system', 'record_type'],
    (g, s) => {
      for (const row of s.inbox.dead) {
        g.set({ system: row.system, record_type: row.recordType }, row.count);
      }
    },
  );
}

function outboxGauges(gauge: SnapshotGauge): void {
  gauge(
    'tbpo_outbox_commands',
    'Outbound commands not yet sent, by target system and status (pending, sending, dead).',
    ['system', 'status'],
    (g, s) => {
      for (const system of ['tidsbanken', 'poweroffice'] as const) {
        for (const status of ['pending', 'sending', 'dead']) {
          const row = s.outbox.find((r) => r.system === system && r.status === status);
          g.set({ system, status }, row?.count ?? 0);
        }
      }
    },
  );
  gauge(
    'tbpo_outbox_oldest_pending_age_seconds',
    'Age of the oldest pending or sending outbound command, by target system (0 when none).',
    ['system'],
    (g, s) => {
      for (const system of ['tidsbanken', 'poweroffice'] as const) {
        const ages = s.outbox
          .filter((r) => r.system === system && r.status !== 'dead')
          .map((r) => r.oldestAgeSeconds ?? 0);
        g.set({ system }, ages.length > 0 ? Math.max(...ages) : 0);
      }
    },
  );
  gauge(
    'tbpo_dead_commands',
    'Dead-lettered outbound commands waiting for an operator (replay or drop), by target system.',
    ['system'],
    (g, s) => {
      for (const system of ['tidsbanken', 'poweroffice'] as const) {
        const row = s.outbox.find((r) => r.system === system && r.status === 'dead');
        g.set({ system }, row?.count ?? 0);
      }
    },
  );
}

function linkPollerAndReconcileGauges(gauge: SnapshotGauge): void {
  gauge(
    'tbpo_open_conflicts',
    'Open conflicts (ambiguous matches, field conflicts), by flow and kind.',
    ['flow', 'kind'],
    (g, s) => {
      for (const row of s.conflicts) g.set({ flow: row.flow, kind: row.kind }, row.count);
    },
  );
  gauge('tbpo_active_links', 'Active links, by flow.', ['flow'], (g, s) => {
    for (const row of s.links) g.set({ flow: row.flow }, row.count);
  });
  gauge(
    'tbpo_poller_lag_seconds',
    'Seconds since the last successful poll, by system and record type (absent before the first success).',
    ['system', 'record_type'],
    (g, s) => {
      for (const row of s.pollers) {
        if (row.lagSeconds !== null) {
          g.set({ system: row.system, record_type: row.recordType }, row.lagSeconds);
        }
      }
    },
  );
  gauge(
    'tbpo_poller_failing',
    '1 when the last poll of this system and record type failed, 0 when it succeeded.',
    ['system', 'record_type'],
    (g, s) => {
      for (const row of s.pollers) {
        g.set({ system: row.system, record_type: row.recordType }, row.failing ? 1 : 0);
      }
    },
  );
  gauge(
    'tbpo_reconcile_running',
    '1 while a reconcile run is in progress on any replica.',
    [],
    (g, s) => {
      g.set(s.reconcileRunning ? 1 : 0);
    },
  );
}

/**
 * A gauge that can say "no value": prom-client always exposes 0 for a gauge without labels,
 * and an inbox depth of 0 while the database is down would read as "all is well".
 */
class SkippableGauge<L extends string> extends Gauge<L> {
  skipped = false;

  override async get(): ReturnType<Gauge<L>['get']> {
    const metric = await super.get();
    return this.skipped ? { ...metric, values: [] } : metric;
  }
}

function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}
