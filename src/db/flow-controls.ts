import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { Selectable } from 'kysely';
import type { FlowControlsTable } from './schema.js';

export type FlowControlRow = Selectable<FlowControlsTable>;

/** Every flow an operator has paused or resumed (flows never touched have no row). */
export async function listFlowControls(db: DbOrTrx): Promise<FlowControlRow[]> {
  return db.selectFrom('flow_controls').selectAll().orderBy('flow').execute();
}

/** Pauses or resumes a flow; answers the stored row. Pausing a paused flow keeps its time. */
export async function setFlowPaused(
  db: DbOrTrx,
  flow: string,
  paused: boolean,
): Promise<FlowControlRow> {
  return db
    .insertInto('flow_controls')
    .values({ flow, paused_at: paused ? sql<Date>`now()` : null })
    .onConflict((oc) =>
      oc.column('flow').doUpdateSet({
        paused_at: paused ? sql<Date>`coalesce(flow_controls.paused_at, now())` : null,
        updated_at: sql<Date>`now()`,
      }),
    )
    .returningAll()
    .executeTakeFirstOrThrow();
}
