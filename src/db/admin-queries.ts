import { sql, type Transaction } from 'kysely';
import type { DbOrTrx } from './database.js';
import { getMirrorRecord as getMirrorRecordById } from './records.js';
import type {
  AuditEntryRow,
  ConflictRow,
  Database,
  InboundEventRow,
  LinkRow,
  OutboundCommandRow,
  ReconcileRunRow,
  RecordRow,
  SystemName,
} from './schema.js';

// Read-mostly queries behind the admin API (http/admin.ts), the reconcile runs
// (sync/reconcile.ts) and the database-derived gauges (lib/ops-metrics.ts). The sync engine
// owns the writes to links, conflicts and commands; the only write here to its tables is
// the operator's replay of a dead command.

// ---- links --------------------------------------------------------------------------

export interface LinkFilter {
  flow?: string | undefined;
  tidsbankenId?: string | undefined;
  powerofficeId?: string | undefined;
  /** Unlinked (historical) links too; active ones only by default. */
  includeUnlinked?: boolean | undefined;
  limit: number;
}

export async function listLinks(db: DbOrTrx, filter: LinkFilter): Promise<LinkRow[]> {
  let query = db.selectFrom('links').selectAll();
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.tidsbankenId !== undefined)
    query = query.where('tidsbanken_id', '=', filter.tidsbankenId);
  if (filter.powerofficeId !== undefined)
    query = query.where('poweroffice_id', '=', filter.powerofficeId);
  if (filter.includeUnlinked !== true) query = query.where('unlinked_at', 'is', null);
  return query.orderBy('id', 'desc').limit(filter.limit).execute();
}

// ---- conflicts ----------------------------------------------------------------------

export interface ConflictFilter {
  flow?: string | undefined;
  kind?: ConflictRow['kind'] | undefined;
  status?: ConflictRow['status'] | undefined;
  limit: number;
}

export async function listConflicts(db: DbOrTrx, filter: ConflictFilter): Promise<ConflictRow[]> {
  let query = db.selectFrom('conflicts').selectAll();
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return query.orderBy('id', 'desc').limit(filter.limit).execute();
}

// ---- commands -----------------------------------------------------------------------

/** The statuses the admin API shows: 'sending' is an internal detail of 'pending'. */
export type ApiCommandStatus = 'pending' | 'sent' | 'dead' | 'dry_run' | 'superseded';

export async function listCommands(
  db: DbOrTrx,
  filter: { status?: ApiCommandStatus | undefined; limit: number },
): Promise<OutboundCommandRow[]> {
  let query = db.selectFrom('outbound_commands').selectAll();
  if (filter.status === 'pending') query = query.where('status', 'in', ['pending', 'sending']);
  else if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return query.orderBy('id', 'desc').limit(filter.limit).execute();
}

