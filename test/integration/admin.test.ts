import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sql } from 'kysely';
import {
  ADMIN_TOKEN,
  adminAuth,
  seedCommand as seedDbCommand,
  useAdminApp,
} from '../helpers/admin.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';

// The admin API over HTTP on the real app and a real database. The engine's tables are
// seeded directly: these tests are about what the operator sees, not how the engine got
// there. Also the database-derived gauges on /metrics, which read the same rows.

const auth = adminAuth;
let t: TestApp;
let noToken: TestApp;

useAdminApp(
  [
    'audit_entries',
    'conflicts',
    'outbound_commands',
    'links',
    'records',
    'inbound_events',
    'poller_cursors',
    'reconcile_runs',
  ],
  (app) => (t = app),
);
beforeAll(async () => {
  noToken = await createTestApp({});
});
afterAll(async () => {
  await noToken.close();
});

async function seedLink(values: {
  flow: string;
  tidsbankenId: string;
  powerofficeId: string;
  unlinked?: boolean;
}): Promise<string> {
  const row = await t.database.db
    .insertInto('links')
    .values({
      flow: values.flow,
      tidsbanken_type: values.flow.startsWith('kunde') ? 'kunde' : 'ansatt',
      tidsbanken_id: values.tidsbankenId,
      poweroffice_type: values.flow.split('-')[1]!,
      poweroffice_id: values.powerofficeId,
      linked_by: 'email',
      shadow: JSON.stringify({ Epost: `${values.tidsbankenId}@example.no` }),
      last_synced_at: new Date('2026-01-05T10:00:00Z'),
      unlinked_at: values.unlinked === true ? new Date('2026-01-06T10:00:00Z') : null,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}

const seedCommand = (values: Parameters<typeof seedDbCommand>[1]) =>
  seedDbCommand(t.database.db, values);

describe('admin authentication', () => {
  it('when ADMIN_TOKEN is not configured, answers 503 problem+json on every admin route', async () => {
    for (const path of [
      '/admin/links',
      '/admin/conflicts',
      '/admin/commands',
      '/admin/reconcile',
    ]) {
      const res = await request(noToken.app).get(path).set(auth);
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      await expectDocumentedResponse('GET', path, res);
    }
    const res = await request(noToken.app).post('/admin/reconcile').set(auth);
    expect(res.status).toBe(503);
  });

  it('without a token, with a wrong token, or with another scheme, answers 401', async () => {
    const cases: Record<string, string>[] = [
      {},
      { Authorization: 'Bearer wrong-token-0123456789abcdef' },
      { Authorization: `Bearer ${ADMIN_TOKEN}x` },
      { Authorization: `Basic ${Buffer.from(`admin:${ADMIN_TOKEN}`).toString('base64')}` },
      { Authorization: ADMIN_TOKEN },
    ];
    for (const headers of cases) {
      const res = await request(t.app).get('/admin/links').set(headers);
      expect(res.status).toBe(401);
      expect(res.body.type).toBe('urn:tidsbanken-poweroffice-sync:problem:unauthorized');
      await expectDocumentedResponse('GET', '/admin/links', res);
    }
  });

  it('with the right token, answers 200', async () => {
    const res = await request(t.app).get('/admin/links').set(auth);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ items: [], nextCursor: null });
  });
});

