import type { Config } from '../config.js';
import { insertAuditEntries } from '../db/audit.js';
import type { Db } from '../db/database.js';
import {
  claimDueFullEvents,
  claimPendingEvent,
  deferEvent,
  hasOlderDueEvent,
  isWriteFeedback,
  markEventSkipped,
  markEventsDone,
  peekDueEvents,
  setEventAside,
  storeCompletedPayload,
  unstorableReason,
} from '../db/inbound-events.js';
import { findActiveLink, findLinkedRecords, unlinkLink } from '../db/links.js';
import {
  getMirrorRecord,
  lockRecordKey,
  markMirrorRecordDeleted,
  upsertMirrorRecord,
  upsertMirrorRecords,
  type MirrorWrite,
} from '../db/records.js';
import type { InboundEventRow, SystemName } from '../db/schema.js';
import { CredentialsError, UpstreamError } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { Clients, RecordType } from '../record-adapter.js';
import { adapterOf } from '../record-types.js';
import { flowsForRecordType, sideOf } from './flows.js';
import { mirrorFillOf } from './mirror-fill.js';
import { syncLink, tryLink, type SyncContext } from './link.js';
import { resolveWaitingReferences } from './resolve-references.js';
import { isLinkGateOpen, maybeRunInitialSweep, type SweepRequirements } from './sweep.js';

// The sync worker (docs/ARCHITECTURE.md "Worker"): claims inbox events, never two of one record at once,
// completes thin ones with a GET, updates the mirror, then links and diffs per flow.

export type { Clients };

export interface WorkerDeps {
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
  clients: Clients;
  /** Which record types need a first full read before merge-rule linking may start. */
  sweep?: SweepRequirements;
  /**
   * Whether this replica holds a system's leadership. Only the leader completes thin events of
   * that system (a GET), so every request to a vendor leaves through one pacer.
   */
  leads?: (system: SystemName) => boolean;
  /** Counts finished and set-back events (tbpo_events_processed_total). */
  metrics?: Metrics;
}

function countEvents(
  deps: WorkerDeps,
  system: SystemName,
  result: 'done' | 'retry' | 'dead',
  n = 1,
): void {
  if (n > 0) deps.metrics?.eventsProcessed.inc({ system, result }, n);
}

const MAX_EVENT_ATTEMPTS = 10;

/** Fetches the full record behind a thin event, or undefined when it no longer exists. */
async function completeThinEvent(
  clients: Clients,
  event: InboundEventRow,
): Promise<Record<string, unknown> | undefined> {
  return adapterOf(event.record_type)
    ?.connect(clients)
    ?.get({ id: event.record_id, parentId: event.parent_id });
}

function hasClientFor(clients: Clients, source: SystemName): boolean {
  return source === 'tidsbanken'
    ? clients.tidsbanken !== undefined
    : clients.poweroffice !== undefined;
}

/**
 * Processes up to `limit` due events; returns how many it finished. Safe on any number of
 * replicas: each event is claimed FOR UPDATE SKIP LOCKED and its record is serialized by a
 * transaction-scoped advisory lock.
 */