export async function getCommand(db: DbOrTrx, id: string): Promise<OutboundCommandRow | undefined> {
  return db.selectFrom('outbound_commands').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * Puts a dead command back in the queue: pending, attempts 0, due now. `last_error` is kept
 * so the operator still sees why it died until the next attempt overwrites it. Only a dead
 * row changes (the status check is in the UPDATE itself, so a concurrent replay or a
 * dispatcher cannot race it); undefined when the id is unknown or the command is not dead.
 */
export async function requeueDeadCommand(
  db: DbOrTrx,
  id: string,
): Promise<OutboundCommandRow | undefined> {
  // Raw SQL: the generated-timestamp column types do not accept now() in kysely's .set().
  const result = await sql<OutboundCommandRow>`
    update outbound_commands
    set status = 'pending', attempts = 0, run_at = now(), locked_at = null, locked_by = null,
      updated_at = now()
    where id = ${id} and status = 'dead'
    returning *`.execute(db);
  return result.rows[0];
}

// ---- one record's history -----------------------------------------------------------

export interface RecordKey {
  system: SystemName;
  recordType: string;
  recordId: string;
}

export function getMirrorRecord(db: DbOrTrx, key: RecordKey): Promise<RecordRow | undefined> {
  return getMirrorRecordById(db, key.system, key.recordType, key.recordId);
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

/** The newest `limit` audit entries of one record (index audit_entries_record). */
export async function listRecordAudit(
  db: DbOrTrx,
  key: RecordKey,
  limit: number,
): Promise<AuditEntryRow[]> {
  return db
    .selectFrom('audit_entries')
    .selectAll()
    .where('system', '=', key.system)
    .where('record_type', '=', key.recordType)
    .where('record_id', '=', key.recordId)
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

/** The newest `limit` outbound commands that write to one record. */
export async function listRecordCommands(
  db: DbOrTrx,
  key: RecordKey,
  limit: number,
): Promise<OutboundCommandRow[]> {
  return db
    .selectFrom('outbound_commands')
    .selectAll()
    .where('system', '=', key.system)
    .where('record_type', '=', key.recordType)
    .where('record_id', '=', key.recordId)
    .orderBy('id', 'desc')
    .limit(limit)
    .execute();
}

// ---- reconcile runs -----------------------------------------------------------------

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

/** The newest inbox id: a reconcile waits for the worker to get past it. */
export async function getMaxInboundEventId(db: DbOrTrx): Promise<string | undefined> {
  const row = await db
    .selectFrom('inbound_events')
    .select((eb) => eb.fn.max('id').as('id'))
    .executeTakeFirst();
  return row?.id ?? undefined;
}

// ---- operations gauges --------------------------------------------------------------

export interface OpsSnapshot {
  inbox: {
    pending: number;
    oldestPendingAgeSeconds: number | null;
    /** Events that gave up, by source system and record type. */
    dead: { system: SystemName; recordType: string; count: number }[];
  };
  outbox: { system: SystemName; status: string; count: number; oldestAgeSeconds: number | null }[];
  conflicts: { flow: string; kind: string; count: number }[];
  links: { flow: string; count: number }[];
  pollers: {
    system: string;
    recordType: string;
    lagSeconds: number | null;
    failing: boolean;
  }[];
  reconcileRunning: boolean;
}

const toNumber = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));

interface OpsRow {
  inbox: { pending: number; oldest: number | null };
  deadEvents: { source: SystemName; record_type: string; count: number }[];
  outbox: { system: SystemName; status: string; count: number; oldest: number | null }[];
  conflicts: { flow: string; kind: string; count: number }[];
  links: { flow: string; count: number }[];
  pollers: { system: string; record_type: string; lag: number | null; failing: boolean }[];
  running: boolean;
}

/**
 * Everything the gauges show, in one statement (one connection, one round trip), each part
 * on a partial index or a small table: pending inbox rows (inbound_events_pending_id), dead
 * ones (inbound_events_dead),
 * unsent commands (outbound_commands_status), open conflicts (conflicts_open), active links
 * (links_active_tidsbanken), poller cursors (a handful of rows). Ages come from the
 * database's clock so every replica reports the same values.
 */
export async function readOpsSnapshot(db: DbOrTrx): Promise<OpsSnapshot> {
  const result = await sql<OpsRow>`
    select
      (select json_build_object('pending', count(*),
          'oldest', extract(epoch from now() - min(created_at)))
        from inbound_events where status = 'pending') as inbox,
      (select coalesce(json_agg(t), '[]'::json) from (
        select source, record_type, count(*) as count from inbound_events
        where status = 'dead' group by source, record_type) t) as "deadEvents",
      (select coalesce(json_agg(t), '[]'::json) from (
        select system, status, count(*) as count,
          extract(epoch from now() - min(created_at)) as oldest
        from outbound_commands where status in ('pending', 'sending', 'dead')
        group by system, status) t) as outbox,
      (select coalesce(json_agg(t), '[]'::json) from (
        select flow, kind, count(*) as count from conflicts where status = 'open'
        group by flow, kind) t) as conflicts,
      (select coalesce(json_agg(t), '[]'::json) from (
        select flow, count(*) as count from links where unlinked_at is null
        group by flow) t) as links,
      (select coalesce(json_agg(t), '[]'::json) from (
        select system, record_type, extract(epoch from now() - last_success_at) as lag,
          (last_error is not null) as failing
        from poller_cursors) t) as pollers,
      exists (select 1 from reconcile_runs where status = 'running') as running`.execute(db);
  const row = result.rows[0];
  if (row === undefined) throw new Error('the operations snapshot query returned no row');
  return {
    inbox: {
      pending: Number(row.inbox.pending),
      oldestPendingAgeSeconds: toNumber(row.inbox.oldest),
      dead: row.deadEvents.map((r) => ({
        system: r.source,
        recordType: r.record_type,
        count: Number(r.count),
      })),
    },
    outbox: row.outbox.map((r) => ({
      system: r.system,
      status: r.status,
      count: Number(r.count),
      oldestAgeSeconds: toNumber(r.oldest),
    })),
    conflicts: row.conflicts.map((r) => ({ flow: r.flow, kind: r.kind, count: Number(r.count) })),
    links: row.links.map((r) => ({ flow: r.flow, count: Number(r.count) })),
    pollers: row.pollers.map((r) => ({
      system: r.system,
      recordType: r.record_type,
      lagSeconds: toNumber(r.lag),
      failing: r.failing,
    })),
    reconcileRunning: row.running,
  };
}
