import request from 'supertest';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { sql } from 'kysely';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import type { Poller } from '../../src/lib/pollers.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { createPowerOfficePollers } from '../../src/poweroffice/poller.js';
import { Reconciler, type ReconcileProgress } from '../../src/sync/reconcile.js';
import { isLinkGateOpen, linkGateEngine } from '../../src/sync/sweep.js';
import { startSyncWorker, type SyncWorker } from '../../src/sync/worker.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import { createTidsbankenPollers } from '../../src/tidsbanken/poller.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { fakesEnv } from '../helpers/fakes-env.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';

// POST/GET /admin/reconcile on the real app, real pollers and clients against the fake APIs,
// a real database, and the real engine: the link gate, the sync worker draining the inbox and
// the link sweep. Each test starts the worker when it wants the drain to happen, so a run
// can be held in its 'draining' phase by not starting it yet. No dispatcher runs: the
// commands the sweep queues stay in the outbox, where they are counted.

const TOKEN = 'reconcile-admin-token-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };
const logger = createLogger({ level: 'silent' });

let database: TestDatabase;
let tb: FakeTidsbanken;
let po: FakePowerOffice;

function setup() {
  const config = loadConfig({
    ADMIN_TOKEN: TOKEN,
    POLL_INTERVAL_MS: '0',
    ...fakesEnv(tb, po),
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
  const reconciler = new Reconciler({
    db: database.db,
    logger,
    config,
    pollers,
    engine: linkGateEngine,
  });
  const app = createApp({ config, db: database.db, logger, metrics, reconciler });
  const clients = { tidsbanken: tbClient, poweroffice: poClient };
  const startWorker = () => {
    worker = startSyncWorker({ db: database.db, config, logger, clients }, { idleMs: 20 });
  };
  return { app, reconciler, startWorker };
}

let worker: SyncWorker | undefined;
afterEach(async () => {
  await worker?.stop();
  worker = undefined;
});

/**
 * A Kunde and a Customer linked before the run: their events wait for the worker (a linked
 * record syncs), while unlinked records go straight to the mirror with the gate closed.
 */
async function preLinkedPair(id: string) {
  tb.seedKunde({ Id: id, Navn: `Linked ${id}`, Epost: `${id.toLowerCase()}@linked.no` });
  const customer = po.seedCustomer({
    Name: `Linked ${id}`,
    EmailAddress: `${id.toLowerCase()}@linked.no`,
  });
  await database.db
    .insertInto('links')
    .values({
      flow: 'kunde-customer',
      tidsbanken_type: 'kunde',
      tidsbanken_id: id,
      poweroffice_type: 'customer',
      poweroffice_id: String(customer.Id),
      linked_by: 'operator',
      shadow: '{}',
    })
    .execute();
}

const count = async (table: 'links' | 'conflicts' | 'outbound_commands') =>
  Number(
    (
      await database.db
        .selectFrom(table)
        .select((eb) => eb.fn.countAll<string>().as('n'))
        .executeTakeFirstOrThrow()
    ).n,
  );

async function waitForFinished(app: ReturnType<typeof createApp>) {
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline) {
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
  it('reads both sides in full, waits for the worker, sweeps, and reports what it did per type', async () => {
    tb.seedAnsatt({
      Id: 1,
      Fornavn: 'Kari',
      Etternavn: 'Nordmann',
      Epost: 'kari@fjord.no',
      Tittel: 'Sjef',
    });
    tb.seedAnsatt({ Id: 2, Epost: 'a2@example.no' });
    tb.seedAnsatt({ Id: 3, Epost: 'a3@example.no' });
    tb.seedKunde({ Id: 'K0', Navn: 'Fjord AS', Epost: 'post@fjord.no' });
    tb.seedKunde({ Id: 'K1', Navn: 'Alone AS', Epost: 'alone@example.no' });
    tb.seedKunde({ Id: 'K2', Navn: 'Other AS', Epost: 'other@example.no' });
    // Two Kunder share the e-mail of one Customer: an ambiguous match, a conflict.
    tb.seedKunde({ Id: 'K3', Navn: 'Dup AS', Epost: 'dup@example.no' });
    tb.seedKunde({ Id: 'K4', Navn: 'Dup AS', Epost: 'dup@example.no' });
    const employee = po.seedEmployee({
      Number: 1,
      FirstName: 'Kari',
      LastName: 'Nordmann',
      EmailAddress: 'kari@fjord.no',
    });
    const customer = po.seedCustomer({ Name: 'Fjord AS', EmailAddress: 'post@fjord.no' });
    const dup = po.seedCustomer({ Name: 'Dup AS', EmailAddress: 'dup@example.no' });
    po.seedContactPerson(customer.Id as number, { FirstName: 'Ola', LastName: 'Nordmann' });
    const { app, startWorker } = setup();
    expect(await isLinkGateOpen(database.db)).toBe(false);
    startWorker();

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
    expect(progress).toMatchObject({ phase: 'done', recordsRead: 12 });
    expect(
      progress.read.map((r: { system: string; recordType: string; records: number }) => [
        `${r.system}/${r.recordType}`,
        r.records,
      ]),
    ).toEqual([
      ['tidsbanken/ansatt', 3],
      ['tidsbanken/kunde', 5],
      ['tidsbanken/prosjekt', 0],
      ['poweroffice/employee', 1],
      ['poweroffice/customer', 2],
      ['poweroffice/contactperson', 1],
      ['poweroffice/project', 0],
    ]);
    // Pages of 2: 5 Kunder take 3 pages.
    expect(progress.read[1].pages).toBe(3);

    // Everything read went through the inbox, tagged as a reconcile read, and was processed.
    const events = await database.db
      .selectFrom('inbound_events')
      .select(['origin', 'status', (eb) => eb.fn.countAll<string>().as('n')])
      .groupBy(['origin', 'status'])
      .execute();
    expect(events).toEqual([{ origin: 'reconcile', status: 'done', n: '12' }]);

    // The sweep's work, as the database holds it; the report says the same.
    const links = await database.db
      .selectFrom('links')
      .select(['flow', 'tidsbanken_id', 'poweroffice_id'])
      .orderBy('flow')
      .execute();
    expect(links).toEqual([
      { flow: 'ansatt-employee', tidsbanken_id: '1', poweroffice_id: String(employee.Id) },
      { flow: 'kunde-customer', tidsbanken_id: 'K0', poweroffice_id: String(customer.Id) },
    ]);
    expect(progress.linksMade).toBe(2);
    const conflicts = await database.db
      .selectFrom('conflicts')
      .select(['kind', 'record_id'])
      .execute();
    expect(conflicts.length).toBeGreaterThan(0);
    expect(conflicts.every((c) => c.kind === 'ambiguous_match')).toBe(true);
    expect(conflicts.map((c) => c.record_id)).toContain(String(dup.Id));
    expect(progress.conflicts).toBe(conflicts.length);
    // The first sync of the employee link: Tidsbanken's title goes to the blank JobTitle.
    const commands = await database.db
      .selectFrom('outbound_commands')
      .select(['system', 'record_id', 'payload'])
      .execute();
    expect(commands).toContainEqual(
      expect.objectContaining({ system: 'poweroffice', record_id: String(employee.Id) }),
    );
    expect(JSON.stringify(commands)).toContain('Sjef');
    expect(progress.commandsQueued).toBe(commands.length);
    expect(await isLinkGateOpen(database.db)).toBe(true);
  });

  it('while a run is going, POST answers the running run and starts nothing; GET shows its phase', async () => {
    tb.seedKunde({ Navn: 'Kunde' });
    await preLinkedPair('L1');
    const { app, startWorker } = setup();

    const first = await request(app).post('/admin/reconcile').set(auth);
    expect(first.status).toBe(202);
    // No worker yet: the run reads, then waits in 'draining' (for the linked pair's events)
    // with the link gate closed.
    let progress;
    for (let i = 0; i < 400; i++) {
      progress = await request(app).get('/admin/reconcile').set(auth);
      if (progress.body.progress.phase === 'draining') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(progress?.body).toMatchObject({ status: 'running', progress: { phase: 'draining' } });
    expect(await isLinkGateOpen(database.db)).toBe(false);
    const second = await request(app).post('/admin/reconcile').set(auth);
    expect(second.status).toBe(202);
    expect(second.body.id).toBe(first.body.id);

    startWorker();
    const done = await waitForFinished(app);
    expect(done.body.status).toBe('done');
    const runs = await database.db.selectFrom('reconcile_runs').select('id').execute();
    expect(runs).toHaveLength(1);
    // One run read each record once.
    expect(await database.db.selectFrom('inbound_events').select('id').execute()).toHaveLength(3);
    expect(await isLinkGateOpen(database.db)).toBe(true);
  });

  it('a running run whose replica stopped heartbeating is marked failed and a new run starts', async () => {
    const stale = await database.db
      .insertInto('reconcile_runs')
      .values({
        progress: JSON.stringify({ phase: 'reading', heartbeatAt: '2020-01-01T00:00:00.000Z' }),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const { app, startWorker } = setup();
    startWorker();
    const res = await request(app).post('/admin/reconcile').set(auth);
    expect(res.status).toBe(202);
    expect(res.body.id).not.toBe(stale.id);
    expect((await waitForFinished(app)).body.status).toBe('done');
    const old = await database.db
      .selectFrom('reconcile_runs')
      .select(['status', 'error'])
      .where('id', '=', stale.id)
      .executeTakeFirstOrThrow();
    expect(old.status).toBe('failed');
    expect(old.error).toContain('abandoned');
  });

  it('when a full read fails, the run is failed with the reason, nothing is swept, and the link gate is reopened', async () => {
    // A pair that the sweep would link: it must not, since the run failed before the sweep.
    tb.seedKunde({ Id: 'K1', Navn: 'Fjord AS', Epost: 'post@fjord.no' });
    po.seedCustomer({ Name: 'Fjord AS', EmailAddress: 'post@fjord.no' });
    po.faults.inject(50, '500');
    const { app, startWorker } = setup();
    startWorker();
    expect(await isLinkGateOpen(database.db)).toBe(false);
    await request(app).post('/admin/reconcile').set(auth).expect(202);
    const res = await waitForFinished(app);
    expect(res.body.status).toBe('failed');
    expect(res.body.error).toContain('full read of poweroffice/employee failed');
    expect(res.body.progress.phase).toBe('failed');
    expect(res.body.progress.read[0]).toMatchObject({ status: 'done' });
    expect(
      res.body.progress.read.find(
        (r: { system: string; recordType: string }) =>
          r.system === 'poweroffice' && r.recordType === 'employee',
      ),
    ).toMatchObject({ status: 'failed' });
    expect(await count('links')).toBe(0);
    expect(await count('outbound_commands')).toBe(0);
    expect(await isLinkGateOpen(database.db)).toBe(true);
  });

  it('Reconciler.run() waits for the run and reports progress to listeners (the CLI path)', async () => {
    tb.seedAnsatt({});
    const { reconciler, startWorker } = setup();
    startWorker();
    const phases: string[] = [];
    reconciler.onProgress((p) => phases.push(p.phase));
    const run = await reconciler.run();
    expect(run.status).toBe('done');
    expect(phases[0]).toBe('reading');
    expect(phases).toContain('draining');
    expect(phases.at(-1)).toBe('done');
  });

  it('the link is listed and the record history shows the reconcile read', async () => {
    tb.seedKunde({ Id: 'K1', Navn: 'Fjord AS', Epost: 'Post@Fjord.no' });
    tb.seedKunde({ Id: 'K2', Navn: 'Alone AS', Epost: 'alone@example.no' });
    const customer = po.seedCustomer({ Name: 'Fjord AS', EmailAddress: 'post@fjord.no ' });
    const { app, startWorker } = setup();
    startWorker();
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
    const history = await request(app).get('/admin/records/tidsbanken/kunde/K1/history').set(auth);
    expect(history.body.record).toMatchObject({ recordId: 'K1' });
    // Newest first: the diff and link come after the event the reconcile read stored.
    expect(history.body.items).toContainEqual(
      expect.objectContaining({
        kind: 'event',
        detail: expect.objectContaining({ origin: 'reconcile' }),
      }),
    );
  });
  it('progress moves while a phase runs: pages per type, events left to drain, and per flow links made and first-synced', async () => {
    for (let i = 1; i <= 5; i++) {
      tb.seedAnsatt({ Id: i, Fornavn: `A${i}`, Epost: `a${i}@example.no`, Tittel: `T${i}` });
      po.seedEmployee({ Number: i, FirstName: `E${i}`, EmailAddress: `a${i}@example.no` });
    }
    tb.seedKunde({ Id: 'K1', Navn: 'Dup AS', Epost: 'dup@example.no' });
    tb.seedKunde({ Id: 'K2', Navn: 'Dup AS', Epost: 'dup@example.no' });
    po.seedCustomer({ Name: 'Dup AS', EmailAddress: 'dup@example.no' });
    await preLinkedPair('L1');
    const { app, reconciler, startWorker } = setup();
    const seen: ReconcileProgress[] = [];
    reconciler.onProgress((p) => seen.push(p));

    await request(app).post('/admin/reconcile').set(auth).expect(202);
    // No worker yet: the run waits in 'draining', and says how many events are left: the
    // linked pair's two (the 13 unlinked records went straight to the mirror).
    let draining = await request(app).get('/admin/reconcile').set(auth);
    for (let i = 0; i < 400 && draining.body.progress.pending !== 2; i++) {
      await new Promise((r) => setTimeout(r, 20));
      draining = await request(app).get('/admin/reconcile').set(auth);
    }
    expect(draining.body.progress).toMatchObject({ phase: 'draining', pending: 2 });
    await expectDocumentedResponse('GET', '/admin/reconcile', draining);
    // A type still being read already showed its pages (pages of 2: 5 Ansatte take 3).
    expect(
      seen.some((p) => p.read.some((r) => r.status === 'reading' && r.pages > 0 && r.records > 0)),
    ).toBe(true);

    startWorker();
    const done = await waitForFinished(app);
    await expectDocumentedResponse('GET', '/admin/reconcile', done);
    expect(done.body.progress).toMatchObject({ phase: 'done', pending: 0, linksMade: 5 });
    const byFlow = Object.fromEntries(
      (done.body.progress.linking as { flow: string }[]).map((f) => [f.flow, f]),
    );
    const employeeCommands = await database.db
      .selectFrom('outbound_commands')
      .select('id')
      .where('flow', '=', 'ansatt-employee')
      .execute();
    expect(employeeCommands.length).toBeGreaterThan(0);
    expect(byFlow['ansatt-employee']).toEqual({
      flow: 'ansatt-employee',
      step: 'done',
      linksMade: 5,
      ambiguous: 0,
      synced: 5,
      commandsQueued: employeeCommands.length,
    });
    expect(byFlow['kunde-customer']).toMatchObject({
      step: 'done',
      linksMade: 0,
      ambiguous: 3,
      synced: 0,
    });
    // The listeners saw the sweep under way, flow by flow.
    expect(
      seen.some((p) => p.phase === 'linking' && p.linking?.some((f) => f.step !== 'done')),
    ).toBe(true);
  });
});
