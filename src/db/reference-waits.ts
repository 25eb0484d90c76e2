import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { SystemName } from './schema.js';

// Reference fields waiting for a link (one row per link and field): the record a reference
// names has no link in the referenced flow yet, so the field is not written. Whichever way
// that link is made later, `listResolvableWaits` finds the wait by joining to the links.

export interface ReferenceWait {
  linkId: string;
  /** The field's key in the flow. */
  field: string;
  /** The flow the named record must be linked in. */
  flow: string;
  /** The side holding the id, and the id. */
  system: SystemName;
  id: string;
}

const keyOf = (w: ReferenceWait) => `${w.linkId}/${w.field}`;
const sameWait = (a: ReferenceWait, b: ReferenceWait) =>
  a.flow === b.flow && a.system === b.system && a.id === b.id;

/**
 * Makes `waits` the whole set of waits of these links. Returns the waits that are new (not
 * there before) and the ones that ended (there before, not now).
 */
export async function replaceReferenceWaits(
  db: DbOrTrx,
  linkIds: readonly string[],
  waits: readonly ReferenceWait[],
): Promise<{ started: ReferenceWait[]; ended: ReferenceWait[] }> {
  if (linkIds.length === 0) return { started: [], ended: [] };
  const before = (
    await db
      .selectFrom('reference_waits')
      .selectAll()
      .where('link_id', 'in', [...linkIds])
      .execute()
  ).map((r): ReferenceWait => ({
    linkId: String(r.link_id),
    field: r.field,
    flow: r.ref_flow,
    system: r.ref_system,
    id: r.ref_id,
  }));
  const old = new Map(before.map((w) => [keyOf(w), w]));
  const now = new Map(waits.map((w) => [keyOf(w), w]));
  const started = waits.filter((w) => {
    const held = old.get(keyOf(w));
    return held === undefined || !sameWait(held, w);
  });
  const ended = before.filter((w) => {
    const next = now.get(keyOf(w));
    return next === undefined || !sameWait(next, w);
  });
  if (started.length === 0 && ended.length === 0) return { started, ended };
  if (ended.length > 0) {
    await db
      .deleteFrom('reference_waits')
      .where((eb) =>
        eb.or(ended.map((w) => eb.and([eb('link_id', '=', w.linkId), eb('field', '=', w.field)]))),
      )
      .execute();
  }
  if (started.length > 0) {
    await db
      .insertInto('reference_waits')
      .values(
        started.map((w) => ({
          link_id: w.linkId,
          field: w.field,
          ref_flow: w.flow,
          ref_system: w.system,
          ref_id: w.id,
        })),
      )
      .onConflict((oc) =>
        oc.columns(['link_id', 'field']).doUpdateSet((eb) => ({
          ref_flow: eb.ref('excluded.ref_flow'),
          ref_system: eb.ref('excluded.ref_system'),
          ref_id: eb.ref('excluded.ref_id'),
          created_at: sql<Date>`now()`,
        })),
      )
      .execute();
  }
  return { started, ended };
}

/**
 * Links with a wait whose named record is now linked in the referenced flow, by whatever
 * path that link was made; up to `limit`, locked (SKIP LOCKED) for the caller's transaction.
 */
export async function claimResolvableWaits(db: DbOrTrx, limit: number): Promise<string[]> {
  const rows = await sql<{ link_id: string }>`
    select w.link_id::text as link_id
    from reference_waits w
    where exists (
      select 1 from links l
      where l.flow = w.ref_flow and l.unlinked_at is null
        and ((w.ref_system = 'tidsbanken' and l.tidsbanken_id = w.ref_id)
          or (w.ref_system = 'poweroffice' and l.poweroffice_id = w.ref_id)))
    order by w.link_id
    limit ${limit}
    for update of w skip locked`.execute(db);
  return [...new Set(rows.rows.map((r) => r.link_id))];
}

/** Drops the waits of one link (it is about to be synced again, which records them anew). */
export async function deleteReferenceWaits(db: DbOrTrx, linkId: string): Promise<void> {
  await db.deleteFrom('reference_waits').where('link_id', '=', linkId).execute();
}
