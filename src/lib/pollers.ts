import type { Db } from '../db/database.js';
import {
  insertRejectedRecords,
  resolveRejectedRecords,
  unstorableReason,
  type NewInboxEvent,
  type RejectedInboxRecord,
} from '../db/inbound-events.js';
import { getPollerCursor, recordPollFailure, recordPollSuccess } from '../db/poller-cursors.js';
import type { SystemName } from '../db/schema.js';
import {
  parentIdOf,
  type Clients,
  type RecordAdapter,
  type VendorRecord,
} from '../record-adapter.js';
import { storePolledRecords } from '../sync/sweep.js';
import type { HeldTerm } from './leader.js';
import type { ListPage } from './list-page.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { RequestOptions } from './upstream.js';

// The change poller: a "virtual webhook" (docs/ARCHITECTURE.md "Change sources"). Neither API pushes master-data
// changes, so each (system, record type) is read every interval from a stored cursor, and
// every record read goes to the same inbox a webhook writes to. Re-reading is free: the
// inbox stores a (record, content) pair once, so the overlap window costs requests, not rows.

/** What a poller needs to know about one record type of one system. */
export interface PollSource<T> {
  system: SystemName;
  recordType: string;
  /**
   * Pages of records changed after `since` (a value from `formatSince`); all without it.
   * Items that failed their schema come set aside in `rejected`.
   */
  list(since: string | undefined, options: RequestOptions): AsyncIterable<ListPage<T>>;
  /** The vendor's filter value for an instant (epoch ms). */
  formatSince(ms: number): string;
  /** The record's id, parent (contact persons), last-changed time, and the payload to store. */
  describe(record: T): {
    recordId: string;
    parentId?: string | null;
    lastChanged: string | null | undefined;
    payload: Record<string, unknown>;
  };
}

/**
 * The poll source of one record type through its adapter; undefined when its vendor is not
 * configured.
 */
export function adapterPollSource(
  adapter: RecordAdapter,
  clients: Clients,
): PollSource<VendorRecord> | undefined {
  const api = adapter.connect(clients);
  if (api === undefined) return undefined;
  return {
    system: adapter.system,
    recordType: adapter.type,
    list: (since, options) => api.listChangedSince(since, options),
    formatSince: (ms) => adapter.formatSince(ms),
    describe: (record) => {
      const changed = record[adapter.updatedAtField];
      return {
        recordId: String(record.Id),
        parentId: parentIdOf(adapter, record),
        lastChanged: typeof changed === 'string' ? changed : null,
        payload: record,
      };
    },
  };
}

export interface PollResult {
  system: SystemName;
  recordType: string;
  /** Whether this run read everything (first run, or an on-demand full read). */
  full: boolean;
  pages: number;
  records: number;
  /** New inbox rows (records not seen with this content before). */
  inserted: number;
  /** Records set aside (not storable or readable as they are) and newly stored as such. */
  rejected: number;
  /** The stored cursor after the run. */
  cursor: string | undefined;
}

export interface ChangePollerOptions {
  db: Db;
  logger: Logger;
  /** Counts the records a gate-closed poll puts straight into the mirror as processed events. */
  metrics?: Metrics | undefined;
  /** Period between the end of one poll and the start of the next; 0 turns polling off. */
  intervalMs: number;
  /** How far before the cursor each poll starts reading again (clock skew, late commits). */
  overlapMs: number;
}

/** The public face of a poller, whatever record type it reads. */
export interface Poller {
  readonly system: SystemName;
  readonly recordType: string;
  readonly isRunning: boolean;
  /**
   * Reads started and finished so far (timed polls and full reads, failed ones too; one at a
   * time, in order): a caller waits for a read that started after some moment to end.
   */
  readonly readsStarted: number;
  readonly readsCompleted: number;
  /**
   * The number (counted by readsStarted) of the newest read that succeeded; 0 when none has.
   * `lastSuccessfulRead > mark` says a read that started after `readsStarted` was `mark` has
   * read the whole feed and stored it in the inbox.
   */
  readonly lastSuccessfulRead: number;
  /** Timed polls under the leader's lease `term`: fenced (src/lib/leader.ts) when given. */
  start(term?: HeldTerm): void;
  stop(options?: { abort?: boolean }): Promise<void>;
  pollOnce(): Promise<PollResult>;
  fullRead(options?: FullReadOptions): Promise<PollResult>;
}

