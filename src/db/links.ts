import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import { firstMatchingRule, mergeDegrees, type MergeSpec } from './records.js';
import type { LinkRow, RecordRow, SystemName } from './schema.js';

export async function findActiveLink(
  db: DbOrTrx,
  flow: string,
  side: SystemName,
  recordId: string,
): Promise<LinkRow | undefined> {
  return db
    .selectFrom('links')
    .selectAll()
    .where('flow', '=', flow)
    .where(side === 'tidsbanken' ? 'tidsbanken_id' : 'poweroffice_id', '=', recordId)
    .where('unlinked_at', 'is', null)
    .executeTakeFirst();
}

/** Locks the link row for the caller's transaction (two records of one link never race). */
export async function lockLink(db: DbOrTrx, id: string): Promise<LinkRow | undefined> {
  return db.selectFrom('links').selectAll().where('id', '=', id).forUpdate().executeTakeFirst();
}

export interface NewLink {
  flow: string;
  tidsbankenType: string;
  tidsbankenId: string;
  powerofficeType: string;
  powerofficeId: string;
  powerofficeParentId: string | null;
  linkedBy: string;
}

/** Inserts a link unless either record is already linked in this flow; undefined then. */
export async function insertLink(db: DbOrTrx, link: NewLink): Promise<LinkRow | undefined> {
  return db
    .insertInto('links')
    .values({
      flow: link.flow,
      tidsbanken_type: link.tidsbankenType,
      tidsbanken_id: link.tidsbankenId,
      poweroffice_type: link.powerofficeType,
      poweroffice_id: link.powerofficeId,
      poweroffice_parent_id: link.powerofficeParentId,
      linked_by: link.linkedBy,
      shadow: '{}',
    })
    .onConflict((oc) => oc.doNothing())
    .returningAll()
    .executeTakeFirst();
}

export async function updateLinkState(
  db: DbOrTrx,
  id: string,
  state: { shadow: Record<string, unknown>; inflight: Record<string, unknown>; synced: boolean },
): Promise<void> {
  await db
    .updateTable('links')
    .set({
      shadow: JSON.stringify(state.shadow),
      inflight: JSON.stringify(state.inflight),
      updated_at: sql<Date>`now()`,
      ...(state.synced ? { last_synced_at: sql<Date>`now()` } : {}),
    })
    .where('id', '=', id)
    .execute();
}

