import { sql, type OnConflictBuilder, type RawBuilder } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { Database, RecordRow, SystemName } from './schema.js';

export interface MirrorWrite {
  system: SystemName;
  recordType: string;
  recordId: string;
  parentId: string | null;
  data: Record<string, unknown>;
  email: string | null;
  nationalId: string | null;
  number: string | null;
  code: string | null;
  /** The source's own last-change time, as the API wrote it (kept at µs precision). */
  sourceUpdatedAt: string | null;
  eventId: string | null;
  /**
   * Whether this state replaces a held one with the same source timestamp (default true: of
   * two reads with one timestamp the later read is the newer). False for the result of our own
   * write: a different state with the very same timestamp is an edit made next to ours
   * (millisecond timestamps tie), and our echo must not hide it.
   */
  winsTie?: boolean;
}

function mirrorRow(write: MirrorWrite) {
  return {
    system: write.system,
    record_type: write.recordType,
    record_id: write.recordId,
    parent_id: write.parentId,
    data: JSON.stringify(write.data),
    email_key: write.email,
    national_id_key: write.nationalId,
    number_key: write.number,
    code_key: write.code,
    source_updated_at: write.sourceUpdatedAt,
    deleted_at: null,
    last_event_id: write.eventId,
  };
}

/** Take the new state, unless the mirror already holds a newer one of the record. */
const unlessOlder = (winsTie: boolean) => (oc: OnConflictBuilder<Database, 'records'>) =>
  oc
    .columns(['system', 'record_type', 'record_id'])
    .doUpdateSet((eb) => ({
      parent_id: eb.ref('excluded.parent_id'),
      data: eb.ref('excluded.data'),
      email_key: eb.ref('excluded.email_key'),
      national_id_key: eb.ref('excluded.national_id_key'),
      number_key: eb.ref('excluded.number_key'),
      code_key: eb.ref('excluded.code_key'),
      source_updated_at: eb.ref('excluded.source_updated_at'),
      deleted_at: null,
      last_event_id: eb.ref('excluded.last_event_id'),
      updated_at: sql<Date>`now()`,
    }))
    .where((eb) =>
      eb.or([
        eb('records.source_updated_at', 'is', null),
        eb('excluded.source_updated_at', 'is', null),
        eb('records.source_updated_at', winsTie ? '<=' : '<', eb.ref('excluded.source_updated_at')),
      ]),
    );

/**
 * Upserts the mirror unless it already holds a newer state of the record (docs/ARCHITECTURE.md "Mirror":
 * "ignore a state older than the one held"). Returns false when the write was stale.
 * The comparison runs in SQL so PowerOffice's sub-millisecond timestamps keep their order.
 */
export async function upsertMirrorRecord(db: DbOrTrx, write: MirrorWrite): Promise<boolean> {
  const row = await db
    .insertInto('records')
    .values(mirrorRow(write))
    .onConflict(unlessOlder(write.winsTie ?? true))
    .returning('record_id')
    .executeTakeFirst();
  return row !== undefined;
}

/** Many records in one statement (one write per record: the caller keeps the newest). */
export async function upsertMirrorRecords(db: DbOrTrx, writes: MirrorWrite[]): Promise<void> {
  for (const winsTie of [true, false]) {
    const some = writes.filter((w) => (w.winsTie ?? true) === winsTie);
    if (some.length === 0) continue;
    await db
      .insertInto('records')
      .values(some.map(mirrorRow))
      .onConflict(unlessOlder(winsTie))
      .execute();
  }
}

export async function markMirrorRecordDeleted(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
): Promise<void> {
  await db
    .updateTable('records')
    .set({ deleted_at: sql<Date>`now()`, updated_at: sql<Date>`now()` })
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .execute();
}

export async function getMirrorRecord(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
): Promise<RecordRow | undefined> {
  return db
    .selectFrom('records')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .executeTakeFirst();
}

