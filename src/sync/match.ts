import type { Config } from '../config.js';
import { insertAuditEntries, type AuditEntry } from '../db/audit.js';
import { insertPendingUpdates, targetKey, upsertPendingUpdate } from '../db/commands.js';
import {
  insertFieldConflicts,
  upsertAmbiguousMatches,
  type NewFieldConflict,
} from '../db/conflicts.js';
import type { Db } from '../db/database.js';
import { insertMergeRuleLinks, lockUnsyncedLinks, updateLinkStates } from '../db/links.js';
import {
  getMirrorRecords,
  listRecordsCreatedByUs,
  listRecordsWithOrigin,
  listUnmatchedRecords,
  preferHashJoins,
  type MergeSpec,
} from '../db/records.js';
import type { LinkRow, RecordRow, SystemName } from '../db/schema.js';
import type { Logger } from '../lib/logger.js';
import { diffLink, type DiffResult, type Inflight } from './diff.js';
import { MERGE_RULE_KEY, type FlowDefinition, type MatchKeys } from './flows.js';
import {
  auditEntriesForLink,
  fieldConflictRow,
  markInflight,
  syncDecisionLog,
  syncDetail,
  updateTarget,
} from './link-entries.js';
import { createsFrom, syncLink, tryLink, type SyncContext } from './link.js';
import { recordReferenceWaits, referenceTranslator } from './references.js';

// Set-based linking (docs/ARCHITECTURE.md "Linking") for the link sweep: the whole mirror of a flow
// is matched in one statement instead of record by record, and the new links get their first sync
// in batches. The semantics are those of `tryLink` over the whole mirror: a pair links only when
// each is the other's one and only match and neither is linked yet; every other matched, unlinked
// record gets an ambiguous_match conflict. The per-record path (`tryLink`) stays for what the
// worker sees one event at a time, for our own creates (linked by origin id) and for the create
// policies, which act per record.

/** The mirror column of each match key. */
const KEY_COLUMN = {
  email: 'email_key',
  nationalId: 'national_id_key',
  number: 'number_key',
  code: 'code_key',
} as const satisfies Record<keyof MatchKeys, MergeSpec['rules'][number]['column']>;

export function mergeSpecOf(flow: FlowDefinition): MergeSpec {
  return {
    flow: flow.id,
    tidsbankenType: flow.tidsbanken,
    powerofficeType: flow.poweroffice,
    rules: flow.mergeRules.map((name) => ({ name, column: KEY_COLUMN[MERGE_RULE_KEY[name]] })),
  };
}

export interface MatchDeps {
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
}

export interface MatchCounts {
  linksMade: number;
  conflicts: number;
  commandsQueued: number;
}

const SIDES = ['tidsbanken', 'poweroffice'] as const;

/** Records per transaction where the work is per record (creates, links by origin). */
const RECORD_CHUNK = 100;
/** Links per transaction in the first sync. */
export const SYNC_BATCH = 500;

async function perRecord(
  deps: MatchDeps,
  flow: FlowDefinition,
  side: SystemName,
  records: RecordRow[],
  gateOpen: boolean,
  counts: MatchCounts,
): Promise<void> {
  for (let i = 0; i < records.length; i += RECORD_CHUNK) {
    const chunk = records.slice(i, i + RECORD_CHUNK);
    const local = await deps.db.transaction().execute(async (trx) => {
      const c: MatchCounts = { linksMade: 0, conflicts: 0, commandsQueued: 0 };
      const ctx: SyncContext = { db: trx, config: deps.config, logger: deps.logger };
      for (const record of chunk) {
        const outcome = await tryLink(ctx, flow, side, record, gateOpen);
        if (outcome.conflict === true) c.conflicts++;
        if (outcome.commandQueued === true) c.commandsQueued++;
        if (outcome.link !== undefined) c.linksMade++;
      }
      return c;
    });
    counts.linksMade += local.linksMade;
    counts.conflicts += local.conflicts;
    counts.commandsQueued += local.commandsQueued;
  }
}

/**
 * Links one flow over the whole mirror: our own creates by their origin id first (they are
 * certain), then every one-to-one merge-rule match in one statement, then the ambiguous
 * matches in one statement, then the unmatched records the flow's create policy acts on.
 * The new links are not synced here: see `syncNewLinks`.
 */
