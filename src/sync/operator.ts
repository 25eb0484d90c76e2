import type { Config } from '../config.js';
import { insertAuditEntries, type AuditEntry } from '../db/audit.js';
import {
  dropDeadCommand,
  getCommand,
  requeueDeadCommand,
  listDeadCommandIds,
  supersedePendingCommandsOfLink,
} from '../db/commands.js';
import { dismissConflict, getConflict, resolveAmbiguousMatches } from '../db/conflicts.js';
import type { Db } from '../db/database.js';
import { setFlowPaused, type FlowControlRow } from '../db/flow-controls.js';
import { getInboundEvent, listDeadEventIds, requeueDeadEvent } from '../db/inbound-events.js';
import { deleteLinkHold, insertLinkHold } from '../db/link-holds.js';
import { findActiveLink, getLink, insertLink, unlinkLink } from '../db/links.js';
import { getMirrorRecord } from '../db/records.js';
import type {
  ConflictRow,
  InboundEventRow,
  LinkRow,
  OutboundCommandRow,
  SystemName,
} from '../db/schema.js';
import { ConflictError, NotFoundError } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import { flowById, type FlowDefinition } from './flows.js';
import { syncLink } from './link.js';

// What an operator can do (README "The admin API"), shared by the admin API and the
// console. Every action is recorded in the history of the records it touches.

export interface OperatorDeps {
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
}

function log(deps: OperatorDeps): Logger {
  return deps.logger.child({ module: 'operator' });
}

function flowOf(id: string): FlowDefinition {
  const flow = flowById(id);
  if (flow === undefined) throw new NotFoundError(`No flow ${id}.`);
  return flow;
}

function linkSides(flow: FlowDefinition, link: { tidsbankenId: string; powerofficeId: string }) {
  return [
    { system: 'tidsbanken' as const, recordType: flow.tidsbanken, recordId: link.tidsbankenId },
    { system: 'poweroffice' as const, recordType: flow.poweroffice, recordId: link.powerofficeId },
  ];
}

// ---- links --------------------------------------------------------------------------

/**
 * Links two records by hand (`linkedBy: "manual"`): closes their open ambiguous-match
 * conflicts, lifts a hold on the pair, and syncs the new link at once (its first sync).
 */
export async function linkByHand(
  deps: OperatorDeps,
  input: { flow: string; tidsbankenId: string; powerofficeId: string },
): Promise<LinkRow> {
  const flow = flowOf(input.flow);
  const link = await deps.db.transaction().execute(async (trx) => {
    const sides = linkSides(flow, input);
    const records = [];
    for (const side of sides) {
      const record = await getMirrorRecord(trx, side.system, side.recordType, side.recordId);
      if (record === undefined || record.deleted_at !== null) {
        throw new NotFoundError(
          `No ${side.system} ${side.recordType} ${side.recordId} in the mirror (it has not been read, or it was deleted).`,
        );
      }
      records.push(record);
    }
    for (const side of sides) {
      const existing = await findActiveLink(trx, flow.id, side.system, side.recordId);
      if (existing !== undefined) {
        throw new ConflictError(
          `${side.system} ${side.recordType} ${side.recordId} is already linked in ${flow.id} (link ${existing.id}); unlink it first.`,
        );
      }
    }
    const inserted = await insertLink(trx, {
      flow: flow.id,
      tidsbankenType: flow.tidsbanken,
      tidsbankenId: input.tidsbankenId,
      powerofficeType: flow.poweroffice,
      powerofficeId: input.powerofficeId,
      powerofficeParentId: records[1]!.parent_id,
      linkedBy: 'manual',
    });
    // Another replica linked one of them a moment ago.
    if (inserted === undefined) {
      throw new ConflictError(`One of the two records was linked in ${flow.id} meanwhile.`);
    }
    await deleteLinkHold(trx, flow.id, input.tidsbankenId, input.powerofficeId);
    for (const side of sides) {
      await resolveAmbiguousMatches(
        trx,
        flow.id,
        side.system,
        side.recordType,
        side.recordId,
        'linked by hand',
      );
    }
    await insertAuditEntries(
      trx,
      sides.map((side) => ({
        ...side,
        kind: 'link' as const,
        flow: flow.id,
        linkId: inserted.id,
        detail: {
          linkedBy: 'manual',
          by: 'operator',
          tidsbankenId: input.tidsbankenId,
          powerofficeId: input.powerofficeId,
        },
      })),
    );
    await syncLink({ db: trx, config: deps.config, logger: deps.logger }, flow, inserted.id);
    return (await getLink(trx, inserted.id)) ?? inserted;
  });
  log(deps).info(
    {
      flow: flow.id,
      link: link.id,
      tidsbankenId: link.tidsbanken_id,
      powerofficeId: link.poweroffice_id,
    },
    'linked by hand',
  );
  return link;
}