/** Live records of one type whose match key in `column` is one of `values`. */
export async function findMirrorRecordsByKeys(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  keys: {
    email?: string | null;
    nationalId?: string | null;
    number?: string | null;
    code?: string | null;
  },
): Promise<RecordRow[]> {
  const { email, nationalId, number, code } = keys;
  if (!email && !nationalId && !number && !code) return [];
  return db
    .selectFrom('records')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('deleted_at', 'is', null)
    .where((eb) =>
      eb.or([
        ...(email ? [eb('email_key', '=', email)] : []),
        ...(nationalId ? [eb('national_id_key', '=', nationalId)] : []),
        ...(number ? [eb('number_key', '=', number)] : []),
        ...(code ? [eb('code_key', '=', code)] : []),
      ]),
    )
    .orderBy('record_id')
    .execute();
}

/** A flow's merge rules as the mirror sees them: which key column each rule compares. */
export interface MergeSpec {
  flow: string;
  tidsbankenType: string;
  powerofficeType: string;
  /** In the flow's order: the first rule whose keys are equal names a link. */
  rules: { name: string; column: 'email_key' | 'national_id_key' | 'number_key' | 'code_key' }[];
}

/**
 * The match graph of a flow over the whole mirror (docs/ARCHITECTURE.md "Linking"): one row (tb_id, po_id) per
 * pair of live records that some merge rule matches. One equi-join per rule (each can use the
 * key's index or a hash join), pairs matched by several rules counted once. Empty keys are
 * stored as NULL, and NULL never joins.
 */
export function mergeEdges(spec: MergeSpec): RawBuilder<unknown> {
  const joins = spec.rules.map(
    (rule) => sql`
      select t.record_id as tb_id, p.record_id as po_id
      from records t
      join records p on p.${sql.ref(rule.column)} = t.${sql.ref(rule.column)}
      where t.system = 'tidsbanken' and t.record_type = ${spec.tidsbankenType}
        and t.deleted_at is null and t.${sql.ref(rule.column)} is not null
        and p.system = 'poweroffice' and p.record_type = ${spec.powerofficeType}
        and p.deleted_at is null`,
  );
  return sql`${sql.join(joins, sql` union `)}`;
}

/**
 * The degree of every matched record: `deg_t` (per Tidsbanken record: how many PowerOffice
 * records match it, and the first of them) and `deg_p` (the same the other way), as CTEs
 * after `edges`. A pair an operator unlinked is held apart: its edge is out of the graph, so
 * it never links by a merge rule and the other matches of either record are judged without it.
 */
export function mergeDegrees(spec: MergeSpec): RawBuilder<unknown> {
  return sql`
    edges as (
      select e.tb_id, e.po_id from (${mergeEdges(spec)}) e
      where not exists (select 1 from link_holds h where h.flow = ${spec.flow}
        and h.tidsbanken_id = e.tb_id and h.poweroffice_id = e.po_id)),
    deg_t as (select tb_id, count(*)::int as n, min(po_id) as po_id from edges group by tb_id),
    deg_p as (select po_id, count(*)::int as n, min(tb_id) as tb_id from edges group by po_id)`;
}

/** The rule that names a link of `t` and `p` (aliases of records): the first whose keys are equal. */
export function firstMatchingRule(spec: MergeSpec): RawBuilder<string> {
  const cases = spec.rules.map(
    (rule) => sql`when t.${sql.ref(rule.column)} = p.${sql.ref(rule.column)} then ${rule.name}`,
  );
  return sql<string>`(case ${sql.join(cases, sql` `)} else ${spec.rules[0]?.name ?? ''} end)`;
}

/** Fetches many records of one type by id (one statement). */
export async function getMirrorRecords(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordIds: string[],
): Promise<RecordRow[]> {
  if (recordIds.length === 0) return [];
  return db
    .selectFrom('records')
    .selectAll()
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', 'in', recordIds)
    .execute();
}

export interface RecordKey {
  system: SystemName;
  recordType: string;
  recordId: string;
}

// Record locks take the two-key form, (space, hash of the record): PostgreSQL keeps two-key
// advisory locks apart from single bigint ones, so no other lock of ours or of another
// application on the same database can collide with a record's and block it.
const RECORD_LOCK_SPACE = 0x7462_706f;

/**
 * Serializes work on one record across replicas for the caller's transaction (a
 * transaction-scoped advisory lock on its key, released at commit).
 */
export async function lockRecordKey(
  db: DbOrTrx,
  system: SystemName,
  recordType: string,
  recordId: string,
): Promise<void> {
  await sql`select pg_advisory_xact_lock(${RECORD_LOCK_SPACE}, hashtext(${`${system}/${recordType}/${recordId}`}))`.execute(
    db,
  );
}

