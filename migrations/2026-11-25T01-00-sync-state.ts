import { sql, type Kysely } from 'kysely';

// Frozen in time. What the sync engine needs beyond the first schema:
// - links.inflight: per side and field, the values a read of that side may still show while
//   our write of that field is queued or in flight (so a read taken before the write landed
//   is not mistaken for a user's edit), and the command that will write it.
// - outbound_commands.status 'sending': claimed by the dispatcher, request in flight. A newer
//   change then opens a new pending command instead of editing one already on the wire.
// - 'superseded': a command whose send failed transiently while a newer pending command for the
//   same record existed; its fields were folded into that one (which is sent instead).
// - sync_state: small named flags, e.g. the one-time link sweep after the first full reads.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table links add column inflight jsonb not null default '{}'::jsonb`.execute(db);
  await sql`alter table outbound_commands drop constraint outbound_commands_status_check`.execute(
    db,
  );
  await sql`alter table outbound_commands add constraint outbound_commands_status_check
    check (status in ('pending', 'sending', 'sent', 'dead', 'dry_run', 'superseded'))`.execute(db);
  await sql`drop index outbound_commands_live_create`.execute(db);
  await sql`create unique index outbound_commands_live_create on outbound_commands (system, record_type, origin_id)
    where operation = 'create' and status in ('pending', 'sending', 'sent', 'dry_run')`.execute(db);
  await sql`create index outbound_commands_create_target on outbound_commands (system, record_type, record_id)
    where operation = 'create'`.execute(db);
  await sql`
    create table sync_state (
      key text primary key,
      value jsonb not null default '{}'::jsonb,
      created_at timestamptz not null default now(),
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`create index links_flow_poweroffice on links (flow, poweroffice_id)`.execute(db);
  await sql`create index audit_entries_link on audit_entries (link_id, id) where link_id is not null`.execute(
    db,
  );
}

export async function down(): Promise<void> {
  // Forward-only.
}
