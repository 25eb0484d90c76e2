import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import { atKey, olderThan, type HistoryPosition } from './history-position.js';
import type { RecordKey } from './records.js';
import type { AuditEntryRow, SystemName } from './schema.js';

export interface AuditEntry {
  system: SystemName;
  recordType: string;
  recordId: string;
  kind:
    | 'diff'
    | 'link'
    | 'conflict'
    | 'command'
    | 'unlink'
    | 'skipped'
    | 'mirror'
    /** A reference field started or stopped waiting for a link (detail.reference). */
    | 'reference'
    /** An operator's action: dismiss, replay, drop, retry (detail.action). */
    | 'operator';
  flow?: string | null;
  linkId?: string | null;
  eventId?: string | null;
  commandId?: string | null;
  detail: Record<string, unknown>;
}

export async function insertAuditEntries(db: DbOrTrx, entries: AuditEntry[]): Promise<void> {
  // In slices: one statement's parameters are capped at 65 535.
  for (let i = 0; i < entries.length; i += 2000) {
    await insertAuditSlice(db, entries.slice(i, i + 2000));
  }
}

async function insertAuditSlice(db: DbOrTrx, entries: AuditEntry[]): Promise<void> {
  await db
    .insertInto('audit_entries')
    .values(
      entries.map((e) => ({
        system: e.system,
        record_type: e.recordType,
        record_id: e.recordId,
        kind: e.kind,
        flow: e.flow ?? null,
        link_id: e.linkId ?? null,
        event_id: e.eventId ?? null,
        command_id: e.commandId ?? null,
        detail: JSON.stringify(e.detail),
      })),
    )
    .execute();
}

/**
 * One page of a record's history from this table, newest first by (created_at, id), after
 * `before` (index audit_entries_record); `limit` rows.
 */
export async function listRecordAudit(
  db: DbOrTrx,
  key: RecordKey,
  page: { before?: HistoryPosition | undefined; limit: number },
): Promise<(AuditEntryRow & { at_key: string })[]> {
  let query = db
    .selectFrom('audit_entries')
    .selectAll()
    .select(atKey.as('at_key'))
    .where('system', '=', key.system)
    .where('record_type', '=', key.recordType)
    .where('record_id', '=', key.recordId);
  if (page.before !== undefined) query = query.where(olderThan(page.before, 1));
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute();
}

/**
 * Retention: deletes those of the `limit` oldest audit entries (by id, the primary key: ids
 * grow with time, so no index on created_at is needed) written more than `days` days ago;
 * returns how many.
 */
export async function pruneAuditEntries(db: DbOrTrx, days: number, limit: number): Promise<number> {
  const result = await sql`
    delete from audit_entries where id in (
      select id from (select id, created_at from audit_entries order by id limit ${limit}) oldest
       where created_at < now() - ${days}::int * interval '1 day')`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
