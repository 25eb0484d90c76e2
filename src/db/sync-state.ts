import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';

export async function getSyncState(
  db: DbOrTrx,
  key: string,
): Promise<Record<string, unknown> | undefined> {
  const row = await db
    .selectFrom('sync_state')
    .select('value')
    .where('key', '=', key)
    .executeTakeFirst();
  return row?.value;
}

/** Locks the named state row for the caller's transaction, creating it when missing. */
export function lockSyncState(db: DbOrTrx, key: string): Promise<Record<string, unknown>> {
  return lockRow(db, key, 'update');
}

async function lockRow(
  db: DbOrTrx,
  key: string,
  strength: 'update' | 'share',
): Promise<Record<string, unknown>> {
  await db
    .insertInto('sync_state')
    .values({ key, value: '{}' })
    .onConflict((oc) => oc.doNothing())
    .execute();
  const query = db.selectFrom('sync_state').select('value').where('key', '=', key);
  const row = await (
    strength === 'update' ? query.forUpdate() : query.forShare()
  ).executeTakeFirstOrThrow();
  return row.value;
}

export async function setSyncState(
  db: DbOrTrx,
  key: string,
  value: Record<string, unknown>,
): Promise<void> {
  await db
    .insertInto('sync_state')
    .values({ key, value: JSON.stringify(value) })
    .onConflict((oc) =>
      oc.column('key').doUpdateSet({ value: JSON.stringify(value), updated_at: sql<Date>`now()` }),
    )
    .execute();
}

/**
 * The named state row, share-locked for the caller's transaction (created when missing, so
 * there is a row to lock): whoever changes it (e.g. the link sweep claiming the gate) waits for
 * that transaction to end.
 */
export function shareLockSyncState(db: DbOrTrx, key: string): Promise<Record<string, unknown>> {
  return lockRow(db, key, 'share');
}
