import { sql, type Kysely } from 'kysely';

// Frozen in time: this file never imports from src/ and never changes once landed.
// The whole pipeline (docs/ARCHITECTURE.md "Data flow") is laid out here so later work fills behaviour,
// not tables: inbox → mirror → links (+ shadow) → conflicts → outbox, plus poller
// cursors, reconcile runs and an audit trail per record.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  // Inbox: every accepted change, from a webhook, a poller or a reconcile read.
  await sql`
    create table inbound_events (
      id bigserial primary key,
      source text not null check (source in ('tidsbanken', 'poweroffice')),
      origin text not null check (origin in ('webhook', 'poller', 'reconcile', 'operator')),
      event_id text not null,
      event_type text not null,
      record_type text not null,
      record_id text not null,
      parent_id text,
      payload jsonb not null,
      is_thin boolean not null default false,
      content_hash text,
      occurred_at timestamptz,
      status text not null default 'pending'
        check (status in ('pending', 'done', 'dead')),
      attempts integer not null default 0,
      last_error text,
      run_at timestamptz not null default now(),
      locked_at timestamptz,
      locked_by text,
      processed_at timestamptz,
      created_at timestamptz not null default now()
    )`.execute(db);
  await sql`create unique index inbound_events_source_event_id on inbound_events (source, event_id)`.execute(
    db,
  );
  // Same record, same content: the poller's overlap window re-reads records; storing
  // them again would cost a worker pass for nothing.
  await sql`create unique index inbound_events_record_content on inbound_events (source, record_type, record_id, content_hash) where content_hash is not null`.execute(
    db,
  );
  await sql`create index inbound_events_claimable on inbound_events (run_at, id) where status = 'pending'`.execute(
    db,
  );
  await sql`create index inbound_events_record on inbound_events (source, record_type, record_id, id)`.execute(
    db,
  );

  // Mirror: the latest known state of every record of both systems.
  await sql`
    create table records (
      system text not null check (system in ('tidsbanken', 'poweroffice')),
      record_type text not null,
      record_id text not null,
      parent_id text,
      data jsonb not null,
      email_key text,
      national_id_key text,
      number_key bigint,
      source_updated_at timestamptz,
      deleted_at timestamptz,
      last_event_id bigint,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      primary key (system, record_type, record_id)
    )`.execute(db);
  await sql`create index records_email_key on records (system, record_type, email_key) where email_key is not null and deleted_at is null`.execute(
    db,
  );
  await sql`create index records_national_id_key on records (system, record_type, national_id_key) where national_id_key is not null and deleted_at is null`.execute(
    db,
  );
  await sql`create index records_number_key on records (system, record_type, number_key) where number_key is not null and deleted_at is null`.execute(
    db,
  );

  // Links: one Tidsbanken record and one PowerOffice record in one flow, with the shadow —
  // the field values last agreed on both sides (the base of the three-way diff).
  await sql`
    create table links (
      id bigserial primary key,
      flow text not null,
      tidsbanken_type text not null,
      tidsbanken_id text not null,
      poweroffice_type text not null,
      poweroffice_id text not null,
      poweroffice_parent_id text,
      linked_by text not null,
      shadow jsonb not null default '{}'::jsonb,
      last_synced_at timestamptz,
      unlinked_at timestamptz,
      unlink_reason text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`create unique index links_active_tidsbanken on links (flow, tidsbanken_id) where unlinked_at is null`.execute(
    db,
  );
  await sql`create unique index links_active_poweroffice on links (flow, poweroffice_id) where unlinked_at is null`.execute(
    db,
  );

  // Conflicts: ambiguous matches and fields changed on both sides, with the resolution.
  await sql`
    create table conflicts (
      id bigserial primary key,
      flow text not null,
      kind text not null check (kind in ('ambiguous_match', 'field_conflict')),
      system text not null,
      record_type text not null,
      record_id text not null,
      link_id bigint references links (id),
      field text,
      tidsbanken_value jsonb,
      poweroffice_value jsonb,
      candidates jsonb,
      resolution text,
      status text not null default 'open' check (status in ('open', 'resolved')),
      resolved_at timestamptz,
      created_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index conflicts_record on conflicts (system, record_type, record_id)`.execute(
    db,
  );
  await sql`create index conflicts_open on conflicts (flow, kind) where status = 'open'`.execute(
    db,
  );

  // Outbox: writes to send, coalesced per target record while pending.
  await sql`
    create table outbound_commands (
      id bigserial primary key,
      system text not null check (system in ('tidsbanken', 'poweroffice')),
      operation text not null check (operation in ('create', 'update')),
      record_type text not null,
      record_id text,
      parent_id text,
      flow text,
      link_id bigint references links (id),
      origin_system text,
      origin_id text,
      origin_record_id text,
      payload jsonb not null,
      status text not null default 'pending'
        check (status in ('pending', 'sent', 'dead', 'dry_run')),
      attempts integer not null default 0,
      max_attempts integer not null default 25,
      last_error jsonb,
      run_at timestamptz not null default now(),
      locked_at timestamptz,
      locked_by text,
      sent_at timestamptz,
      result jsonb,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index outbound_commands_claimable on outbound_commands (system, run_at, id) where status = 'pending'`.execute(
    db,
  );
  await sql`create index outbound_commands_status on outbound_commands (status, id)`.execute(db);
  // Coalescing: at most one pending update per target record absorbs newer changes.
  await sql`create unique index outbound_commands_pending_update on outbound_commands (system, record_type, record_id) where status = 'pending' and operation = 'update'`.execute(
    db,
  );
  // A create is idempotent by its origin id: never two live creates of one counterpart.
  await sql`create unique index outbound_commands_live_create on outbound_commands (system, record_type, origin_id) where operation = 'create' and status in ('pending', 'sent', 'dry_run')`.execute(
    db,
  );

  // Change pollers: one cursor per system and record type.
  await sql`
    create table poller_cursors (
      system text not null,
      record_type text not null,
      cursor text,
      full_read_at timestamptz,
      last_polled_at timestamptz,
      last_success_at timestamptz,
      last_error text,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now(),
      primary key (system, record_type)
    )`.execute(db);

  // Reconcile runs with their progress, for GET /admin/reconcile.
  await sql`
    create table reconcile_runs (
      id bigserial primary key,
      status text not null default 'running' check (status in ('running', 'done', 'failed')),
      progress jsonb not null default '{}'::jsonb,
      error text,
      started_at timestamptz not null default now(),
      finished_at timestamptz,
      created_at timestamptz not null default now()
    )`.execute(db);

  // Audit trail: what happened to one record and why (events, diffs, commands, links).
  await sql`
    create table audit_entries (
      id bigserial primary key,
      system text not null,
      record_type text not null,
      record_id text not null,
      kind text not null,
      flow text,
      link_id bigint,
      event_id bigint,
      command_id bigint,
      detail jsonb not null default '{}'::jsonb,
      created_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index audit_entries_record on audit_entries (system, record_type, record_id, id)`.execute(
    db,
  );
}

export async function down(): Promise<void> {
  // Forward-only: a rollback is a new migration.
}
