import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { signWebhook } from '../../src/http/webhook-signature.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';
import { startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

// The inbox at its edges: what counts as a duplicate, and records that cannot be stored as
// they are. Each case once lost or stalled data; each test failed before its fix.

const SECRET = 'whsec_aW5ib3gtZWRnZXMtc2VjcmV0LTAxMjM0NTY3ODk=';
const TOKEN = 'inbox-edges-admin-token';

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

async function webhook(
  s: SyncHarness,
  system: 'tidsbanken' | 'poweroffice',
  body: unknown,
): Promise<{ status: number; duplicate: unknown }> {
  const raw = JSON.stringify(body);
  const id = `msg_${randomUUID()}`;
  const ts = Math.floor(Date.now() / 1000);
  const res = await request(s.app)
    .post(`/webhooks/${system}`)
    .set('content-type', 'application/json')
    .set('webhook-id', id)
    .set('webhook-timestamp', String(ts))
    .set('webhook-signature', signWebhook(SECRET, id, ts, raw))
    .send(raw);
  return { status: res.status, duplicate: (res.body as { duplicate?: unknown }).duplicate };
}

const admin = (s: SyncHarness) => ({
  get: (path: string) =>
    request(s.app).get(`/admin${path}`).set('authorization', `Bearer ${TOKEN}`),
  post: (path: string) =>
    request(s.app).post(`/admin${path}`).set('authorization', `Bearer ${TOKEN}`),
});

const activeLinks = (s: SyncHarness) =>
  s.database.db.selectFrom('links').selectAll().where('unlinked_at', 'is', null).execute();

describe('inbox dedupe', () => {
  it('a deletion carrying the same content as the update before it is not a duplicate: the link ends', async () => {
    h = await startSyncHarness({
      env: { POLL_INTERVAL_MS: '0', TIDSBANKEN_WEBHOOK_SECRET: SECRET },
      seed: (tb, po) => {
        tb.seedKunde({ Id: '71001', Navn: 'Gone AS', Epost: 'gone@as.no' });
        po.seedCustomer({ Name: 'Gone AS', EmailAddress: 'gone@as.no' });
      },
    });
    const s = h;
    await s.settle();
    expect(await activeLinks(s)).toHaveLength(1);

    const record = s.tb.getKunde('71001')!;
    const updated = await webhook(s, 'tidsbanken', { type: 'kunde.updated', data: record });
    const deleted = await webhook(s, 'tidsbanken', { type: 'kunde.deleted', data: record });
    expect(updated).toEqual({ status: 202, duplicate: true }); // the first full read stored it
    expect(deleted).toEqual({ status: 202, duplicate: false });
    await s.settle();
    expect(await activeLinks(s)).toHaveLength(0);
  });

  it('an event that went dead never blocks the same content from being stored and synced later', async () => {
    h = await startSyncHarness({
      start: false,
      env: { POLL_INTERVAL_MS: '0', TIDSBANKEN_WEBHOOK_SECRET: SECRET },
      seed: (tb, po) => {
        tb.seedKunde({
          Id: '71002',
          Navn: 'Again AS',
          Epost: 'again@as.no',
          Url: 'https://again.no',
        });
        po.seedCustomer({ Name: 'Again AS', EmailAddress: 'again@as.no' });
      },
    });
    const s = h;
    // The same content arrived once before and its processing gave up.
    const first = await webhook(s, 'tidsbanken', {
      type: 'kunde.updated',
      data: s.tb.getKunde('71002'),
    });
    expect(first).toEqual({ status: 202, duplicate: false });
    await sql`update inbound_events set status = 'dead', last_error = 'gave up'`.execute(
      s.database.db,
    );

    // The first full read re-reads that very content: it must be stored and synced.
    s.service.start();
    await s.settle();
    expect(await activeLinks(s)).toHaveLength(1);
    const customer = [...s.po.customers.values()][0]!;
    expect(customer.WebsiteUrl).toBe('https://again.no');
    // And the same content sent again is a duplicate of the live row, not of the dead one.
    const again = await webhook(s, 'tidsbanken', {
      type: 'kunde.updated',
      data: s.tb.getKunde('71002'),
    });
    expect(again).toEqual({ status: 202, duplicate: true });
  });
});

describe('rejected records', () => {
  it('a Kunde with a NUL character and one failing its schema are set aside; the page, cursor and feed go on', async () => {
    h = await startSyncHarness({
      env: { ADMIN_TOKEN: TOKEN },
      seed: (tb, po) => {
        for (const n of [1, 2, 3, 4]) {
          tb.seedKunde({
            Id: `7200${n}`,
            Navn: n === 2 ? 'Null\u0000Byte AS' : `Kunde ${n} AS`,
            Epost: `k${n}@kunde.no`,
          });
          po.seedCustomer({ Name: `Kunde ${n} AS`, EmailAddress: `k${n}@kunde.no` });
        }
        // A field of the wrong type: the API's own record, unreadable as a Kunde.
        tb.kunder.get('72003')!.Navn = 42;
      },
    });
    const s = h;
    await s.settle();

    // The two good Kunder linked; the poller's cursor moved and it has no error.
    const linked = (await activeLinks(s)).map((l) => l.tidsbanken_id).sort();
    expect(linked).toEqual(['72001', '72004']);
    const cursor = await s.database.db
      .selectFrom('poller_cursors')
      .selectAll()
      .where('system', '=', 'tidsbanken')
      .where('record_type', '=', 'kunde')
      .executeTakeFirstOrThrow();
    expect(cursor.last_error).toBeNull();
    expect(cursor.full_read_at).not.toBeNull();

    // The operator sees both, with the raw text and the reason, next to dead events.
    const list = await admin(s).get('/events?status=dead');
    expect(list.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/events', list);
    const items = (list.body as { items: Record<string, unknown>[] }).items;
    const byId = new Map(items.map((i) => [i.recordId, i]));
    expect([...byId.keys()].sort()).toEqual(['72002', '72003']);
    expect(byId.get('72002')).toMatchObject({ source: 'tidsbanken', recordType: 'kunde' });
    expect(byId.get('72002')!.rawRecord).toContain('Null\\u0000Byte AS');
    expect(byId.get('72002')!.lastError).toMatch(/NUL/);
    expect(byId.get('72003')!.rawRecord).toContain('"Navn":42');
    expect(byId.get('72003')!.lastError).toMatch(/Navn/);

    // Set aside once, not once per poll.
    await s.service.pollers.find((p) => p.recordType === 'kunde')!.pollOnce();
    const again = await admin(s).get('/events?status=dead');
    expect((again.body as { items: unknown[] }).items).toHaveLength(2);

    // Fixed in Tidsbanken, then retried by the operator: read again and synced. The poller is
    // stopped first: its next read of the fixed record would resolve the rejection by itself
    // (next test).
    await s.service.pollers.find((p) => p.recordType === 'kunde')!.stop();
    s.tb.kunder.get('72002')!.Navn = 'Kunde 2 AS';
    const retried = await admin(s).post(`/events/${String(byId.get('72002')!.id)}/retry`);
    expect(retried.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/events/{id}/retry', retried);
    await s.settle();
    expect((await activeLinks(s)).map((l) => l.tidsbanken_id).sort()).toEqual([
      '72001',
      '72002',
      '72004',
    ]);
    const left = await admin(s).get('/events?status=dead');
    expect(
      (left.body as { items: Record<string, unknown>[] }).items.map((i) => i.recordId),
    ).toEqual(['72003']);
  });

  it('a later valid read of a set-aside record resolves it without a retry: a poll, a re-read of content already known, a webhook', async () => {
    h = await startSyncHarness({
      env: { ADMIN_TOKEN: TOKEN, TIDSBANKEN_WEBHOOK_SECRET: SECRET },
      seed: (tb, po) => {
        for (const n of [1, 2, 3]) {
          tb.seedKunde({ Id: `7300${n}`, Navn: `Kunde ${n} AS`, Epost: `r${n}@kunde.no` });
          po.seedCustomer({ Name: `Kunde ${n} AS`, EmailAddress: `r${n}@kunde.no` });
        }
      },
    });
    const s = h;
    await s.settle();
    const dead = async () =>
      (
        (await admin(s).get('/events?status=dead')).body as { items: Record<string, unknown>[] }
      ).items
        .map((i) => i.recordId)
        .sort();

    // All three turn unreadable; 73003 without its change time moving (the poll's overlap
    // window reads it again all the same).
    s.tb.editKunde('73001', { Navn: 'Null\u0000One AS' });
    s.tb.editKunde('73002', { Navn: 'Null\u0000Two AS' });
    const before = s.tb.getKunde('73003')!;
    s.tb.kunder.get('73003')!.Navn = 'Null\u0000Three AS';
    await s.pollCycle();
    await s.settle();
    expect(await dead()).toEqual(['73001', '73002', '73003']);

    // 73001 fixed at its source: the next poll reads it valid, and its rejection is resolved.
    s.tb.editKunde('73001', { Navn: 'Kunde 1 AS' });
    // 73003 back to the content read before: a duplicate the inbox does not store again, yet a
    // valid read all the same.
    s.tb.kunder.get('73003')!.Navn = before.Navn;
    await s.pollCycle();
    await s.settle();
    expect(await dead()).toEqual(['73002']);

    // With polling stopped, 73002 fixed and delivered by a webhook with the full record.
    await s.service.pollers.find((p) => p.recordType === 'kunde')!.stop();
    s.tb.editKunde('73002', { Navn: 'Kunde 2 AS' });
    expect(
      await webhook(s, 'tidsbanken', {
        type: 'kunde.updated',
        timestamp: new Date().toISOString(),
        data: s.tb.getKunde('73002'),
      }),
    ).toEqual({ status: 202, duplicate: false });
    await s.settle();
    expect(await dead()).toEqual([]);

    // A resolved rejection is done, its reason kept, in the record's history.
    for (const id of ['73001', '73002', '73003']) {
      const history = await admin(s).get(`/records/tidsbanken/kunde/${id}/history`);
      const rejected = (history.body as { items: Record<string, unknown>[] }).items.filter((i) =>
        (i.detail as { lastError?: string | null }).lastError?.includes('NUL'),
      );
      expect(rejected.map((i) => (i.detail as { status: string }).status)).toEqual(['done']);
    }
    expect(
      (await activeLinks(s))
        .filter((l) => l.flow === 'kunde-customer')
        .map((l) => l.tidsbanken_id)
        .sort(),
    ).toEqual(['73001', '73002', '73003']);
  });
});
