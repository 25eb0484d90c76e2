import { afterEach, expect, inject } from 'vitest';
import type { Express } from 'express';
import { loadConfig, secretsOf, type Config } from '../../src/config.js';
import { openPostgres } from '../../src/db/database.js';
import { createLogger, type Logger } from '../../src/lib/logger.js';
import { createRuntime } from '../../src/runtime.js';
import type { Service } from '../../src/service.js';
import { isLinkGateOpen } from '../../src/sync/sweep.js';
import type { FaultKind } from '../fakes/fake-server.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { LogCapture } from './app.js';
import { signedWebhook } from './webhook-client.js';
import { createTestDatabase, type TestDatabase } from './database.js';

// The whole service (worker, dispatchers, pollers), built by createRuntime as src/main.ts
// builds it, on this file's own database, talking to both fake APIs over real HTTP. Nothing
// of ours is mocked.

export interface SyncHarness {
  tb: FakeTidsbanken;
  po: FakePowerOffice;
  database: TestDatabase;
  config: Readonly<Config>;
  service: Service;
  app: Express;
  logs: LogCapture;
  logger: Logger;
  /**
   * Waits until every running poller has read both systems after this call, and the inbox
   * and outbox are then empty and stay so (the systems have converged).
   */
  settle(options?: { timeoutMs?: number; quietMs?: number }): Promise<void>;
  /**
   * Waits until every running poller has completed a read that started after this call:
   * "nothing happened" is then a fact about a poll that ran, not about a pause.
   */
  pollCycle(options?: { timeoutMs?: number }): Promise<void>;
  /** Requests to a fake that write (POST/PUT/PATCH/DELETE on the API, not the token endpoint). */
  writes(fake: FakeTidsbanken | FakePowerOffice): { method: string; path: string; body: unknown }[];
  /**
   * No echo: clears both fakes' request logs, lets one poll cycle run and the service settle,
   * and returns the writes each fake received meanwhile.
   */
  writesOverQuietCycle(): Promise<Record<'tb' | 'po', ReturnType<SyncHarness['writes']>>>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  env?: Record<string, string>;
  /** Records to put in the fakes before the service starts (its first full read sees them). */
  seed?: (tb: FakeTidsbanken, po: FakePowerOffice) => void;
  fakes?: { tb?: FakeTidsbanken; po?: FakePowerOffice };
  /** Start the service at once (default) or leave it to the test. */
  start?: boolean;
  /**
   * Fault mode: each request to either fake (token, reads, writes) gets a random 429, 500,
   * 503, slow answer or dropped connection with this probability, from a seeded sequence.
   */
  faults?: { probability: number; seed?: number };
  /**
   * PostgreSQL only: the service connects through this rewrite of the test database's URL (a
   * pooler in front of it), with named prepared statements off; the harness's own checks use
   * the direct connection.
   */
  via?: (url: string) => string;
}

/** The kinds of the harness's fault mode: what the real gateways and backends do. */
export const HARNESS_FAULT_KINDS: FaultKind[] = ['429', '500', '503', 'slow', 'drop'];

