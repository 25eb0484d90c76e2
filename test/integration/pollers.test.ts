import { afterAll, beforeAll, beforeEach, describe, expect, inject, it, vi } from 'vitest';
import { sql } from 'kysely';
import { getPollerCursor, haveFullReads } from '../../src/db/poller-cursors.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import { fullReadAll, stopPollers, type Poller } from '../../src/lib/pollers.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import { createTidsbankenPollers } from '../../src/tidsbanken/poller.js';
import {
  startFakeTidsbanken,
  TIDSBANKEN_TEST_PAGE_CAP,
  type FakeTidsbanken,
} from '../fakes/tidsbanken.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { createPowerOfficePollers } from '../../src/poweroffice/poller.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

let database: TestDatabase;
let fake: FakeTidsbanken;
let po: FakePowerOffice;
const logger = createLogger({ level: 'silent' });
const metrics = createMetrics();

function tidsbankenClient(pageSize = 2) {
  return new TidsbankenClient({
    config: { baseUrl: fake.url, apiKey: fake.apiKey, subscriptionKey: fake.subscriptionKey },
    pacer: new Pacer('tidsbanken', 1000),
    logger,
    metrics,
    timeoutMs: 5000, // a loaded machine must not turn a slow answer into a retried request
    maxAttempts: 2,
    backoffBaseMs: 5,
    pageSize,
  });
}

function pollers(overrides: { intervalMs?: number; overlapMs?: number; pageSize?: number } = {}) {
  const [ansatt, kunde] = createTidsbankenPollers({
    client: tidsbankenClient(overrides.pageSize),
    db: database.db,
    logger,
    intervalMs: overrides.intervalMs ?? 0,
    ...(overrides.overlapMs !== undefined ? { overlapMs: overrides.overlapMs } : {}),
  });
  if (ansatt === undefined || kunde === undefined) throw new Error('expected two pollers');
  return { ansatt, kunde };
}

async function inbox(recordType: string) {
  return database.db
    .selectFrom('inbound_events')
    .selectAll()
    .where('record_type', '=', recordType)
    .orderBy('id')
    .execute();
}

beforeAll(async () => {
  database = await createTestDatabase(inject('templateDatabase'));
  fake = await startFakeTidsbanken();
  po = await startFakePowerOffice({ rateLimitPerSecond: 1000 });
});
afterAll(async () => {
  await fake.close();
  await po.close();
  await database.close();
});
beforeEach(async () => {
  fake.ansatte.clear();
  fake.kunder.clear();
  fake.faults.clear();
  fake.clearRequests();
  // Server-driven paging as every test runs it, whatever a test before this one changed.
  fake.pageCap = TIDSBANKEN_TEST_PAGE_CAP;
  fake.pageCapNextLink = true;
  po.employees.clear();
  po.customers.clear();
  po.contactPersons.clear();
  po.clearRequests();
  await sql`delete from inbound_events`.execute(database.db);
  await sql`delete from poller_cursors`.execute(database.db);
});

