import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { getLink } from '../db/links.js';
import { claimResolvableWaits, deleteReferenceWaits } from '../db/reference-waits.js';
import type { Logger } from '../lib/logger.js';
import { flowById } from './flows.js';
import { syncLink } from './link.js';

// Waiting references are resolved from the state, not from the event that made a link: any
// link in the referenced flow — made by a record's own linking, the set-based sweep, an
// operator's manual link or a create — turns its waits resolvable, and this finds them by a
// join of the waits to the links.

export interface ResolveDeps {
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
}

/**
 * Resyncs links whose waiting references can now be translated: up to `limit` of them, one
 * transaction each. Returns how many it resynced.
 */
export async function resolveWaitingReferences(deps: ResolveDeps, limit = 50): Promise<number> {
  let done = 0;
  for (;;) {
    const synced = await deps.db.transaction().execute(async (trx) => {
      const [linkId] = await claimResolvableWaits(trx, 1);
      if (linkId === undefined) return false;
      const link = await getLink(trx, linkId);
      const flow = link === undefined ? undefined : flowById(link.flow);
      // The sync records which waits remain and which ended. A link that cannot sync now
      // (unlinked, a record gone) keeps none: its next sync records them anew.
      const outcome =
        flow === undefined
          ? undefined
          : await syncLink({ db: trx, config: deps.config, logger: deps.logger }, flow, linkId);
      if (outcome?.synced !== true) await deleteReferenceWaits(trx, linkId);
      return true;
    });
    if (!synced) return done;
    done++;
    if (done >= limit) return done;
  }
}
