import request from 'supertest';
import { afterAll, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { sql } from 'kysely';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/database.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import type { Poller } from '../../src/lib/pollers.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { createPowerOfficePollers } from '../../src/poweroffice/poller.js';
import { Reconciler, type ReconcileEngine } from '../../src/sync/reconcile.js';
import { linkGateEngine } from '../../src/sync/sweep.js';
import { startSyncWorker } from '../../src/sync/worker.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import { createTidsbankenPollers } from '../../src/tidsbanken/poller.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';

// POST/GET /admin/reconcile on the real app, real pollers and clients against the fake APIs,
// and a real database. The engine's part (gate, worker drain, link sweep) is the lead's
// sync/sweep.ts; here it is a recording stand-in at that edge, which "drains" the inbox the
// way the worker would (marking events done) so the run's own sequencing is what is tested.

const TOKEN = 'reconcile-admin-token-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };
const logger = createLogger({ level: 'silent' });

let database: TestDatabase;
let tb: FakeTidsbanken;
let po: FakePowerOffice;

interface StubEngine extends ReconcileEngine {
  calls: string[];
  /** Resolves the drain wait when set; otherwise the drain returns at once. */
  hold: Promise<void> | undefined;
}

function stubEngine(): StubEngine {
  const engine: StubEngine = {
    calls: [],
    hold: undefined,
    closeLinkGate() {
      engine.calls.push('closeLinkGate');
      return Promise.resolve();
    },
    async waitForInboxDrained(db: Db, options) {
      engine.calls.push(`waitForInboxDrained:${options.upToEventId ?? 'none'}`);
      await engine.hold;
      await db
        .updateTable('inbound_events')
        .set({ status: 'done' })
        .where('id', '<=', options.upToEventId ?? '0')
        .execute();
    },
    async runLinkSweep({ db }) {
      engine.calls.push('runLinkSweep');
      const events = await db
        .selectFrom('inbound_events')
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirstOrThrow();
      return { linksMade: 2, conflicts: 1, commandsQueued: Number(events.n) };
    },
    openLinkGate() {
      engine.calls.push('openLinkGate');
      return Promise.resolve();
    },
  };
  return engine;
}

function setup(engine: ReconcileEngine) {
  const config = loadConfig({
    ADMIN_TOKEN: TOKEN,
    POLL_INTERVAL_MS: '0',
    TIDSBANKEN_BASE_URL: tb.url,
    TIDSBANKEN_API_KEY: tb.apiKey,
    TIDSBANKEN_SUBSCRIPTION_KEY: tb.subscriptionKey,
    POWEROFFICE_BASE_URL: po.baseUrl,
    POWEROFFICE_TOKEN_URL: po.tokenUrl,
    POWEROFFICE_APPLICATION_KEY: po.applicationKey,
    POWEROFFICE_CLIENT_KEY: po.clientKey,
    POWEROFFICE_SUBSCRIPTION_KEY: po.subscriptionKey,
  });
  const metrics = createMetrics();
  const tbClient = new TidsbankenClient({
    config: config.tidsbanken.credentials!,
    pacer: new Pacer('tidsbanken', 1000),
    logger,
    metrics,
    maxAttempts: 1,
    pageSize: 2,
  });
  const poClient = new PowerOfficeClient({
    config: config.poweroffice.credentials!,
    pacer: new Pacer('poweroffice', 1000),
    logger,
    metrics,
    maxAttempts: 1,
    pageSize: 2,
  });
  const pollers: Poller[] = [
    ...createTidsbankenPollers({ client: tbClient, db: database.db, logger, intervalMs: 0 }),
    ...createPowerOfficePollers({ client: poClient, db: database.db, logger, intervalMs: 0 }),
  ];
  const reconciler = new Reconciler({ db: database.db, logger, config, pollers, engine });
  const app = createApp({ config, db: database.db, logger, metrics, reconciler });
  return { app, reconciler, config, clients: { tidsbanken: tbClient, poweroffice: poClient } };
}

async function waitForFinished(app: ReturnType<typeof createApp>) {
  for (let i = 0; i < 200; i++) {
    const res = await request(app).get('/admin/reconcile').set(auth);
    if (res.body.status !== 'running') return res;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('reconcile did not finish');
}

beforeAll(async () => {
  database = await createTestDatabase(inject('templateDatabase'));
  tb = await startFakeTidsbanken();
  po = await startFakePowerOffice({ rateLimitPerSecond: 1000 });
});
afterAll(async () => {
  await tb.close();
  await po.close();
  await database.close();
});
beforeEach(async () => {
  tb.ansatte.clear();
  tb.kunder.clear();
  tb.faults.clear();
  po.employees.clear();
  po.customers.clear();
  po.contactPersons.clear();
  po.faults.clear();
  for (const table of [
    'audit_entries',
    'conflicts',
    'outbound_commands',
    'links',
    'records',
    'inbound_events',
    'poller_cursors',
    'reconcile_runs',
    'sync_state',
  ]) {
    await sql`delete from ${sql.table(table)}`.execute(database.db);
  }
});

describe('reconcile over HTTP', () => {
  it('reads both sides in full, waits for the worker, sweeps, and reports progress per type', async () => {
    for (let i = 0; i < 3; i++) tb.seedAnsatt({ Epost: `a${i}@example.no` });
    for (let i = 0; i < 5; i++) tb.seedKunde({ Navn: `Kunde ${i}` });
    po.seedEmployee({ FirstName: 'Kari', LastName: 'Nordmann' });
    const customer = po.seedCustomer({ Name: 'Fjord AS' });
    po.seedContactPerson(customer.Id as number, { FirstName: 'Ola', LastName: 'Nordmann' });
    const engine = stubEngine();
    const { app } = setup(engine);

    const started = await request(app).post('/admin/reconcile').set(auth);
    expect(started.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/reconcile', started);
    expect(started.body.status).toBe('running');
    expect(typeof started.body.id).toBe('string');

    const res = await waitForFinished(app);
    expect(res.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/reconcile', res);
    expect(res.body).toMatchObject({ id: started.body.id, status: 'done', error: null });
    expect(res.body.finishedAt).not.toBeNull();
    const progress = res.body.progress;
    expect(progress).toMatchObject({
      phase: 'done',
      recordsRead: 11,
      linksMade: 2,
      conflicts: 1,
      commandsQueued: 11,
    });
    expect(
      progress.read.map((r: { system: string; recordType: string; records: number }) => [
        `${r.system}/${r.recordType}`,
        r.records,
      ]),
    ).toEqual([
      ['tidsbanken/ansatt', 3],
      ['tidsbanken/kunde', 5],
      ['poweroffice/employee', 1],
      ['poweroffice/customer', 1],
      ['poweroffice/contactperson', 1],
    ]);
    // Pages of 2: 5 Kunder take 3 pages.
    expect(progress.read[1].pages).toBe(3);

    // Everything read is in the inbox, tagged as a reconcile read.
    const origins = await database.db
      .selectFrom('inbound_events')
      .select(['origin', (eb) => eb.fn.countAll<string>().as('n')])
      .groupBy('origin')
      .execute();
    expect(origins).toEqual([{ origin: 'reconcile', n: '11' }]);
    const maxId = await database.db
      .selectFrom('inbound_events')
      .select((eb) => eb.fn.max('id').as('id'))
      .executeTakeFirstOrThrow();
    expect(engine.calls).toEqual([
      'closeLinkGate',
      `waitForInboxDrained:${maxId.id}`,
      'runLinkSweep',
    ]);
  });

  it('while a run is going, POST answers the running run and starts nothing; GET shows its phase', async () => {
    tb.seedKunde({ Navn: 'Kunde' });
    const engine = stubEngine();
    let release!: () => void;
    engine.hold = new Promise((resolve) => (release = resolve));
    const { app } = setup(engine);

    const first = await request(app).post('/admin/reconcile').set(auth);
    expect(first.status).toBe(202);
    let progress;
    for (let i = 0; i < 200; i++) {
      progress = await request(app).get('/admin/reconcile').set(auth);
      if (progress.body.progress.phase === 'draining') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(progress?.body).toMatchObject({ status: 'running', progress: { phase: 'draining' } });
    const second = await request(app).post('/admin/reconcile').set(auth);
    expect(second.status).toBe(202);
    expect(second.body.id).toBe(first.body.id);

    release();
    const done = await waitForFinished(app);
    expect(done.body.status).toBe('done');
    const runs = await database.db.selectFrom('reconcile_runs').select('id').execute();
    expect(runs).toHaveLength(1);
    expect(engine.calls.filter((c) => c === 'closeLinkGate')).toHaveLength(1);
  });

  it('a running run whose replica stopped heartbeating is marked failed and a new run starts', async () => {
    const stale = await database.db
      .insertInto('reconcile_runs')
      .values({
        progress: JSON.stringify({ phase: 'reading', heartbeatAt: '2020-01-01T00:00:00.000Z' }),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const { app } = setup(stubEngine());
    const res = await request(app).post('/admin/reconcile').set(auth);
    expect(res.status).toBe(202);
    expect(res.body.id).not.toBe(stale.id);
    await waitForFinished(app);
    const old = await database.db
      .selectFrom('reconcile_runs')
      .select(['status', 'error'])
      .where('id', '=', stale.id)
      .executeTakeFirstOrThrow();
    expect(old.status).toBe('failed');
    expect(old.error).toContain('abandoned');
  });

  it('when a full read fails, the run is failed with the reason and the link gate is reopened', async () => {
    tb.seedKunde({ Navn: 'Kunde' });
    po.faults.inject(50, '500');
    const engine = stubEngine();
    const { app } = setup(engine);
    await request(app).post('/admin/reconcile').set(auth).expect(202);
    const res = await waitForFinished(app);
    expect(res.body.status).toBe('failed');
    expect(res.body.error).toContain('full read of poweroffice/employee failed');
    expect(res.body.progress.phase).toBe('failed');
    expect(res.body.progress.read[0]).toMatchObject({ status: 'done' });
    expect(res.body.progress.read[2]).toMatchObject({ status: 'failed' });
    expect(engine.calls).toEqual(['closeLinkGate', 'openLinkGate']);
  });

  it('Reconciler.run() waits for the run and reports progress to listeners (the CLI path)', async () => {
    tb.seedAnsatt({});
    const { reconciler } = setup(stubEngine());
    const phases: string[] = [];
    reconciler.onProgress((p) => phases.push(p.phase));
    const run = await reconciler.run();
    expect(run.status).toBe('done');
    expect(phases[0]).toBe('reading');
    expect(phases).toContain('draining');
    expect(phases.at(-1)).toBe('done');
  });

  it('with the real engine: the worker fills the mirror, the sweep links by e-mail, the link is listed', async () => {
    tb.seedKunde({ Id: 'K1', Navn: 'Fjord AS', Epost: 'Post@Fjord.no' });
    tb.seedKunde({ Id: 'K2', Navn: 'Alone AS', Epost: 'alone@example.no' });
    const customer = po.seedCustomer({ Name: 'Fjord AS', EmailAddress: 'post@fjord.no ' });
    const { app, config, clients } = setup(linkGateEngine);
    const worker = startSyncWorker({ db: database.db, config, logger, clients }, { idleMs: 20 });
    try {
      await request(app).post('/admin/reconcile').set(auth).expect(202);
      const res = await waitForFinished(app);
      expect(res.body).toMatchObject({
        status: 'done',
        progress: { phase: 'done', recordsRead: 3, linksMade: 1 },
      });
      const links = await request(app).get('/admin/links?flow=kunde-customer').set(auth);
      expect(links.body.items).toHaveLength(1);
      expect(links.body.items[0]).toMatchObject({
        tidsbankenId: 'K1',
        powerofficeId: String(customer.Id),
      });
      const history = await request(app)
        .get('/admin/records/tidsbanken/kunde/K1/history')
        .set(auth);
      expect(history.body.record).toMatchObject({ recordId: 'K1' });
      expect(history.body.items[0]).toMatchObject({
        kind: 'event',
        detail: { origin: 'reconcile' },
      });
    } finally {
      await worker.stop();
    }
  });
});
