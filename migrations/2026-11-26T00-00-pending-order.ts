import { sql, type Kysely } from 'kysely';

// Frozen in time. The worker and the dispatcher take the oldest due rows first
// (`order by id`); the first indexes led with run_at, so with a large backlog (a reconcile of
// 100 000 records per side) every claim sorted every pending row. Indexes in id order over
// the pending rows let a claim read just the first few.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index inbound_events_pending_id on inbound_events (id) where status = 'pending'`.execute(
    db,
  );
  // (id) alone: with `system` first, the planner took this index for the coalescing lookup by
  // record too, and scanned every pending command of the system to find one.
  await sql`create index outbound_commands_pending_id on outbound_commands (id) where status = 'pending'`.execute(
    db,
  );
  await sql`create index outbound_commands_sending on outbound_commands (system, record_type, record_id) where status = 'sending'`.execute(
    db,
  );
  // The run_at-first indexes are what the planner picked (and then sorted): gone. A row
  // waiting out a backoff is rare, and is skipped by a filter on the id-ordered scan.
  await sql`drop index inbound_events_claimable`.execute(db);
  await sql`drop index outbound_commands_claimable`.execute(db);
}

export async function down(): Promise<void> {
  // Forward-only.
}
