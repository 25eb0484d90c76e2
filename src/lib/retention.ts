import { pruneAuditEntries } from '../db/audit.js';
import { pruneFinishedCommands } from '../db/commands.js';
import type { Db } from '../db/database.js';
import { pruneProcessedEvents } from '../db/inbound-events.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

// Retention (RETENTION_DAYS): processed inbox events, finished commands and audit entries
// older than the window are deleted, in small batches of their own short statements with a
// pause between them, so live work (webhooks, the worker, the dispatcher) never waits behind a
// long delete. Kept for ever: links, the mirror, conflicts, pending and dead events (rejected
// records too), pending, sending and dead commands, and creates (see pruneFinishedCommands).

export type PrunedTable = 'inbound_events' | 'outbound_commands' | 'audit_entries';
export type PruneResult = Record<PrunedTable, number>;

const PRUNERS: Record<PrunedTable, (db: Db, days: number, limit: number) => Promise<number>> = {
  inbound_events: pruneProcessedEvents,
  outbound_commands: pruneFinishedCommands,
  audit_entries: pruneAuditEntries,
};

export interface PruneOptions {
  retentionDays: number;
  /** Rows per statement. */
  batchSize?: number;
  /** Pause between two statements: room for live work. */
  pauseMs?: number;
  metrics?: Metrics;
  signal?: AbortSignal;
}

/** One pass over every table until nothing older than the window is left (or `signal`). */
export async function pruneOnce(db: Db, options: PruneOptions): Promise<PruneResult> {
  const result: PruneResult = { inbound_events: 0, outbound_commands: 0, audit_entries: 0 };
  if (options.retentionDays <= 0) return result;
  const batchSize = options.batchSize ?? 500;
  for (const table of Object.keys(PRUNERS) as PrunedTable[]) {
    for (;;) {
      if (options.signal?.aborted === true) return result;
      const n = await PRUNERS[table](db, options.retentionDays, batchSize);
      result[table] += n;
      if (n > 0) options.metrics?.retentionPruned.inc({ table }, n);
      if (n < batchSize) break;
      if ((options.pauseMs ?? 50) > 0)
        await new Promise((r) => setTimeout(r, options.pauseMs ?? 50));
    }
  }
  return result;
}

export interface RetentionJob {
  stop(): Promise<void>;
}

/**
 * Runs pruneOnce `firstRunMs` after start and then every `intervalMs`, on the replica for
 * which `leads()` is true at that moment (one replica does it; with PGlite, the process).
 */
export function startRetention(deps: {
  db: Db;
  logger: Logger;
  metrics: Metrics;
  retentionDays: number;
  leads: () => boolean;
  firstRunMs?: number;
  intervalMs?: number;
}): RetentionJob {
  const abort = new AbortController();
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> = Promise.resolve();
  const schedule = (ms: number) => {
    if (abort.signal.aborted) return;
    timer = setTimeout(() => {
      running = run().finally(() => schedule(deps.intervalMs ?? 3_600_000));
    }, ms);
    timer.unref();
  };
  const run = async () => {
    if (!deps.leads()) return;
    try {
      const pruned = await pruneOnce(deps.db, {
        retentionDays: deps.retentionDays,
        metrics: deps.metrics,
        signal: abort.signal,
      });
      deps.logger.info({ retentionDays: deps.retentionDays, pruned }, 'retention pass done');
    } catch (err) {
      // The next pass tries again; nothing is lost by pruning late.
      deps.logger.warn({ err }, 'retention pass failed');
    }
  };
  if (deps.retentionDays > 0) schedule(deps.firstRunMs ?? 60_000);
  return {
    async stop() {
      abort.abort();
      clearTimeout(timer);
      await running;
    },
  };
}
