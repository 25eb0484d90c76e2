import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { getMaxInboundEventId } from '../db/inbound-events.js';
import {
  claimReconcileRun,
  failAbandonedReconcileRuns,
  finishReconcileRun,
  getCurrentReconcileRun,
  updateReconcileProgress,
} from '../db/reconcile-runs.js';
import type { ReconcileRunRow } from '../db/schema.js';
import { replicaId } from '../lib/leader.js';
import type { Logger } from '../lib/logger.js';
import type { Poller } from '../lib/pollers.js';
import type { SweepFlowProgress } from './sweep.js';

// Reconcile (POST /admin/reconcile, README "Reconcile"): read both systems in full, then match and
// sync. It only adds inbox events (through each poller's own full read, so every request is
// paced and deduplicated like any poll) and then asks the engine to link over the whole
// mirror, so it is safe while webhooks and pollers keep going.
//
//   record a run → close the link gate → full read of every poller → wait until the worker
//   has processed everything read → link sweep (links, conflicts, first-sync commands;
//   reopens the gate) → done
//
// The gate is closed first so that, while the mirror is being refilled, arrival order never
// decides a match (docs/ARCHITECTURE.md "Linking"): every new match waits for the sweep.

/** What reconcile needs from the sync engine (src/sync/sweep.ts). */
export interface ReconcileEngine {
  /** From now on new matches wait for the next link sweep. */
  closeLinkGate(db: Db): Promise<void>;
  /** Resolves once every inbox event up to `upToEventId` is processed (done or dead). */
  waitForInboxDrained(
    db: Db,
    options: {
      upToEventId?: string;
      timeoutMs?: number;
      signal?: AbortSignal;
      onPending?: (pending: number) => void;
    },
  ): Promise<void>;
  /** Matches every unlinked mirror record, queues first-sync commands, opens the gate. */
  runLinkSweep(deps: {
    db: Db;
    logger: Logger;
    config: Readonly<Config>;
    onProgress?: (flows: SweepFlowProgress[]) => void;
  }): Promise<{ linksMade: number; conflicts: number; commandsQueued: number }>;
  /** Reopens the gate without a sweep (a failed run); a sweep is run instead when absent. */
  openLinkGate?(db: Db): Promise<void>;
  /**
   * A gate a reconcile closed while no run is going any more (its process died): hands it to
   * the next link sweep, which the sync worker runs by itself. True when it did.
   */
  releaseAbandonedGate?(db: Db): Promise<boolean>;
}

export type ReconcilePhase = 'starting' | 'reading' | 'draining' | 'linking' | 'done' | 'failed';

export interface ReconcileReadProgress {
  system: string;
  recordType: string;
  status: 'waiting' | 'reading' | 'done' | 'failed';
  pages: number;
  records: number;
  /** Records new to the inbox (the rest were already stored with the same content). */
  inserted: number;
}

/** Stored in reconcile_runs.progress and answered by GET /admin/reconcile. */
export interface ReconcileProgress {
  phase: ReconcilePhase;
  /** One entry per system and record type, in read order. */
  read: ReconcileReadProgress[];
  recordsRead: number;
  /** While draining: inbox events read by this run that the worker has not processed yet. */
  pending: number | null;
  /** While linking (and after): each flow's step and counts. */
  linking: SweepFlowProgress[] | null;
  linksMade: number | null;
  conflicts: number | null;
  commandsQueued: number | null;
  /** Refreshed while the run's process is alive; a stale one means it died. */
  heartbeatAt: string;
  [key: string]: unknown;
}

export interface ReconcilerDeps {
  db: Db;
  logger: Logger;
  config: Readonly<Config>;
  pollers: readonly Poller[];
  engine: ReconcileEngine;
  /**
   * A run's owner holds it this long past each heartbeat; a running run past that has no
   * live owner and is failed. Default 30 s.
   */
  leaseTtlMs?: number;
  /** Runs from before runs had owners: taken as dead without a heartbeat this long. 5 min. */
  staleAfterMs?: number;
  /** How often a live run refreshes its heartbeat. Default 15 s, at most a third of the TTL. */
  heartbeatMs?: number;
  /** Longest wait for the worker to process what was read. Default 1 h. */
  drainTimeoutMs?: number;
}

