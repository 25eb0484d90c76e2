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

export interface InboxWriteResult {
  duplicate: boolean;
}

export interface InboxWriter {
  write(event: NewInboxEvent): Promise<InboxWriteResult>;
}

interface Pending {
  event: NewInboxEvent;
  resolve(result: InboxWriteResult): void;
  reject(err: unknown): void;
}

export function createInboxWriter(
  db: Db,
  options: { maxBatch?: number; maxConcurrentFlushes?: number } = {},
): InboxWriter {
  const maxBatch = options.maxBatch ?? 200;
  const maxConcurrent = options.maxConcurrentFlushes ?? 1;
  let queue: Pending[] = [];
  let flushing = 0;
  let scheduled = false;

  const schedule = () => {
    if (scheduled || flushing >= maxConcurrent || queue.length === 0) return;
    scheduled = true;
    // setImmediate, not a microtask: requests whose bodies finished in the same I/O poll
    // phase join this batch.
    setImmediate(() => {
      scheduled = false;
      const batch = queue.slice(0, maxBatch);
      queue = queue.slice(batch.length);
      flushing += 1;
      void flush(db, batch).finally(() => {
        flushing -= 1;
        schedule();
      });
      schedule();
    });
  };

  return {
    write(event) {
      return new Promise<InboxWriteResult>((resolve, reject) => {
        queue.push({ event, resolve, reject });
        schedule();
      });
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
