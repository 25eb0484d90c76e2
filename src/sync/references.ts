import type { FlowId } from '../config.js';
import { insertAuditEntries, type AuditEntry } from '../db/audit.js';
import { findLinkedCounterparts } from '../db/links.js';
import { replaceReferenceWaits, type ReferenceWait } from '../db/reference-waits.js';
import type { LinkRow, SystemName } from '../db/schema.js';
import type { TranslateReference, UnresolvedReference } from './diff.js';
import type { FlowDefinition } from './flows.js';
import { auditEntriesForLink } from './link-entries.js';
import type { SyncContext } from './link.js';
import { writableValue } from './normalize.js';

// Reference fields (a Prosjekt's KundeId, a Project's CustomerId): their values are ids of
// records of another flow, translated through that flow's links. The diff holds a field back
// while the record it names has no link; the wait is stored per link and field, and the
// worker resyncs a waiting link as soon as any link it waits for exists (resolve-references.ts).

export function hasReferences(flow: FlowDefinition): boolean {
  return flow.fields.some((f) => f.references !== undefined);
}

/**
 * A translator for these records' reference fields, from one lookup per referenced flow and
 * side. Undefined when the flow has no reference fields.
 */
export async function referenceTranslator(
  db: SyncContext['db'],
  flow: FlowDefinition,
  records: { tidsbanken: Record<string, unknown>; poweroffice: Record<string, unknown> }[],
): Promise<TranslateReference | undefined> {
  if (!hasReferences(flow)) return undefined;
  const ids = new Map<string, Record<SystemName, string[]>>();
  for (const field of flow.fields) {
    if (field.references === undefined) continue;
    const wanted = ids.get(field.references) ?? { tidsbanken: [], poweroffice: [] };
    ids.set(field.references, wanted);
    for (const pair of records) {
      const tb = writableValue('reference', pair.tidsbanken[field.tidsbanken]);
      const po = writableValue('reference', pair.poweroffice[field.poweroffice]);
      if (typeof tb === 'string') wanted.tidsbanken.push(tb);
      if (typeof po === 'string') wanted.poweroffice.push(po);
    }
  }
  // Per referenced flow: Tidsbanken id → PowerOffice id, and the other way.
  const maps = new Map<string, Record<SystemName, Map<string, string>>>();
  for (const [refFlow, wanted] of ids) {
    maps.set(refFlow, {
      poweroffice: await findLinkedCounterparts(db, refFlow, 'tidsbanken', wanted.tidsbanken),
      tidsbanken: await findLinkedCounterparts(db, refFlow, 'poweroffice', wanted.poweroffice),
    });
  }
  return (refFlow: FlowId, to: SystemName, id: string) => maps.get(refFlow)?.[to].get(id);
}

/**
 * Stores what each link's diff held back as the link's waits, and records in both records'
 * history when a reference starts or stops waiting.
 */
export async function recordReferenceWaits(
  ctx: SyncContext,
  flow: FlowDefinition,
  results: { link: LinkRow; unresolved: UnresolvedReference[] }[],
): Promise<void> {
  if (!hasReferences(flow) || results.length === 0) return;
  const waits: ReferenceWait[] = results.flatMap(({ link, unresolved }) =>
    unresolved.map((u) => ({
      linkId: link.id,
      field: u.key,
      flow: u.flow,
      system: u.system,
      id: u.id,
    })),
  );
  const { started, ended } = await replaceReferenceWaits(
    ctx.db,
    results.map((r) => r.link.id),
    waits,
  );
  const links = new Map(results.map((r) => [r.link.id, r.link]));
  const audit: AuditEntry[] = [];
  const note = (wait: ReferenceWait, state: 'waiting' | 'resolved') => {
    const link = links.get(wait.linkId)!;
    audit.push(
      ...auditEntriesForLink(flow, link, 'reference', ctx.eventId ?? null, {
        reference: state,
        field: wait.field,
        // The record named, and the flow it waits to be linked in.
        waitsFor: { flow: wait.flow, system: wait.system, recordId: wait.id },
      }),
    );
    ctx.logger.info(
      {
        flow: flow.id,
        link: wait.linkId,
        decision: state === 'waiting' ? 'reference_waits' : 'reference_resolved',
        field: wait.field,
        waitsFor: `${wait.flow} ${wait.system} ${wait.id}`,
      },
      'sync decision',
    );
  };
  for (const wait of ended) note(wait, 'resolved');
  for (const wait of started) note(wait, 'waiting');
  await insertAuditEntries(ctx.db, audit);
}