/**
 * Unlinks and holds the pair apart: no merge rule links them again, only a manual link.
 * Writes still queued for the link are not sent.
 */
export async function unlinkByHand(deps: OperatorDeps, linkId: string): Promise<LinkRow> {
  const link = await deps.db.transaction().execute(async (trx) => {
    const link = await getLink(trx, linkId);
    if (link === undefined || link.unlinked_at !== null) {
      throw new NotFoundError(`No active link ${linkId}.`);
    }
    const flow = flowOf(link.flow);
    await unlinkLink(trx, link.id, 'unlinked by an operator');
    await insertLinkHold(trx, {
      flow: link.flow,
      tidsbankenId: link.tidsbanken_id,
      powerofficeId: link.poweroffice_id,
      linkId: link.id,
    });
    const superseded = await supersedePendingCommandsOfLink(trx, link.id, 'the link was unlinked');
    await insertAuditEntries(
      trx,
      linkSides(flow, { tidsbankenId: link.tidsbanken_id, powerofficeId: link.poweroffice_id }).map(
        (side) => ({
          ...side,
          kind: 'unlink' as const,
          flow: link.flow,
          linkId: link.id,
          detail: {
            reason: 'unlinked by an operator',
            heldApart: true,
            supersededCommands: superseded,
          },
        }),
      ),
    );
    return link;
  });
  log(deps).info({ flow: link.flow, link: link.id }, 'unlinked by hand');
  return link;
}

// ---- conflicts ----------------------------------------------------------------------

export async function dismissConflictByHand(
  deps: OperatorDeps,
  conflictId: string,
): Promise<ConflictRow> {
  const conflict = await deps.db.transaction().execute(async (trx) => {
    const dismissed = await dismissConflict(trx, conflictId, 'dismissed by an operator');
    if (dismissed === undefined) {
      const existing = await getConflict(trx, conflictId);
      if (existing === undefined) throw new NotFoundError(`No conflict ${conflictId}.`);
      throw new ConflictError(`Conflict ${conflictId} is already resolved.`);
    }
    await insertAuditEntries(trx, [
      {
        system: dismissed.system,
        recordType: dismissed.record_type,
        recordId: dismissed.record_id,
        kind: 'operator',
        flow: dismissed.flow,
        linkId: dismissed.link_id,
        detail: { action: 'dismiss', conflictId: dismissed.id, conflict: dismissed.kind },
      },
    ]);
    return dismissed;
  });
  log(deps).info({ conflictId, flow: conflict.flow }, 'conflict dismissed');
  return conflict;
}

// ---- commands -----------------------------------------------------------------------

/** The record a command is about: its target, or for a create not yet made, its origin. */
function commandAudit(command: OutboundCommandRow, action: string): AuditEntry[] {
  const detail = { action, commandId: command.id, operation: command.operation };
  if (command.record_id !== null) {
    return [
      {
        system: command.system,
        recordType: command.record_type,
        recordId: command.record_id,
        kind: 'operator',
        flow: command.flow,
        linkId: command.link_id,
        commandId: command.id,
        detail,
      },
    ];
  }
  const flow = command.flow !== null ? flowById(command.flow) : undefined;
  if (flow === undefined || command.origin_system === null || command.origin_record_id === null) {
    return [];
  }
  return [
    {
      system: command.origin_system,
      recordType: command.origin_system === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice,
      recordId: command.origin_record_id,
      kind: 'operator',
      flow: command.flow,
      commandId: command.id,
      detail,
    },
  ];
}

