import type { Config } from '../config.js';
import { insertAuditEntries, type AuditEntry } from '../db/audit.js';
import {
  findCreateOf,
  insertCreateCommand,
  removeFieldsFromPendingUpdate,
  upsertPendingUpdate,
} from '../db/commands.js';
import {
  insertFieldConflict,
  resolveAmbiguousMatches,
  upsertAmbiguousMatch,
} from '../db/conflicts.js';
import type { DbOrTrx } from '../db/database.js';
import { listHeldApart } from '../db/link-holds.js';
import { findActiveLink, insertLink, lockLink, updateLinkState } from '../db/links.js';
import { findMirrorRecordsByKeys, getMirrorRecord } from '../db/records.js';
import type { LinkRow, RecordRow, SystemName } from '../db/schema.js';
import type { Logger } from '../lib/logger.js';
import { RECORD_ADAPTERS } from '../record-types.js';
import { diffLink, type DiffResult, type Inflight, type Shadow } from './diff.js';
import {
  MERGE_RULE_KEY,
  originIdFor,
  originTidsbankenId,
  powerofficeCreateBody,
  tidsbankenCreateBody,
  type FlowDefinition,
  type MatchKeys,
  type MergeRuleName,
  type RecordType,
} from './flows.js';
import {
  auditEntriesForLink,
  fieldConflictRow,
  fieldNamed,
  markInflight,
  syncDecisionLog,
  syncDetail,
  updateTarget,
} from './link-entries.js';
import { getPath, writableValue } from './normalize.js';
import { recordReferenceWaits, referenceTranslator } from './references.js';

// Linking and syncing one link (docs/ARCHITECTURE.md "Linking", "Worker"), inside the caller's
// transaction.

export interface SyncContext {
  db: DbOrTrx;
  config: Readonly<Config>;
  logger: Logger;
  /** The inbox event being processed, for the audit trail. */
  eventId?: string | null;
}

const OTHER: Record<SystemName, SystemName> = {
  tidsbanken: 'poweroffice',
  poweroffice: 'tidsbanken',
};

function typeOn(flow: FlowDefinition, side: SystemName): RecordType {
  return side === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice;
}

function keysOfRow(row: RecordRow): MatchKeys {
  return {
    email: row.email_key,
    nationalId: row.national_id_key,
    number: row.number_key,
    code: row.code_key,
  };
}

function ruleKeys(flow: FlowDefinition, keys: MatchKeys): Partial<MatchKeys> {
  const out: Partial<MatchKeys> = {};
  for (const rule of flow.mergeRules) out[MERGE_RULE_KEY[rule]] = keys[MERGE_RULE_KEY[rule]];
  return out;
}

function matchedRule(flow: FlowDefinition, a: MatchKeys, b: MatchKeys): MergeRuleName {
  return (
    flow.mergeRules.find((rule) => {
      const k = MERGE_RULE_KEY[rule];
      return a[k] !== null && a[k] === b[k];
    }) ?? flow.mergeRules[0]!
  );
}

function newLinkFor(
  flow: FlowDefinition,
  tidsbankenId: string,
  powerofficeId: string,
  powerofficeParentId: string | null,
  linkedBy: string,
) {
  return {
    flow: flow.id,
    tidsbankenType: flow.tidsbanken,
    tidsbankenId,
    powerofficeType: flow.poweroffice,
    powerofficeId,
    powerofficeParentId,
    linkedBy,
  };
}

export interface LinkOutcome {
  link?: LinkRow;
  conflict?: boolean;
  commandQueued?: boolean;
}

/**
 * Finds the counterpart of an unlinked record. Records we created link back by their origin
 * id at any time; merge rules only once the link gate is open (after the first full reads),
 * so arrival order never decides a match.
 */
export async function tryLink(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  gateOpen: boolean,
): Promise<LinkOutcome> {
  // Pairs an operator unlinked are held apart: only a manual link joins them again.
  const heldApart = await listHeldApart(ctx.db, flow.id, side, record.record_id);
  const own = await linkOwnCreate(ctx, flow, side, record, heldApart);
  if (own !== undefined) return { link: own };
  if (!gateOpen) return {};
  return linkByMergeRules(ctx, flow, side, record, heldApart);
}

