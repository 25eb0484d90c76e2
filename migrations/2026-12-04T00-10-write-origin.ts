import { sql, type Kysely } from 'kysely';

// Frozen in time. Our own write read back (the record a PATCH answered, or the read before a
// Tidsbanken replace) enters the inbox with origin 'write': it is neither a poll nor a webhook.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table inbound_events drop constraint inbound_events_origin_check`.execute(db);
  await sql`alter table inbound_events add constraint inbound_events_origin_check
    check (origin in ('webhook', 'poller', 'reconcile', 'operator', 'write'))`.execute(db);
  await sql`update inbound_events set origin = 'write'
    where origin = 'poller' and event_id like 'write:%'`.execute(db);
}

export async function down(): Promise<void> {
  // Forward-only.
}