export interface FullReadOptions {
  origin?: 'poller' | 'reconcile';
  /** Told the running totals after each page is stored (a reconcile's progress). */
  onPage?: (read: { pages: number; records: number; inserted: number }) => void;
  /** A leader's read: its requests and its cursor write are fenced by this term. */
  term?: HeldTerm | undefined;
}

export class ChangePoller<T = unknown> implements Poller {
  readonly system: SystemName;
  readonly recordType: string;
  private readonly db: Db;
  private readonly logger: Logger;
  private readonly metrics: Metrics | undefined;
  private readonly intervalMs: number;
  private readonly overlapMs: number;
  private timer: NodeJS.Timeout | undefined;
  private started = false;
  private inFlight: Promise<unknown> | undefined;
  private tail: Promise<unknown> = Promise.resolve();
  private abort = new AbortController();
  private readsBegun = 0;
  private completed = 0;
  private succeeded = 0;
  private term: HeldTerm | undefined;

  constructor(
    private readonly source: PollSource<T>,
    options: ChangePollerOptions,
  ) {
    this.system = source.system;
    this.recordType = source.recordType;
    this.db = options.db;
    this.metrics = options.metrics;
    this.intervalMs = options.intervalMs;
    this.overlapMs = options.overlapMs;
    this.logger = options.logger.child({
      module: 'poller',
      system: source.system,
      recordType: source.recordType,
    });
  }

  /** Polls now, then every interval after each poll ends. No-op when the interval is 0. */
  start(term?: HeldTerm): void {
    if (this.started || this.intervalMs <= 0) return;
    this.started = true;
    this.term = term;
    this.abort = new AbortController();
    this.scheduleNext(0);
  }

  /** Stops the timer and waits for a poll in flight; `abort` cuts its requests short. */
  async stop(options: { abort?: boolean } = {}): Promise<void> {
    this.started = false;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (options.abort === true) this.abort.abort();
    // Whatever poll or full read is running (timed or called directly) ends before we return.
    await this.inFlight;
    await this.tail;
  }

  get isRunning(): boolean {
    return this.started;
  }

  get readsStarted(): number {
    return this.readsBegun;
  }

  get readsCompleted(): number {
    return this.completed;
  }

  get lastSuccessfulRead(): number {
    return this.succeeded;
  }

  /** One incremental poll (a full read when no cursor is stored yet). Rejects on failure. */
  pollOnce(): Promise<PollResult> {
    return this.exclusive(() => this.run(false, 'poller', undefined, this.term));
  }

  /**
   * Reads everything now, whatever the cursor, and stamps full_read_at. The reconcile
   * feature uses this with origin 'reconcile'.
   */
  fullRead(options: FullReadOptions = {}): Promise<PollResult> {
    return this.exclusive(() =>
      this.run(true, options.origin ?? 'poller', options.onPage, options.term),
    );
  }

  private scheduleNext(delayMs: number): void {
    this.timer = setTimeout(() => {
      const poll = this.pollOnce()
        .then((result) => {
          this.logger.debug(result, 'poll done');
        })
        .catch(() => {
          // Already logged and recorded on the cursor row; the next interval tries again.
        })
        .finally(() => {
          this.inFlight = undefined;
          if (this.started) this.scheduleNext(this.intervalMs);
        });
      this.inFlight = poll;
    }, delayMs);
    // The HTTP server keeps the process alive; a poller alone must not.
    this.timer.unref();
  }

