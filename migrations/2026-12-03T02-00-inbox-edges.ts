import { sql, type Kysely } from 'kysely';

// Frozen in time. Inbox dedupe per (record, kind of event, content), and dead rows out of both
// unique indexes:
// - a deletion is never a duplicate of an update that carried the same record content;
// - an event that went dead never stops the same event id or content from being stored
//   again later (a re-read, a reconcile), so the change it carried still syncs.
// `raw_record` holds a record set aside because it could not be stored or read as it is
// (a NUL character, a field of the wrong type): its JSON text, escapes intact.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table inbound_events add column raw_record text`.execute(db);
  await sql`create unique index inbound_events_live_event_id on inbound_events (source, event_id) where status <> 'dead'`.execute(
    db,
  );
  await sql`create unique index inbound_events_live_record_kind_content on inbound_events (source, record_type, record_id, (event_type like '%.deleted'), content_hash) where content_hash is not null and status <> 'dead'`.execute(
    db,
  );
  await sql`drop index inbound_events_source_event_id`.execute(db);
  await sql`drop index inbound_events_record_content`.execute(db);
}

export async function down(): Promise<void> {
  // Forward-only.
}