export async function linkFlow(deps: MatchDeps, flow: FlowDefinition): Promise<MatchCounts> {
  const { db, logger } = deps;
  const spec = mergeSpecOf(flow);
  const counts: MatchCounts = { linksMade: 0, conflicts: 0, commandsQueued: 0 };

  // Records we created carry their origin: the per-record path links them (rare, small).
  const originField = flow.powerofficeOriginField;
  if (originField !== undefined) {
    await perRecord(
      deps,
      flow,
      'poweroffice',
      await listRecordsWithOrigin(db, spec, originField, flow.originPrefix),
      false,
      counts,
    );
  }
  await perRecord(deps, flow, 'tidsbanken', await listRecordsCreatedByUs(db, spec), false, counts);

  const { linked, ambiguous } = await db.transaction().execute(async (trx) => {
    await preferHashJoins(trx);
    const made = await insertMergeRuleLinks(trx, spec);
    const conflicts = await upsertAmbiguousMatches(trx, spec);
    return { linked: made, ambiguous: conflicts };
  });
  counts.linksMade += linked;
  counts.conflicts += ambiguous.ambiguous;
  logger.info(
    {
      flow: flow.id,
      decision: 'link_sweep_flow',
      linksMade: linked,
      ambiguous: ambiguous.ambiguous,
      newConflicts: ambiguous.created,
    },
    'merge rules applied over the whole mirror',
  );

  for (const side of ['tidsbanken', 'poweroffice'] as const) {
    if (!createsFrom(deps.config, flow, side)) continue;
    let after: string | null = null;
    for (;;) {
      const page = await listUnmatchedRecords(db, spec, side, after, RECORD_CHUNK * 10);
      if (page.length === 0) break;
      await perRecord(deps, flow, side, page, true, counts);
      after = page[page.length - 1]!.record_id;
    }
  }
  return counts;
}

/**
 * The first sync (docs/ARCHITECTURE.md "Linking") of every never-synced link of a flow made after
 * `afterLinkId`, SYNC_BATCH links per transaction: the mirror records of a batch are read in two
 * statements, diffed in memory, and their commands, link states, field conflicts and audit entries
 * are written in one statement each. A link whose target already has a pending update (another
 * flow's) or whose diff takes fields back out of a queued write goes through `syncLink`. `onBatch`
 * is told the running totals after each batch.
 */
export async function syncNewLinks(
  deps: MatchDeps,
  flow: FlowDefinition,
  afterLinkId: string,
  onBatch?: (counts: BatchCounts) => void,
): Promise<BatchCounts> {
  const totals = { synced: 0, commandsQueued: 0, conflicts: 0 };
  let after = afterLinkId;
  for (;;) {
    const batch = await deps.db.transaction().execute(async (trx) => {
      const links = await lockUnsyncedLinks(trx, flow.id, after, SYNC_BATCH);
      const ctx: SyncContext = { db: trx, config: deps.config, logger: deps.logger };
      return { links, counts: await firstSyncBatch(ctx, flow, links) };
    });
    if (batch.links.length === 0) break;
    after = batch.links[batch.links.length - 1]!.id;
    totals.synced += batch.counts.synced;
    totals.commandsQueued += batch.counts.commandsQueued;
    totals.conflicts += batch.counts.conflicts;
    onBatch?.({ ...totals });
  }
  return totals;
}

type BatchCounts = { synced: number; commandsQueued: number; conflicts: number };

/** A link of the batch whose first sync is written with the batch. */
interface Planned {
  link: LinkRow;
  result: DiffResult;
}

/** The batch's rows, written in one statement each. */
interface BatchRows {
  states: { id: string; shadow: Record<string, unknown>; inflight: Inflight }[];
  conflicts: NewFieldConflict[];
  audit: AuditEntry[];
}

const updatedAtMs = (row: RecordRow): number | undefined =>
  row.source_updated_at === null ? undefined : new Date(row.source_updated_at).getTime();

async function firstSyncBatch(
  ctx: SyncContext,
  flow: FlowDefinition,
  links: LinkRow[],
): Promise<BatchCounts> {
  const counts = { synced: 0, commandsQueued: 0, conflicts: 0 };
  if (links.length === 0) return counts;
  const { planned, oneByOne } = await planFirstSyncs(ctx, flow, links);
  const commandIds = await queueBatchUpdates(ctx, flow, planned);
  const rows: BatchRows = { states: [], conflicts: [], audit: [] };
  for (const { link, result } of planned) {
    const commands = collectFirstSync(ctx, flow, link, result, commandIds, rows);
    counts.synced++;
    counts.commandsQueued += commands.length;
    counts.conflicts += result.conflicts.length;
  }
  await updateLinkStates(ctx.db, rows.states);
  await insertFieldConflicts(ctx.db, rows.conflicts);
  await insertAuditEntries(ctx.db, rows.audit);
  await recordReferenceWaits(
    ctx,
    flow,
    planned.map((p) => ({ link: p.link, unresolved: p.result.unresolved })),
  );

  for (const link of oneByOne) {
    const outcome = await syncLink(ctx, flow, link.id);
    counts.synced++;
    counts.commandsQueued += outcome.commands.length;
    counts.conflicts += outcome.conflicts;
  }
  return counts;
}