export type ProgressListener = (progress: ReconcileProgress) => void;

export class Reconciler {
  private readonly logger: Logger;
  private readonly staleAfterMs: number;
  private readonly heartbeatMs: number;
  private readonly leaseTtlMs: number;
  private readonly drainTimeoutMs: number;
  private readonly listeners = new Set<ProgressListener>();
  private active: Promise<ReconcileRunRow | undefined> | undefined;
  private abort = new AbortController();

  constructor(private readonly deps: ReconcilerDeps) {
    this.logger = deps.logger.child({ module: 'reconcile' });
    this.staleAfterMs = deps.staleAfterMs ?? 5 * 60_000;
    this.leaseTtlMs = deps.leaseTtlMs ?? 30_000;
    this.heartbeatMs = Math.min(deps.heartbeatMs ?? 15_000, this.leaseTtlMs / 3);
    this.drainTimeoutMs = deps.drainTimeoutMs ?? 60 * 60_000;
  }

  /**
   * Starts a run in the background and answers at once with its row; when a run is already
   * going (here or on another replica), answers with that one and starts nothing.
   */
  async start(): Promise<{ run: ReconcileRunRow; started: boolean }> {
    const claimed = await this.deps.db.transaction().execute((trx) =>
      claimReconcileRun(trx, {
        staleAfterMs: this.staleAfterMs,
        progress: this.initial(),
        owner: replicaId,
        ttlMs: this.leaseTtlMs,
      }),
    );
    if (claimed.started) {
      this.active = this.execute(claimed.run).finally(() => {
        this.active = undefined;
      });
    }
    return claimed;
  }

  /** Starts a run and waits for it (the CLI). Rejects when another run is going. */
  async run(): Promise<ReconcileRunRow> {
    const { run, started } = await this.start();
    if (!started) {
      throw new Error(
        `reconcile run ${run.id} is already running (started ${iso(run.started_at)})`,
      );
    }
    const finished = await this.active;
    return finished ?? run;
  }

  /** The running or newest run, as stored (any replica). */
  current(): Promise<ReconcileRunRow | undefined> {
    return getCurrentReconcileRun(this.deps.db);
  }

  /**
   * Recovery without an operator (at start-up, on taking leadership, and periodically): a run
   * whose process died (kill -9, a lost node) is marked failed, and the link gate it left
   * closed goes to the next link sweep, so linking resumes by itself.
   */
  async recoverAbandoned(): Promise<void> {
    const { db, engine } = this.deps;
    const failed = await failAbandonedReconcileRuns(db, { staleAfterMs: this.staleAfterMs });
    if (failed.length > 0) {
      this.logger.warn({ runs: failed }, 'reconcile run of a stopped process marked failed');
    }
    if ((await engine.releaseAbandonedGate?.(db)) === true) {
      this.logger.warn(
        { decision: 'gate_released' },
        'link gate left closed by a stopped reconcile: linking resumes after a link sweep',
      );
    }
  }