function isUniqueViolation(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === '23505';
}

/** Re-queues one dead command (attempts reset). */
export async function replayCommand(
  deps: OperatorDeps,
  commandId: string,
): Promise<OutboundCommandRow> {
  let replayed: OutboundCommandRow | undefined;
  try {
    replayed = await deps.db.transaction().execute(async (trx) => {
      const row = await requeueDeadCommand(trx, commandId);
      if (row !== undefined) await insertAuditEntries(trx, commandAudit(row, 'replay'));
      return row;
    });
  } catch (err) {
    // The outbox holds at most one pending update and one live create per target record
    // (unique indexes); a newer one has taken the slot. It carries the newer values, so the
    // operator may drop this one instead.
    if (isUniqueViolation(err)) {
      throw new ConflictError(
        `Command ${commandId} cannot be replayed: a newer command for the same record is already queued (drop this one instead).`,
      );
    }
    throw err;
  }
  if (replayed !== undefined) {
    log(deps).info({ commandId, system: replayed.system }, 'dead command replayed');
    return replayed;
  }
  const existing = await getCommand(deps.db, commandId);
  if (existing === undefined) throw new NotFoundError(`No command ${commandId}.`);
  throw new ConflictError(
    `Command ${commandId} is ${existing.status === 'sending' ? 'pending' : existing.status}; only a dead command can be replayed.`,
  );
}

/** Takes a dead command off the dead list without sending it. */
export async function dropCommand(
  deps: OperatorDeps,
  commandId: string,
): Promise<OutboundCommandRow> {
  const dropped = await deps.db.transaction().execute(async (trx) => {
    const row = await dropDeadCommand(trx, commandId);
    if (row !== undefined) await insertAuditEntries(trx, commandAudit(row, 'drop'));
    return row;
  });
  if (dropped !== undefined) {
    log(deps).info({ commandId, system: dropped.system }, 'dead command dropped');
    return dropped;
  }
  const existing = await getCommand(deps.db, commandId);
  if (existing === undefined) throw new NotFoundError(`No command ${commandId}.`);
  throw new ConflictError(
    `Command ${commandId} is ${existing.status === 'sending' ? 'pending' : existing.status}; only a dead command can be dropped.`,
  );
}

/**
 * Replays every dead command matching the filter, in batches. One whose record meanwhile got
 * a newer queued command is left dead and counted as skipped.
 */
export async function replayDeadCommands(
  deps: OperatorDeps,
  filter: { system?: SystemName | undefined; flow?: string | undefined },
): Promise<{ replayed: number; skipped: number; skippedIds: string[] }> {
  const result = await eachDead(
    (after) =>
      listDeadCommandIds(deps.db, {
        ...filter,
        ...(after !== undefined ? { after } : {}),
        limit: 500,
      }),
    async (id) => {
      try {
        const row = await deps.db.transaction().execute(async (trx) => {
          const row = await requeueDeadCommand(trx, id);
          if (row !== undefined) await insertAuditEntries(trx, commandAudit(row, 'replay'));
          return row;
        });
        return row !== undefined;
      } catch (err) {
        if (isUniqueViolation(err)) return 'skipped';
        throw err;
      }
    },
  );
  log(deps).info(
    { ...filter, replayed: result.done, skipped: result.skipped },
    'dead commands replayed',
  );
  return { replayed: result.done, skipped: result.skipped, skippedIds: result.skippedIds };
}

/**
 * A bulk action over dead rows, in id order and in batches (`list` gives the ids after the
 * last of the previous batch). `act` answers whether it acted, or 'skipped' for a row left
 * dead; the first 100 skipped ids are kept.
 */
