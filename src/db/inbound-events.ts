import { createHash } from 'node:crypto';
import { CompiledQuery, sql } from 'kysely';
import { preparedStatement, type DbOrTrx } from './database.js';
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
