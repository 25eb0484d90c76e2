import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { SystemName } from './schema.js';

// The one query that reads across tables: every database-derived gauge (lib/ops-metrics.ts)
// in a single statement, so a scrape costs one connection and one round trip.

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
