import type { Config } from '../config.js';
import type { Db, DbOrTrx } from '../db/database.js';
import {
  countPendingEvents,
  hasDueEvent,
  hasPendingEvent,
  insertInboundEvents,
  insertPolledEventsFillingMirror,
  type NewInboxEvent,
} from '../db/inbound-events.js';
import { findLinkedRecords, getMaxLinkId } from '../db/links.js';
import { haveFullReads } from '../db/poller-cursors.js';
import { hasRunningReconcileRun } from '../db/reconcile-runs.js';
import { analyzeMirror } from '../db/records.js';
import type { SystemName } from '../db/schema.js';
import { getSyncState, lockSyncState, setSyncState, shareLockSyncState } from '../db/sync-state.js';
import type { Logger } from '../lib/logger.js';
import { FLOWS } from './flows.js';
import { linkFlow, syncNewLinks } from './match.js';
import { mirrorFillOf } from './mirror-fill.js';

// The link gate (docs/ARCHITECTURE.md "Linking"): merge-rule matching starts only once the mirror holds a first
// full read of both sides, so arrival order never decides a match. Until then the worker only
// fills the mirror (and keeps syncing links that already exist); the sweep then matches every
// unlinked record over the whole mirror and opens the gate. A reconcile closes the gate again
// while it re-reads both sides.

const GATE = 'link-gate';
/** A sweep whose replica died is taken over after this long. */
const SWEEP_LEASE_MS = 10 * 60 * 1000;

export interface SweepRequirements {
  /** Record types whose first full read must be stored before the gate may open. */
  fullReads: { system: SystemName; recordType: string }[];
}

export async function isLinkGateOpen(db: DbOrTrx): Promise<boolean> {
  return (await getSyncState(db, GATE))?.open === true;
}

export async function closeLinkGate(db: Db, reason = 'reconcile'): Promise<void> {
  await setSyncState(db, GATE, { open: false, reason, closedAt: new Date().toISOString() });
}

/** Reopens the gate without a sweep (a reconcile that failed must not leave linking off). */
export async function openLinkGate(db: Db): Promise<void> {
  await setSyncState(db, GATE, { open: true, openedAt: new Date().toISOString() });
}

/**
 * A gate closed by a reconcile while no run is going (the run's process died and its run was
 * failed): handed to the next link sweep, which the worker runs once the inbox is drained
 * (maybeRunInitialSweep). A sweep that process had begun is abandoned with it. True when
 * the gate was released.
 */
export async function releaseAbandonedGate(db: Db): Promise<boolean> {
  const state = await getSyncState(db, GATE);
  if (state?.open !== false || state.reason !== 'reconcile') return false;
  return db.transaction().execute(async (trx) => {
    const locked = await lockSyncState(trx, GATE);
    if (locked.open !== false || locked.reason !== 'reconcile') return false;
    if (await hasRunningReconcileRun(trx)) return false;
    await setSyncState(trx, GATE, {
      open: false,
      reason: 'reconcile abandoned',
      closedAt: locked.closedAt,
    });
    return true;
  });
}

/**
 * Stores a page of polled records (full records, no deletions) in the inbox; returns how many
 * were new and how many of those are processed already. While the gate is closed and no sweep is running, what the worker would do with
 * them is done here, in the same statement: an unlinked record only fills the mirror (its
 * inbox row is stored processed, for its history), and the sweep links it later. A record
 * linked in some flow still syncs, so its event is left pending for the worker. The gate row
 * is share-locked meanwhile, so a sweep starts either before (and the page goes to the worker)
 * or after this page is in the mirror.
 */
export async function storePolledRecords(
  db: Db,
  events: NewInboxEvent[],
): Promise<{ inserted: number; processed: number }> {
  if (events.length === 0) return { inserted: 0, processed: 0 };
  return db.transaction().execute(async (trx) => {
    const gate = await shareLockSyncState(trx, GATE);
    if (gate.open === true || gate.sweepingBy !== undefined) {
      return { inserted: await insertInboundEvents(trx, events), processed: 0 };
    }
    const linked = new Set<string>();
    for (const side of ['tidsbanken', 'poweroffice'] as const) {
      const ids = [...new Set(events.filter((e) => e.source === side).map((e) => e.recordId))];
      for (const r of await findLinkedRecords(trx, side, ids))
        linked.add(`${side}/${r.recordType}/${r.recordId}`);
    }
    return insertPolledEventsFillingMirror(
      trx,
      events.map((event) => ({
        ...event,
        fill: linked.has(`${event.source}/${event.recordType}/${event.recordId}`)
          ? undefined
          : mirrorFillOf(event.recordType, event.payload, occurredAtOf(event)),
      })),
    );
  });
}

function occurredAtOf(event: NewInboxEvent): Date | null {
  const at = event.occurredAt;
  return at === undefined || at === null ? null : new Date(at);
}

/**
 * Waits until no event (up to `upToEventId`, when given) is pending in the inbox. `onPending`
 * is told how many are left, about every `reportMs` (a count, so not on every look).
 */
