import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { LinkRow, SystemName } from './schema.js';

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

export async function listActiveLinkIds(
  db: DbOrTrx,
  flow: string,
  side: SystemName,
): Promise<Set<string>> {
  const column = side === 'tidsbanken' ? 'tidsbanken_id' : 'poweroffice_id';
  const rows = await db
    .selectFrom('links')
    .select(column)
    .where('flow', '=', flow)
    .where('unlinked_at', 'is', null)
    .execute();
  return new Set(rows.map((r) => (r as Record<string, string>)[column]!));
}

export interface LinkFilter {
  flow?: string | undefined;
  tidsbankenId?: string | undefined;
  powerofficeId?: string | undefined;
  /** Unlinked (historical) links too; active ones only by default. */
  includeUnlinked?: boolean | undefined;
  limit: number;
}

export async function listLinks(db: DbOrTrx, filter: LinkFilter): Promise<LinkRow[]> {
  let query = db.selectFrom('links').selectAll();
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.tidsbankenId !== undefined)
    query = query.where('tidsbanken_id', '=', filter.tidsbankenId);
  if (filter.powerofficeId !== undefined)
    query = query.where('poweroffice_id', '=', filter.powerofficeId);
  if (filter.includeUnlinked !== true) query = query.where('unlinked_at', 'is', null);
  return query.orderBy('id', 'desc').limit(filter.limit).execute();
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