export async function processDueEvents(deps: WorkerDeps, limit = 50): Promise<number> {
  const { db, logger } = deps;
  let done = 0;
  // While the link gate is closed (first full reads, a reconcile) an unlinked record's event
  // only fills the mirror: do that in bulk. The sweep links them all afterwards.
  if (!(await isLinkGateOpen(db))) {
    done += await fillMirrorInBulk(deps, 500);
    if (done > 0) return done;
  }
  for (const peeked of await peekDueEvents(db, limit)) {
    let event = peeked;
    const deleted = event.event_type.endsWith('.deleted');
    if (event.is_thin && !deleted) {
      if (deps.leads !== undefined && !deps.leads(event.source)) continue; // the leader's job
      if (!hasClientFor(deps.clients, event.source)) {
        await deferEvent(
          db,
          event.id,
          `thin event: the ${event.source} side is not configured`,
          false,
        );
        countEvents(deps, event.source, 'retry');
        continue;
      }
      try {
        const full = await completeThinEvent(deps.clients, event);
        if (full === undefined) {
          await markEventSkipped(db, event.id, 'record not found upstream');
          countEvents(deps, event.source, 'done');
          done++;
          continue;
        }
        const unstorable = unstorableReason(full);
        if (unstorable !== undefined) {
          // Set aside for an operator, like a polled record that cannot be stored.
          await setEventAside(db, event.id, full, unstorable);
          logger.warn({ eventId: event.id, reason: unstorable }, 'record set aside');
          continue;
        }
        event = { ...event, payload: full, is_thin: false };
        await storeCompletedPayload(db, event.id, full);
      } catch (err) {
        const retryable = !(err instanceof UpstreamError) || err.retryable;
        logger.warn({ err, eventId: event.id }, 'could not complete a thin event');
        // Refused credentials pause the system; the event waits, it never goes dead for it.
        const dead =
          !(err instanceof CredentialsError) &&
          (!retryable || event.attempts + 1 >= MAX_EVENT_ATTEMPTS);
        await deferEvent(db, event.id, (err as Error).message, dead);
        countEvents(deps, event.source, dead ? 'dead' : 'retry');
        continue;
      }
    }
    try {
      const processed = await db.transaction().execute(async (trx) => {
        const claimed = await claimPendingEvent(trx, event.id);
        if (claimed === undefined) return false;
        // One record at a time across replicas; released at commit.
        await lockRecordKey(trx, claimed.source, claimed.record_type, claimed.record_id);
        // Its turn comes first. (One waiting out a backoff does not hold newer ones back: the
        // mirror ignores a state older than the one it holds.)
        if (await hasOlderDueEvent(trx, claimed)) return false;
        await processEvent({ db: trx, config: deps.config, logger, eventId: claimed.id }, claimed);
        await markEventsDone(trx, [claimed.id]);
        return true;
      });
      if (processed) {
        countEvents(deps, event.source, 'done');
        done++;
      }
    } catch (err) {
      logger.error({ err, eventId: event.id }, 'processing an event failed');
      const dead = event.attempts + 1 >= MAX_EVENT_ATTEMPTS;
      await deferEvent(db, event.id, (err as Error).message, dead);
      countEvents(deps, event.source, dead ? 'dead' : 'retry');
    }
  }
  return done;
}

function mirrorWriteOf(event: InboundEventRow): MirrorWrite | undefined {
  const fill = mirrorFillOf(event.record_type, event.payload, event.occurred_at);
  if (fill === undefined) return undefined;
  return {
    system: event.source,
    recordType: event.record_type,
    recordId: event.record_id,
    parentId: event.parent_id,
    data: event.payload,
    ...fill,
    eventId: event.id,
    winsTie: !isWriteFeedback(event.event_id),
  };
}

/**
 * The bulk path while the gate is closed: claims full, non-delete events of records that are
 * linked in no flow, writes the newest state of each record to the mirror in one statement and
 * marks the events done. Events of linked records (they still sync) and anything else are
 * left to the per-event path. Returns how many events it finished.
 */
async function fillMirrorInBulk(deps: WorkerDeps, limit: number): Promise<number> {
  return deps.db.transaction().execute(async (trx) => {
    const claimed = await claimDueFullEvents(trx, limit);
    if (claimed.length === 0) return 0;
    const linked = new Set<string>();
    for (const side of ['tidsbanken', 'poweroffice'] as const) {
      const ids = [...new Set(claimed.filter((e) => e.source === side).map((e) => e.record_id))];
      for (const r of await findLinkedRecords(trx, side, ids))
        linked.add(`${side}/${r.recordType}/${r.recordId}`);
    }
    const newest = new Map<string, { event: InboundEventRow; write: MirrorWrite; at: number }>();
    const finished: string[] = [];
    for (const event of claimed) {
      const key = `${event.source}/${event.record_type}/${event.record_id}`;
      if (linked.has(key)) continue;
      const write = mirrorWriteOf(event);
      finished.push(event.id);
      if (write === undefined) continue;
      const at =
        write.sourceUpdatedAt === null
          ? -Infinity
          : Date.parse(write.sourceUpdatedAt.replace(' ', 'T'));
      const held = newest.get(key);
      if (held === undefined || at > held.at || (at === held.at && write.winsTie !== false))
        newest.set(key, { event, write, at });
    }
    // In key order, as a gate-closed poll writes its page (storePolledRecords): two
    // transactions filling overlapping records lock them in the same order, never in a cycle.
    await upsertMirrorRecords(trx, sortByRecordKey([...newest.values()].map((n) => n.write)));
    await markEventsDone(trx, finished);
    const finishedIds = new Set(finished);
    for (const system of ['tidsbanken', 'poweroffice'] as const) {
      const n = claimed.filter((e) => e.source === system && finishedIds.has(e.id)).length;
      countEvents(deps, system, 'done', n);
    }
    return finished.length;
  });
}

