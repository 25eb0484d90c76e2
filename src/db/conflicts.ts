import { sql, type RawBuilder } from 'kysely';
import type { DbOrTrx } from './database.js';
import { mergeDegrees, type MergeSpec } from './records.js';
import type { ConflictRow, SystemName } from './schema.js';

export async function insertFieldConflict(
  db: DbOrTrx,
  conflict: {
    flow: string;
    system: SystemName;
    recordType: string;
    recordId: string;
    linkId: string;
    field: string;
    tidsbankenValue: unknown;
    powerofficeValue: unknown;
    resolution: string;
  },
): Promise<string> {
  // A field conflict is resolved the moment it is found (by policy): recorded as resolved.
  const row = await db
    .insertInto('conflicts')
    .values({
      flow: conflict.flow,
      kind: 'field_conflict',
      system: conflict.system,
      record_type: conflict.recordType,
      record_id: conflict.recordId,
      link_id: conflict.linkId,
      field: conflict.field,
      tidsbanken_value: JSON.stringify(conflict.tidsbankenValue ?? null),
      poweroffice_value: JSON.stringify(conflict.powerofficeValue ?? null),
      resolution: conflict.resolution,
      status: 'resolved',
      resolved_at: sql<Date>`now()`,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

/**
 * Records (or refreshes) the open ambiguous-match conflict of a record. One open conflict per
 * record and flow: the same ambiguity seen on every poll is not a new row.
 */
export async function upsertAmbiguousMatch(
  db: DbOrTrx,
  conflict: {
    flow: string;
    system: SystemName;
    recordType: string;
    recordId: string;
    candidates: unknown[];
    reason: string;
  },
): Promise<{ id: string; created: boolean }> {
  const existing = await db
    .selectFrom('conflicts')
    .select(['id', 'candidates'])
    .where('flow', '=', conflict.flow)
    .where('kind', '=', 'ambiguous_match')
    .where('system', '=', conflict.system)
    .where('record_type', '=', conflict.recordType)
    .where('record_id', '=', conflict.recordId)
    .where('status', '=', 'open')
    .executeTakeFirst();
  const candidates = JSON.stringify(conflict.candidates);
  if (existing !== undefined) {
    if (JSON.stringify(existing.candidates) !== candidates) {
      await db
        .updateTable('conflicts')
        .set({ candidates, resolution: conflict.reason })
        .where('id', '=', existing.id)
        .execute();
    }
    return { id: existing.id, created: false };
  }
  const row = await db
    .insertInto('conflicts')
    .values({
      flow: conflict.flow,
      kind: 'ambiguous_match',
      system: conflict.system,
      record_type: conflict.recordType,
      record_id: conflict.recordId,
      candidates,
      resolution: conflict.reason,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, created: true };
}

/** A record that now links cleanly closes its open ambiguous-match conflicts. */
export async function resolveAmbiguousMatches(
  db: DbOrTrx,
  flow: string,
  system: SystemName,
  recordType: string,
  recordId: string,
  resolution: string,
): Promise<void> {
  await db
    .updateTable('conflicts')
    .set({ status: 'resolved', resolved_at: sql<Date>`now()`, resolution })
    .where('flow', '=', flow)
    .where('kind', '=', 'ambiguous_match')
    .where('system', '=', system)
    .where('record_type', '=', recordType)
    .where('record_id', '=', recordId)
    .where('status', '=', 'open')
    .execute();
}

export interface ConflictFilter {
  flow?: string | undefined;
  kind?: ConflictRow['kind'] | undefined;
  status?: ConflictRow['status'] | undefined;
  system?: SystemName | undefined;
  recordId?: string | undefined;
  before?: string | undefined;
  limit: number;
}

export async function listConflicts(db: DbOrTrx, filter: ConflictFilter): Promise<ConflictRow[]> {
  let query = db.selectFrom('conflicts').selectAll();
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  if (filter.system !== undefined) query = query.where('system', '=', filter.system);
  if (filter.recordId !== undefined) query = query.where('record_id', '=', filter.recordId);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

export async function getConflict(db: DbOrTrx, id: string): Promise<ConflictRow | undefined> {
  return db.selectFrom('conflicts').selectAll().where('id', '=', id).executeTakeFirst();
}

/** Closes an open conflict by hand; undefined when it is unknown or not open. */
export async function dismissConflict(
  db: DbOrTrx,
  id: string,
  resolution: string,
): Promise<ConflictRow | undefined> {
  return db
    .updateTable('conflicts')
    .set({ status: 'resolved', resolved_at: sql<Date>`now()`, resolution })
    .where('id', '=', id)
    .where('status', '=', 'open')
    .returningAll()
    .executeTakeFirst();
}

/**
 * Records the ambiguous matches of a flow in one statement (docs/ARCHITECTURE.md "Linking"), for every live,
 * unlinked record on either side that some merge rule matches but that cannot link:
 * - it matches several records ('several records match'; candidates: those records);
 * - its one match also matches other records on its own side ('the counterpart matches
 *   several records on this side'; candidates: the match, then those others);
 * - its one match is linked already ('the counterpart is already linked to <side> <id>';
 *   candidates: the match and the record it is linked to).
 * One open conflict per record: an existing one gets the new candidates when they changed;
 * a new one gets its 'conflict' audit entry. Candidates are ordered by record id. Run after
 * `insertMergeRuleLinks`. Returns how many records are ambiguous and how many conflicts are new.
 */
export async function upsertAmbiguousMatches(
  db: DbOrTrx,
  spec: MergeSpec,
): Promise<{ ambiguous: number; created: number }> {
  const obj = (system: SystemName, id: RawBuilder<unknown>) =>
    sql`jsonb_build_object('system', ${system}::text, 'recordId', ${id})`;
  const result = await sql<{ ambiguous: number; created: number }>`
    with ${mergeDegrees(spec)},
    active as (
      select tidsbanken_id, poweroffice_id from links
      where flow = ${spec.flow} and unlinked_at is null
    ),
    outcome as (
      select 'tidsbanken' as system, ${spec.tidsbankenType} as record_type, dt.tb_id as record_id,
        case
          when dt.n > 1 then 'several records match'
          when dp.n > 1 then 'the counterpart matches several records on this side'
          else 'the counterpart is already linked to tidsbanken ' || a.tidsbanken_id
        end as reason,
        case
          when dt.n > 1 then (
            select jsonb_agg(${obj('poweroffice', sql`e.po_id`)} order by e.po_id)
            from edges e where e.tb_id = dt.tb_id)
          when dp.n > 1 then jsonb_build_array(${obj('poweroffice', sql`dt.po_id`)}) || (
            select jsonb_agg(${obj('tidsbanken', sql`e.tb_id`)} order by e.tb_id)
            from edges e where e.po_id = dt.po_id and e.tb_id <> dt.tb_id)
          else jsonb_build_array(${obj('poweroffice', sql`dt.po_id`)},
                                 ${obj('tidsbanken', sql`a.tidsbanken_id`)})
        end as candidates
      from deg_t dt
      join deg_p dp on dp.po_id = dt.po_id
      left join active a on a.poweroffice_id = dt.po_id
      where not exists (select 1 from active x where x.tidsbanken_id = dt.tb_id)
        and (dt.n > 1 or dp.n > 1 or a.tidsbanken_id is not null)
      union all
      select 'poweroffice', ${spec.powerofficeType}, dp.po_id,
        case
          when dp.n > 1 then 'several records match'
          when dt.n > 1 then 'the counterpart matches several records on this side'
          else 'the counterpart is already linked to poweroffice ' || a.poweroffice_id
        end,
        case
          when dp.n > 1 then (
            select jsonb_agg(${obj('tidsbanken', sql`e.tb_id`)} order by e.tb_id)
            from edges e where e.po_id = dp.po_id)
          when dt.n > 1 then jsonb_build_array(${obj('tidsbanken', sql`dp.tb_id`)}) || (
            select jsonb_agg(${obj('poweroffice', sql`e.po_id`)} order by e.po_id)
            from edges e where e.tb_id = dp.tb_id and e.po_id <> dp.po_id)
          else jsonb_build_array(${obj('tidsbanken', sql`dp.tb_id`)},
                                 ${obj('poweroffice', sql`a.poweroffice_id`)})
        end
      from deg_p dp
      join deg_t dt on dt.tb_id = dp.tb_id
      left join active a on a.tidsbanken_id = dp.tb_id
      where not exists (select 1 from active x where x.poweroffice_id = dp.po_id)
        and (dp.n > 1 or dt.n > 1 or a.poweroffice_id is not null)
    ),
    refreshed as (
      update conflicts c set candidates = o.candidates, resolution = o.reason
      from outcome o
      where c.flow = ${spec.flow} and c.kind = 'ambiguous_match' and c.status = 'open'
        and c.system = o.system and c.record_type = o.record_type and c.record_id = o.record_id
        and c.candidates is distinct from o.candidates
    ),
    created as (
      insert into conflicts (flow, kind, system, record_type, record_id, candidates, resolution)
      select ${spec.flow}, 'ambiguous_match', o.system, o.record_type, o.record_id, o.candidates,
             o.reason
      from outcome o
      where not exists (
        select 1 from conflicts c
        where c.flow = ${spec.flow} and c.kind = 'ambiguous_match' and c.status = 'open'
          and c.system = o.system and c.record_type = o.record_type and c.record_id = o.record_id)
      order by o.system desc, o.record_id
      returning system, record_type, record_id, candidates, resolution
    ),
    audited as (
      insert into audit_entries (system, record_type, record_id, kind, flow, detail)
      select system, record_type, record_id, 'conflict', ${spec.flow},
             jsonb_build_object('conflict', 'ambiguous_match', 'reason', resolution,
                                'candidates', candidates)
      from created
    )
    select (select count(*)::int from outcome) as ambiguous,
           (select count(*)::int from created) as created`.execute(db);
  return result.rows[0] ?? { ambiguous: 0, created: 0 };
}

export interface NewFieldConflict {
  flow: string;
  system: SystemName;
  recordType: string;
  recordId: string;
  linkId: string;
  field: string;
  tidsbankenValue: unknown;
  powerofficeValue: unknown;
  resolution: string;
}

/** Many field conflicts in one statement (each resolved by policy when found: see above). */
export async function insertFieldConflicts(
  db: DbOrTrx,
  conflicts: NewFieldConflict[],
): Promise<void> {
  // In slices: one statement's parameters are capped at 65 535.
  for (let i = 0; i < conflicts.length; i += 1000) {
    await insertFieldConflictSlice(db, conflicts.slice(i, i + 1000));
  }
}

async function insertFieldConflictSlice(db: DbOrTrx, conflicts: NewFieldConflict[]): Promise<void> {
  await db
    .insertInto('conflicts')
    .values(
      conflicts.map((c) => ({
        flow: c.flow,
        kind: 'field_conflict' as const,
        system: c.system,
        record_type: c.recordType,
        record_id: c.recordId,
        link_id: c.linkId,
        field: c.field,
        tidsbanken_value: JSON.stringify(c.tidsbankenValue ?? null),
        poweroffice_value: JSON.stringify(c.powerofficeValue ?? null),
        resolution: c.resolution,
        status: 'resolved' as const,
        resolved_at: sql<Date>`now()`,
      })),
    )
    .execute();
}
