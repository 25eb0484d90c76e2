import { sql } from 'kysely';
import { FencedError } from '../errors.js';
import type { DbOrTrx } from './database.js';
import { termIsCurrent, type LeaseTerm } from './leases.js';
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
 * With a lease `term` (a leader's poll) nothing is written unless the term is still current:
 * throws FencedError then.
 */
export async function recordPollSuccess(
  db: DbOrTrx,
  row: { system: SystemName; recordType: string; cursor: string | undefined; fullRead: boolean },
  term?: LeaseTerm,
): Promise<void> {
  const result = await sql`
    insert into poller_cursors as p
      (system, record_type, cursor, full_read_at, last_polled_at, last_success_at, last_error)
    select ${row.system}, ${row.recordType}, ${row.cursor ?? null}::text,
           case when ${row.fullRead} then now() end, now(), now(), null
     where ${term === undefined ? sql`true` : termIsCurrent(term)}
    on conflict (system, record_type) do update
       set cursor = greatest(p.cursor, excluded.cursor),
           full_read_at = coalesce(excluded.full_read_at, p.full_read_at),
           last_polled_at = now(), last_success_at = now(), last_error = null,
           updated_at = now()
    returning 1`.execute(db);
  if (result.rows.length === 0) throw new FencedError();
}

/** Records a failed poll; the cursor and full_read_at stay as they were. Fenced like success. */
export async function recordPollFailure(
  db: DbOrTrx,
  row: { system: SystemName; recordType: string; error: string },
  term?: LeaseTerm,
): Promise<void> {
  const result = await sql`
    insert into poller_cursors as p (system, record_type, last_polled_at, last_error)
    select ${row.system}, ${row.recordType}, now(), ${row.error}::text
     where ${term === undefined ? sql`true` : termIsCurrent(term)}
    on conflict (system, record_type) do update
       set last_polled_at = now(), last_error = excluded.last_error, updated_at = now()
    returning 1`.execute(db);
  if (result.rows.length === 0) throw new FencedError();
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