/** Writes by (system, record type, record id), compared by code unit (PostgreSQL's "C"). */
function sortByRecordKey(writes: MirrorWrite[]): MirrorWrite[] {
  const cmp = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  return writes.sort(
    (a, b) =>
      cmp(a.system, b.system) || cmp(a.recordType, b.recordType) || cmp(a.recordId, b.recordId),
  );
}

/** One event inside its transaction: mirror, then link and diff in every flow of its type. */
export async function processEvent(ctx: SyncContext, event: InboundEventRow): Promise<void> {
  const adapter = adapterOf(event.record_type);
  if (adapter === undefined) return;
  const type = adapter.type;
  if (event.event_type.endsWith('.deleted')) {
    await markMirrorRecordDeleted(ctx.db, event.source, type, event.record_id);
    for (const flow of flowsForRecordType(type)) {
      const side = sideOf(flow, type);
      const link = await findActiveLink(ctx.db, flow.id, side, event.record_id);
      if (link === undefined) continue;
      const reason = `deleted in ${event.source}`;
      await unlinkLink(ctx.db, link.id, reason);
      await insertAuditEntries(ctx.db, [
        {
          system: event.source,
          recordType: type,
          recordId: event.record_id,
          kind: 'unlink',
          flow: flow.id,
          linkId: link.id,
          eventId: event.id,
          detail: { reason, tidsbankenId: link.tidsbanken_id, powerofficeId: link.poweroffice_id },
        },
      ]);
      ctx.logger.info(
        {
          flow: flow.id,
          link: link.id,
          system: event.source,
          recordId: event.record_id,
          decision: 'unlink',
          reason,
        },
        'sync decision',
      );
    }
    return;
  }
  const write = mirrorWriteOf(event);
  if (write === undefined) return;
  const fresh = await upsertMirrorRecord(ctx.db, write);
  if (!fresh) {
    ctx.logger.debug(
      { eventId: event.id, recordId: event.record_id },
      'older than the mirror: ignored',
    );
    return;
  }
  await syncRecord(ctx, event.source, type, event.record_id);
}

/** Links (if needed) and diffs one mirrored record in every flow it takes part in. */
export async function syncRecord(
  ctx: SyncContext,
  system: SystemName,
  type: RecordType,
  recordId: string,
): Promise<void> {
  const record = await getMirrorRecord(ctx.db, system, type, recordId);
  if (record === undefined || record.deleted_at !== null) return;
  const gateOpen = await isLinkGateOpen(ctx.db);
  for (const flow of flowsForRecordType(type)) {
    const side = sideOf(flow, type);
    let link = await findActiveLink(ctx.db, flow.id, side, recordId);
    link ??= (await tryLink(ctx, flow, side, record, gateOpen)).link;
    if (link !== undefined) await syncLink(ctx, flow, link.id);
  }
}

export interface SyncWorker {
  stop(): Promise<void>;
  /** Resolves once the inbox has no due events (tests, reconcile). */
  idle(): Promise<void>;
}

/** Runs the worker loop until stopped: process, or sleep `idleMs` when there is nothing due. */
export function startSyncWorker(deps: WorkerDeps, options: { idleMs?: number } = {}): SyncWorker {
  const idleMs = options.idleMs ?? 250;
  let running = true;
  let wake: (() => void) | undefined;
  let idleWaiters: (() => void)[] = [];
  const loop = (async () => {
    while (running) {
      let done = 0;
      try {
        done = await processDueEvents(deps);
        // References waiting for a link that now exists, however it was made.
        if (done === 0) done = await resolveWaitingReferences(deps);
        if (done === 0 && deps.sweep !== undefined) {
          await maybeRunInitialSweep({ ...deps }, deps.sweep);
        }
      } catch (err) {
        deps.logger.error({ err }, 'sync worker iteration failed');
      }
      if (done === 0) {
        for (const resolve of idleWaiters) resolve();
        idleWaiters = [];
        await new Promise<void>((resolve) => {
          wake = resolve;
          setTimeout(resolve, idleMs).unref();
        });
      }
    }
  })();
  return {
    async stop() {
      running = false;
      wake?.();
      await loop;
    },
    idle() {
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },
  };
}
