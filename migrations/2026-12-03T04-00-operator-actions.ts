import { sql, type Kysely } from 'kysely';

// Frozen in time. What the operator's actions need:
// - flow_controls: one row per flow an operator has paused (or resumed). The dispatcher skips
//   the commands of a paused flow; the state outlives restarts and is shared by replicas.
// - link_holds: pairs an operator unlinked. No merge rule links such a pair again; only a
//   manual link does (and removes the hold).
// - outbound_commands.status 'dropped': a dead command the operator took off the dead list
//   without sending it.
// - console_sessions: console log-ins (the cookie carries a random id; only its hash is
//   stored), so a log-out ends the session on every replica.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table flow_controls (
      flow text primary key,
      paused_at timestamptz,
      updated_at timestamptz not null default now()
    )`.execute(db);
  await sql`
    create table link_holds (
      flow text not null,
      tidsbanken_id text not null,
      poweroffice_id text not null,
      link_id bigint,
      created_at timestamptz not null default now(),
      primary key (flow, tidsbanken_id, poweroffice_id)
    )`.execute(db);
  await sql`create index link_holds_poweroffice on link_holds (flow, poweroffice_id)`.execute(db);
  await sql`alter table outbound_commands drop constraint outbound_commands_status_check`.execute(
    db,
  );
  await sql`alter table outbound_commands add constraint outbound_commands_status_check
    check (status in ('pending', 'sending', 'sent', 'dead', 'dry_run', 'superseded', 'dropped'))`.execute(
    db,
  );
  await sql`
    create table console_sessions (
      id_hash text primary key,
      csrf_token text not null,
      created_at timestamptz not null default now(),
      expires_at timestamptz not null
    )`.execute(db);
  await sql`create index console_sessions_expires on console_sessions (expires_at)`.execute(db);
}

export async function down(): Promise<void> {
  // Forward-only.
}
