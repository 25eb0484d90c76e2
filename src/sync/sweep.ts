import PQueue from 'p-queue';
import type { Config } from '../config.js';
import type { Db, DbOrTrx } from '../db/database.js';
import { hasDueEvent, hasPendingEvent } from '../db/inbound-events.js';
import { listActiveLinkIds } from '../db/links.js';
import { haveFullReads } from '../db/poller-cursors.js';
import { listMirrorRecords } from '../db/records.js';
import type { RecordRow, SystemName } from '../db/schema.js';
import { getSyncState, lockSyncState, setSyncState } from '../db/sync-state.js';
import type { Logger } from '../lib/logger.js';
import { FLOWS, type FlowDefinition } from './flows.js';
import { syncLink, tryLink, type SyncContext } from './link.js';

// The link gate (DESIGN.md §1): merge-rule matching starts only once the mirror holds a first
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

/** Waits until no event (up to `upToEventId`, when given) is pending in the inbox. */
export async function waitForInboxDrained(
  db: Db,
  options: { upToEventId?: string; timeoutMs?: number; signal?: AbortSignal; pollMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + (options.timeoutMs ?? 30 * 60 * 1000);
  for (;;) {
    options.signal?.throwIfAborted();
    if (!(await hasPendingEvent(db, options.upToEventId))) return;
    if (Date.now() > deadline) throw new Error('timed out waiting for the inbox to drain');
    await new Promise((r) => setTimeout(r, options.pollMs ?? 200));
  }
}

export interface SweepDeps {
  db: Db;
  config: Readonly<Config>;
  logger: Logger;
}

export interface SweepResult {
  linksMade: number;
  conflicts: number;
  commandsQueued: number;
}

const SWEEP_CHUNK = 100;
const SWEEP_CONCURRENCY = 4;

function add(into: SweepResult, counts: SweepResult): void {
  into.linksMade += counts.linksMade;
  into.conflicts += counts.conflicts;
  into.commandsQueued += counts.commandsQueued;
}

async function sweepRecord(
  ctx: SyncContext,
  flow: FlowDefinition,
  side: SystemName,
  record: RecordRow,
  result: SweepResult,
): Promise<void> {
  const outcome = await tryLink(ctx, flow, side, record, true);
  if (outcome.conflict) result.conflicts++;
  if (outcome.commandQueued) result.commandsQueued++;
  if (outcome.link !== undefined) {
    result.linksMade++;
    const sync = await syncLink(ctx, flow, outcome.link.id);
    result.commandsQueued += sync.commands.length;
    result.conflicts += sync.conflicts;
  }
}

async function sweepChunk(
  deps: SweepDeps,
  flow: FlowDefinition,
  side: SystemName,
  chunk: RecordRow[],
  result: SweepResult,
): Promise<void> {
  const { db, logger } = deps;
  const inOne = (records: RecordRow[]) =>
    db.transaction().execute(async (trx) => {
      const local: SweepResult = { linksMade: 0, conflicts: 0, commandsQueued: 0 };
      for (const record of records) {
        await sweepRecord({ db: trx, config: deps.config, logger }, flow, side, record, local);
      }
      return local;
    });
  try {
    add(result, await inOne(chunk));
  } catch (err) {
    logger.warn({ err, flow: flow.id, side }, 'sweep chunk failed; retrying it record by record');
    for (const record of chunk) {
      try {
        add(result, await inOne([record]));
      } catch (recordErr) {
        logger.error(
          { err: recordErr, flow: flow.id, side, recordId: record.record_id },
          'sweep could not process a record',
        );
      }
    }
  }
}

/**
 * Matches every unlinked mirror record of every flow over the whole mirror, syncs each new
 * link once, then opens the gate. A chunk of records per transaction, so a large sweep never
 * holds one huge transaction; the closed gate keeps anyone else from matching meanwhile.
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
    for (const flow of FLOWS) {
      for (const side of ['tidsbanken', 'poweroffice'] as const) {
        const type = side === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice;
        const linked = await listActiveLinkIds(db, flow.id, side);
        const unlinked = (await listMirrorRecords(db, side, type)).filter(
          (r) => !linked.has(r.record_id),
        );
        // Records go in chunks, one transaction each (the per-record work is a dozen small
        // statements; a commit per record would double it). A chunk that fails is redone one
        // record per transaction, so one bad record cannot stop the sweep.
        const chunks: RecordRow[][] = [];
        for (let i = 0; i < unlinked.length; i += SWEEP_CHUNK)
          chunks.push(unlinked.slice(i, i + SWEEP_CHUNK));
        // A few chunks at a time: the work is round trips, and the database has room for more
        // than one. Chunks hold distinct records, and a link's unique indexes settle any race.
        const queue = new PQueue({ concurrency: SWEEP_CONCURRENCY });
        await queue.addAll(
          chunks.map((chunk) => () => sweepChunk(deps, flow, side, chunk, result)),
        );
      }
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
export const linkGateEngine = { closeLinkGate, openLinkGate, waitForInboxDrained, runLinkSweep };
