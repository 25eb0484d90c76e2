import type { Db } from './database.js';
import {
  insertInboundEvent,
  insertInboundEventBatch,
  type NewInboxEvent,
} from './inbound-events.js';

// Group commit for the webhook inbox. Every accepted webhook needs one durable insert
// before its 202; one transaction per request makes the commit (and its WAL flush) the
// bottleneck under load. Here concurrent requests share one multi-row INSERT: each caller
// still gets its answer only after the statement holding its row has committed, so
// "answered 202" still means "durable". With no load a batch is one row and costs nothing
// extra: a batch starts as soon as no flush is in flight.
//
// One flush at a time by default: what arrives while a statement runs goes into the next
// one. Each statement has a fixed cost far above its per-row cost (measured here: ~250 µs
// of PostgreSQL CPU and ~50-100 µs of ours per statement, ~20 µs per row), so fewer, larger
// statements are cheaper: against two flushes at a time, bench/ingest measured PostgreSQL
// CPU per webhook -24 % and +5 % webhooks/s (bench/README.md, ingest).

//
// Bounded: a request waits at most `timeoutMs` for its row (then InboxUnavailableError: the
// webhook answers 503 and the sender retries), and at most `maxWaiting` requests holding at
// most `maxWaitingBytes` of bodies wait at once; one more is refused at once. A hung database
// thus costs a bounded amount of memory and every caller an answer within the timeout.

export interface InboxWriteResult {
  duplicate: boolean;
}

export interface InboxWriter {
  /** `bytes`: the size of the request body behind the event (counts against the bound). */
  write(event: NewInboxEvent, bytes?: number): Promise<InboxWriteResult>;
  /** Writes queued or in flight (waiting callers). */
  readonly waiting: number;
}

/** The row could not be stored in time, or too many are waiting: not accepted. */
export class InboxUnavailableError extends Error {
  constructor(readonly reason: 'full' | 'timeout') {
    super(
      reason === 'full'
        ? 'Too many events are waiting for the database.'
        : 'The database did not take the event in time.',
    );
    this.name = 'InboxUnavailableError';
  }
}

interface Pending {
  event: NewInboxEvent;
  bytes: number;
  resolve(result: InboxWriteResult): void;
  reject(err: unknown): void;
}

export interface InboxWriterOptions {
  maxBatch?: number;
  maxConcurrentFlushes?: number;
  /** Callers waiting at once (queued or in a flush); beyond it a write is refused at once. */
  maxWaiting?: number;
  /** Request body bytes waiting at once; beyond it a write is refused at once. */
  maxWaitingBytes?: number;
  /** Longest a caller waits for its row. */
  timeoutMs?: number;
}

/** Under the webhook path's 5 s answer, with room for reading and checking the request. */
export const INBOX_WRITE_TIMEOUT_MS = 3000;

export function createInboxWriter(db: Db, options: InboxWriterOptions = {}): InboxWriter {
  const maxBatch = options.maxBatch ?? 200;
  const maxConcurrent = options.maxConcurrentFlushes ?? 1;
  const maxWaiting = options.maxWaiting ?? 1000;
  const maxWaitingBytes = options.maxWaitingBytes ?? 64 * 1024 * 1024;
  const timeoutMs = options.timeoutMs ?? INBOX_WRITE_TIMEOUT_MS;
  let queue: Pending[] = [];
  let flushing = 0;
  let scheduled = false;
  // Callers and body bytes held: queued, or in a flush that has not finished (its rows are
  // in memory until then, whether or not the caller gave up).
  let waiting = 0;
  let waitingBytes = 0;
  const letGo = (pending: Pending) => {
    waiting -= 1;
    waitingBytes -= pending.bytes;
  };

  const schedule = () => {
    if (scheduled || flushing >= maxConcurrent || queue.length === 0) return;
    scheduled = true;
    // setImmediate, not a microtask: requests whose bodies finished in the same I/O poll
    // phase join this batch.
    setImmediate(() => {
      scheduled = false;
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      if (batch.length === 0) return;
      flushing += 1;
      void flush(db, batch).finally(() => {
        for (const pending of batch) letGo(pending);
        flushing -= 1;
        schedule();
      });
      schedule();
    });
  };

  return {
    get waiting() {
      return waiting;
    },
    write(event, bytes = 0) {
      if (waiting >= maxWaiting || (waiting > 0 && waitingBytes + bytes > maxWaitingBytes)) {
        return Promise.reject(new InboxUnavailableError('full'));
      }
      return new Promise<InboxWriteResult>((resolve, reject) => {
        const pending = pendingWrite(event, bytes, timeoutMs, resolve, reject, () => {
          // Still queued: it never reaches the database. Already in a flush: its row may
          // still commit, and the sender's retry is then a duplicate (stored once).
          const index = queue.indexOf(pending);
          if (index >= 0) {
            queue.splice(index, 1);
            letGo(pending);
          }
        });
        waiting += 1;
        waitingBytes += bytes;
        queue.push(pending);
        schedule();
      });
    },
  };
}

/**
 * A caller's write waiting for the statement holding its row: settled once, by the flush or
 * by the timeout (`onTimeout` runs first, then the caller gets InboxUnavailableError).
 */
function pendingWrite(
  event: NewInboxEvent,
  bytes: number,
  timeoutMs: number,
  resolve: (result: InboxWriteResult) => void,
  reject: (err: Error) => void,
  onTimeout: () => void,
): Pending {
  let settled = false;
  const timer = setTimeout(() => {
    settled = true;
    onTimeout();
    reject(new InboxUnavailableError('timeout'));
  }, timeoutMs);
  return {
    event,
    bytes,
    resolve: (result) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    },
    reject: (err) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(err instanceof Error ? err : new Error(String(err)));
    },
  };
}

const keyOf = (event: NewInboxEvent) => `${event.source}\u0000${event.eventId}`;

async function flush(db: Db, batch: Pending[]): Promise<void> {
  if (batch.length === 1) {
    const only = batch[0]!;
    try {
      const { duplicate } = await insertInboundEvent(db, only.event);
      only.resolve({ duplicate });
    } catch (err) {
      only.reject(err);
    }
    return;
  }
  // A webhook-id repeated inside one batch: only the first occurrence goes into the
  // multi-row insert (see the end for the others).
  const firsts = new Map<string, Pending>();
  const repeats: Pending[] = [];
  for (const pending of batch) {
    const key = keyOf(pending.event);
    if (firsts.has(key)) repeats.push(pending);
    else firsts.set(key, pending);
  }
  const unique = [...firsts.values()];
  let inserted: Set<string>;
  try {
    // Both unique indexes (source+event id, record+content) turn a conflict into "skip";
    // rows skipped are exactly the ones missing from what the insert returns.
    const rows = await insertInboundEventBatch(
      db,
      unique.map(({ event }) => event),
    );
    inserted = new Set(rows.map((r) => `${r.source}\u0000${r.event_id}`));
  } catch {
    // One bad row must not fail its neighbours: fall back to one insert each, so only the
    // row that really fails gets an error.
    await Promise.all(batch.map((pending) => flush(db, [pending])));
    return;
  }
  for (const pending of unique) pending.resolve({ duplicate: !inserted.has(keyOf(pending.event)) });
  // As if sent one after another: a repeat is a duplicate of a stored first occurrence;
  // when the first was not stored (its content was already known) the repeat gets its own
  // try, in order.
  for (const pending of repeats) {
    if (inserted.has(keyOf(pending.event))) pending.resolve({ duplicate: true });
    else await flush(db, [pending]);
  }
}