describe('GET /admin/links', () => {
  it('lists active links with string ids and the documented fields, filtered by flow and ids', async () => {
    await seedLink({ flow: 'kunde-customer', tidsbankenId: 'K1', powerofficeId: '501' });
    await seedLink({ flow: 'ansatt-employee', tidsbankenId: '100', powerofficeId: '7' });
    await seedLink({
      flow: 'ansatt-employee',
      tidsbankenId: '101',
      powerofficeId: '8',
      unlinked: true,
    });

    const all = await request(t.app).get('/admin/links').set(auth);
    expect(all.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/links', all);
    expect(all.body.items).toHaveLength(2);

    const byFlow = await request(t.app).get('/admin/links?flow=ansatt-employee').set(auth);
    expect(byFlow.body.items).toHaveLength(1);
    expect(byFlow.body.items[0]).toMatchObject({
      flow: 'ansatt-employee',
      tidsbankenId: '100',
      powerofficeId: '7',
      linkedBy: 'email',
      lastSyncedAt: '2026-01-05T10:00:00.000Z',
      shadow: { Epost: '100@example.no' },
      unlinkedAt: null,
    });
    expect(typeof byFlow.body.items[0].id).toBe('string');

    const byTb = await request(t.app).get('/admin/links?tidsbankenId=K1').set(auth);
    expect(byTb.body.items.map((l: { powerofficeId: string }) => l.powerofficeId)).toEqual(['501']);
    const byPo = await request(t.app).get('/admin/links?powerofficeId=7').set(auth);
    expect(byPo.body.items.map((l: { tidsbankenId: string }) => l.tidsbankenId)).toEqual(['100']);

    const withUnlinked = await request(t.app)
      .get('/admin/links?flow=ansatt-employee&includeUnlinked=true')
      .set(auth);
    expect(withUnlinked.body.items).toHaveLength(2);
    const limited = await request(t.app).get('/admin/links?limit=1').set(auth);
    expect(limited.body.items).toHaveLength(1);
  });

  it('answers 400 naming the parameter for an unknown flow, a bad limit or an unknown parameter', async () => {
    const cases: [string, string][] = [
      ['/admin/links?flow=nope', 'flow'],
      ['/admin/links?limit=0', 'limit'],
      ['/admin/links?limit=abc', 'limit'],
      ['/admin/links?limit=1001', 'limit'],
      ['/admin/links?tidsbankenid=1', 'tidsbankenid'],
    ];
    for (const [path, parameter] of cases) {
      const res = await request(t.app).get(path).set(auth);
      expect(res.status, path).toBe(400);
      expect(res.body.parameter, path).toBe(parameter);
      expect(res.body.detail, path).toContain(parameter);
      await expectDocumentedResponse('GET', '/admin/links', res);
    }
  });
});

describe('GET /admin/conflicts', () => {
  it('lists conflicts newest first with both kinds of detail, filtered by flow and kind', async () => {
    await t.database.db
      .insertInto('conflicts')
      .values([
        {
          flow: 'kunde-customer',
          kind: 'ambiguous_match',
          system: 'tidsbanken',
          record_type: 'kunde',
          record_id: 'K9',
          candidates: JSON.stringify([{ system: 'poweroffice', recordId: '501', rule: 'email' }]),
        },
        {
          flow: 'ansatt-employee',
          kind: 'field_conflict',
          system: 'poweroffice',
          record_type: 'employee',
          record_id: '7',
          field: 'Mobil',
          tidsbanken_value: JSON.stringify('+47 900 00 001'),
          poweroffice_value: JSON.stringify('+47 900 00 002'),
          resolution: 'poweroffice-wins (newest)',
          status: 'resolved',
        },
      ])
      .execute();

    const all = await request(t.app).get('/admin/conflicts').set(auth);
    expect(all.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/conflicts', all);
    expect(all.body.items.map((c: { kind: string }) => c.kind)).toEqual([
      'field_conflict',
      'ambiguous_match',
    ]);
    expect(all.body.items[0]).toMatchObject({
      flow: 'ansatt-employee',
      system: 'poweroffice',
      recordType: 'employee',
      recordId: '7',
      field: 'Mobil',
      tidsbankenValue: '+47 900 00 001',
      powerofficeValue: '+47 900 00 002',
      resolution: 'poweroffice-wins (newest)',
      status: 'resolved',
      candidates: null,
    });

    const ambiguous = await request(t.app).get('/admin/conflicts?kind=ambiguous_match').set(auth);
    expect(ambiguous.body.items).toHaveLength(1);
    expect(ambiguous.body.items[0]).toMatchObject({
      recordId: 'K9',
      candidates: [{ system: 'poweroffice', recordId: '501', rule: 'email' }],
      field: null,
      status: 'open',
    });
    const byFlow = await request(t.app).get('/admin/conflicts?flow=kunde-customer').set(auth);
    expect(byFlow.body.items).toHaveLength(1);
    const open = await request(t.app).get('/admin/conflicts?status=open').set(auth);
    expect(open.body.items).toHaveLength(1);

    const bad = await request(t.app).get('/admin/conflicts?kind=other').set(auth);
    expect(bad.status).toBe(400);
    expect(bad.body.parameter).toBe('kind');
    await expectDocumentedResponse('GET', '/admin/conflicts', bad);
  });
});

describe('GET /admin/commands and replay', () => {
  it('filters by status and shows an in-flight command as pending', async () => {
    await seedCommand({ status: 'pending' });
    await seedCommand({ status: 'sending' });
    await seedCommand({ status: 'sent' });
    const deadId = await seedCommand({ status: 'dead' });

    const pending = await request(t.app).get('/admin/commands?status=pending').set(auth);
    expect(pending.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/commands', pending);
    expect(pending.body.items.map((c: { status: string }) => c.status)).toEqual([
      'pending',
      'pending',
    ]);

    const dead = await request(t.app).get('/admin/commands?status=dead').set(auth);
    expect(dead.body.items).toHaveLength(1);
    expect(dead.body.items[0]).toMatchObject({
      id: deadId,
      system: 'poweroffice',
      operation: 'update',
      recordType: 'customer',
      flow: 'kunde-customer',
      payload: { Name: 'Fjord AS' },
      status: 'dead',
      attempts: 7,
      lastError: { status: 400, body: 'bad' },
      sentAt: null,
    });
    expect(typeof dead.body.items[0].recordId).toBe('string');

    const all = await request(t.app).get('/admin/commands').set(auth);
    expect(all.body.items).toHaveLength(4);
    const bad = await request(t.app).get('/admin/commands?status=sending').set(auth);
    expect(bad.status).toBe(400);
    expect(bad.body.parameter).toBe('status');
  });

  it('replays a dead command: pending again, attempts 0, due now, last error kept; it leaves the dead list', async () => {
    const deadId = await seedCommand({ status: 'dead' });
    const res = await request(t.app).post(`/admin/commands/${deadId}/replay`).set(auth);
    expect(res.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/replay', res);
    expect(res.body).toMatchObject({ id: deadId, status: 'pending', attempts: 0 });
    expect(res.body.lastError).toEqual({ status: 400, body: 'bad' });

    const row = await t.database.db
      .selectFrom('outbound_commands')
      .select(['status', 'attempts', sql<boolean>`run_at > now() - interval '1 minute'`.as('due')])
      .where('id', '=', deadId)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ status: 'pending', attempts: 0, due: true });
    const dead = await request(t.app).get('/admin/commands?status=dead').set(auth);
    expect(dead.body.items).toEqual([]);

    // A second replay finds it pending: 409, nothing changes.
    const again = await request(t.app).post(`/admin/commands/${deadId}/replay`).set(auth);
    expect(again.status).toBe(409);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/replay', again);
  });

  it('answers 409 for a command that is not dead and 404 for an unknown id, changing nothing', async () => {
    const sentId = await seedCommand({ status: 'sent' });
    const sent = await request(t.app).post(`/admin/commands/${sentId}/replay`).set(auth);
    expect(sent.status).toBe(409);
    expect(sent.body.detail).toContain('sent');
    const row = await t.database.db
      .selectFrom('outbound_commands')
      .select('status')
      .where('id', '=', sentId)
      .executeTakeFirstOrThrow();
    expect(row.status).toBe('sent');

    const unknown = await request(t.app).post('/admin/commands/999999/replay').set(auth);
    expect(unknown.status).toBe(404);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/replay', unknown);

    const badId = await request(t.app).post('/admin/commands/abc/replay').set(auth);
    expect(badId.status).toBe(400);
    expect(badId.body.parameter).toBe('id');
    await expectDocumentedResponse('POST', '/admin/commands/{id}/replay', badId);
  });

  it('answers 409 when a newer pending update for the same record holds the queue slot', async () => {
    const deadId = await seedCommand({ status: 'dead', recordId: '501' });
    await seedCommand({ status: 'pending', recordId: '501' });
    const res = await request(t.app).post(`/admin/commands/${deadId}/replay`).set(auth);
    expect(res.status).toBe(409);
    expect(res.body.detail).toContain('newer command');
  });
});

describe('GET /admin/events and retry', () => {
  async function seedEvent(values: { eventId: string; status: 'pending' | 'done' | 'dead' }) {
    const row = await t.database.db
      .insertInto('inbound_events')
      .values({
        source: 'tidsbanken',
        origin: 'webhook',
        event_id: values.eventId,
        event_type: 'kunde.updated',
        record_type: 'kunde',
        record_id: values.eventId,
        payload: JSON.stringify({ Id: values.eventId, Navn: values.eventId }),
        content_hash: values.eventId,
        status: values.status,
        last_error: values.status === 'dead' ? 'gave up' : null,
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return String(row.id);
  }

  it('pages dead events newest first with a cursor; retry makes one pending and it leaves the list', async () => {
    const ids = [];
    for (const n of [1, 2, 3]) ids.push(await seedEvent({ eventId: `E${n}`, status: 'dead' }));
    await seedEvent({ eventId: 'E4', status: 'done' });
    const first = await request(t.app).get('/admin/events?status=dead&limit=2').set(auth);
    expect(first.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/events', first);
    expect(first.body.items.map((i: { id: string }) => i.id)).toEqual([ids[2], ids[1]]);
    const second = await request(t.app)
      .get(`/admin/events?status=dead&limit=2&cursor=${String(first.body.nextCursor)}`)
      .set(auth);
    expect(second.body).toMatchObject({ items: [{ id: ids[0], lastError: 'gave up' }] });
    expect(second.body.nextCursor).toBeNull();

    const retried = await request(t.app).post(`/admin/events/${ids[0]!}/retry`).set(auth);
    expect(retried.status).toBe(202);
    expect(retried.body).toMatchObject({ id: ids[0], status: 'pending', attempts: 0 });
    const left = await request(t.app).get('/admin/events').set(auth);
    expect(left.body.items.map((i: { id: string }) => i.id)).toEqual([ids[2], ids[1]]);
  });

  it('answers 409 for an event that is not dead, 404 for an unknown id, 400 for a bad cursor', async () => {
    const done = await seedEvent({ eventId: 'D1', status: 'done' });
    const notDead = await request(t.app).post(`/admin/events/${done}/retry`).set(auth);
    expect(notDead.status).toBe(409);
    await expectDocumentedResponse('POST', '/admin/events/{id}/retry', notDead);
    const unknown = await request(t.app).post('/admin/events/999999/retry').set(auth);
    expect(unknown.status).toBe(404);
    await expectDocumentedResponse('POST', '/admin/events/{id}/retry', unknown);
    const bad = await request(t.app).get('/admin/events?cursor=abc').set(auth);
    expect(bad.status).toBe(400);
    await expectDocumentedResponse('GET', '/admin/events', bad);
    expect(bad.body.detail).toMatch(/cursor/);
  });

  it('answers 409 when the same event is already in the inbox again, changing nothing', async () => {
    const dead = await seedEvent({ eventId: 'S1', status: 'dead' });
    await seedEvent({ eventId: 'S1', status: 'pending' });
    const res = await request(t.app).post(`/admin/events/${dead}/retry`).set(auth);
    expect(res.status).toBe(409);
    const row = await t.database.db
      .selectFrom('inbound_events')
      .select('status')
      .where('id', '=', dead)
      .executeTakeFirstOrThrow();
    expect(row.status).toBe('dead');
  });
});

describe('GET /admin/records/{system}/{type}/{id}/history', () => {
  it('merges inbox events, audit entries and commands of the record, newest first, with the mirror row', async () => {
    const at = (s: number) => new Date(Date.UTC(2026, 0, 5, 10, 0, s));
    const db = t.database.db;
    await db
      .insertInto('records')
      .values({
        system: 'poweroffice',
        record_type: 'customer',
        record_id: '501',
        data: JSON.stringify({ Id: 501, Name: 'Fjord AS' }),
      })
      .execute();
    const event = await db
      .insertInto('inbound_events')
      .values({
        source: 'poweroffice',
        origin: 'poller',
        event_id: 'poll:customer:501:abc',
        event_type: 'customer.updated',
        record_type: 'customer',
        record_id: '501',
        payload: JSON.stringify({ Id: 501, Name: 'Fjord AS' }),
        status: 'done',
        created_at: at(1),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    // Another record's event must not show up.
    await db
      .insertInto('inbound_events')
      .values({
        source: 'poweroffice',
        origin: 'poller',
        event_id: 'poll:customer:502:abc',
        event_type: 'customer.updated',
        record_type: 'customer',
        record_id: '502',
        payload: JSON.stringify({ Id: 502 }),
        created_at: at(1),
      })
      .execute();
    await db
      .insertInto('audit_entries')
      .values([
        {
          system: 'poweroffice',
          record_type: 'customer',
          record_id: '501',
          kind: 'link',
          flow: 'kunde-customer',
          event_id: event.id,
          detail: JSON.stringify({ rule: 'email', tidsbankenId: 'K1' }),
          created_at: at(2),
        },
        {
          system: 'poweroffice',
          record_type: 'customer',
          record_id: '501',
          kind: 'diff',
          flow: 'kunde-customer',
          event_id: event.id,
          detail: JSON.stringify({ changes: { Name: ['Fjord', 'Fjord AS'] } }),
          created_at: at(3),
        },
      ])
      .execute();
    const commandId = await seedCommand({ status: 'dead', recordId: '501', createdAt: at(4) });

    const res = await request(t.app)
      .get('/admin/records/poweroffice/customer/501/history')
      .set(auth);
    expect(res.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/records/{system}/{type}/{id}/history', res);
    expect(res.body.record).toMatchObject({
      system: 'poweroffice',
      recordType: 'customer',
      recordId: '501',
      data: { Id: 501, Name: 'Fjord AS' },
    });
    expect(
      res.body.items.map((i: { kind: string; at: string }) => [i.kind, i.at.slice(17, 19)]),
    ).toEqual([
      ['command', '04'],
      ['diff', '03'],
      ['link', '02'],
      ['event', '01'],
    ]);
    expect(res.body.nextCursor).toBeNull();
    expect(res.body.items[3].detail).toMatchObject({
      eventType: 'customer.updated',
      origin: 'poller',
      status: 'done',
    });
    expect(res.body.items[2]).toMatchObject({
      flow: 'kunde-customer',
      eventId: event.id,
      detail: { rule: 'email', tidsbankenId: 'K1' },
    });
    expect(res.body.items[0]).toMatchObject({
      commandId,
      detail: { operation: 'update', status: 'dead', lastError: { status: 400, body: 'bad' } },
    });

    const first = await request(t.app)
      .get('/admin/records/poweroffice/customer/501/history?limit=2')
      .set(auth);
    expect(first.body.items.map((i: { kind: string }) => i.kind)).toEqual(['command', 'diff']);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await request(t.app)
      .get(
        `/admin/records/poweroffice/customer/501/history?limit=2&cursor=${first.body.nextCursor}`,
      )
      .set(auth);
    expect(second.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/records/{system}/{type}/{id}/history', second);
    expect(second.body.items.map((i: { kind: string }) => i.kind)).toEqual(['link', 'event']);
    expect(second.body.nextCursor).toBeNull();
  });

  it('pages a long history with limit and cursor: every entry once, in order, even with equal timestamps and entries added meanwhile', async () => {
    const db = t.database.db;
    const at = new Date(Date.UTC(2026, 0, 5, 10, 0, 0, 123));
    // Events, audit entries and commands at the same microsecond, and some a little apart.
    for (let i = 0; i < 7; i++) {
      const when = i < 4 ? at : new Date(at.getTime() + i * 1000);
      await db
        .insertInto('inbound_events')
        .values({
          source: 'tidsbanken',
          origin: 'webhook',
          event_id: `page-${i}`,
          event_type: 'kunde.updated',
          record_type: 'kunde',
          record_id: 'KP',
          payload: JSON.stringify({ Id: 'KP' }),
          status: 'done',
          created_at: when,
        })
        .execute();
      await db
        .insertInto('audit_entries')
        .values({
          system: 'tidsbanken',
          record_type: 'kunde',
          record_id: 'KP',
          kind: 'diff',
          detail: JSON.stringify({ i }),
          created_at: when,
        })
        .execute();
      await seedCommand({
        status: 'sent',
        system: 'tidsbanken',
        recordType: 'kunde',
        recordId: 'KP',
        createdAt: when,
      });
    }
    const all = await request(t.app)
      .get('/admin/records/tidsbanken/kunde/KP/history?limit=1000')
      .set(auth);
    expect(all.body.items).toHaveLength(21);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const res: request.Response = await request(t.app)
        .get(
          `/admin/records/tidsbanken/kunde/KP/history?limit=4${cursor !== null ? `&cursor=${cursor}` : ''}`,
        )
        .set(auth);
      expect(res.status).toBe(200);
      seen.push(...res.body.items.map((i: { id: string }) => i.id));
      cursor = res.body.nextCursor;
      if (pages++ === 0) {
        // Newer than the walk: never shown in it and never shifting the rest.
        await seedCommand({
          status: 'pending',
          system: 'tidsbanken',
          recordType: 'kunde',
          recordId: 'KP',
        });
      }
    } while (cursor !== null);
    expect(pages).toBe(6);
    expect(seen).toEqual(all.body.items.map((i: { id: string }) => i.id));

    for (const bad of ['abc', Buffer.from('{"k":"1 or 1=1"}').toString('base64url')]) {
      const res = await request(t.app)
        .get(`/admin/records/tidsbanken/kunde/KP/history?cursor=${bad}`)
        .set(auth);
      expect(res.status).toBe(400);
      expect(res.body.detail).toMatch(/cursor/);
    }
  });

  it('answers an unknown record with record null and no items', async () => {
    const res = await request(t.app).get('/admin/records/tidsbanken/kunde/K404/history').set(auth);
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ record: null, items: [], nextCursor: null });
  });

  it('answers 400 for an unknown system, or a type of the other system', async () => {
    for (const path of [
      '/admin/records/visma/customer/1/history',
      '/admin/records/tidsbanken/customer/1/history',
      '/admin/records/poweroffice/ansatt/1/history',
    ]) {
      const res = await request(t.app).get(path).set(auth);
      expect(res.status, path).toBe(400);
      await expectDocumentedResponse('GET', '/admin/records/{system}/{type}/{id}/history', res);
    }
  });
});

describe('GET /admin/reconcile without a run', () => {
  it('answers 404 before any run, and POST answers 503 when this process has no reconciler', async () => {
    const get = await request(t.app).get('/admin/reconcile').set(auth);
    expect(get.status).toBe(404);
    await expectDocumentedResponse('GET', '/admin/reconcile', get);
    const post = await request(t.app).post('/admin/reconcile').set(auth);
    expect(post.status).toBe(503);
    await expectDocumentedResponse('POST', '/admin/reconcile', post);
  });
});

describe('operations gauges on /metrics', () => {
  function value(text: string, name: string, labels = ''): number | undefined {
    const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
    return line === undefined ? undefined : Number(line.split(' ')[1]);
  }

  it('shows inbox, outbox, dead letters, conflicts, links and poller state from the database', async () => {
    const db = t.database.db;
    await db
      .insertInto('inbound_events')
      .values(
        [1, 2, 3, 4, 5].map((n) => ({
          source: 'tidsbanken' as const,
          origin: 'webhook' as const,
          event_id: `e${n}`,
          event_type: 'ansatt.updated',
          record_type: 'ansatt',
          record_id: String(n),
          payload: '{}',
          status: n === 3 ? ('done' as const) : n >= 4 ? ('dead' as const) : ('pending' as const),
          created_at: new Date(Date.now() - n * 60_000),
        })),
      )
      .execute();
    await seedCommand({ status: 'pending', createdAt: new Date(Date.now() - 120_000) });
    await seedCommand({ status: 'sending' });
    await seedCommand({ status: 'dead' });
    await seedCommand({ status: 'dead', system: 'tidsbanken', recordType: 'kunde' });
    await seedCommand({ status: 'sent' });
    await db
      .insertInto('conflicts')
      .values({
        flow: 'kunde-customer',
        kind: 'ambiguous_match',
        system: 'tidsbanken',
        record_type: 'kunde',
        record_id: 'K1',
      })
      .execute();
    await seedLink({ flow: 'kunde-customer', tidsbankenId: 'K1', powerofficeId: '1' });
    await seedLink({ flow: 'kunde-customer', tidsbankenId: 'K2', powerofficeId: '2' });
    await seedLink({
      flow: 'kunde-customer',
      tidsbankenId: 'K3',
      powerofficeId: '3',
      unlinked: true,
    });
    await db
      .insertInto('poller_cursors')
      .values([
        {
          system: 'poweroffice',
          record_type: 'customer',
          last_success_at: new Date(Date.now() - 90_000),
        },
        {
          system: 'tidsbanken',
          record_type: 'kunde',
          last_success_at: new Date(Date.now() - 10_000),
          last_error: 'timeout',
        },
      ])
      .execute();

    const res = await request(t.app).get('/metrics');
    expect(res.status).toBe(200);
    const text = res.text;
    expect(value(text, 'tbpo_ops_metrics_up')).toBe(1);
    expect(value(text, 'tbpo_inbox_pending_events')).toBe(2);
    expect(value(text, 'tbpo_inbox_oldest_pending_age_seconds')).toBeGreaterThanOrEqual(119);
    expect(value(text, 'tbpo_inbox_oldest_pending_age_seconds')).toBeLessThan(200);
    expect(
      value(text, 'tbpo_inbox_dead_events', '{system="tidsbanken",record_type="ansatt"}'),
    ).toBe(2);
    expect(value(text, 'tbpo_outbox_commands', '{system="poweroffice",status="pending"}')).toBe(1);
    expect(value(text, 'tbpo_outbox_commands', '{system="poweroffice",status="sending"}')).toBe(1);
    expect(value(text, 'tbpo_outbox_commands', '{system="poweroffice",status="dead"}')).toBe(1);
    expect(value(text, 'tbpo_outbox_commands', '{system="tidsbanken",status="pending"}')).toBe(0);
    expect(
      value(text, 'tbpo_outbox_oldest_pending_age_seconds', '{system="poweroffice"}'),
    ).toBeGreaterThanOrEqual(119);
    expect(value(text, 'tbpo_dead_commands', '{system="poweroffice"}')).toBe(1);
    expect(value(text, 'tbpo_dead_commands', '{system="tidsbanken"}')).toBe(1);
    expect(
      value(text, 'tbpo_open_conflicts', '{flow="kunde-customer",kind="ambiguous_match"}'),
    ).toBe(1);
    expect(value(text, 'tbpo_active_links', '{flow="kunde-customer"}')).toBe(2);
    expect(
      value(text, 'tbpo_poller_lag_seconds', '{system="poweroffice",record_type="customer"}'),
    ).toBeGreaterThanOrEqual(89);
    expect(value(text, 'tbpo_poller_failing', '{system="tidsbanken",record_type="kunde"}')).toBe(1);
    expect(
      value(text, 'tbpo_poller_failing', '{system="poweroffice",record_type="customer"}'),
    ).toBe(0);
    expect(value(text, 'tbpo_reconcile_running')).toBe(0);
    // The counters of src/lib/metrics.ts are still there.
    expect(text).toContain('# TYPE tbpo_upstream_requests_total counter');
  });
});

describe('operations gauges when the database is down', () => {
  it('the scrape still answers 200 with the process metrics, the database-derived gauges skipped and up = 0', async () => {
    const down = await createTestApp({});
    await down.database.close();
    const res = await request(down.app).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain('tbpo_ops_metrics_up 0');
    expect(res.text).not.toMatch(/^tbpo_inbox_pending_events /m);
    expect(res.text).toContain('process_cpu_user_seconds_total');
  });
});