export async function setLinkInflight(
  db: DbOrTrx,
  id: string,
  inflight: Record<string, unknown>,
): Promise<void> {
  await db
    .updateTable('links')
    .set({ inflight: JSON.stringify(inflight), updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .execute();
}

export async function unlinkLink(db: DbOrTrx, id: string, reason: string): Promise<void> {
  await db
    .updateTable('links')
    .set({ unlinked_at: sql<Date>`now()`, unlink_reason: reason, updated_at: sql<Date>`now()` })
    .where('id', '=', id)
    .execute();
}

/**
 * Links every one-to-one merge-rule match of a flow in one statement (docs/ARCHITECTURE.md "Linking"): a pair
 * links when each record is the only live match of the other over the whole mirror (a pair
 * held apart is no match: `mergeDegrees`) and neither is linked in the flow yet. In the same statement it closes the two records' open
 * ambiguous-match conflicts and writes the 'link' audit entry of each side. Returns how many
 * links it made.
 */
export async function insertMergeRuleLinks(db: DbOrTrx, spec: MergeSpec): Promise<number> {
  const result = await sql<{ made: number }>`
    with ${mergeDegrees(spec)},
    pairs as (
      select dt.tb_id, dt.po_id
      from deg_t dt join deg_p dp on dp.po_id = dt.po_id and dp.tb_id = dt.tb_id
      where dt.n = 1 and dp.n = 1
        and not exists (select 1 from links l where l.flow = ${spec.flow}
          and l.unlinked_at is null and l.tidsbanken_id = dt.tb_id)
        and not exists (select 1 from links l where l.flow = ${spec.flow}
          and l.unlinked_at is null and l.poweroffice_id = dt.po_id)
    ),
    made as (
      insert into links (flow, tidsbanken_type, tidsbanken_id, poweroffice_type, poweroffice_id,
                         poweroffice_parent_id, linked_by, shadow)
      select ${spec.flow}, ${spec.tidsbankenType}, pr.tb_id, ${spec.powerofficeType}, pr.po_id,
             p.parent_id, ${firstMatchingRule(spec)}, '{}'::jsonb
      from pairs pr
      join records t on t.system = 'tidsbanken' and t.record_type = ${spec.tidsbankenType}
        and t.record_id = pr.tb_id
      join records p on p.system = 'poweroffice' and p.record_type = ${spec.powerofficeType}
        and p.record_id = pr.po_id
      order by pr.tb_id
      on conflict do nothing
      returning id, tidsbanken_id, poweroffice_id, linked_by
    ),
    sides as (
      select id, linked_by, tidsbanken_id, poweroffice_id,
             'tidsbanken' as system, ${spec.tidsbankenType} as record_type, tidsbanken_id as record_id
      from made
      union all
      select id, linked_by, tidsbanken_id, poweroffice_id,
             'poweroffice', ${spec.powerofficeType}, poweroffice_id
      from made
    ),
    resolved as (
      update conflicts c
      set status = 'resolved', resolved_at = now(), resolution = 'linked by ' || s.linked_by
      from sides s
      where c.flow = ${spec.flow} and c.kind = 'ambiguous_match' and c.status = 'open'
        and c.system = s.system and c.record_type = s.record_type and c.record_id = s.record_id
    ),
    audited as (
      insert into audit_entries (system, record_type, record_id, kind, flow, link_id, detail)
      select s.system, s.record_type, s.record_id, 'link', ${spec.flow}, s.id,
             jsonb_build_object('linkedBy', s.linked_by, 'tidsbankenId', s.tidsbanken_id,
                                'powerofficeId', s.poweroffice_id)
      from sides s
    )
    select count(*)::int as made from made`.execute(db);
  return result.rows[0]?.made ?? 0;
}

/** The highest link id so far ('0' when there is none): links made later have higher ids. */
export async function getMaxLinkId(db: DbOrTrx): Promise<string> {
  const row = await sql<{ id: string }>`select coalesce(max(id), 0)::text as id from links`.execute(
    db,
  );
  return row.rows[0]?.id ?? '0';
}

/**
 * Locks and returns up to `limit` active links of a flow with an id above `afterId` that were
 * never synced, in id order.
 */
export async function lockUnsyncedLinks(
  db: DbOrTrx,
  flow: string,
  afterId: string,
  limit: number,
): Promise<LinkRow[]> {
  return db
    .selectFrom('links')
    .selectAll()
    .where('flow', '=', flow)
    .where('id', '>', afterId)
    .where('unlinked_at', 'is', null)
    .where('last_synced_at', 'is', null)
    .orderBy('id')
    .limit(limit)
    .forUpdate()
    .execute();
}

/** Many links' shadow and in-flight state at once, all marked synced now. */
export async function updateLinkStates(
  db: DbOrTrx,
  states: { id: string; shadow: Record<string, unknown>; inflight: Record<string, unknown> }[],
): Promise<void> {
  if (states.length === 0) return;
  await sql`
    update links
    set shadow = v.shadow, inflight = v.inflight, last_synced_at = now(), updated_at = now()
    from jsonb_to_recordset(${JSON.stringify(states)}::jsonb)
      as v(id bigint, shadow jsonb, inflight jsonb)
    where links.id = v.id`.execute(db);
}

export interface LinkFilter {
  flow?: string | undefined;
  tidsbankenId?: string | undefined;
  powerofficeId?: string | undefined;
  /** Unlinked (historical) links too; active ones only by default. */
  includeUnlinked?: boolean | undefined;
  /** An id of either side, an e-mail address or part of a name (the mirror's records). */
  search?: string | undefined;
  /** Keyset paging: only links older than this id (the last one of the previous page). */
  before?: string | undefined;
  limit: number;
}

/** Newest first; one more row than `limit` when there is a next page. */
export async function listLinks(db: DbOrTrx, filter: LinkFilter): Promise<LinkRow[]> {
  let query = db.selectFrom('links').selectAll('links');
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.tidsbankenId !== undefined)
    query = query.where('tidsbanken_id', '=', filter.tidsbankenId);
  if (filter.powerofficeId !== undefined)
    query = query.where('poweroffice_id', '=', filter.powerofficeId);
  if (filter.includeUnlinked !== true) query = query.where('unlinked_at', 'is', null);
  if (filter.before !== undefined) query = query.where('id', '<', filter.before);
  if (filter.search !== undefined) {
    const term = filter.search.trim();
    const pattern = `%${term.replace(/[\\%_]/g, (c) => `\\${c}`)}%`;
    query = query.where(
      sql<boolean>`(links.tidsbanken_id = ${term} or links.poweroffice_id = ${term}
        or exists (
          select 1 from records r
           where ((r.system = 'tidsbanken' and r.record_type = links.tidsbanken_type
                    and r.record_id = links.tidsbanken_id)
               or (r.system = 'poweroffice' and r.record_type = links.poweroffice_type
                    and r.record_id = links.poweroffice_id))
             and (r.email_key = lower(${term})
               or concat_ws(' ', r.data->>'Fornavn', r.data->>'Etternavn', r.data->>'Navn',
                    r.data->>'FirstName', r.data->>'LastName', r.data->>'Name') ilike ${pattern})))`,
    );
  }
  return query
    .orderBy('id', 'desc')
    .limit(filter.limit + 1)
    .execute();
}

/**
 * Records of one side of a flow that have no active link in it, by record id (keyset:
 * `after` is the last id of the previous page); one more than `limit` when there is more.
 */
export async function listUnlinkedRecords(
  db: DbOrTrx,
  filter: {
    flow: string;
    system: SystemName;
    recordType: string;
    after?: string | undefined;
    limit: number;
  },
): Promise<RecordRow[]> {
  const column = filter.system === 'tidsbanken' ? 'tidsbanken_id' : 'poweroffice_id';
  let query = db
    .selectFrom('records')
    .selectAll('records')
    .where('system', '=', filter.system)
    .where('record_type', '=', filter.recordType)
    .where('deleted_at', 'is', null)
    .where((eb) =>
      eb.not(
        eb.exists(
          eb
            .selectFrom('links')
            .select('links.id')
            .where('links.flow', '=', filter.flow)
            .where('links.unlinked_at', 'is', null)
            .whereRef(`links.${column}`, '=', 'records.record_id'),
        ),
      ),
    );
  if (filter.after !== undefined) query = query.where('record_id', '>', filter.after);
  return query
    .orderBy('record_id')
    .limit(filter.limit + 1)
    .execute();
}

/** Which of `ids` on one side are linked in any flow, as (record type, id) pairs. */
export async function findLinkedRecords(
  db: DbOrTrx,
  side: SystemName,
  ids: readonly string[],
): Promise<{ recordType: string; recordId: string }[]> {
  if (ids.length === 0) return [];
  const column = side === 'tidsbanken' ? 'tidsbanken_id' : 'poweroffice_id';
  const typeColumn = side === 'tidsbanken' ? 'tidsbanken_type' : 'poweroffice_type';
  const rows = await db
    .selectFrom('links')
    .select([column, typeColumn])
    .where(column, 'in', ids)
    .where('unlinked_at', 'is', null)
    .execute();
  return rows.map((row) => {
    const r = row as Record<string, string>;
    return { recordType: r[typeColumn]!, recordId: r[column]! };
  });
}

export async function getLink(db: DbOrTrx, id: string): Promise<LinkRow | undefined> {
  return db.selectFrom('links').selectAll().where('id', '=', id).executeTakeFirst();
}

/**
 * The counterparts of `ids` (records of `side`) in a flow's active links: id → the other
 * side's id. Ids without a link are absent.
 */
export async function findLinkedCounterparts(
  db: DbOrTrx,
  flow: string,
  side: SystemName,
  ids: readonly string[],
): Promise<Map<string, string>> {
  if (ids.length === 0) return new Map();
  const rows = await db
    .selectFrom('links')
    .select(['tidsbanken_id', 'poweroffice_id'])
    .where('flow', '=', flow)
    .where(side === 'tidsbanken' ? 'tidsbanken_id' : 'poweroffice_id', 'in', [...new Set(ids)])
    .where('unlinked_at', 'is', null)
    .execute();
  return new Map(
    rows.map((r) =>
      side === 'tidsbanken'
        ? [r.tidsbanken_id, r.poweroffice_id]
        : [r.poweroffice_id, r.tidsbanken_id],
    ),
  );
}