  /** Runs one read at a time per poller: a full read and a timed poll never interleave. */
  private exclusive<R>(fn: () => Promise<R>): Promise<R> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }

  private async run(
    forceFull: boolean,
    origin: 'poller' | 'reconcile',
    onPage: FullReadOptions['onPage'],
    term: HeldTerm | undefined,
  ): Promise<PollResult> {
    const { system, recordType } = this;
    const read = ++this.readsBegun;
    try {
      const { full, since } = await this.readStart(forceFull);
      const totals = await this.readPages(since, origin, onPage, term);
      const { pages, records, inserted, rejected, maxChanged } = totals;
      const cursor = maxChanged !== undefined ? new Date(maxChanged).toISOString() : undefined;
      await recordPollSuccess(this.db, { system, recordType, cursor, fullRead: full }, term);
      const stored = await getPollerCursor(this.db, system, recordType);
      this.succeeded = Math.max(this.succeeded, read);
      return {
        system,
        recordType,
        full,
        pages,
        records,
        inserted,
        rejected,
        cursor: stored?.cursor ?? undefined,
      };
    } catch (error) {
      await this.recordFailure(error, term);
      throw error;
    } finally {
      this.completed++;
    }
  }

  /** Whether this read is full, and the vendor's filter value it starts from when it is not. */
  private async readStart(
    forceFull: boolean,
  ): Promise<{ full: boolean; since: string | undefined }> {
    const row = await getPollerCursor(this.db, this.system, this.recordType);
    const cursorMs = row?.cursor != null ? parseTimestamp(row.cursor) : undefined;
    const full = forceFull || cursorMs === undefined;
    const since =
      full || cursorMs === undefined
        ? undefined
        : this.source.formatSince(cursorMs - this.overlapMs);
    return { full, since };
  }

  /** Reads every page changed since `since` and stores each before moving on; the totals. */
  private async readPages(
    since: string | undefined,
    origin: 'poller' | 'reconcile',
    onPage: FullReadOptions['onPage'],
    term: HeldTerm | undefined,
  ): Promise<ReadTotals> {
    const { system } = this;
    const totals: ReadTotals = {
      pages: 0,
      records: 0,
      inserted: 0,
      rejected: 0,
      maxChanged: undefined,
    };
    const options: RequestOptions = {
      priority: 'poll',
      signal: this.abort.signal,
      ...(term !== undefined ? { fence: term.valid } : {}),
    };
    // One page read ahead: the next request is under way while this page is stored.
    const reader = this.source.list(since, options)[Symbol.asyncIterator]();
    let ahead = reader.next();
    let finished = false;
    try {
      for (;;) {
        const waitStart = performance.now();
        const next = await ahead;
        this.metrics?.pollPageWait.observe({ system }, (performance.now() - waitStart) / 1000);
        if (next.done === true) {
          finished = true;
          break;
        }
        ahead = reader.next();
        // Settled below, or abandoned with the read: never an unhandled rejection meanwhile.
        ahead.catch(() => undefined);
        await this.storePage(next.value, origin, totals);
        const { pages, records, inserted } = totals;
        onPage?.({ pages, records, inserted });
      }
    } finally {
      // A read that failed half-way: the generator stops after the request it has under way.
      if (!finished) void reader.return?.(undefined).catch(() => undefined);
    }
    return totals;
  }

  /** Stores one page in the inbox (its unreadable records set aside) and adds it to `totals`. */
  private async storePage(
    page: ListPage<T>,
    origin: 'poller' | 'reconcile',
    totals: ReadTotals,
  ): Promise<void> {
    const { system } = this;
    totals.pages++;
    totals.records += page.records.length + page.rejected.length;
    const { events, setAside } = this.inboxRows(page, origin, totals);
    // Stored page by page; the cursor moves only after the last page is stored, so a
    // poll that fails half-way reads the same range again next time.
    const stored = await storePolledRecords(this.db, events);
    totals.inserted += stored.inserted;
    if (stored.processed > 0) {
      this.metrics?.eventsProcessed.inc({ system, result: 'done' }, stored.processed);
    }
    // A record read valid settles what was set aside for it before.
    const resolved = await resolveRejectedRecords(
      this.db,
      system,
      this.recordType,
      events.map((e) => e.recordId),
    );
    if (resolved > 0) {
      this.logger.info({ resolved }, 'records set aside before were read again valid: resolved');
    }
    if (setAside.length > 0) {
      const stored = await insertRejectedRecords(this.db, setAside);
      totals.rejected += stored;
      if (stored > 0) {
        this.logger.warn(
          { records: setAside.map((r) => ({ recordId: r.recordId, reason: r.reason })) },
          'records set aside: they cannot be stored or read as they are (GET /admin/events?status=dead)',
        );
      }
    }
  }

  /**
   * A page as inbox events and records set aside; moves `totals.maxChanged` to the newest
   * last-changed time on the page.
   */
  private inboxRows(
    page: ListPage<T>,
    origin: 'poller' | 'reconcile',
    totals: ReadTotals,
  ): { events: NewInboxEvent[]; setAside: RejectedInboxRecord[] } {
    const { system, recordType } = this;
    const events: NewInboxEvent[] = [];
    const setAside: RejectedInboxRecord[] = page.rejected.map((item) => ({
      source: system,
      origin,
      recordType,
      recordId: item.recordId,
      raw: item.raw,
      reason: item.reason,
    }));
    for (const record of page.records) {
      const { recordId, parentId, lastChanged, payload } = this.source.describe(record);
      // The cursor moves past a record set aside too: it waits for an operator's retry
      // or its next change, never holding back the rest of the feed.
      const changedMs = lastChanged != null ? parseTimestamp(lastChanged) : undefined;
      const { maxChanged } = totals;
      if (changedMs !== undefined && (maxChanged === undefined || changedMs > maxChanged)) {
        totals.maxChanged = changedMs;
      }
      const unstorable = unstorableReason(payload);
      if (unstorable !== undefined) {
        setAside.push({
          source: system,
          origin,
          recordType,
          recordId,
          parentId: parentId ?? null,
          raw: payload,
          reason: unstorable,
        });
        continue;
      }
      events.push({
        source: system,
        origin,
        // No event id: the database makes it of the content hash (a re-read of an
        // unchanged record is the same event).
        eventType: `${recordType}.updated`,
        recordType,
        recordId,
        parentId: parentId ?? null,
        payload,
        isThin: false,
        occurredAt: changedMs !== undefined ? new Date(changedMs) : null,
      });
    }
    return { events, setAside };
  }

  /** Logs a failed read and records it on the cursor row (the cursor stays where it was). */
  private async recordFailure(error: unknown, term: HeldTerm | undefined): Promise<void> {
    const { system, recordType } = this;
    const message = error instanceof Error ? error.message : String(error);
    this.logger.error({ err: error }, 'poll failed; the cursor stays where it was');
    try {
      await recordPollFailure(this.db, { system, recordType, error: message.slice(0, 2000) }, term);
    } catch (recordError) {
      this.logger.error({ err: recordError }, 'could not record the poll failure');
    }
  }
}

