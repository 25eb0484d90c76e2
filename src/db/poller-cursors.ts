import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { PollerCursorRow, SystemName } from './schema.js';

// One row per (system, record type) the change pollers read. `cursor` is the newest
// last-changed timestamp stored in the inbox (ISO 8601, UTC, so text order is time order);
// `full_read_at` says a complete read of that type has reached the inbox, which the sync
// engine waits for before it links anything (docs/ARCHITECTURE.md "Linking").

export async function getPollerCursor(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
): Promise<PollerCursorRow | undefined> {
  return db
    .selectFrom('poller_cursors')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .executeTakeFirst();
}

/**
 * Records a successful poll. The cursor only moves forward (`greatest` ignores a null), so a
 * slow poll finishing after a newer one cannot move it back. `fullRead` stamps full_read_at.
 */
export async function recordPollSuccess(
  db: DbOrTrx,
  row: { system: SystemName; recordType: string; cursor: string | undefined; fullRead: boolean },
): Promise<void> {
  const now = new Date();
  await db
    .insertInto('poller_cursors')
    .values({
      system: row.system,
      record_type: row.recordType,
      cursor: row.cursor ?? null,
      full_read_at: row.fullRead ? now : null,
      last_polled_at: now,
      last_success_at: now,
      last_error: null,
    })
    .onConflict((oc) =>
      oc.columns(['system', 'record_type']).doUpdateSet({
        cursor: sql`greatest(poller_cursors.cursor, excluded.cursor)`,
        full_read_at: row.fullRead ? now : sql`poller_cursors.full_read_at`,
        last_polled_at: now,
        last_success_at: now,
        last_error: null,
        updated_at: now,
      }),
    )
    .execute();
}

/** Records a failed poll; the cursor and full_read_at stay as they were. */
export async function recordPollFailure(
  db: DbOrTrx,
  row: { system: SystemName; recordType: string; error: string },
): Promise<void> {
  const now = new Date();
  await db
    .insertInto('poller_cursors')
    .values({
      system: row.system,
      record_type: row.recordType,
      last_polled_at: now,
      last_error: row.error,
    })
    .onConflict((oc) =>
      oc.columns(['system', 'record_type']).doUpdateSet({
        last_polled_at: now,
        last_error: row.error,
        updated_at: now,
      }),
    )
    .execute();
}

/** The (system, record type) pairs whose full read is stored, as `system/recordType` keys. */
export async function listFullyReadTypes(db: DbOrTrx): Promise<Set<string>> {
  const rows = await db
    .selectFrom('poller_cursors')
    .select(['system', 'record_type'])
    .where('full_read_at', 'is not', null)
    .execute();
  return new Set(rows.map((r) => `${r.system}/${r.record_type}`));
}

/** Whether every given record type of every given system has completed a full read. */
export async function haveFullReads(
  db: DbOrTrx,
  types: readonly { system: SystemName; recordType: string }[],
): Promise<boolean> {
  if (types.length === 0) return true;
  const done = await listFullyReadTypes(db);
  return types.every((t) => done.has(`${t.system}/${t.recordType}`));
}
