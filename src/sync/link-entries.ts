import type { AuditEntry } from '../db/audit.js';
import type { UpdateTarget } from '../db/commands.js';
import type { NewFieldConflict } from '../db/conflicts.js';
import type { LinkRow, SystemName } from '../db/schema.js';
import type { DiffResult, FieldConflict, Inflight } from './diff.js';
import type { FlowDefinition } from './flows.js';

// The rows and log fields a link's sync writes, shared by the per-link path (link.ts), the
// batched first sync (match.ts) and the reference waits (references.ts).

/** The link's record on `side`. */
function recordIdOn(link: LinkRow, side: SystemName): string {
  return side === 'tidsbanken' ? link.tidsbanken_id : link.poweroffice_id;
}

/** One audit entry in the history of each of the link's two records. */
export function auditEntriesForLink(
  flow: FlowDefinition,
  link: LinkRow,
  kind: AuditEntry['kind'],
  eventId: string | null,
  detail: AuditEntry['detail'],
): AuditEntry[] {
  return (['tidsbanken', 'poweroffice'] as const).map((side) => ({
    system: side,
    recordType: side === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice,
    recordId: recordIdOn(link, side),
    kind,
    flow: flow.id,
    linkId: link.id,
    eventId,
    detail,
  }));
}

/** A diff's field conflict as stored: always on the link's Tidsbanken record. */
export function fieldConflictRow(
  flow: FlowDefinition,
  link: LinkRow,
  conflict: FieldConflict,
): NewFieldConflict {
  return {
    flow: flow.id,
    system: 'tidsbanken',
    recordType: flow.tidsbanken,
    recordId: link.tidsbanken_id,
    linkId: link.id,
    field: conflict.key,
    tidsbankenValue: conflict.tidsbanken,
    powerofficeValue: conflict.poweroffice,
    resolution: conflict.resolution,
  };
}

/** The record on `side` an update command of the link writes to. */
export function updateTarget(flow: FlowDefinition, link: LinkRow, side: SystemName): UpdateTarget {
  return side === 'tidsbanken'
    ? {
        system: 'tidsbanken',
        recordType: flow.tidsbanken,
        recordId: link.tidsbanken_id,
        parentId: null,
        flow: flow.id,
        linkId: link.id,
      }
    : {
        system: 'poweroffice',
        recordType: flow.poweroffice,
        recordId: link.poweroffice_id,
        parentId: link.poweroffice_parent_id,
        flow: flow.id,
        linkId: link.id,
      };
}

/** The mapping of a field by its name on `side` (a Tidsbanken field, a PowerOffice path). */
export function fieldNamed(flow: FlowDefinition, side: SystemName, name: string) {
  return flow.fields.find((f) => (side === 'tidsbanken' ? f.tidsbanken : f.poweroffice) === name)!;
}

/** Marks the written fields as in flight on `side` with the command that carries them. */
export function markInflight(
  flow: FlowDefinition,
  inflight: Inflight,
  side: SystemName,
  writes: Record<string, unknown>,
  commandId: string,
): void {
  for (const name of Object.keys(writes)) {
    const key = fieldNamed(flow, side, name).key;
    inflight[side]![key] = { stale: inflight[side]![key]?.stale ?? [], command: commandId };
  }
}

/** The audit detail of a sync, on both records. */
export function syncDetail(result: DiffResult, commands: string[], first: boolean) {
  return {
    firstSync: first,
    changes: result.changes,
    conflicts: result.conflicts,
    writes: result.writes,
    commands,
  };
}

/** The fields of a sync's 'sync decision' log line. */
export function syncDecisionLog(
  flow: FlowDefinition,
  link: LinkRow,
  result: DiffResult,
  commands: string[],
  first: boolean,
) {
  return {
    flow: flow.id,
    link: link.id,
    tidsbankenId: link.tidsbanken_id,
    powerofficeId: link.poweroffice_id,
    decision: first ? 'first_sync' : 'sync',
    fieldsChanged: result.changes.map((c) => `${c.key}←${c.source}`),
    conflicts: result.conflicts.map((c) => `${c.key}: ${c.resolution}`),
    commands,
  };
}