export async function startSyncHarness(options: HarnessOptions = {}): Promise<SyncHarness> {
  const tb = options.fakes?.tb ?? (await startFakeTidsbanken({ rateLimitPerSecond: 1000 }));
  const po = options.fakes?.po ?? (await startFakePowerOffice({ rateLimitPerSecond: 1000 }));
  options.seed?.(tb, po);
  if (options.faults !== undefined) {
    for (const [fake, seed] of [
      [tb, options.faults.seed ?? 1],
      [po, (options.faults.seed ?? 1) + 1],
    ] as const) {
      fake.faults.random({
        probability: options.faults.probability,
        kinds: HARNESS_FAULT_KINDS,
        seed,
        // Short enough to answer within the client's timeout, long enough to reorder requests.
        delayMs: 300,
        retryAfterSeconds: 1,
      });
    }
  }
  const config = loadConfig({
    TIDSBANKEN_BASE_URL: tb.url,
    TIDSBANKEN_API_KEY: tb.apiKey,
    TIDSBANKEN_SUBSCRIPTION_KEY: tb.subscriptionKey,
    TIDSBANKEN_RATE_LIMIT_PER_SECOND: '200',
    POWEROFFICE_BASE_URL: po.baseUrl,
    POWEROFFICE_TOKEN_URL: po.tokenUrl,
    POWEROFFICE_APPLICATION_KEY: po.applicationKey,
    POWEROFFICE_CLIENT_KEY: po.clientKey,
    POWEROFFICE_SUBSCRIPTION_KEY: po.subscriptionKey,
    POWEROFFICE_RATE_LIMIT_PER_SECOND: '200',
    POLL_INTERVAL_MS: '200',
    ...options.env,
  });
  const database = await createTestDatabase(inject('templateDatabase'));
  const logs = new LogCapture();
  const logger = createLogger({ level: 'info', secrets: secretsOf(config), destination: logs });
  const serviceUrl =
    options.via !== undefined && database.url !== undefined ? options.via(database.url) : undefined;
  const runtime = await createRuntime({
    config,
    logger,
    database:
      serviceUrl !== undefined
        ? openPostgres(serviceUrl, 10, { preparedStatements: false })
        : database,
    databaseUrl: serviceUrl ?? database.url,
    clientOptions: { timeoutMs: 2000, backoffBaseMs: 20, credentialsRetryMs: 500 },
    workerIdleMs: 30,
  });
  const { service, app } = runtime;
  if (options.start !== false) service.start();

  const db = database.db;
  const busy = async () => {
    if (!(await isLinkGateOpen(db))) return true;
    const event = await db
      .selectFrom('inbound_events')
      .select('id')
      .where('status', '=', 'pending')
      .limit(1)
      .executeTakeFirst();
    if (event !== undefined) return true;
    const command = await db
      .selectFrom('outbound_commands')
      .select('id')
      .where('status', 'in', ['pending', 'sending'])
      .limit(1)
      .executeTakeFirst();
    return command !== undefined;
  };

  // A read in flight now may have started before the caller's edit: wait for the first one
  // that starts after this moment to end.
  const waitForReads = async (timeoutMs: number, required: boolean) => {
    const running = service.pollers.filter((p) => p.isRunning);
    if (required && running.length === 0) throw new Error('no poller is running');
    const marks = running.map((p) => p.readsStarted);
    const deadline = Date.now() + timeoutMs;
    while (running.some((p, i) => p.readsCompleted < marks[i]! + 1)) {
      if (Date.now() > deadline) throw new Error('the pollers did not complete a poll cycle');
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  const harness: SyncHarness = {
    tb,
    po,
    database,
    config,
    service,
    app,
    logs,
    logger,
    pollCycle: ({ timeoutMs = 30_000 } = {}) => waitForReads(timeoutMs, true),
    async settle({ timeoutMs = 30_000, quietMs = 700 } = {}) {
      const deadline = Date.now() + timeoutMs;
      await waitForReads(timeoutMs, false);
      let quietSince: number | undefined;
      for (;;) {
        if (await busy()) quietSince = undefined;
        else quietSince ??= Date.now();
        if (quietSince !== undefined && Date.now() - quietSince >= quietMs) return;
        if (Date.now() > deadline) throw new Error('the service did not settle');
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    async writesOverQuietCycle() {
      tb.clearRequests();
      po.clearRequests();
      await harness.pollCycle();
      await harness.settle();
      return { tb: harness.writes(tb), po: harness.writes(po) };
    },
    writes(fake) {
      return fake.requests
        .filter(
          (r) => ['POST', 'PUT', 'PATCH', 'DELETE'].includes(r.method) && !/token/i.test(r.path),
        )
        .map((r) => ({ method: r.method, path: r.path, body: r.body }));
    },
    async close() {
      await runtime.close();
      if (serviceUrl !== undefined) await database.close();
      if (options.fakes?.tb === undefined) await tb.close();
      if (options.fakes?.po === undefined) await po.close();
    },
  };
  return harness;
}

/** Posts a webhook signed with `secret` to the harness's app and expects it accepted (202). */
/**
 * `count` Ansatte and Employees that match one to one (Id = Number, same names and e-mail),
 * so they link on `ansatt-employee` and agree on every mapped field.
 */
export function seedEmployeePairs(tb: FakeTidsbanken, po: FakePowerOffice, count: number): void {
  for (let i = 1; i <= count; i++) {
    tb.seedAnsatt({
      Id: i,
      Fornavn: `Fornavn${i}`,
      Etternavn: `Etternavn${i}`,
      Epost: `a${i}@firma.no`,
    });
    po.seedEmployee({
      Number: i,
      FirstName: `Fornavn${i}`,
      LastName: `Etternavn${i}`,
      EmailAddress: `a${i}@firma.no`,
    });
  }
}

export async function sendSignedWebhook(
  h: SyncHarness,
  system: 'tidsbanken' | 'poweroffice',
  secret: string,
  body: unknown,
): Promise<void> {
  const res = await signedWebhook(h.app, `/webhooks/${system}`, secret, JSON.stringify(body));
  expect(res.status).toBe(202);
}

/**
 * One harness per test of the calling file, closed after each test. The returned `start`
 * starts it with `env` under the test's own env and waits until it settles (the first full
 * reads and the link sweep) within `settleTimeoutMs`.
 */
export function harnessPerTest(
  defaults: { env?: Record<string, string>; settleTimeoutMs?: number } = {},
): (options: HarnessOptions) => Promise<SyncHarness> {
  let h: SyncHarness | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
  });
  return async (options) => {
    h = await startSyncHarness({ ...options, env: { ...defaults.env, ...options.env } });
    await h.settle(
      defaults.settleTimeoutMs !== undefined ? { timeoutMs: defaults.settleTimeoutMs } : {},
    );
    return h;
  };
}

/** The flow's links that are not unlinked, in Tidsbanken id order. */
export function activeLinks(s: Pick<SyncHarness, 'database'>, flow: string) {
  return s.database.db
    .selectFrom('links')
    .selectAll()
    .where('flow', '=', flow)
    .where('unlinked_at', 'is', null)
    .orderBy('tidsbanken_id')
    .execute();
}

/** The `fields` of each pending (waiting) outbox command of a record, oldest first. */
export async function pendingCommandFields(
  s: Pick<SyncHarness, 'database'>,
  recordId: string | number,
): Promise<Record<string, unknown>[]> {
  const rows = await s.database.db
    .selectFrom('outbound_commands')
    .select('payload')
    .where('record_id', '=', String(recordId))
    .where('status', '=', 'pending')
    .orderBy('id')
    .execute();
  return rows.map((r) => (r.payload.fields ?? {}) as Record<string, unknown>);
}
