import { createHash } from 'node:crypto';
import { CompiledQuery, sql } from 'kysely';
import { preparedStatement, type DbOrTrx } from './database.js';
import type { RecordKey } from './records.js';
import type { InboundEventRow, SystemName } from './schema.js';

/** JSON with object keys sorted, so equal records hash equal whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value ?? null);
}

/** A stable hash of a record's content (the pollers make event ids of it). */
export function contentHash(payload: unknown): string {
  return createHash('sha256').update(canonicalJson(payload)).digest('base64url');
}

export interface NewInboxEvent {
  source: SystemName;
  origin: 'webhook' | 'poller' | 'reconcile' | 'operator';
  /** The webhook-id, or for polled records a stable id of the read. */
  eventId: string;
  eventType: string;
  recordType: string;
  recordId: string;
  parentId?: string | null;
  payload: Record<string, unknown>;
  /** Only an id: the worker completes it with a GET. Never deduplicated by content. */
  isThin: boolean;
  /** The source's own change time (envelope timestamp or the record's last-changed field). */
  occurredAt?: Date | string | null;
}

/**
 * The event id of a state we read back from our own write (the dispatcher feeds it to the inbox
 * like any read). Such a state never replaces a mirrored one with the same timestamp.
 */
export function writeFeedbackEventId(commandId: string, recordId: string, stamp: string): string {
  return `write:${commandId}:${recordId}:${stamp}`;
}

export function isWriteFeedback(eventId: string): boolean {
  return eventId.startsWith('write:');
}

/**
 * One durable insert. A repeated (source, event id), or the same record with the same
 * content, stores nothing and reports a duplicate.
 */
export async function insertInboundEvent(
  db: DbOrTrx,
  event: NewInboxEvent,
): Promise<{ id: string | undefined; duplicate: boolean }> {
  const [row] = await insertInboundEventBatch(db, [event]);
  return { id: row?.id, duplicate: row === undefined };
}

// The statement is constant: built once, and prepared once per connection on PostgreSQL.
const INSERT_EVENTS_SQL = preparedStatement(
  'inbox_insert_events',
  `
    insert into inbound_events
      (source, origin, event_id, event_type, record_type, record_id, parent_id, payload,
       is_thin, content_hash, occurred_at)
    select source, origin, event_id, event_type, record_type, record_id, parent_id, payload,
           is_thin,
           case when is_thin then null
                else encode(sha256(convert_to(payload::text, 'UTF8')), 'base64') end,
           occurred_at
    from json_to_recordset($1::json) as r(
      source text, origin text, event_id text, event_type text, record_type text,
      record_id text, parent_id text, payload jsonb, is_thin boolean, occurred_at timestamptz)
    on conflict do nothing
    returning id, source, event_id`,
);

/**
 * Many events in one statement; returns the id, source and event id of the rows stored (a
 * row whose event id or content was already known is skipped: it is a duplicate).
 *
 * The rows travel as ONE json parameter unpacked by `json_to_recordset`, so the statement
 * text is the same for any batch size: PostgreSQL parses and plans a short statement instead
 * of a VALUES list with eleven parameters per row, and the driver serializes one string.
 * The content hash is PostgreSQL's too: SHA-256 of the payload as jsonb text, which is
 * canonical (keys sorted, duplicates and whitespace gone), so equal records hash equal
 * whatever their key order. Thin events carry none: they are never content-deduplicated.
 */
export async function insertInboundEventBatch(
  db: DbOrTrx,
  events: readonly NewInboxEvent[],
): Promise<{ id: string; source: SystemName; event_id: string }[]> {
  if (events.length === 0) return [];
  const rows = events.map((event) => ({
    source: event.source,
    origin: event.origin,
    event_id: event.eventId,
    event_type: event.eventType,
    record_type: event.recordType,
    record_id: event.recordId,
    parent_id: event.parentId ?? null,
    payload: event.payload,
    is_thin: event.isThin,
    occurred_at: event.occurredAt ?? null,
  }));
  const result = await db.executeQuery<{ id: string; source: SystemName; event_id: string }>(
    CompiledQuery.raw(INSERT_EVENTS_SQL, [JSON.stringify(rows)]),
  );
  return result.rows;
}

/** Many events in one statement (pollers, reconcile); returns how many were new. */
export async function insertInboundEvents(db: DbOrTrx, events: NewInboxEvent[]): Promise<number> {
  return (await insertInboundEventBatch(db, events)).length;
}

export async function countInboundEvents(db: DbOrTrx): Promise<number> {
  const row = await sql<{ n: string }>`select count(*) as n from inbound_events`.execute(db);
  return Number(row.rows[0]?.n ?? 0);
}

export async function listInboundEventsForRecord(
  db: DbOrTrx,
  source: SystemName,
  recordType: string,
  recordId: string,
): Promise<InboundEventRow[]> {
  return db
    .selectFrom('inbound_events')
    .selectAll()
    .where('source', '=', source)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .orderBy('id')
    .execute();
}

