import { sql, type OnConflictBuilder } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { Database, RecordRow, SystemName } from './schema.js';

export interface MirrorWrite {
  system: SystemName;
  recordType: string;
  recordId: string;
  parentId: string | null;
  data: Record<string, unknown>;
  email: string | null;
  nationalId: string | null;
  number: string | null;
  /** The source's own last-change time, as the API wrote it (kept at µs precision). */
  sourceUpdatedAt: string | null;
  eventId: string | null;
  /**
   * Whether this state replaces a held one with the same source timestamp (default true: of
   * two reads with one timestamp the later read is the newer). False for the result of our own
   * write: a different state with the very same timestamp is an edit made next to ours
   * (millisecond timestamps tie), and our echo must not hide it.
   */
  winsTie?: boolean;
}

function mirrorRow(write: MirrorWrite) {
  return {
    system: write.system,
    record_type: write.recordType,
    record_id: write.recordId,
    parent_id: write.parentId,
    data: JSON.stringify(write.data),
    email_key: write.email,
    national_id_key: write.nationalId,
    number_key: write.number,
    source_updated_at: write.sourceUpdatedAt,
    deleted_at: null,
    last_event_id: write.eventId,
  };
}

/** Take the new state, unless the mirror already holds a newer one of the record. */
const unlessOlder = (winsTie: boolean) => (oc: OnConflictBuilder<Database, 'records'>) =>
  oc
    .columns(['system', 'record_type', 'record_id'])
    .doUpdateSet((eb) => ({
      parent_id: eb.ref('excluded.parent_id'),
      data: eb.ref('excluded.data'),
      email_key: eb.ref('excluded.email_key'),
      national_id_key: eb.ref('excluded.national_id_key'),
      number_key: eb.ref('excluded.number_key'),
      source_updated_at: eb.ref('excluded.source_updated_at'),
      deleted_at: null,
      last_event_id: eb.ref('excluded.last_event_id'),
      updated_at: sql<Date>`now()`,
    }))
    .where((eb) =>
      eb.or([
        eb('records.source_updated_at', 'is', null),
        eb('excluded.source_updated_at', 'is', null),
        eb('records.source_updated_at', winsTie ? '<=' : '<', eb.ref('excluded.source_updated_at')),
      ]),
    );

/**
 * Upserts the mirror unless it already holds a newer state of the record (DESIGN.md §3.4:
 * "ignore a state older than the one held"). Returns false when the write was stale.
 * The comparison runs in SQL so PowerOffice's sub-millisecond timestamps keep their order.
 */
export async function upsertMirrorRecord(db: DbOrTrx, write: MirrorWrite): Promise<boolean> {
  const row = await db
    .insertInto('records')
    .values(mirrorRow(write))
    .onConflict(unlessOlder(write.winsTie ?? true))
    .returning('record_id')
    .executeTakeFirst();
  return row !== undefined;
}

/** Many records in one statement (one write per record: the caller keeps the newest). */
export async function upsertMirrorRecords(db: DbOrTrx, writes: MirrorWrite[]): Promise<void> {
  for (const winsTie of [true, false]) {
    const some = writes.filter((w) => (w.winsTie ?? true) === winsTie);
    if (some.length === 0) continue;
    await db
      .insertInto('records')
      .values(some.map(mirrorRow))
      .onConflict(unlessOlder(winsTie))
      .execute();
  }
}

export async function markMirrorRecordDeleted(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
): Promise<void> {
  await db
    .updateTable('records')
    .set({ deleted_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .execute();
}

export async function getMirrorRecord(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
): Promise<RecordRow | undefined> {
  return db
    .selectFrom('records')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .executeTakeFirst();
}

/** Live records of one type whose match key in `column` is one of `values`. */
export async function findMirrorRecordsByKeys(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  keys: { email?: string | null; nationalId?: string | null; number?: string | null },
): Promise<RecordRow[]> {
  const { email, nationalId, number } = keys;
  if (!email && !nationalId && !number) return [];
  return db
    .selectFrom('records')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('deleted_at', 'is', null)
    .where((eb) =>
      eb.or([
        ...(email ? [eb('email_key', '=', email)] : []),
        ...(nationalId ? [eb('national_id_key', '=', nationalId)] : []),
        ...(number ? [eb('number_key', '=', number)] : []),
      ]),
    )
    .orderBy('record_id')
    .execute();
}

export async function listMirrorRecords(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
): Promise<RecordRow[]> {
  return db
    .selectFrom('records')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('deleted_at', 'is', null)
    .orderBy('record_id')
    .execute();
}

export interface RecordKey {
  system: SystemName;
  recordType: string;
  recordId: string;
}

// Record locks take the two-key form, (space, hash of the record): PostgreSQL keeps two-key
// advisory locks apart from single bigint ones, so no other lock of ours or of another
// application on the same database can collide with a record's and block it.
const RECORD_LOCK_SPACE = 0x7462_706f;

/**
 * Serializes work on one record across replicas for the caller's transaction (a
 * transaction-scoped advisory lock on its key, released at commit).
 */
export async function lockRecordKey(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
): Promise<void> {
  await sql`select pg_advisory_xact_lock(${RECORD_LOCK_SPACE}, hashtext(${`${system}/${recordType}/${recordId}`}))`.execute(
    db,
  );
}