/**
 * The id of the counterpart a record of ours stems from: a PowerOffice record we created
 * carries its Tidsbanken origin; a Tidsbanken record we created has its create command.
 */
async function ownCreateOrigin(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
): Promise<string | undefined> {
  if (side === 'poweroffice') return originTidsbankenId(flow, record.data);
  const create = await findCreateOf(
    ctx.db,
    'tidsbanken',
    flow.tidsbanken,
    record.record_id,
    flow.id,
  );
  return create?.origin_record_id || undefined;
}

/** Links a record we created to the record it stems from, unless that one is taken. */
async function linkOwnCreate(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  heldApart: Set<string>,
): Promise<LinkRow | undefined> {
  const { db } = ctx;
  const originId = await ownCreateOrigin(ctx, flow, side, record);
  if (originId === undefined || heldApart.has(originId)) return undefined;
  const taken = await findActiveLink(db, flow.id, OTHER[side], originId);
  if (taken !== undefined) return undefined;
  let newLink;
  if (side === 'poweroffice') {
    newLink = newLinkFor(flow, originId, record.record_id, record.parent_id, 'created');
  } else {
    const origin = await getMirrorRecord(db, 'poweroffice', flow.poweroffice, originId);
    newLink = newLinkFor(flow, record.record_id, originId, origin?.parent_id ?? null, 'created');
  }
  const link = await insertLink(db, newLink);
  if (link !== undefined) await recordLinked(ctx, flow, link, 'created');
  return link;
}

interface Candidate {
  system: SystemName;
  recordId: string;
}

/** Merge rules, one-to-one over the whole mirror. */
async function linkByMergeRules(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  heldApart: Set<string>,
): Promise<LinkOutcome> {
  const otherSide = OTHER[side];
  const mine = keysOfRow(record);
  const found = await findMirrorRecordsByKeys(
    ctx.db,
    otherSide,
    typeOn(flow, otherSide),
    ruleKeys(flow, mine),
  );
  if (found.length === 0) {
    return { commandQueued: await queueCreateIfConfigured(ctx, flow, side, record) };
  }
  // A pair held apart is no match (as in the set-based sweep's match graph): the record's
  // other matches are judged without it. One whose only matches are held apart stays unlinked,
  // and is not created either (the create policy acts on records no merge rule matches).
  const matches = found.filter((m) => !heldApart.has(m.record_id));
  if (matches.length === 0) return {};
  const ambiguity = await whyNotOneToOne(ctx, flow, side, record, matches);
  if (ambiguity !== undefined) {
    await recordAmbiguousMatch(ctx, flow, side, record, ambiguity.reason, ambiguity.candidates);
    return { conflict: true };
  }
  const counterpart = matches[0]!;
  const [tb, po] = side === 'tidsbanken' ? [record, counterpart] : [counterpart, record];
  const rule = matchedRule(flow, mine, keysOfRow(counterpart));
  const link = await insertLink(
    ctx.db,
    newLinkFor(flow, tb.record_id, po.record_id, po.parent_id, rule),
  );
  if (link === undefined) return {};
  await recordLinked(ctx, flow, link, rule);
  return { link };
}

/**
 * Why the record and its matches are not a one-to-one pair, with the records involved, or
 * undefined when they are: one match, matching back only this record, not linked yet.
 */
