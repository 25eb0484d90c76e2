import { sql, type Kysely } from 'kysely';

// Frozen in time. What the prosjekt-project flow needs:
// - records.code_key: the code match key (Prosjekt Id = Project Code, trimmed, lower-cased),
//   indexed like the other keys.
// - reference_waits: reference fields of a link that wait for the record they name to be
//   linked in the referenced flow (one row per link and field). Whoever makes that link, the
//   worker finds the waits it resolves by joining this table to the links.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`alter table records add column code_key text`.execute(db);
  await sql`create index records_code_key on records (system, record_type, code_key) where code_key is not null and deleted_at is null`.execute(
    db,
  );
  await sql`
    create table reference_waits (
      link_id bigint not null,
      field text not null,
      ref_flow text not null,
      ref_system text not null check (ref_system in ('tidsbanken', 'poweroffice')),
      ref_id text not null,
      created_at timestamptz not null default now(),
      primary key (link_id, field)
    )`.execute(db);
  await sql`create index reference_waits_ref on reference_waits (ref_flow, ref_system, ref_id)`.execute(
    db,
  );
}

export async function down(): Promise<void> {
  // Forward-only.
}