  onProgress(listener: ProgressListener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Aborts a run in this process (shutdown) and waits for it to be recorded as failed. */
  async stop(): Promise<void> {
    this.abort.abort();
    await this.active;
    this.abort = new AbortController();
  }

  private initial(): ReconcileProgress {
    return {
      phase: 'starting',
      read: this.deps.pollers.map((p) => ({
        system: p.system,
        recordType: p.recordType,
        status: 'waiting',
        pages: 0,
        records: 0,
        inserted: 0,
      })),
      recordsRead: 0,
      pending: null,
      linking: null,
      linksMade: null,
      conflicts: null,
      commandsQueued: null,
      heartbeatAt: new Date().toISOString(),
    };
  }

  private async execute(run: ReconcileRunRow): Promise<ReconcileRunRow | undefined> {
    const { db, engine, pollers } = this.deps;
    const logger = this.logger.child({ runId: run.id });
    const progress = this.initial();
    const signal = this.abort.signal;
    let gateClosed = false;

    const saver = new ProgressSaver(progress, this.listeners, logger, (snapshot) =>
      updateReconcileProgress(db, run.id, snapshot, this.leaseTtlMs),
    );
    const heartbeat = setInterval(() => void saver.save(), this.heartbeatMs);
    heartbeat.unref();
    const step: RunStep = { progress, saver, signal, logger };

    logger.info(
      { pollers: pollers.map((p) => `${p.system}/${p.recordType}`) },
      'reconcile started',
    );
    try {
      await engine.closeLinkGate(db);
      gateClosed = true;

      await this.readAll(step);
      await this.drain(step);
      const sweep = await this.link(step);
      gateClosed = false;
      progress.linksMade = sweep.linksMade;
      progress.conflicts = sweep.conflicts;
      progress.commandsQueued = sweep.commandsQueued;
      progress.phase = 'done';
      clearInterval(heartbeat);
      await saver.save();
      logger.info({ ...sweep, recordsRead: progress.recordsRead }, 'reconcile done');
      return await finishReconcileRun(db, run.id, { status: 'done', progress });
    } catch (err) {
      clearInterval(heartbeat);
      return await this.fail(run, step, err, gateClosed);
    } finally {
      clearInterval(heartbeat);
      await saver.settle();
    }
  }

  /** Reading: a full read of every poller, one after the other, with its progress. */
  private async readAll({ progress, saver, signal }: RunStep): Promise<void> {
    progress.phase = 'reading';
    await saver.save();
    // One poller after another: pollers of one system share its pacer, so reading them
    // in parallel would not be faster, only less readable in the progress.
    for (const [index, poller] of this.deps.pollers.entries()) {
      signal.throwIfAborted();
      const entry = progress.read[index]!;
      entry.status = 'reading';
      await saver.save();
      try {
        const result = await poller.fullRead({
          origin: 'reconcile',
          onPage: (read) => {
            Object.assign(entry, read);
            saver.saveSoon();
          },
        });
        Object.assign(entry, {
          status: 'done',
          pages: result.pages,
          records: result.records,
          inserted: result.inserted,
        });
        progress.recordsRead += result.records;
      } catch (err) {
        entry.status = 'failed';
        throw new Error(`full read of ${poller.system}/${poller.recordType} failed`, {
          cause: err,
        });
      }
      await saver.save();
    }
  }

  /** Draining: waits until the worker has processed every inbox event read so far. */
  private async drain({ progress, saver, signal }: RunStep): Promise<void> {
    const { db, engine } = this.deps;
    progress.phase = 'draining';
    await saver.save();
    const upToEventId = await getMaxInboundEventId(db);
    await engine.waitForInboxDrained(db, {
      ...(upToEventId !== undefined ? { upToEventId } : {}),
      timeoutMs: this.drainTimeoutMs,
      signal,
      onPending: (pending) => {
        progress.pending = pending;
        saver.saveSoon();
      },
    });
  }

  /** Linking: the link sweep over the whole mirror (it reopens the gate); its counts. */
  private async link({
    progress,
    saver,
    logger,
  }: RunStep): Promise<{ linksMade: number; conflicts: number; commandsQueued: number }> {
    const { db, engine, config } = this.deps;
    progress.phase = 'linking';
    progress.pending = 0;
    await saver.save();
    return engine.runLinkSweep({
      db,
      logger,
      config,
      onProgress: (flows) => {
        progress.linking = flows;
        saver.saveSoon();
      },
    });
  }

  /** A failed run: logged, the gate reopened when it closed it, and the run recorded failed. */
  private async fail(
    run: ReconcileRunRow,
    { progress, saver, logger }: RunStep,
    err: unknown,
    gateClosed: boolean,
  ): Promise<ReconcileRunRow | undefined> {
    const message = describeError(err);
    logger.error({ err }, 'reconcile failed');
    if (gateClosed) await this.reopenGate(logger);
    progress.phase = 'failed';
    await saver.save();
    try {
      return await finishReconcileRun(this.deps.db, run.id, {
        status: 'failed',
        progress,
        error: message.slice(0, 2000),
      });
    } catch (finishErr) {
      // The heartbeat has stopped: the row turns stale and the next start marks it failed.
      logger.error({ err: finishErr }, 'could not record the failed reconcile run');
      return undefined;
    }
  }

  // A closed gate must never outlive a failed run, or new matches would wait forever.
  private async reopenGate(logger: Logger): Promise<void> {
    const { db, engine, config } = this.deps;
    try {
      if (engine.openLinkGate !== undefined) await engine.openLinkGate(db);
      else await engine.runLinkSweep({ db, logger, config });
    } catch (err) {
      logger.error({ err }, 'could not reopen the link gate after a failed reconcile');
    }
  }
}

/** What each step of a run works with. */
interface RunStep {
  progress: ReconcileProgress;
  saver: ProgressSaver;
  signal: AbortSignal;
  logger: Logger;
}

/**
 * A run's progress, told to the listeners and stored in its row. Writes are serialized (last
 * one wins in order) and never fail the run.
 */
class ProgressSaver {
  private writes: Promise<void> = Promise.resolve();
  private savedAt = 0;
  private trailing: NodeJS.Timeout | undefined;

