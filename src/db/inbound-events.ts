import { createHash } from 'node:crypto';
import { CompiledQuery, sql } from 'kysely';
import { preparedStatement, type DbOrTrx } from './database.js';
import { atKey, olderThan, type HistoryPosition } from './history-position.js';
import type { RecordKey } from './records.js';
import type { InboundEventRow, SystemName } from './schema.js';

export interface NewInboxEvent {
  source: SystemName;
  origin: 'webhook' | 'poller' | 'reconcile' | 'operator' | 'write';
  /**
   * The webhook-id, or another id stable per delivery. Absent for a polled record: the
   * database makes it of the record's content hash (`poll:<type>:<id>:<hash>`), so a re-read
   * of an unchanged record is the same event.
   */
  eventId?: string;
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
 * One durable insert. A repeated (source, event id), or the same record with the same kind
 * of event (deletion or not) and the same content, stores nothing and reports a duplicate.
 * A dead row is never a duplicate's original: the same content may always come again.
 */
export async function insertInboundEvent(
  db: DbOrTrx,
  event: NewInboxEvent,
): Promise<{ id: string | undefined; duplicate: boolean }> {
  const [row] = await insertInboundEventBatch(db, [event]);
  return { id: row?.id, duplicate: row === undefined };
}

// A record's content hash: SHA-256 of the payload as jsonb text, which is canonical (keys
// sorted, duplicates and whitespace gone), so equal records hash equal whatever their key
// order. A polled record's event id is made of it (`poll:<type>:<id>:<hash>`), so the content
// is hashed once, by the database, for both.
const CONTENT_HASH = `encode(sha256(convert_to(payload::text, 'UTF8')), 'base64')`;
const POLL_EVENT_ID = `'poll:' || record_type || ':' || record_id || ':' || h`;

// The statement is constant: built once, and prepared once per connection on PostgreSQL.
const INSERT_EVENTS_SQL = preparedStatement(
  'inbox_insert_events',
  `
    insert into inbound_events
      (source, origin, event_id, event_type, record_type, record_id, parent_id, payload,
       is_thin, content_hash, occurred_at)
    select source, origin, coalesce(event_id, ${POLL_EVENT_ID}), event_type, record_type,
           record_id, parent_id, payload, is_thin, h, occurred_at
    from (
      select r.*, case when is_thin then null else ${CONTENT_HASH} end as h
      from json_to_recordset($1::json) as r(
        source text, origin text, event_id text, event_type text, record_type text,
        record_id text, parent_id text, payload jsonb, is_thin boolean, occurred_at timestamptz)
    ) r
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
 * The content hash is PostgreSQL's too (CONTENT_HASH above). Thin events carry none: they are
 * never content-deduplicated.
 */
export async function insertInboundEventBatch(
  db: DbOrTrx,
  events: readonly NewInboxEvent[],
): Promise<{ id: string; source: SystemName; event_id: string }[]> {
  if (events.length === 0) return [];
  const rows = events.map((event) => ({
    source: event.source,
    origin: event.origin,
    event_id: event.eventId ?? null,
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

/** Where a polled record goes in the mirror: its match keys and last-change time. */
export interface MirrorFill {
  email: string | null;
  nationalId: string | null;
  number: string | null;
  code: string | null;
  sourceUpdatedAt: string | null;
}

// A polled page while the link gate is closed (src/sync/read-page.ts): each new record's inbox
// row is stored already processed and its state goes straight to the mirror, in one statement.
// The mirror takes a state unless it holds a newer one (as upsertMirrorRecords); a page holding
// one record twice writes the newest. Rows are written in key order (byte order, as the worker's
// bulk fill sorts its writes), so two transactions filling overlapping records never deadlock. Rows without `fill` (linked records: they still sync) are
// stored pending for the worker, as insertInboundEventBatch does.
const INSERT_FILLING_MIRROR_SQL = preparedStatement(
  'inbox_insert_filling_mirror',
  `
    with r as materialized (
      select r.*, ${CONTENT_HASH} as h
      from json_to_recordset($1::json) as r(
        source text, origin text, event_type text, record_type text, record_id text,
        parent_id text, payload jsonb, occurred_at timestamptz, fill boolean, email_key text,
        national_id_key text, number_key bigint, code_key text, source_updated_at timestamptz)
    ),
    stored as (
      insert into inbound_events
        (source, origin, event_id, event_type, record_type, record_id, parent_id, payload,
         is_thin, content_hash, occurred_at, status, processed_at, attempts)
      select source, origin, ${POLL_EVENT_ID}, event_type, record_type, record_id, parent_id,
             payload, false, h, occurred_at,
             case when fill then 'done' else 'pending' end,
             case when fill then now() end,
             case when fill then 1 else 0 end
      from r
      on conflict do nothing
      returning id, source, record_type, record_id, content_hash, status
    ),
    filled as (
      insert into records
        (system, record_type, record_id, parent_id, data, email_key, national_id_key,
         number_key, code_key, source_updated_at, deleted_at, last_event_id)
      select distinct on (r.source collate "C", r.record_type collate "C", r.record_id collate "C")
             r.source, r.record_type, r.record_id, r.parent_id, r.payload, r.email_key,
             r.national_id_key, r.number_key, r.code_key, r.source_updated_at, null, s.id
      from stored s
      join r on r.source = s.source and r.record_type = s.record_type
            and r.record_id = s.record_id and r.h = s.content_hash
      where s.status = 'done'
      order by r.source collate "C", r.record_type collate "C", r.record_id collate "C",
               r.source_updated_at desc nulls last, s.id desc
      on conflict (system, record_type, record_id) do update set
        parent_id = excluded.parent_id, data = excluded.data, email_key = excluded.email_key,
        national_id_key = excluded.national_id_key, number_key = excluded.number_key,
        code_key = excluded.code_key, source_updated_at = excluded.source_updated_at,
        deleted_at = null, last_event_id = excluded.last_event_id, updated_at = now()
      where records.source_updated_at is null or excluded.source_updated_at is null
         or records.source_updated_at <= excluded.source_updated_at
      returning 1
    )
    select (select count(*) from stored)::int as stored,
           (select count(*) from stored where status = 'done')::int as processed`,
);

/**
 * Polled records (no thin events, no deletions) in one statement: those with `fill` are stored
 * as processed inbox rows and written to the mirror; the rest are stored pending. A record whose
 * content was already known is skipped, as in insertInboundEventBatch. Returns how many inbox
 * rows were new, and how many of those were stored processed.
 */
export async function insertPolledEventsFillingMirror(
  db: DbOrTrx,
  events: readonly (NewInboxEvent & { fill: MirrorFill | undefined })[],
): Promise<{ inserted: number; processed: number }> {
  if (events.length === 0) return { inserted: 0, processed: 0 };
  const rows = events.map((event) => ({
    source: event.source,
    origin: event.origin,
    event_type: event.eventType,
    record_type: event.recordType,
    record_id: event.recordId,
    parent_id: event.parentId ?? null,
    payload: event.payload,
    occurred_at: event.occurredAt ?? null,
    fill: event.fill !== undefined,
    email_key: event.fill?.email ?? null,
    national_id_key: event.fill?.nationalId ?? null,
    number_key: event.fill?.number ?? null,
    code_key: event.fill?.code ?? null,
    source_updated_at: event.fill?.sourceUpdatedAt ?? null,
  }));
  const result = await db.executeQuery<{ stored: number; processed: number }>(
    CompiledQuery.raw(INSERT_FILLING_MIRROR_SQL, [JSON.stringify(rows)]),
  );
  const row = result.rows[0];
  return { inserted: row?.stored ?? 0, processed: row?.processed ?? 0 };
}

/**
 * Why a value cannot be stored as jsonb, or undefined when it can: PostgreSQL refuses the
 * NUL character (`\u0000`) and an unpaired surrogate in any string, keys included.
 */
export function unstorableReason(value: unknown): string | undefined {
  if (typeof value === 'string') {
    if (value.includes('\u0000')) return 'holds a NUL character (\\u0000), which cannot be stored';
    if (LONE_SURROGATE.test(value)) return 'holds an unpaired surrogate, which cannot be stored';
    return undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  for (const [key, item] of Array.isArray(value)
    ? value.entries()
    : Object.entries(value as Record<string, unknown>)) {
    const reason = unstorableReason(key) ?? unstorableReason(item);
    if (reason !== undefined) return typeof key === 'string' ? `${key}: ${reason}` : reason;
  }
  return undefined;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** A record a change source could not hand over as it is. */
export interface RejectedInboxRecord {
  source: SystemName;
  origin: NewInboxEvent['origin'];
  recordType: string;
  /** Unknown when the id itself is what failed. */
  recordId: string | undefined;
  parentId?: string | null;
  /** The record as received; kept as JSON text (escapes intact, so always storable). */
  raw: unknown;
  reason: string;
}

/**
 * Sets records aside as dead inbox rows with their raw text and reason, for an operator to
 * see and retry; the rest of the page goes on without them. The same raw record already set
 * aside (and still dead) is not stored twice, so a poller re-reading it adds nothing.
 */
export async function insertRejectedRecords(
  db: DbOrTrx,
  rejected: readonly RejectedInboxRecord[],
): Promise<number> {
  let stored = 0;
  for (const record of rejected) {
    const raw = JSON.stringify(record.raw) ?? 'null';
    const eventId = `rejected:${record.recordType}:${record.recordId ?? '?'}:${createHash('sha256').update(raw).digest('base64url')}`;
    const result = await sql`
      insert into inbound_events
        (source, origin, event_id, event_type, record_type, record_id, parent_id, payload,
         is_thin, content_hash, status, last_error, raw_record)
      select ${record.source}, ${record.origin}, ${eventId}, ${`${record.recordType}.updated`},
             ${record.recordType}, ${record.recordId ?? ''}, ${record.parentId ?? null},
             '{}'::jsonb, false, null, 'dead', ${record.reason.slice(0, 2000)}, ${raw}
      where not exists (
        select 1 from inbound_events
         where source = ${record.source} and event_id = ${eventId} and status = 'dead')`.execute(
      db,
    );
    stored += Number(result.numAffectedRows ?? 0);
  }
  return stored;
}

/** Sets a claimed event aside after the fact (a thin event whose GET answered such a record). */
export async function setEventAside(
  db: DbOrTrx,
  id: string,
  raw: unknown,
  reason: string,
): Promise<void> {
  await db
    .updateTable('inbound_events')
    .set({
      status: 'dead',
      attempts: sql<number>`attempts + 1`,
      last_error: reason.slice(0, 2000),
      raw_record: JSON.stringify(raw) ?? 'null',
    })
    .where('id', '=', id)
    .execute();
}

export async function getInboundEvent(
  db: DbOrTrx,
  id: string,
): Promise<InboundEventRow | undefined> {
  return db.selectFrom('inbound_events').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Puts a dead event back in the queue: pending, attempts 0, due now. A record that was set
 * aside becomes a thin event (only its id), so the worker reads it again from its system:
 * the stored raw text is what could not be used. Undefined when the id is unknown or the
 * event is not dead. Throws a unique violation when a live copy of the event is queued.
 */
export async function requeueDeadEvent(
  db: DbOrTrx,
  id: string,
): Promise<InboundEventRow | undefined> {
  return db
    .updateTable('inbound_events')
    .set({
      status: 'pending',
      attempts: 0,
      run_at: sql<Date>`now()`,
      locked_at: null,
      locked_by: null,
      is_thin: sql<boolean>`is_thin or raw_record is not null`,
      payload: sql<string>`case when raw_record is not null
        then jsonb_build_object('Id', record_id) else payload end`,
    })
    .where('id', '=', id)
    .where('status', '=', 'dead')
    .returningAll()
    .executeTakeFirst();
}

/** Ids of dead inbox events (oldest first, after `after`), for a bulk retry in batches. */
export async function listDeadEventIds(
  db: DbOrTrx,
  filter: { source?: SystemName | undefined; after?: string; limit: number },
): Promise<string[]> {
  let query = db.selectFrom('inbound_events').select('id').where('status', '=', 'dead');
  if (filter.source !== undefined) query = query.where('source', '=', filter.source);
  if (filter.after !== undefined) query = query.where('id', '>', filter.after);
  const rows = await query.orderBy('id').limit(filter.limit).execute();
  return rows.map((r) => r.id);
}

/** Many events in one statement (pollers, reconcile); returns how many were new. */
export async function insertInboundEvents(db: DbOrTrx, events: NewInboxEvent[]): Promise<number> {
  return (await insertInboundEventBatch(db, events)).length;
}

/**
 * One page of a record's history from this table, newest first by (created_at, id), after
 * `before` (index inbound_events_record); `limit` rows.
 */
export async function listRecordEvents(
  db: DbOrTrx,
  key: RecordKey,
  page: { before?: HistoryPosition | undefined; limit: number },
): Promise<(InboundEventRow & { at_key: string })[]> {
  let query = db
    .selectFrom('inbound_events')
    .selectAll()
    .select(atKey.as('at_key'))
    .where('source', '=', key.system)
    .where('record_type', '=', key.recordType)
    .where('record_id', '=', key.recordId);
  if (page.before !== undefined) query = query.where(olderThan(page.before, 0));
  return query.orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute();
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

/** How many events up to `upToEventId` are still pending (a reconcile's drain progress). */
export async function countPendingEvents(db: DbOrTrx, upToEventId?: string): Promise<number> {
  let query = db
    .selectFrom('inbound_events')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('status', '=', 'pending');
  if (upToEventId !== undefined) query = query.where('id', '<=', upToEventId);
  return Number((await query.executeTakeFirstOrThrow()).n);
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

// A record set aside (a rejected record: dead, with its raw text) is resolved by a later valid
// read of the same record: it is done, its reason kept after this note.
const RESOLVED_NOTE = 'resolved: the record was read again and is valid; it had been set aside: ';

/**
 * Marks processed events done, in one statement with what they settle: each is a valid read of
 * its record, so the records set aside for that record before it (a smaller id) are resolved.
 */
export async function markEventsDone(db: DbOrTrx, ids: readonly string[]): Promise<void> {
  if (ids.length === 0) return;
  await sql`
    with done as (
      update inbound_events
         set status = 'done', processed_at = now(), attempts = attempts + 1
       where id in (${sql.join(ids)})
      returning id, source, record_type, record_id)
    update inbound_events d
       set status = 'done', processed_at = now(),
           last_error = left(${RESOLVED_NOTE} || coalesce(d.last_error, ''), 2000)
      from done
     where d.status = 'dead' and d.raw_record is not null and d.source = done.source
       and d.record_type = done.record_type and d.record_id = done.record_id
       and d.id < done.id`.execute(db);
}

/**
 * A poll or reconcile read these records valid (stored or not: content already known is not
 * stored again): the records set aside for them are resolved.
 */
export async function resolveRejectedRecords(
  db: DbOrTrx,
  source: SystemName,
  recordType: string,
  recordIds: readonly string[],
): Promise<number> {
  if (recordIds.length === 0) return 0;
  const result = await sql`
    update inbound_events
       set status = 'done', processed_at = now(),
           last_error = left(${RESOLVED_NOTE} || coalesce(last_error, ''), 2000)
     where status = 'dead' and raw_record is not null and source = ${source}
       and record_type = ${recordType} and record_id in (${sql.join([...recordIds])})`.execute(db);
  return Number(result.numAffectedRows ?? 0);
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

/** Inbox events by status, newest first; one more than `limit` when there is a next page. */
export async function listInboundEvents(
  db: DbOrTrx,
  filter: {
    status?: 'pending' | 'done' | 'dead' | undefined;
    source?: SystemName | undefined;
    before?: string | undefined;
    limit: number;
  },
): Promise<InboundEventRow[]> {
  let query = db.selectFrom('inbound_events').selectAll();
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.source !== undefined) query = query.where('source', '=', filter.source);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

/**
 * Retention: deletes up to `limit` events processed more than `days` days ago, oldest first
 * (index inbound_events_done); returns how many. A row another transaction holds is skipped,
 * so this never waits on live work. Pending and dead events (rejected records too) are kept.
 */
export async function pruneProcessedEvents(
  db: DbOrTrx,
  days: number,
  limit: number,
): Promise<number> {
  const result = await sql`
    delete from inbound_events where id in (
      select id from inbound_events
       where status = 'done' and processed_at < now() - ${days}::int * interval '1 day'
       order by processed_at
       limit ${limit}
       for update skip locked)`.execute(db);
  return Number(result.numAffectedRows ?? 0);
}
