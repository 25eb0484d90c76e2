import type { DbOrTrx } from './database.js';
import type { SystemName } from './schema.js';

// Pairs an operator unlinked (README "The admin API"): no merge rule links them
// again, only a manual link, which removes the hold.

export interface LinkHold {
  flow: string;
  tidsbankenId: string;
  powerofficeId: string;
  linkId: string | null;
}

export async function insertLinkHold(db: DbOrTrx, hold: LinkHold): Promise<void> {
  await db
    .insertInto('link_holds')
    .values({
      flow: hold.flow,
      tidsbanken_id: hold.tidsbankenId,
      poweroffice_id: hold.powerofficeId,
      link_id: hold.linkId,
    })
    .onConflict((oc) => oc.doNothing())
    .execute();
}

export async function deleteLinkHold(
  db: DbOrTrx,
  flow: string,
  tidsbankenId: string,
  powerofficeId: string,
): Promise<void> {
  await db
    .deleteFrom('link_holds')
    .where('flow', '=', flow)
    .where('tidsbanken_id', '=', tidsbankenId)
    .where('poweroffice_id', '=', powerofficeId)
    .execute();
}

/** The records of the other side that `recordId` (on `side`) is held apart from. */
export async function listHeldApart(
  db: DbOrTrx,
  flow: string,
  side: SystemName,
  recordId: string,
): Promise<Set<string>> {
  const rows = await db
    .selectFrom('link_holds')
    .select(['tidsbanken_id', 'poweroffice_id'])
    .where('flow', '=', flow)
    .where(side === 'tidsbanken' ? 'tidsbanken_id' : 'poweroffice_id', '=', recordId)
    .execute();
  return new Set(rows.map((r) => (side === 'tidsbanken' ? r.poweroffice_id : r.tidsbanken_id)));
}
