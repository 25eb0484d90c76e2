import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
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
  limit: number;
}

export async function listConflicts(db: DbOrTrx, filter: ConflictFilter): Promise<ConflictRow[]> {
  let query = db.selectFrom('conflicts').selectAll();
  if (filter.flow !== undefined) query = query.where('flow', '=', filter.flow);
  if (filter.kind !== undefined) query = query.where('kind', '=', filter.kind);
  if (filter.status !== undefined) query = query.where('status', '=', filter.status);
  return query.orderBy('id', 'desc').limit(filter.limit).execute();
}