async function whyNotOneToOne(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  matches: RecordRow[],
): Promise<{ reason: string; candidates: Candidate[] } | undefined> {
  const otherSide = OTHER[side];
  const id = record.record_id;
  if (matches.length > 1) {
    return {
      reason: 'several records match',
      candidates: matches.map((c) => ({ system: otherSide, recordId: c.record_id })),
    };
  }
  const counterpart = matches[0]!;
  const counterpartHeldApart = await listHeldApart(
    ctx.db,
    flow.id,
    otherSide,
    counterpart.record_id,
  );
  const rivals = (
    await findMirrorRecordsByKeys(
      ctx.db,
      side,
      record.record_type,
      ruleKeys(flow, keysOfRow(counterpart)),
    )
  ).filter((r) => !counterpartHeldApart.has(r.record_id));
  if (rivals.length !== 1 || rivals[0]!.record_id !== id) {
    return {
      reason: 'the counterpart matches several records on this side',
      candidates: [
        { system: otherSide, recordId: counterpart.record_id },
        ...rivals
          .filter((r) => r.record_id !== id)
          .map((r) => ({ system: side, recordId: r.record_id })),
      ],
    };
  }
  const existing = await findActiveLink(ctx.db, flow.id, otherSide, counterpart.record_id);
  if (existing === undefined) return undefined;
  const linkedTo = otherSide === 'tidsbanken' ? existing.poweroffice_id : existing.tidsbanken_id;
  return {
    reason: `the counterpart is already linked to ${side} ${linkedTo}`,
    candidates: [
      { system: otherSide, recordId: counterpart.record_id },
      { system: side, recordId: linkedTo },
    ],
  };
}

/** The record's ambiguous_match conflict; audited and logged only when it is new. */
async function recordAmbiguousMatch(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  reason: string,
  candidates: Candidate[],
): Promise<void> {
  const id = record.record_id;
  const { created } = await upsertAmbiguousMatch(ctx.db, {
    flow: flow.id,
    system: side,
    recordType: record.record_type,
    recordId: id,
    candidates,
    reason,
  });
  if (!created) return;
  ctx.logger.info(
    { flow: flow.id, system: side, recordId: id, decision: 'ambiguous_match', reason, candidates },
    'sync decision',
  );
  await insertAuditEntries(ctx.db, [
    {
      system: side,
      recordType: record.record_type,
      recordId: id,
      kind: 'conflict',
      flow: flow.id,
      eventId: ctx.eventId ?? null,
      detail: { conflict: 'ambiguous_match', reason, candidates },
    },
  ]);
}

/** One audit entry in the history of each of the link's two records. */
async function auditBothRecords(
  ctx: SyncContext,
  flow: FlowDefinition,
  link: LinkRow,
  kind: 'link' | 'diff',
  detail: AuditEntry['detail'],
): Promise<void> {
  await insertAuditEntries(
    ctx.db,
    auditEntriesForLink(flow, link, kind, ctx.eventId ?? null, detail),
  );
}

async function recordLinked(
  ctx: SyncContext,
  flow: FlowDefinition,
  link: LinkRow,
  rule: string,
): Promise<void> {
  for (const side of ['tidsbanken', 'poweroffice'] as const) {
    const recordId = side === 'tidsbanken' ? link.tidsbanken_id : link.poweroffice_id;
    await resolveAmbiguousMatches(
      ctx.db,
      flow.id,
      side,
      typeOn(flow, side),
      recordId,
      `linked by ${rule}`,
    );
  }
  await auditBothRecords(ctx, flow, link, 'link', {
    linkedBy: rule,
    tidsbankenId: link.tidsbanken_id,
    powerofficeId: link.poweroffice_id,
  });
  ctx.logger.info(
    {
      flow: flow.id,
      link: link.id,
      tidsbankenId: link.tidsbanken_id,
      powerofficeId: link.poweroffice_id,
      decision: 'link',
      linkedBy: rule,
    },
    'sync decision',
  );
}

/** Whether the flow's unmatched policy creates counterparts of unmatched `side` records. */
export function createsFrom(
  config: Readonly<Config>,
  flow: FlowDefinition,
  side: SystemName,
): boolean {
  const policy = config.unmatched[flow.id];
  return side === 'tidsbanken'
    ? policy === 'create-in-poweroffice' || policy === 'create-both'
    : policy === 'create-in-tidsbanken' || policy === 'create-both';
}

/**
 * The unmatched policy (docs/ARCHITECTURE.md "Linking"): create the counterpart, idempotently
 * by origin id. Whether a create was queued.
 */
async function queueCreateIfConfigured(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
): Promise<boolean> {
  if (!createsFrom(ctx.config, flow, side)) return false;
  const queued =
    side === 'tidsbanken'
      ? await queuePowerofficeCreate(ctx, flow, record)
      : await queueTidsbankenCreate(ctx, flow, record);
  if (queued === undefined) return false;
  await recordCreateQueued(ctx, flow, side, record, queued);
  return true;
}