  constructor(
    private readonly progress: ReconcileProgress,
    private readonly listeners: ReadonlySet<ProgressListener>,
    private readonly logger: Logger,
    private readonly write: (snapshot: ReconcileProgress) => Promise<void>,
  ) {}

  /** Tells the listeners and stores the progress now. */
  save(): Promise<void> {
    return this.store(this.notify());
  }

  // Counts that move often (pages, events left, first-sync batches) reach the listeners at
  // once and the database at most about once a second (the last one always); phase changes
  // are stored at once.
  saveSoon(): void {
    const snapshot = this.notify();
    const wait = this.savedAt + 1000 - Date.now();
    if (wait <= 0) {
      void this.store(snapshot);
      return;
    }
    this.trailing ??= setTimeout(() => void this.save(), wait);
    this.trailing.unref();
  }

  /** Drops a pending trailing save and waits for the writes under way. */
  async settle(): Promise<void> {
    clearTimeout(this.trailing);
    await this.writes;
  }

  private notify(): ReconcileProgress {
    this.progress.heartbeatAt = new Date().toISOString();
    const snapshot = structuredClone(this.progress);
    for (const listener of this.listeners) listener(snapshot);
    return snapshot;
  }

  private store(snapshot: ReconcileProgress): Promise<void> {
    this.savedAt = Date.now();
    clearTimeout(this.trailing);
    this.trailing = undefined;
    this.writes = this.writes
      .then(() => this.write(snapshot))
      .catch((err: unknown) => {
        this.logger.warn({ err }, 'could not store reconcile progress');
      });
    return this.writes;
  }
}

function describeError(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const cause = err.cause instanceof Error ? `: ${err.cause.message}` : '';
  return `${err.message}${cause}`;
}

/** The API shape of a run (GET/POST /admin/reconcile). */
export function toReconcileRunDto(run: ReconcileRunRow) {
  return {
    id: String(run.id),
    status: run.status,
    progress: run.progress,
    error: run.error,
    startedAt: iso(run.started_at),
    finishedAt: run.finished_at === null ? null : iso(run.finished_at),
  };
}

function iso(value: unknown): string {
  return (value instanceof Date ? value : new Date(String(value))).toISOString();
}