/**
 * Up to `limit` live, unlinked records of one side of a flow after `afterId` (keyset order)
 * that no merge rule matches with any record of the other side: the unmatched records a
 * create policy acts on.
 */
export async function listUnmatchedRecords(
  db: DbOrTrx,
  spec: MergeSpec,
  side: SystemName,
  afterId: string | null,
  limit: number,
): Promise<RecordRow[]> {
  const [mine, other, otherSystem, linkColumn] =
    side === 'tidsbanken'
      ? [spec.tidsbankenType, spec.powerofficeType, 'poweroffice', 'tidsbanken_id']
      : [spec.powerofficeType, spec.tidsbankenType, 'tidsbanken', 'poweroffice_id'];
  const unmatched = spec.rules.map(
    (rule) => sql`not exists (
      select 1 from records o
      where o.system = ${otherSystem} and o.record_type = ${other} and o.deleted_at is null
        and o.${sql.ref(rule.column)} = r.${sql.ref(rule.column)})`,
  );
  const result = await sql<RecordRow>`
    select r.* from records r
    where r.system = ${side} and r.record_type = ${mine} and r.deleted_at is null
      and r.record_id > ${afterId ?? ''}
      and not exists (
        select 1 from links l
        where l.flow = ${spec.flow} and l.unlinked_at is null and l.${sql.ref(linkColumn)} = r.record_id)
      and ${sql.join(unmatched, sql` and `)}
    order by r.record_id
    limit ${limit}`.execute(db);
  return result.rows;
}

/**
 * Live, unlinked PowerOffice records of a flow whose origin field carries one of our origin
 * ids (`prefix` + a Tidsbanken id): the records we created, which link by that id.
 */
export async function listRecordsWithOrigin(
  db: DbOrTrx,
  spec: MergeSpec,
  originField: string,
  prefix: string,
): Promise<RecordRow[]> {
  const result = await sql<RecordRow>`
    select r.* from records r
    where r.system = 'poweroffice' and r.record_type = ${spec.powerofficeType}
      and r.deleted_at is null
      and left(r.data->>${originField}, ${prefix.length}) = ${prefix}
      and not exists (
        select 1 from links l
        where l.flow = ${spec.flow} and l.unlinked_at is null and l.poweroffice_id = r.record_id)
    order by r.record_id`.execute(db);
  return result.rows;
}

/**
 * Live, unlinked Tidsbanken records of a flow that a create command of ours made (from a
 * PowerOffice record): they link to that record by the command's origin.
 */
export async function listRecordsCreatedByUs(db: DbOrTrx, spec: MergeSpec): Promise<RecordRow[]> {
  const result = await sql<RecordRow>`
    select r.* from records r
    where r.system = 'tidsbanken' and r.record_type = ${spec.tidsbankenType}
      and r.deleted_at is null
      and exists (
        select 1 from outbound_commands c
        where c.system = 'tidsbanken' and c.record_type = ${spec.tidsbankenType}
          and c.record_id = r.record_id and c.flow = ${spec.flow} and c.operation = 'create'
          and c.status in ('pending', 'sending', 'sent', 'dry_run')
          and c.origin_record_id is not null)
      and not exists (
        select 1 from links l
        where l.flow = ${spec.flow} and l.unlinked_at is null and l.tidsbanken_id = r.record_id)
    order by r.record_id`.execute(db);
  return result.rows;
}

/**
 * Refreshes the planner's statistics of the mirror and the links. A first read fills the
 * mirror faster than autovacuum notices: without this the planner takes a freshly filled
 * table for a nearly empty one, and the sweep's joins turn into nested loops over every pair.
 */
export async function analyzeMirror(db: DbOrTrx): Promise<void> {
  await sql`analyze records, links`.execute(db);
}

/**
 * For the rest of the caller's transaction, no nested-loop joins: the sweep's statements join
 * the whole mirror with itself, and the planner, estimating the match graph's CTEs at a row or
 * two, nested-looped a re-aggregated CTE once per record (10 000 Ansatte: 70 s in one
 * statement instead of under one). Hash joins over the mirror are the bulk plan either way.
 */
export async function preferHashJoins(db: DbOrTrx): Promise<void> {
  await sql`set local enable_nestloop = off`.execute(db);
}