/** A PowerOffice create of a Tidsbanken record: its command id, or undefined when not queued. */
async function queuePowerofficeCreate(
  ctx: SyncContext,
  flow: FlowDefinition,
  record: RecordRow,
): Promise<string | undefined> {
  if (ctx.config.poweroffice.credentials === undefined && !ctx.config.dryRun) return undefined;
  const id = record.record_id;
  const target = RECORD_ADAPTERS[flow.poweroffice];
  let parentId: string | null = null;
  if (target.createParentId !== undefined) {
    const configured = target.createParentId(ctx.config);
    if (configured === undefined) return undefined;
    parentId = configured;
  }
  return insertCreateCommand(ctx.db, {
    system: 'poweroffice',
    recordType: flow.poweroffice,
    recordId: null,
    parentId,
    flow: flow.id,
    originSystem: 'tidsbanken',
    originId: originIdFor(flow, id),
    originRecordId: id,
    body: powerofficeCreateBody(flow, record.data, id),
  });
}

/** A Tidsbanken create of a PowerOffice record: its command id, or undefined when not queued. */
async function queueTidsbankenCreate(
  ctx: SyncContext,
  flow: FlowDefinition,
  record: RecordRow,
): Promise<string | undefined> {
  if (ctx.config.tidsbanken.credentials === undefined && !ctx.config.dryRun) return undefined;
  const id = record.record_id;
  const body = tidsbankenCreateBody(flow, record.data);
  if (body === undefined) return undefined;
  const newId = String(body.Id);
  // A Tidsbanken record with that Id exists but did not match: creating it would collide.
  const clash = await getMirrorRecord(ctx.db, 'tidsbanken', flow.tidsbanken, newId);
  if (clash !== undefined) {
    await upsertAmbiguousMatch(ctx.db, {
      flow: flow.id,
      system: 'poweroffice',
      recordType: record.record_type,
      recordId: id,
      candidates: [{ system: 'tidsbanken', recordId: newId }],
      reason: `not created: Tidsbanken already has ${flow.tidsbanken} ${newId}, which does not match`,
    });
    return undefined;
  }
  return insertCreateCommand(ctx.db, {
    system: 'tidsbanken',
    recordType: flow.tidsbanken,
    recordId: newId,
    parentId: null,
    flow: flow.id,
    originSystem: 'poweroffice',
    originId: `po-${flow.poweroffice}-${id}`,
    originRecordId: id,
    body,
  });
}

/** The queued create in the record's history, and its log line. */
async function recordCreateQueued(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  commandId: string,
): Promise<void> {
  const id = record.record_id;
  await insertAuditEntries(ctx.db, [
    {
      system: side,
      recordType: record.record_type,
      recordId: id,
      kind: 'command',
      flow: flow.id,
      commandId,
      eventId: ctx.eventId ?? null,
      detail: {
        operation: 'create',
        target: OTHER[side],
        policy: ctx.config.unmatched[flow.id],
      },
    },
  ]);
  ctx.logger.info(
    {
      flow: flow.id,
      system: side,
      recordId: id,
      decision: 'create',
      target: OTHER[side],
      command: commandId,
    },
    'sync decision',
  );
}

function updatedAtMs(row: RecordRow): number | undefined {
  return row.source_updated_at === null ? undefined : new Date(row.source_updated_at).getTime();
}

export interface SyncOutcome {
  /** False when the link could not be synced (unlinked, or a record not read or gone). */
  synced: boolean;
  changed: boolean;
  commands: string[];
  conflicts: number;
}

