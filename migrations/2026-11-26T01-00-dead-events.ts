import { sql, type Kysely } from 'kysely';

// Frozen in time. Inbox events that gave up (status 'dead') are a change that did not sync;
// the operations gauge counts them at every scrape, which must not scan the whole inbox.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index inbound_events_dead on inbound_events (source, record_type) where status = 'dead'`.execute(
    db,
  );
}

export async function down(): Promise<void> {
  // Forward-only.
}
