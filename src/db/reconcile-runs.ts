import { sql, type Transaction } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { Database, ReconcileRunRow } from './schema.js';

// Any constant shared by every replica: the advisory lock that serializes "is a run
// already going? then start one".
const RECONCILE_LOCK_KEY = 7_114_502_613;

/** The running run, or the newest one. */
export async function getCurrentReconcileRun(db: DbOrTrx): Promise<ReconcileRunRow | undefined> {
  return db
    .selectFrom('reconcile_runs')
    .selectAll()
    .orderBy(sql`status = 'running'`, 'desc')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
}

/**
 * Marks failed every 'running' run that no live process owns: its owner's lease on it
 * (`expires_at`, renewed by the run's heartbeat) has run out. A run from before runs had
 * owners counts as abandoned once its heartbeat (progress.heartbeatAt, else started_at) is
 * older than `staleAfterMs`. Returns the ids marked.
 */
export async function failAbandonedReconcileRuns(
  db: DbOrTrx,
  options: { staleAfterMs: number },
): Promise<string[]> {
  const rows = await db
    .updateTable('reconcile_runs')
    .set({
      status: 'failed',
      error: 'abandoned: the process running it stopped (no heartbeat)',
      finished_at: sql<Date>`now()`,
    })
    .where('status', '=', 'running')
    .where(
      sql<boolean>`case when expires_at is not null then expires_at <= now()
        else coalesce((progress->>'heartbeatAt')::timestamptz, started_at)
             < now() - make_interval(secs => ${options.staleAfterMs / 1000}) end`,
    )
    .returning('id')
    .execute();
  return rows.map((r) => r.id);
}

/** Whether a run is going (on any replica). */
export async function hasRunningReconcileRun(db: DbOrTrx): Promise<boolean> {
  const row = await db
    .selectFrom('reconcile_runs')
    .select('id')
    .where('status', '=', 'running')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/**
 * Starts a run unless one is running. Runs in the caller's transaction under a transaction
 * advisory lock, so two replicas asked at once start one run. A 'running' row no live process
 * owns is marked failed first (failAbandonedReconcileRuns) and a new run starts. The new run
 * belongs to `owner` until `ttlMs` from now; its heartbeat renews that.
 */
export async function claimReconcileRun(
  trx: Transaction<Database>,
  options: {
    staleAfterMs: number;
    progress: Record<string, unknown>;
    owner: string;
    ttlMs: number;
  },
): Promise<{ run: ReconcileRunRow; started: boolean }> {
  await sql`select pg_advisory_xact_lock(${RECONCILE_LOCK_KEY}::bigint)`.execute(trx);
  await failAbandonedReconcileRuns(trx, options);
  const running = await trx
    .selectFrom('reconcile_runs')
    .selectAll()
    .where('status', '=', 'running')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  if (running !== undefined) return { run: running, started: false };
  const run = await trx
    .insertInto('reconcile_runs')
    .values({
      progress: JSON.stringify(options.progress),
      owner: options.owner,
      expires_at: sql<Date>`now() + ${options.ttlMs} * interval '1 millisecond'`,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { run, started: true };
}

/** Stores a running run's progress and renews its owner's hold on it for `ttlMs`. */
export async function updateReconcileProgress(
  db: DbOrTrx,
  id: string,
  progress: Record<string, unknown>,
  ttlMs: number,
): Promise<void> {
  await db
    .updateTable('reconcile_runs')
    .set({
      progress: JSON.stringify(progress),
      expires_at: sql<Date>`now() + ${ttlMs} * interval '1 millisecond'`,
    })
    .where('id', '=', id)
    .where('status', '=', 'running')
    .execute();
}

export async function finishReconcileRun(
  db: DbOrTrx,
  id: string,
  result: { status: 'done' | 'failed'; progress: Record<string, unknown>; error?: string },
): Promise<ReconcileRunRow | undefined> {
  return db
    .updateTable('reconcile_runs')
    .set({
      status: result.status,
      progress: JSON.stringify(result.progress),
      error: result.error ?? null,
      finished_at: sql<Date>`now()`,
    })
    .where('id', '=', id)
    .returningAll()
    .executeTakeFirst();
}

/** When the newest run started (any status), or undefined when there was none. */
export async function getLastReconcileStart(db: DbOrTrx): Promise<Date | undefined> {
  const row = await db
    .selectFrom('reconcile_runs')
    .select('started_at')
    .orderBy('id', 'desc')
    .limit(1)
    .executeTakeFirst();
  return row === undefined ? undefined : new Date(row.started_at);
}