/** The three-way diff of one link, applied: commands queued, shadow advanced, all recorded. */
export async function syncLink(
  ctx: SyncContext,
  flow: FlowDefinition,
  linkId: string,
): Promise<SyncOutcome> {
  const { db } = ctx;
  const none: SyncOutcome = { synced: false, changed: false, commands: [], conflicts: 0 };
  const link = await lockLink(db, linkId);
  if (link === undefined || link.unlinked_at !== null) return none;
  const tb = await getMirrorRecord(db, 'tidsbanken', flow.tidsbanken, link.tidsbanken_id);
  const po = await getMirrorRecord(db, 'poweroffice', flow.poweroffice, link.poweroffice_id);
  // The counterpart has not been read yet (or is gone): nothing to compare with.
  if (tb === undefined || po === undefined || tb.deleted_at !== null || po.deleted_at !== null) {
    return none;
  }
  const first = link.last_synced_at === null;
  const records = { tidsbanken: tb.data, poweroffice: po.data };
  const result = diffLink({
    flow,
    tidsbanken: { record: tb.data, updatedAt: updatedAtMs(tb) },
    poweroffice: { record: po.data, updatedAt: updatedAtMs(po) },
    shadow: first ? undefined : (link.shadow as Shadow),
    inflight: link.inflight,
    policy: ctx.config.conflictPolicy,
    translate: await referenceTranslator(db, flow, [records]),
  });
  const commands = await queueWrites(ctx, flow, link, result, records);
  await updateLinkState(db, link.id, {
    shadow: result.shadow,
    inflight: result.inflight,
    synced: true,
  });
  await recordReferenceWaits(ctx, flow, [{ link, unresolved: result.unresolved }]);
  for (const conflict of result.conflicts) {
    await insertFieldConflict(db, fieldConflictRow(flow, link, conflict));
  }
  const changed = result.changes.length > 0 || result.conflicts.length > 0 || first;
  if (changed) await recordSync(ctx, flow, link, result, commands, first);
  return { synced: true, changed, commands, conflicts: result.conflicts.length };
}

/** The diff's writes as pending updates, one per side (folded into a pending one). */
async function queueWrites(
  ctx: SyncContext,
  flow: FlowDefinition,
  link: LinkRow,
  result: DiffResult,
  records: Record<SystemName, Record<string, unknown>>,
): Promise<string[]> {
  const commands: string[] = [];
  for (const side of ['tidsbanken', 'poweroffice'] as const) {
    const target = updateTarget(flow, link, side);
    const writes = { ...result.writes[side] };
    if (result.drops[side].length > 0) {
      Object.assign(writes, await dropWrites(ctx, flow, link, result, records, side));
    }
    if (Object.keys(writes).length === 0) continue;
    const commandId = await upsertPendingUpdate(ctx.db, target, writes);
    commands.push(commandId);
    markInflight(flow, result.inflight, side, writes, commandId);
  }
  return commands;
}

/**
 * The side's own newer edit won over a queued write to it: takes the fields out. For a write
 * already on the wire, returns the side's own value to queue again, so it has the last word.
 */
async function dropWrites(
  ctx: SyncContext,
  flow: FlowDefinition,
  link: LinkRow,
  result: DiffResult,
  records: Record<SystemName, Record<string, unknown>>,
  side: SystemName,
): Promise<Record<string, unknown>> {
  const again: Record<string, unknown> = {};
  const target = updateTarget(flow, link, side);
  const onTheWire = await removeFieldsFromPendingUpdate(ctx.db, target, result.drops[side]);
  const first = link.last_synced_at === null;
  for (const name of onTheWire) {
    const field = fieldNamed(flow, side, name);
    const own =
      side === 'tidsbanken' ? records.tidsbanken[name] : getPath(records.poweroffice, name);
    again[name] = writableValue(field.kind, own);
    // Until this write lands, a read of the side may show what it showed before, or the
    // value of the write already on the wire (the previous shadow): neither is an edit.
    const entry = (link.inflight as Inflight)[side]?.[field.key];
    const previous = first ? undefined : (link.shadow as Shadow)[field.key];
    const stale = new Set(entry?.stale ?? []);
    if (previous !== undefined) stale.add(previous);
    result.inflight[side]![field.key] = { stale: [...stale] };
  }
  return again;
}

/** The sync's audit entry on both records, and its log line. */
async function recordSync(
  ctx: SyncContext,
  flow: FlowDefinition,
  link: LinkRow,
  result: DiffResult,
  commands: string[],
  first: boolean,
): Promise<void> {
  await auditBothRecords(ctx, flow, link, 'diff', syncDetail(result, commands, first));
  ctx.logger.info(syncDecisionLog(flow, link, result, commands, first), 'sync decision');
}