describe('Tidsbanken change pollers', () => {
  it('the first poll is a full read across pages: one inbox event per record, full_read_at set', async () => {
    for (let id = 1; id <= 5; id++) {
      fake.seedAnsatt({
        Id: id,
        Fornavn: `N${id}`,
        SistEndretDato: `2025-01-0${id}T10:00:00.000Z`,
      });
    }
    const { ansatt } = pollers();
    const result = await ansatt.pollOnce();
    expect(result).toMatchObject({ full: true, pages: 3, records: 5, inserted: 5 });
    expect(result.cursor).toBe('2025-01-05T10:00:00.000Z');
    // No filter on a full read; $top 2 → pages at $skip 0, 2, 4, and the empty one at 5
    // that ends the read (a short page is not the end: a server may cap pages).
    expect(fake.requests.map((r) => [r.query.$filter, r.query.$skip])).toEqual([
      [undefined, '0'],
      [undefined, '2'],
      [undefined, '4'],
      [undefined, '5'],
    ]);

    const rows = await inbox('ansatt');
    expect(rows).toHaveLength(5);
    expect(rows[0]).toMatchObject({
      source: 'tidsbanken',
      origin: 'poller',
      event_type: 'ansatt.updated',
      record_id: '1',
      parent_id: null,
      is_thin: false,
    });
    expect(rows[0]!.event_id).toMatch(/^poll:ansatt:1:/);
    expect(rows[0]!.payload).toMatchObject({ Id: 1, Fornavn: 'N1' });
    expect(new Date(rows[0]!.occurred_at!).toISOString()).toBe('2025-01-01T10:00:00.000Z');

    const cursor = await getPollerCursor(database.db, 'tidsbanken', 'ansatt');
    expect(cursor?.cursor).toBe('2025-01-05T10:00:00.000Z');
    expect(cursor?.full_read_at).not.toBeNull();
    expect(cursor?.last_error).toBeNull();
    expect(await haveFullReads(database.db, [{ system: 'tidsbanken', recordType: 'ansatt' }])).toBe(
      true,
    );
    expect(await haveFullReads(database.db, [{ system: 'tidsbanken', recordType: 'kunde' }])).toBe(
      false,
    );
  });

  it('a server page cap below $top loses nothing: 130 Kunder behind a 40-row cap all reach the inbox', async () => {
    for (const nextLink of [true, false]) {
      await sql`delete from inbound_events`.execute(database.db);
      await sql`delete from poller_cursors`.execute(database.db);
      fake.kunder.clear();
      fake.pageCap = 40;
      fake.pageCapNextLink = nextLink;
      for (let n = 1; n <= 130; n++) fake.seedKunde({ Id: `K${String(n).padStart(3, '0')}` });
      const { kunde } = pollers({ pageSize: 100 });
      const result = await kunde.pollOnce();
      expect(result).toMatchObject({ records: 130, inserted: 130 });
      expect(await inbox('kunde')).toHaveLength(130);
    }
  });

  it('the next poll reads from cursor − overlap and stores only what changed', async () => {
    fake.seedKunde({ Id: 'K1', Navn: 'One', SistEndretDato: '2025-03-01T12:00:00.000Z' });
    fake.seedKunde({ Id: 'K2', Navn: 'Two', SistEndretDato: '2025-03-01T11:30:00.000Z' });
    const { kunde } = pollers();
    await kunde.pollOnce();
    fake.clearRequests();

    // Nothing changed: the overlap re-reads both records, and the inbox stays as it was.
    const again = await kunde.pollOnce();
    expect(again).toMatchObject({ full: false, records: 2, inserted: 0 });
    expect(fake.requests[0]!.query.$filter).toBe('SistEndretDato gt 2025-03-01T10:00:00.000Z');
    expect(await inbox('kunde')).toHaveLength(2);

    // A Kunde edited now but stamped an hour behind the cursor (docs/vendor-apis.md) is
    // still inside the two-hour overlap.
    fake.editKunde('K2', { Navn: 'Two v2', SistEndretDato: '2025-03-01T11:45:00.000Z' });
    const third = await kunde.pollOnce();
    expect(third).toMatchObject({ inserted: 1 });
    const rows = await inbox('kunde');
    expect(rows).toHaveLength(3);
    expect(rows[2]).toMatchObject({ record_id: 'K2', event_type: 'kunde.updated' });
    expect(rows[2]!.payload).toMatchObject({ Navn: 'Two v2' });
    expect((await getPollerCursor(database.db, 'tidsbanken', 'kunde'))?.cursor).toBe(
      '2025-03-01T12:00:00.000Z',
    );
  });

  it('the overlap window is a constructor option', async () => {
    fake.seedAnsatt({ Id: 1, SistEndretDato: '2025-01-01T10:00:00.000Z' });
    const { ansatt } = pollers({ overlapMs: 60_000 });
    await ansatt.pollOnce();
    fake.clearRequests();
    await ansatt.pollOnce();
    expect(fake.requests[0]!.query.$filter).toBe('SistEndretDato gt 2025-01-01T09:59:00.000Z');
  });

  it('a failing poll records last_error, stores nothing more and leaves the cursor unchanged', async () => {
    fake.seedAnsatt({ Id: 1, SistEndretDato: '2025-01-01T10:00:00.000Z' });
    const { ansatt } = pollers({ pageSize: 1 });
    await ansatt.pollOnce();
    const before = await getPollerCursor(database.db, 'tidsbanken', 'ansatt');

    fake.seedAnsatt({ Id: 2, SistEndretDato: '2025-02-01T10:00:00.000Z' });
    fake.seedAnsatt({ Id: 3, SistEndretDato: '2025-03-01T10:00:00.000Z' });
    // The second page fails on both attempts: page one is stored, the cursor does not move.
    fake.faults.inject(2, '500', { match: (r) => r.query.$skip === '1' });
    await expect(ansatt.pollOnce()).rejects.toMatchObject({ upstreamStatus: 500 });

    const after = await getPollerCursor(database.db, 'tidsbanken', 'ansatt');
    expect(after?.cursor).toBe(before?.cursor);
    expect(after?.last_error).toContain('500');
    expect(after?.full_read_at?.toString()).toBe(before?.full_read_at?.toString());

    // The next interval reads the same range again and catches up.
    const retry = await ansatt.pollOnce();
    expect(retry.cursor).toBe('2025-03-01T10:00:00.000Z');
    expect((await getPollerCursor(database.db, 'tidsbanken', 'ansatt'))?.last_error).toBeNull();
    expect((await inbox('ansatt')).map((r) => r.record_id)).toEqual(['1', '2', '3']);
  });

  it('a failed first full read does not mark full_read_at', async () => {
    fake.seedAnsatt({ Id: 1 });
    fake.faults.inject(2, '503');
    const { ansatt } = pollers();
    await expect(ansatt.pollOnce()).rejects.toBeDefined();
    const row = await getPollerCursor(database.db, 'tidsbanken', 'ansatt');
    expect(row?.full_read_at).toBeNull();
    expect(row?.cursor).toBeNull();
    expect(row?.last_error).toContain('503');
  });

  it('fullRead on demand reads everything whatever the cursor, with the given origin', async () => {
    fake.seedAnsatt({ Id: 1, SistEndretDato: '2025-01-01T10:00:00.000Z' });
    const { ansatt, kunde } = pollers();
    await ansatt.pollOnce();
    fake.seedKunde({ Id: 'K9', SistEndretDato: '2025-01-01T10:00:00.000Z' });
    fake.clearRequests();

    const results = await fullReadAll([ansatt, kunde], 'reconcile');
    expect(results.map((r) => [r.recordType, r.full, r.records, r.inserted])).toEqual([
      ['ansatt', true, 1, 0],
      ['kunde', true, 1, 1],
    ]);
    expect(fake.requests.every((r) => r.query.$filter === undefined)).toBe(true);
    const kundeRows = await inbox('kunde');
    expect(kundeRows[0]).toMatchObject({ origin: 'reconcile', record_id: 'K9' });
  });

  it('start() polls at once and then every interval; stop() waits for the poll in flight', async () => {
    fake.seedAnsatt({ Id: 1 });
    const { ansatt } = pollers({ intervalMs: 20 });
    ansatt.start();
    expect(ansatt.isRunning).toBe(true);
    await expect.poll(() => fake.requests.length, { timeout: 5000 }).toBeGreaterThanOrEqual(3);
    await stopPollers([ansatt]);
    expect(ansatt.isRunning).toBe(false);
    const seen = fake.requests.length;
    const reads = ansatt.readsStarted;
    // A clock that is not the wall's: a second poller on the same interval completes three
    // cycles, in which a poller that had not stopped would have started three reads.
    const { kunde: clock } = pollers({ intervalMs: 20 });
    const mark = clock.readsCompleted;
    clock.start();
    try {
      await vi.waitFor(() => expect(clock.readsCompleted).toBeGreaterThanOrEqual(mark + 3), {
        timeout: 10_000,
        interval: 5,
      });
    } finally {
      await stopPollers([clock]);
    }
    expect(ansatt.readsStarted).toBe(reads);
    expect(fake.requests.slice(seen).filter((r) => /ansatt/i.test(r.path))).toEqual([]);
    expect((await inbox('ansatt')).length).toBe(1);
  });

  it('with POLL_INTERVAL_MS=0 start() does nothing', async () => {
    fake.seedAnsatt({ Id: 1 });
    const { ansatt, kunde } = pollers({ intervalMs: 0 });
    const all: Poller[] = [ansatt, kunde];
    for (const p of all) p.start();
    expect(all.map((p) => p.isRunning)).toEqual([false, false]);
    // Meanwhile a poller with an interval completes two cycles (its own reads are of Kunde).
    const { kunde: clock } = pollers({ intervalMs: 20 });
    clock.start();
    try {
      await vi.waitFor(() => expect(clock.readsCompleted).toBeGreaterThanOrEqual(2), {
        timeout: 10_000,
        interval: 5,
      });
    } finally {
      await stopPollers([clock]);
    }
    expect(all.map((p) => p.readsStarted)).toEqual([0, 0]);
    expect(fake.requests.filter((r) => /ansatt/i.test(r.path))).toHaveLength(0);
  });

  it('without credentials (no client) there is nothing to poll', () => {
    expect(
      createTidsbankenPollers({ client: undefined, db: database.db, logger, intervalMs: 10 }),
    ).toEqual([]);
  });

  it('a full read of an empty record type completes with no cursor', async () => {
    const { kunde } = pollers();
    const result = await kunde.pollOnce();
    expect(result).toMatchObject({ full: true, records: 0, inserted: 0, cursor: undefined });
    const row = await getPollerCursor(database.db, 'tidsbanken', 'kunde');
    expect(row?.full_read_at).not.toBeNull();
  });
});