/** The mirror records of the batch's links on both sides, by record id (two statements). */
async function readBatchRecords(ctx: SyncContext, flow: FlowDefinition, links: LinkRow[]) {
  const byId = (rows: RecordRow[]) => new Map(rows.map((r) => [r.record_id, r]));
  const ids = (side: SystemName) =>
    links.map((l) => (side === 'tidsbanken' ? l.tidsbanken_id : l.poweroffice_id));
  return {
    tbs: byId(await getMirrorRecords(ctx.db, 'tidsbanken', flow.tidsbanken, ids('tidsbanken'))),
    pos: byId(await getMirrorRecords(ctx.db, 'poweroffice', flow.poweroffice, ids('poweroffice'))),
  };
}

/**
 * Diffs each link of the batch in memory. A link whose records are not both read (or are
 * gone) waits, as in syncLink; one whose diff takes fields back out of a queued write goes
 * one by one through syncLink.
 */
async function planFirstSyncs(
  ctx: SyncContext,
  flow: FlowDefinition,
  links: LinkRow[],
): Promise<{ planned: Planned[]; oneByOne: LinkRow[] }> {
  const { tbs, pos } = await readBatchRecords(ctx, flow, links);
  const pairs = links.flatMap((link) => {
    const tb = tbs.get(link.tidsbanken_id);
    const po = pos.get(link.poweroffice_id);
    return tb && po ? [{ link, tb, po }] : [];
  });
  const translate = await referenceTranslator(
    ctx.db,
    flow,
    pairs.map(({ tb, po }) => ({ tidsbanken: tb.data, poweroffice: po.data })),
  );
  const planned: Planned[] = [];
  const oneByOne: LinkRow[] = [];
  for (const { link, tb, po } of pairs) {
    if (tb.deleted_at !== null || po.deleted_at !== null) continue;
    const result = diffLink({
      flow,
      tidsbanken: { record: tb.data, updatedAt: updatedAtMs(tb) },
      poweroffice: { record: po.data, updatedAt: updatedAtMs(po) },
      shadow: undefined,
      inflight: link.inflight,
      policy: ctx.config.conflictPolicy,
      translate,
    });
    if (result.drops.tidsbanken.length > 0 || result.drops.poweroffice.length > 0) {
      oneByOne.push(link);
    } else {
      planned.push({ link, result });
    }
  }
  return { planned, oneByOne };
}

/**
 * The batch's update commands in one insert, by target key. A target with a pending update
 * already (written by another flow of the same record) is folded into it, as
 * upsertPendingUpdate does.
 */
async function queueBatchUpdates(
  ctx: SyncContext,
  flow: FlowDefinition,
  planned: Planned[],
): Promise<Map<string, string>> {
  const updates = planned.flatMap((p) =>
    SIDES.filter((side) => Object.keys(p.result.writes[side]).length > 0).map((side) => ({
      target: updateTarget(flow, p.link, side),
      fields: p.result.writes[side],
    })),
  );
  const commandIds = await insertPendingUpdates(ctx.db, updates);
  for (const { target, fields } of updates) {
    const key = targetKey(target.system, target.recordType, target.recordId);
    if (!commandIds.has(key)) {
      commandIds.set(key, await upsertPendingUpdate(ctx.db, target, fields));
    }
  }
  return commandIds;
}

/**
 * One planned link's state, field conflicts and audit entries, added to the batch's rows;
 * returns the commands that carry its writes.
 */
function collectFirstSync(
  ctx: SyncContext,
  flow: FlowDefinition,
  link: LinkRow,
  result: DiffResult,
  commandIds: Map<string, string>,
  rows: BatchRows,
): string[] {
  const commands: string[] = [];
  for (const side of SIDES) {
    const writes = result.writes[side];
    if (Object.keys(writes).length === 0) continue;
    const t = updateTarget(flow, link, side);
    const commandId = commandIds.get(targetKey(t.system, t.recordType, t.recordId))!;
    commands.push(commandId);
    markInflight(flow, result.inflight, side, writes, commandId);
  }
  rows.states.push({ id: link.id, shadow: result.shadow, inflight: result.inflight });
  for (const conflict of result.conflicts)
    rows.conflicts.push(fieldConflictRow(flow, link, conflict));
  rows.audit.push(
    ...auditEntriesForLink(flow, link, 'diff', null, syncDetail(result, commands, true)),
  );
  // One line per link at debug: the audit trail has every decision, and a sweep over
  // 100 000 records would otherwise write 100 000 info lines.
  ctx.logger.debug(syncDecisionLog(flow, link, result, commands, true), 'sync decision');
  return commands;
}