/** Running totals of one read. */
interface ReadTotals {
  pages: number;
  records: number;
  inserted: number;
  rejected: number;
  /** The newest last-changed time read (epoch ms): the next cursor. */
  maxChanged: number | undefined;
}

/**
 * Epoch ms of a vendor timestamp. A timestamp without an offset is taken as UTC (Tidsbanken
 * Kunde timestamps have been seen an hour off, docs/vendor-apis.md: the overlap window absorbs
 * that, we do not guess). PowerOffice's "2021-09-25 08:03:00.123456+00:00" parses as is.
 */
export function parseTimestamp(value: string): number | undefined {
  const trimmed = value.trim();
  if (trimmed === '') return undefined;
  const hasZone = /(?:z|[+-]\d{2}:?\d{2})$/i.test(trimmed);
  const hasTime = /\d[t ]\d/i.test(trimmed);
  const ms = Date.parse(hasZone || !hasTime ? trimmed : `${trimmed}Z`);
  return Number.isFinite(ms) ? ms : undefined;
}

export async function stopPollers(
  pollers: readonly Poller[],
  options: { abort?: boolean } = {},
): Promise<void> {
  await Promise.all(pollers.map((poller) => poller.stop(options)));
}

/** A full read of every given poller, one after the other (they share the vendor's pacer). */
export async function fullReadAll(
  pollers: readonly Poller[],
  origin: 'poller' | 'reconcile' = 'reconcile',
): Promise<PollResult[]> {
  const results: PollResult[] = [];
  for (const poller of pollers) results.push(await poller.fullRead({ origin }));
  return results;
}