function powerofficePollers() {
  const client = new PowerOfficeClient({
    config: {
      baseUrl: po.baseUrl,
      tokenUrl: po.tokenUrl,
      applicationKey: po.applicationKey,
      clientKey: po.clientKey,
      subscriptionKey: po.subscriptionKey,
    },
    pacer: new Pacer('poweroffice', 1000),
    logger,
    metrics,
    timeoutMs: 300,
    maxAttempts: 2,
    backoffBaseMs: 5,
    pageSize: 2,
  });
  const [employee, customer, contactPerson] = createPowerOfficePollers({
    client,
    db: database.db,
    logger,
    intervalMs: 0,
  });
  if (employee === undefined || customer === undefined || contactPerson === undefined) {
    throw new Error('expected three pollers');
  }
  return { employee, customer, contactPerson };
}

const apiRequests = () => po.requests.filter((r) => !/oauth\/token/i.test(r.path));

describe('PowerOffice change pollers', () => {
  it('reads contact persons across pages, with ContactId as the parent, then polls from the cursor', async () => {
    const parent = po.seedCustomer({ Name: 'Parent AS', EmailAddress: 'p@p.no' });
    for (let n = 1; n <= 3; n++) {
      po.seedContactPerson(parent.Id as number, {
        FirstName: `C${n}`,
        LastName: 'P',
        LastChangedDateTimeOffset: `2025-01-0${n} 10:00:00.1234567+00:00`,
      });
    }
    const { contactPerson } = powerofficePollers();
    const first = await contactPerson.pollOnce();
    // Pages of 2: 2 + 1 (short page ends it).
    expect(first).toMatchObject({ full: true, pages: 2, records: 3, inserted: 3 });
    expect(first.cursor).toBe('2025-01-03T10:00:00.123Z');
    const rows = await inbox('contactperson');
    expect(rows.map((r) => [r.source, r.event_type, r.parent_id])).toEqual([
      ['poweroffice', 'contactperson.updated', String(parent.Id)],
      ['poweroffice', 'contactperson.updated', String(parent.Id)],
      ['poweroffice', 'contactperson.updated', String(parent.Id)],
    ]);

    po.clearRequests();
    const second = await contactPerson.pollOnce();
    // Five minutes of overlap before the cursor, in the spec's format with "+" intact.
    expect(apiRequests()[0]!.query.lastChangedDateTimeOffsetGreaterThan).toBe(
      '2025-01-03 09:55:00.123000+00:00',
    );
    expect(second).toMatchObject({ full: false, records: 1, inserted: 0 });
    expect(await inbox('contactperson')).toHaveLength(3);
  });

  it('an empty answer (204) completes the full read; a later change is picked up', async () => {
    const { employee } = powerofficePollers();
    const empty = await employee.pollOnce();
    expect(empty).toMatchObject({ full: true, pages: 0, records: 0 });
    expect(apiRequests().map((r) => r.status)).toEqual([204]);
    expect(
      (await getPollerCursor(database.db, 'poweroffice', 'employee'))?.full_read_at,
    ).not.toBeNull();

    const seeded = po.seedEmployee({ FirstName: 'New', LastName: 'Hire', Number: 7 });
    const next = await employee.pollOnce();
    expect(next).toMatchObject({ records: 1, inserted: 1 });
    const rows = await inbox('employee');
    expect(rows[0]).toMatchObject({ record_id: String(seeded.Id), parent_id: null });
    expect(rows[0]!.payload).toMatchObject({ FirstName: 'New', Number: 7 });
  });

  it('without credentials (no client) there is nothing to poll', () => {
    expect(
      createPowerOfficePollers({ client: undefined, db: database.db, logger, intervalMs: 10 }),
    ).toEqual([]);
  });
});

