import { sql, type Kysely } from 'kysely';

// Frozen in time. Leadership as leases in a table instead of session advisory locks:
// - leases: one row per target system. The replica named in `holder` runs that system's
//   dispatcher and pollers until `expires_at`, renewing it by heartbeat. Every take-over
//   raises `epoch`; claims, completions and requeues of commands and poller cursor writes
//   name the epoch they were made under and change nothing when it is no longer the current,
//   unexpired one (fencing). Plain rows, no session state: any pooler mode works.
// - outbound_commands.locked_epoch: the epoch a command was claimed under; the claim's
//   completion or requeue is refused once that epoch is no longer the current lease.
// - reconcile_runs.owner / expires_at: the process running a reconcile renews expires_at
//   with its heartbeat; a 'running' run past it has no live owner and is failed by the next
//   replica that looks.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`
    create table leases (
      system text primary key,
      holder text,
      epoch bigint not null default 0,
      expires_at timestamptz not null default now(),
      acquired_at timestamptz,
      renewed_at timestamptz
    )`.execute(db);
  await sql`alter table outbound_commands add column locked_epoch bigint`.execute(db);
  await sql`alter table reconcile_runs add column owner text`.execute(db);
  await sql`alter table reconcile_runs add column expires_at timestamptz`.execute(db);
}

export async function down(): Promise<void> {
  // Forward-only.
}