async function eachDead(
  list: (after: string | undefined) => Promise<string[]>,
  act: (id: string) => Promise<boolean | 'skipped'>,
): Promise<{ done: number; skipped: number; skippedIds: string[] }> {
  let done = 0;
  const skippedIds: string[] = [];
  let after: string | undefined;
  for (;;) {
    const ids = await list(after);
    if (ids.length === 0) break;
    for (const id of ids) {
      const outcome = await act(id);
      if (outcome === 'skipped') skippedIds.push(id);
      else if (outcome) done++;
    }
    after = ids[ids.length - 1];
  }
  return { done, skipped: skippedIds.length, skippedIds: skippedIds.slice(0, 100) };
}

// ---- inbox events -------------------------------------------------------------------

/**
 * Re-queues one dead event with its audit entry, in one transaction. Undefined when it is not
 * dead (or unknown); a ConflictError when it cannot be retried as it is.
 */
async function requeueEvent(
  deps: OperatorDeps,
  eventId: string,
  existing: InboundEventRow | undefined,
): Promise<InboundEventRow | undefined> {
  if (existing?.raw_record != null && existing.record_id === '') {
    throw new ConflictError(
      `Event ${eventId} is a record without a readable id: it cannot be read again. Fix it in ${existing.source}; its next change is read as usual.`,
    );
  }
  return deps.db
    .transaction()
    .execute(async (trx) => {
      const row = await requeueDeadEvent(trx, eventId);
      if (row !== undefined) {
        await insertAuditEntries(trx, [
          {
            system: row.source,
            recordType: row.record_type,
            recordId: row.record_id,
            kind: 'operator',
            eventId: row.id,
            detail: { action: 'retry', eventId: row.id, lastError: row.last_error },
          },
        ]);
      }
      return row;
    })
    .catch((err: unknown) => {
      if (isUniqueViolation(err)) {
        throw new ConflictError(
          `Event ${eventId} cannot be retried: the same event is already in the inbox again.`,
        );
      }
      throw err;
    });
}

/** Gives a dead inbox event another go. */
export async function retryEvent(deps: OperatorDeps, eventId: string): Promise<InboundEventRow> {
  const existing = await getInboundEvent(deps.db, eventId);
  const retried = await requeueEvent(deps, eventId, existing);
  if (retried !== undefined) {
    log(deps).info({ eventId, source: retried.source }, 'dead inbox event retried');
    return retried;
  }
  if (existing === undefined) throw new NotFoundError(`No inbox event ${eventId}.`);
  throw new ConflictError(
    `Inbox event ${eventId} is ${existing.status}; only a dead event can be retried.`,
  );
}

/**
 * Retries every dead inbox event matching the filter, in batches. One that cannot be retried
 * (the same event is in the inbox again, or a set-aside record without a readable id) stays
 * dead and is counted as skipped.
 */
export async function retryDeadEvents(
  deps: OperatorDeps,
  filter: { system?: SystemName | undefined },
): Promise<{ retried: number; skipped: number; skippedIds: string[] }> {
  const result = await eachDead(
    (after) =>
      listDeadEventIds(deps.db, {
        source: filter.system,
        ...(after !== undefined ? { after } : {}),
        limit: 500,
      }),
    async (id) => {
      try {
        return (await requeueEvent(deps, id, await getInboundEvent(deps.db, id))) !== undefined;
      } catch (err) {
        if (err instanceof ConflictError) return 'skipped';
        throw err;
      }
    },
  );
  log(deps).info(
    { ...filter, retried: result.done, skipped: result.skipped },
    'dead inbox events retried',
  );
  return { retried: result.done, skipped: result.skipped, skippedIds: result.skippedIds };
}

// ---- flows --------------------------------------------------------------------------

/** Pauses or resumes a flow: its commands wait (coalescing) while paused. */
export async function pauseFlow(
  deps: OperatorDeps,
  flowId: string,
  paused: boolean,
): Promise<FlowControlRow> {
  const flow = flowOf(flowId);
  const row = await setFlowPaused(deps.db, flow.id, paused);
  log(deps).info({ flow: flow.id }, paused ? 'flow paused' : 'flow resumed');
  return row;
}