export async function waitForInboxDrained(
  db: Db,
  options: {
    upToEventId?: string;
    timeoutMs?: number;
    signal?: AbortSignal;
    pollMs?: number;
    onPending?: (pending: number) => void;
    reportMs?: number;
  } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 30 * 60 * 1000);
  let reportedAt = 0;
  for (;;) {
    options.signal?.throwIfAborted();
    if (!(await hasPendingEvent(db, options.upToEventId))) {
      options.onPending?.(0);
      return;
    }
    if (options.onPending !== undefined && Date.now() - reportedAt >= (options.reportMs ?? 1000)) {
      reportedAt = Date.now();
      options.onPending(await countPendingEvents(db, options.upToEventId));
    }
    if (Date.now() > deadline) throw new Error('timed out waiting for the inbox to drain');
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
}

export interface SweepDeps {
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
  /** Told each flow's progress whenever a step or a first-sync batch ends. */
  onProgress?: (flows: SweepFlowProgress[]) => void;
}

/** Where the sweep is in one flow (GET /admin/reconcile while `linking`). */
export interface SweepFlowProgress {
  flow: string;
  step: 'waiting' | 'matching' | 'first-sync' | 'done';
  /** Links made by merge rule or origin id. */
  linksMade: number;
  /** Records left unlinked with an ambiguous_match conflict (open). */
  ambiguous: number;
  /** New links whose first sync is done, of `linksMade`. */
  synced: number;
  commandsQueued: number;
}

export interface SweepResult {
  linksMade: number;
  conflicts: number;
  commandsQueued: number;
}

function add(into: SweepResult, counts: SweepResult): void {
  into.linksMade += counts.linksMade;
  into.conflicts += counts.conflicts;
  into.commandsQueued += counts.commandsQueued;
}

/**
 * Matches every unlinked mirror record of every flow over the whole mirror (set-based:
 * src/sync/match.ts), syncs each new link once in batches, then opens the gate. The closed
 * gate keeps anyone else from matching meanwhile.
 */
export async function runLinkSweep(deps: SweepDeps): Promise<SweepResult> {
  const { db, logger } = deps;
  const me = `${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const claimed = await db.transaction().execute(async (trx) => {
    const state = await lockSyncState(trx, GATE);
    const since = typeof state.sweepingSince === 'string' ? Date.parse(state.sweepingSince) : NaN;
    if (state.sweepingBy !== undefined && Date.now() - since < SWEEP_LEASE_MS) return false;
    await setSyncState(trx, GATE, {
      ...state,
      open: false,
      sweepingBy: me,
      sweepingSince: new Date().toISOString(),
    });
    return true;
  });
  const result: SweepResult = { linksMade: 0, conflicts: 0, commandsQueued: 0 };
  if (!claimed) return result;
  try {
    // Links made from here on are this sweep's: they get their first sync below.
    const before = await getMaxLinkId(db);
    const progress: SweepFlowProgress[] = FLOWS.map((flow) => ({
      flow: flow.id,
      step: 'waiting',
      linksMade: 0,
      ambiguous: 0,
      synced: 0,
      commandsQueued: 0,
    }));
    const report = () => deps.onProgress?.(progress.map((p) => ({ ...p })));
    await analyzeMirror(db);
    for (const [index, flow] of FLOWS.entries()) {
      const entry = progress[index]!;
      entry.step = 'matching';
      report();
      const linked = await linkFlow(deps, flow);
      add(result, linked);
      Object.assign(entry, {
        step: 'first-sync',
        linksMade: linked.linksMade,
        ambiguous: linked.conflicts,
        commandsQueued: linked.commandsQueued,
      });
      report();
      const synced = await syncNewLinks(deps, flow, before, (batch) => {
        entry.synced = batch.synced;
        entry.commandsQueued = linked.commandsQueued + batch.commandsQueued;
        report();
        logger.info({ flow: flow.id, ...batch }, 'link sweep: first sync in progress');
      });
      entry.step = 'done';
      report();
      result.commandsQueued += synced.commandsQueued;
      result.conflicts += synced.conflicts;
    }
  } catch (err) {
    await setSyncState(db, GATE, {
      open: false,
      reason: 'sweep failed',
      error: (err as Error).message,
    });
    throw err;
  }
  await setSyncState(db, GATE, {
    open: true,
    openedAt: new Date().toISOString(),
    lastSweep: result,
  });
  logger.info({ ...result, decision: 'link_sweep' }, 'link sweep done; merge-rule linking is on');
  return result;
}

/**
 * The first sweep on a fresh database: once every required first full read is stored and the
 * inbox holds nothing pending, sweep and open the gate. A gate closed by a reconcile is left
 * to the reconcile. Returns whether it swept.
 */
export async function maybeRunInitialSweep(
  deps: SweepDeps,
  requirements: SweepRequirements,
): Promise<boolean> {
  const state = await getSyncState(deps.db, GATE);
  if (state?.open === true || state?.reason === 'reconcile') return false;
  if (!(await haveFullReads(deps.db, requirements.fullReads))) return false;
  if (await hasDueEvent(deps.db)) return false;
  await runLinkSweep(deps);
  return true;
}

/** What the reconciler needs from the engine. */
export const linkGateEngine = {
  closeLinkGate,
  openLinkGate,
  waitForInboxDrained,
  runLinkSweep,
  releaseAbandonedGate,
};
