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
 * Starts a run unless one is running. Runs in the caller's transaction under a transaction
 * advisory lock, so two replicas asked at once start one run. A 'running' row whose
 * heartbeat (progress.heartbeatAt, else started_at) is older than `staleAfterMs` belongs to
 * a replica that died: it is marked failed and a new run starts.
 */
export async function claimReconcileRun(
  trx: Transaction<Database>,
  options: { staleAfterMs: number; progress: Record<string, unknown> },
): Promise<{ run: ReconcileRunRow; started: boolean }> {
  await sql`select pg_advisory_xact_lock(${RECONCILE_LOCK_KEY}::bigint)`.execute(trx);
  await trx
    .updateTable('reconcile_runs')
    .set({
      status: 'failed',
      error: 'abandoned: no progress from the replica running it (it probably stopped)',
      finished_at: sql<Date>`now()`,
    })
    .where('status', '=', 'running')
    .where(
      sql<boolean>`coalesce((progress->>'heartbeatAt')::timestamptz, started_at) < now() - make_interval(secs => ${options.staleAfterMs / 1000})`,
    )
    .execute();
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
    .values({ progress: JSON.stringify(options.progress) })
    .returningAll()
    .executeTakeFirstOrThrow();
  return { run, started: true };
}

export async function updateReconcileProgress(
  db: DbOrTrx,
  id: string,
  progress: Record<string, unknown>,
): Promise<void> {
  await db
    .updateTable('reconcile_runs')
    .set({ progress: JSON.stringify(progress) })
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