/** The newest `limit` inbox events of one record (index inbound_events_record). */
export async function listRecordEvents(
  db: DbOrTrx,
  key: RecordKey,
  limit: number,
): Promise<InboundEventRow[]> {
  return db
    .selectFrom('inbound_events')
    .selectAll()
    .where('source', '=', key.system)
    .where('record_type', '=', key.recordType)
    .where('record_id', '=', key.recordId)
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

/** The newest inbox id: a reconcile waits for the worker to get past it. */
export async function getMaxInboundEventId(db: DbOrTrx): Promise<string | undefined> {
  const row = await db
    .selectFrom('inbound_events')
    .select((eb) => eb.fn.max('id').as('id'))
    .executeTakeFirst();
  return row?.id ?? undefined;
}

// ---- the worker's claim and bookkeeping -------------------------------------------------

/** The next few due events, oldest first (unlocked: the claim happens per event). */
export async function peekDueEvents(db: DbOrTrx, limit: number): Promise<InboundEventRow[]> {
  return db
    .selectFrom('inbound_events')
    .selectAll()
    .where('status', '=', 'pending')
    .where('run_at', '<=', sql<Date>`now()`)
    .orderBy('id')
    .limit(limit)
    .execute();
}

/** Whether any event is due now (pending and not waiting out a backoff). */
export async function hasDueEvent(db: DbOrTrx): Promise<boolean> {
  const row = await db
    .selectFrom('inbound_events')
    .select('id')
    .where('status', '=', 'pending')
    .where('run_at', '<=', sql<Date>`now()`)
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}

/** Whether any event (up to `upToEventId`, when given) is pending, due or not. */
export async function hasPendingEvent(db: DbOrTrx, upToEventId?: string): Promise<boolean> {
  let query = db.selectFrom('inbound_events').select('id').where('status', '=', 'pending').limit(1);
  if (upToEventId !== undefined) query = query.where('id', '<=', upToEventId);
  return (await query.executeTakeFirst()) !== undefined;
}

/**
 * Claims one pending event for the caller's transaction (FOR UPDATE SKIP LOCKED); undefined
 * when it is done meanwhile or another replica holds it.
 */
export async function claimPendingEvent(
  db: DbOrTrx,
  id: string,
): Promise<InboundEventRow | undefined> {
  return db
    .selectFrom('inbound_events')
    .selectAll()
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .forUpdate()
    .skipLocked()
    .executeTakeFirst();
}

/** Whether an older event of the same record is due: its turn comes first. */
export async function hasOlderDueEvent(db: DbOrTrx, event: InboundEventRow): Promise<boolean> {
  const older = await db
    .selectFrom('inbound_events')
    .select('id')
    .where('source', '=', event.source)
    .where('record_type', '=', event.record_type)
    .where('record_id', '=', event.record_id)
    .where('status', '=', 'pending')
    .where('id', '<', event.id)
    .where('run_at', '<=', sql<Date>`now()`)
    .executeTakeFirst();
  return older !== undefined;
}

/**
 * Claims up to `limit` due events that carry a full record and are no deletion, oldest first
 * (FOR UPDATE SKIP LOCKED): the worker's bulk mirror fill while the link gate is closed.
 */
export async function claimDueFullEvents(db: DbOrTrx, limit: number): Promise<InboundEventRow[]> {
  return db
    .selectFrom('inbound_events')
    .selectAll()
    .where('status', '=', 'pending')
    .where('run_at', '<=', sql<Date>`now()`)
    .where('is_thin', '=', false)
    .where('event_type', 'not like', '%.deleted')
    .orderBy('id')
    .limit(limit)
    .forUpdate()
    .skipLocked()
    .execute();
}

export async function markEventsDone(db: DbOrTrx, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await db
    .updateTable('inbound_events')
    .set({ status: 'done', processed_at: sql<Date>`now()`, attempts: sql<number>`attempts + 1` })
    .where('id', 'in', ids)
    .execute();
}

/** Done without processing, with the reason kept in last_error (e.g. gone upstream). */
export async function markEventSkipped(db: DbOrTrx, id: string, reason: string): Promise<void> {
  await db
    .updateTable('inbound_events')
    .set({ status: 'done', processed_at: sql<Date>`now()`, last_error: reason })
    .where('id', '=', id)
    .execute();
}

/** A thin event completed with the full record read from its source. */
export async function storeCompletedPayload(
  db: DbOrTrx,
  id: string,
  payload: Record<string, unknown>,
): Promise<void> {
  await db
    .updateTable('inbound_events')
    .set({ payload: JSON.stringify(payload), is_thin: false })
    .where('id', '=', id)
    .where('status', '=', 'pending')
    .execute();
}

/**
 * One more failed attempt: retried after an exponential backoff (1 s doubling, at most five
 * minutes), or dead.
 */
export async function deferEvent(
  db: DbOrTrx,
  id: string,
  error: string,
  dead: boolean,
): Promise<void> {
  await sql`
    update inbound_events
       set attempts = attempts + 1, last_error = ${error},
           status = ${dead ? 'dead' : 'pending'},
           run_at = now() + least(interval '5 minutes', interval '1 second' * power(2, least(attempts, 10)))
     where id = ${id}`.execute(db);
}
