import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/database.js';
import { createInboxWriter, type InboxWriter } from '../../src/db/inbox-writer.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { LogCapture } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { getReadyz, postAnsattWebhook, type WebhookAnswer } from '../helpers/webhook-client.js';

// Bounded waits on the webhook path and /readyz while the database cannot take a row: the
// inbox table is held by another transaction (PostgreSQL: an exclusive lock; PGlite: its one
// connection is taken). Both databases.

const SECRET = 'whsec_Ym91bmRlZC13YWl0cy10ZXN0LXNlY3JldC0wMTIzNDU2Nzg=';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  cleanup = [];
});

async function startApp(options: { inbox?: (db: Db) => InboxWriter } = {}) {
  const database: TestDatabase = await createTestDatabase(inject('templateDatabase'));
  cleanup.push(() => database.close());
  const config = loadConfig({ POLL_INTERVAL_MS: '0', TIDSBANKEN_WEBHOOK_SECRET: SECRET });
  const logger = createLogger({ level: 'debug', destination: new LogCapture() });
  const inbox = options.inbox?.(database.db);
  const app = createApp({
    config,
    db: database.db,
    logger,
    metrics: createMetrics(),
    ...(inbox !== undefined ? { inbox } : {}),
  });
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  cleanup.push(
    () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  );
  const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return { database, baseUrl, inbox };
}

/** Holds the inbox table until the returned function is called. */
async function holdInbox(db: Db): Promise<() => Promise<void>> {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let locked!: () => void;
  const isLocked = new Promise<void>((r) => (locked = r));
  const done = db.transaction().execute(async (trx) => {
    await sql`lock table inbound_events in exclusive mode`.execute(trx);
    locked();
    await released;
  });
  await isLocked;
  let once: Promise<void> | undefined;
  const free = () => {
    release();
    once ??= done;
    return once;
  };
  cleanup.push(free);
  return free;
}

async function storedCount(db: Db, eventId: string): Promise<number> {
  const rows = await db
    .selectFrom('inbound_events')
    .select('id')
    .where('source', '=', 'tidsbanken')
    .where('event_id', '=', eventId)
    .execute();
  return rows.length;
}

function expectUnavailable(answer: WebhookAnswer) {
  expect(answer.status).toBe(503);
  expect(answer.contentType).toMatch(/^application\/problem\+json/);
  expect(Number(answer.retryAfter)).toBeGreaterThan(0);
  expect(answer.body).toMatchObject({
    status: 503,
    type: expect.stringContaining('storage_unavailable'),
  });
}

describe('a database that cannot take the row', () => {
  it('a webhook answers 503 problem+json with Retry-After within 5 s; resent once the database is free it is accepted and stored once', async () => {
    const { database, baseUrl } = await startApp();
    const free = await holdInbox(database.db);

    const refused = await postAnsattWebhook(baseUrl, SECRET, 'msg_held_1', 1, { timeoutMs: 5000 });
    expectUnavailable(refused);
    if (database.kind === 'pglite') {
      // PGlite's one connection is held: the probe cannot reach the database either.
      const ready = await getReadyz(baseUrl, 2000);
      expect(ready.status).toBe(503);
      expect(ready.contentType).toMatch(/^application\/problem\+json/);
    }

    await free();
    const resent = await postAnsattWebhook(baseUrl, SECRET, 'msg_held_1', 1, { timeoutMs: 5000 });
    expect(resent.status).toBe(202);
    expect(await storedCount(database.db, 'msg_held_1')).toBe(1);
    expect((await getReadyz(baseUrl, 2000)).status).toBe(200);
  });

  it('beyond the inbox queue bound a webhook answers 503 at once, while those already waiting still wait; all are accepted when resent', async () => {
    let inbox: InboxWriter | undefined;
    const { database, baseUrl } = await startApp({
      inbox: (db) => (inbox = createInboxWriter(db, { maxWaiting: 2 })),
    });
    const free = await holdInbox(database.db);

    const settled = new Set<string>();
    const send = (id: string, ansatt: number) =>
      postAnsattWebhook(baseUrl, SECRET, id, ansatt, { timeoutMs: 5000 }).finally(() =>
        settled.add(id),
      );
    const waiting = [send('msg_wait_1', 11), send('msg_wait_2', 12)];
    // Awaited below; a failure before that must not surface as an unhandled rejection.
    for (const w of waiting) w.catch(() => undefined);
    const deadline = Date.now() + 5000;
    while (inbox!.waiting < 2) {
      if (Date.now() > deadline) throw new Error('the first two webhooks never reached the inbox');
      await new Promise((r) => setTimeout(r, 10));
    }
    const over = await send('msg_over', 13);
    expectUnavailable(over);
    // Refused at once: the two before it are still waiting for the database.
    expect(settled.has('msg_wait_1') || settled.has('msg_wait_2')).toBe(false);

    await free();
    const answers = await Promise.all(waiting);
    for (const answer of answers) expect([202, 503]).toContain(answer.status);
    for (const [id, ansatt] of [
      ['msg_wait_1', 11],
      ['msg_wait_2', 12],
      ['msg_over', 13],
    ] as const) {
      const again = await postAnsattWebhook(baseUrl, SECRET, id, ansatt, { timeoutMs: 5000 });
      expect(again.status).toBe(202);
      expect(await storedCount(database.db, id)).toBe(1);
    }
  });
});