describe('a poll while the link gate is closed', () => {
  it('puts unlinked records straight into the mirror (their events stored processed) and leaves a linked record to the worker', async () => {
    await sql`delete from records`.execute(database.db);
    await sql`delete from links`.execute(database.db);
    await sql`delete from sync_state`.execute(database.db);
    fake.seedAnsatt({ Id: 1, Fornavn: 'Old', Epost: 'one@example.no' });
    fake.seedAnsatt({ Id: 2, Fornavn: 'Linked', SistEndretDato: '2025-01-02T10:00:00.000Z' });
    await database.db
      .insertInto('links')
      .values({
        flow: 'ansatt-employee',
        tidsbanken_type: 'ansatt',
        tidsbanken_id: '2',
        poweroffice_type: 'employee',
        poweroffice_id: '900',
        linked_by: 'operator',
        shadow: '{}',
      })
      .execute();
    const { ansatt } = pollers();
    expect(await ansatt.fullRead()).toMatchObject({ records: 2, inserted: 2 });

    const rows = await inbox('ansatt');
    expect(rows.map((r) => [r.record_id, r.status])).toEqual([
      ['1', 'done'],
      ['2', 'pending'],
    ]);
    expect(rows[0]!.event_id).toMatch(/^poll:ansatt:1:/);
    const mirror = await database.db
      .selectFrom('records')
      .selectAll()
      .where('record_type', '=', 'ansatt')
      .execute();
    expect(mirror).toHaveLength(1);
    expect(mirror[0]).toMatchObject({
      record_id: '1',
      email_key: 'one@example.no',
      last_event_id: rows[0]!.id,
    });
    expect(mirror[0]!.data).toMatchObject({ Fornavn: 'Old' });

    // A re-read of the same content stores nothing; a newer state replaces the mirrored one.
    expect(await ansatt.fullRead()).toMatchObject({ inserted: 0 });
    fake.ansatte.get(1)!.Fornavn = 'New';
    fake.ansatte.get(1)!.SistEndretDato = '2030-01-01T10:00:00.000Z';
    expect(await ansatt.fullRead()).toMatchObject({ inserted: 1 });
    const after = await database.db
      .selectFrom('records')
      .select('data')
      .where('record_id', '=', '1')
      .where('record_type', '=', 'ansatt')
      .executeTakeFirstOrThrow();
    expect(after.data).toMatchObject({ Fornavn: 'New' });

    // Once the gate is open, a poll goes to the worker as before.
    await sql`update sync_state set value = '{"open": true}' where key = 'link-gate'`.execute(
      database.db,
    );
    fake.ansatte.get(1)!.Fornavn = 'Newer';
    await ansatt.fullRead();
    expect((await inbox('ansatt')).at(-1)).toMatchObject({ record_id: '1', status: 'pending' });
  });
});
