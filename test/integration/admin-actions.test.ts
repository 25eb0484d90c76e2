import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { adminAuth, seedCommand as seedDbCommand, useAdminApp } from '../helpers/admin.js';
import type { TestApp } from '../helpers/app.js';
import { expectDocumentedResponse, loadOpenApi } from '../helpers/openapi.js';

// Operator actions on rows the engine left behind (seeded directly), and cursor paging of
// every list, over HTTP on the real app and a real database.

const auth = adminAuth;
let t: TestApp;

useAdminApp(
  ['audit_entries', 'conflicts', 'outbound_commands', 'links', 'inbound_events'],
  (app) => (t = app),
);

const seedCommand = (values: Parameters<typeof seedDbCommand>[1]) =>
  seedDbCommand(t.database.db, values);

async function historyKinds(system: string, type: string, id: string) {
  const res = await request(t.app).get(`/admin/records/${system}/${type}/${id}/history`).set(auth);
  return res.body.items.map((i: { kind: string; detail: { action?: string } }) =>
    i.kind === 'operator' ? `operator:${i.detail.action}` : i.kind,
  );
}

describe('dead commands', () => {
  it('drops a dead command: it leaves the dead list unsent, recorded in the history; 409 when not dead', async () => {
    const dead = await seedCommand({ status: 'dead', recordId: '501' });
    const res = await request(t.app).post(`/admin/commands/${dead}/drop`).set(auth);
    expect(res.status).toBe(200);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/drop', res);
    expect(res.body).toMatchObject({ id: dead, status: 'dropped' });
    const list = await request(t.app).get('/admin/commands?status=dead').set(auth);
    expect(list.body.items).toEqual([]);
    expect(await historyKinds('poweroffice', 'customer', '501')).toContain('operator:drop');

    const again = await request(t.app).post(`/admin/commands/${dead}/drop`).set(auth);
    expect(again.status).toBe(409);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/drop', again);
    const unknown = await request(t.app).post('/admin/commands/987654/drop').set(auth);
    expect(unknown.status).toBe(404);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/drop', unknown);
  });

  it('replays every dead command of a filter in bulk, answers how many, and skips one whose record has a newer queued command', async () => {
    const a = await seedCommand({ status: 'dead', recordId: '601' });
    const b = await seedCommand({ status: 'dead', recordId: '602' });
    const blocked = await seedCommand({ status: 'dead', recordId: '603' });
    await seedCommand({ status: 'pending', recordId: '603' });
    const otherSystem = await seedCommand({ status: 'dead', recordId: 'K7', system: 'tidsbanken' });

    const res = await request(t.app)
      .post('/admin/commands/replay')
      .set(auth)
      .send({ status: 'dead', system: 'poweroffice' });
    expect(res.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/commands/replay', res);
    expect(res.body).toEqual({ replayed: 2, skipped: 1, skippedIds: [blocked] });

    const dead = await request(t.app).get('/admin/commands?status=dead').set(auth);
    expect(dead.body.items.map((c: { id: string }) => c.id).sort()).toEqual(
      [blocked, otherSystem].sort(),
    );
    const pending = await request(t.app).get('/admin/commands?status=pending').set(auth);
    expect(pending.body.items.map((c: { id: string }) => c.id)).toEqual(
      expect.arrayContaining([a, b]),
    );
    expect(await historyKinds('poweroffice', 'customer', '601')).toContain('operator:replay');
  });

  it('answers 400 for a bulk replay without status dead or with an unknown field', async () => {
    for (const body of [
      {},
      { status: 'pending' },
      { status: 'dead', flow: 'nope' },
      { status: 'dead', x: 1 },
    ]) {
      const res = await request(t.app).post('/admin/commands/replay').set(auth).send(body);
      expect(res.status).toBe(400);
      await expectDocumentedResponse('POST', '/admin/commands/replay', res);
    }
  });
});

describe('dead inbox events', () => {
  it('lists dead events and retries one: pending again, attempts 0, recorded; 409 when not dead', async () => {
    const row = await t.database.db
      .insertInto('inbound_events')
      .values({
        source: 'tidsbanken',
        origin: 'webhook',
        event_id: 'evt-dead-1',
        event_type: 'kunde.updated',
        record_type: 'kunde',
        record_id: 'K9',
        payload: JSON.stringify({ Id: 'K9' }),
        status: 'dead',
        attempts: 10,
        last_error: 'the worker gave up',
        run_at: new Date(),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const list = await request(t.app).get('/admin/events?status=dead').set(auth);
    expect(list.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/events', list);
    expect(list.body).toMatchObject({
      items: [{ id: row.id, status: 'dead', recordId: 'K9', lastError: 'the worker gave up' }],
      nextCursor: null,
    });

    const res = await request(t.app).post(`/admin/events/${row.id}/retry`).set(auth);
    expect(res.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/events/{id}/retry', res);
    expect(res.body).toMatchObject({ status: 'pending', attempts: 0 });
    expect((await request(t.app).get('/admin/events?status=dead').set(auth)).body.items).toEqual(
      [],
    );
    expect(await historyKinds('tidsbanken', 'kunde', 'K9')).toContain('operator:retry');

    const again = await request(t.app).post(`/admin/events/${row.id}/retry`).set(auth);
    expect(again.status).toBe(409);
    await expectDocumentedResponse('POST', '/admin/events/{id}/retry', again);
  });
  async function seedDeadEvent(values: {
    eventId: string;
    source?: 'tidsbanken' | 'poweroffice';
    recordId?: string;
    status?: 'dead' | 'pending';
    rawRecord?: string;
  }): Promise<string> {
    const source = values.source ?? 'tidsbanken';
    const row = await t.database.db
      .insertInto('inbound_events')
      .values({
        source,
        origin: 'webhook',
        event_id: values.eventId,
        event_type: source === 'tidsbanken' ? 'kunde.updated' : 'customer.updated',
        record_type: source === 'tidsbanken' ? 'kunde' : 'customer',
        record_id: values.recordId ?? values.eventId,
        payload: JSON.stringify({ Id: values.recordId ?? values.eventId }),
        status: values.status ?? 'dead',
        attempts: 10,
        last_error: 'the worker gave up',
        raw_record: values.rawRecord ?? null,
        run_at: new Date(),
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    return row.id;
  }

  it('retries every dead event of a filter in bulk, answers how many, and skips the ones that cannot be retried', async () => {
    const a = await seedDeadEvent({ eventId: 'bulk-1' });
    const b = await seedDeadEvent({ eventId: 'bulk-2' });
    // The same event is in the inbox again: it stays dead.
    const twin = await seedDeadEvent({ eventId: 'bulk-3' });
    await seedDeadEvent({ eventId: 'bulk-3', status: 'pending' });
    // A record set aside without a readable id cannot be read again.
    const noId = await seedDeadEvent({ eventId: 'bulk-4', recordId: '', rawRecord: '{"Navn":1}' });
    const otherSystem = await seedDeadEvent({ eventId: 'bulk-5', source: 'poweroffice' });

    const res = await request(t.app)
      .post('/admin/events/retry')
      .set(auth)
      .send({ status: 'dead', system: 'tidsbanken' });
    expect(res.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/events/retry', res);
    expect(res.body).toEqual({ retried: 2, skipped: 2, skippedIds: [twin, noId] });

    const dead = await request(t.app).get('/admin/events?status=dead').set(auth);
    expect(dead.body.items.map((e: { id: string }) => e.id).sort()).toEqual(
      [twin, noId, otherSystem].sort(),
    );
    const pending = await request(t.app).get('/admin/events?status=pending').set(auth);
    expect(pending.body.items.map((e: { id: string }) => e.id)).toEqual(
      expect.arrayContaining([a, b]),
    );
    expect(await historyKinds('tidsbanken', 'kunde', 'bulk-1')).toContain('operator:retry');

    const all = await request(t.app).post('/admin/events/retry').set(auth).send({ status: 'dead' });
    expect(all.body).toMatchObject({ retried: 1, skipped: 2 });
  });

  it('answers 400 for a bulk retry without status dead or with an unknown field, changing nothing', async () => {
    const id = await seedDeadEvent({ eventId: 'bulk-bad' });
    for (const body of [
      {},
      { status: 'pending' },
      { status: 'dead', system: 'visma' },
      { status: 'dead', x: 1 },
    ]) {
      const res = await request(t.app).post('/admin/events/retry').set(auth).send(body);
      expect(res.status, JSON.stringify(body)).toBe(400);
      await expectDocumentedResponse('POST', '/admin/events/retry', res);
    }
    const dead = await request(t.app).get('/admin/events?status=dead').set(auth);
    expect(dead.body.items.map((e: { id: string }) => e.id)).toEqual([id]);
  });
});

describe('conflicts', () => {
  it('dismisses an open conflict (recorded); 409 once resolved, 404 when unknown', async () => {
    const row = await t.database.db
      .insertInto('conflicts')
      .values({
        flow: 'kunde-customer',
        kind: 'ambiguous_match',
        system: 'tidsbanken',
        record_type: 'kunde',
        record_id: 'K3',
        candidates: JSON.stringify([{ system: 'poweroffice', recordId: '1' }]),
        resolution: 'several records match',
      })
      .returning('id')
      .executeTakeFirstOrThrow();
    const res = await request(t.app).post(`/admin/conflicts/${row.id}/dismiss`).set(auth);
    expect(res.status).toBe(200);
    await expectDocumentedResponse('POST', '/admin/conflicts/{id}/dismiss', res);
    expect(res.body).toMatchObject({ status: 'resolved', resolution: 'dismissed by an operator' });
    expect(await historyKinds('tidsbanken', 'kunde', 'K3')).toContain('operator:dismiss');
    const again = await request(t.app).post(`/admin/conflicts/${row.id}/dismiss`).set(auth);
    expect(again.status).toBe(409);
    await expectDocumentedResponse('POST', '/admin/conflicts/{id}/dismiss', again);
    const unknown = await request(t.app).post('/admin/conflicts/424242/dismiss').set(auth);
    expect(unknown.status).toBe(404);
    await expectDocumentedResponse('POST', '/admin/conflicts/{id}/dismiss', unknown);
  });
});

describe('cursor paging', () => {
  async function seedLinks(from: number, count: number) {
    await t.database.db
      .insertInto('links')
      .values(
        Array.from({ length: count }, (_, i) => ({
          flow: 'ansatt-employee',
          tidsbanken_type: 'ansatt',
          tidsbanken_id: String(from + i),
          poweroffice_type: 'employee',
          poweroffice_id: String(50_000 + from + i),
          linked_by: 'number',
          shadow: '{}',
        })),
      )
      .execute();
  }

  it('walks every link once with limit and cursor, even while new links are inserted between pages', async () => {
    await seedLinks(1, 250);
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = `/admin/links?limit=100${cursor !== null ? `&cursor=${cursor}` : ''}`;
      const res = await request(t.app).get(query).set(auth);
      expect(res.status).toBe(200);
      await expectDocumentedResponse('GET', '/admin/links', res);
      seen.push(...res.body.items.map((l: { tidsbankenId: string }) => l.tidsbankenId));
      cursor = res.body.nextCursor;
      pages++;
      // Inserted after the first page: newer than the walk, never shown in it and never
      // shifting the rest.
      if (pages === 1) await seedLinks(1000, 30);
    } while (cursor !== null);
    expect(pages).toBe(3);
    expect(seen).toHaveLength(250);
    expect(new Set(seen).size).toBe(250);
    expect(seen.every((id) => Number(id) <= 250)).toBe(true);
  });

  it('pages commands, conflicts and unlinked records the same way, and rejects a forged cursor', async () => {
    for (let i = 0; i < 5; i++) await seedCommand({ status: 'dead', recordId: String(700 + i) });
    const first = await request(t.app).get('/admin/commands?status=dead&limit=3').set(auth);
    expect(first.body.items).toHaveLength(3);
    expect(first.body.nextCursor).toEqual(expect.any(String));
    const second = await request(t.app)
      .get(`/admin/commands?status=dead&limit=3&cursor=${first.body.nextCursor}`)
      .set(auth);
    expect(second.body.items).toHaveLength(2);
    expect(second.body.nextCursor).toBeNull();

    await t.database.db.deleteFrom('records').execute();
    await t.database.db
      .insertInto('records')
      .values(
        ['1', '2', '3'].map((id) => ({
          system: 'tidsbanken' as const,
          record_type: 'ansatt',
          record_id: id,
          data: JSON.stringify({ Id: Number(id) }),
        })),
      )
      .execute();
    await seedLinks(2, 1);
    const unlinked = await request(t.app)
      .get('/admin/links?flow=ansatt-employee&unlinked=tidsbanken&limit=1')
      .set(auth);
    expect(unlinked.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/links', unlinked);
    expect(unlinked.body.items.map((r: { recordId: string }) => r.recordId)).toEqual(['1']);
    const next = await request(t.app)
      .get(
        `/admin/links?flow=ansatt-employee&unlinked=tidsbanken&limit=1&cursor=${unlinked.body.nextCursor}`,
      )
      .set(auth);
    expect(next.body.items.map((r: { recordId: string }) => r.recordId)).toEqual(['3']);
    expect(next.body.nextCursor).toBeNull();

    for (const path of [
      '/admin/links?cursor=abc',
      '/admin/commands?cursor=abc',
      `/admin/conflicts?cursor=${Buffer.from('{"k":"1 or 1=1"}').toString('base64url')}`,
      '/admin/links?unlinked=tidsbanken',
      '/admin/events?limit=0',
    ]) {
      const res = await request(t.app).get(path).set(auth);
      expect(res.status, path).toBe(400);
    }
  });

  it('every list in openapi.yaml documents limit and cursor, and the app takes them', async () => {
    const doc = (await loadOpenApi()) as unknown as {
      paths: Record<
        string,
        Record<
          string,
          {
            parameters?: { name: string; in: string }[];
            responses: Record<
              string,
              { content?: Record<string, { schema?: { properties?: object } }> }
            >;
          }
        >
      >;
    };
    const lists = Object.entries(doc.paths).filter(([, item]) => {
      const props = item.get?.responses['200']?.content?.['application/json']?.schema?.properties;
      return props !== undefined && 'items' in props && 'nextCursor' in props;
    });
    expect(lists.map(([path]) => path).sort()).toEqual([
      '/admin/commands',
      '/admin/conflicts',
      '/admin/events',
      '/admin/flows',
      '/admin/links',
      '/admin/records/{system}/{type}/{id}/history',
      '/admin/systems',
    ]);
    for (const [path, item] of lists) {
      const names = (item.get!.parameters ?? []).filter((p) => p.in === 'query').map((p) => p.name);
      expect(names, path).toEqual(expect.arrayContaining(['limit', 'cursor']));
      const url = path.replace('{system}/{type}/{id}', 'tidsbanken/ansatt/1');
      const res = await request(t.app).get(`${url}?limit=1`).set(auth);
      expect(res.status, url).toBe(200);
      expect(Object.keys(res.body), url).toEqual(expect.arrayContaining(['items', 'nextCursor']));
    }
  });

  it('pages the flows and the systems too: limit and cursor walk each list once, a forged cursor is refused', async () => {
    const app = createApp({
      config: t.config,
      db: t.database.db,
      logger: t.logger,
      metrics: t.metrics,
      systemStatus: () =>
        (['tidsbanken', 'poweroffice'] as const).map((system) => ({
          system,
          configured: true,
          leader: true,
          credentials: undefined,
        })),
    });
    for (const [path, key] of [
      ['/admin/flows', 'flow'],
      ['/admin/systems', 'system'],
    ] as const) {
      const all = await request(app).get(path).set(auth);
      expect(all.status).toBe(200);
      const everything = all.body.items.map((i: Record<string, string>) => i[key]);
      expect(everything.length).toBeGreaterThan(1);
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const query: string = `${path}?limit=1${cursor !== null ? `&cursor=${cursor}` : ''}`;
        const res = await request(app).get(query).set(auth);
        expect(res.status, query).toBe(200);
        await expectDocumentedResponse('GET', path, res);
        expect(res.body.items).toHaveLength(1);
        seen.push(res.body.items[0][key]);
        cursor = res.body.nextCursor;
      } while (cursor !== null);
      expect(seen).toEqual(everything);
      const forged = Buffer.from('{"k":"nope"}').toString('base64url');
      expect((await request(app).get(`${path}?cursor=${forged}`).set(auth)).status).toBe(400);
      expect((await request(app).get(`${path}?limit=0`).set(auth)).status).toBe(400);
    }
  });

  it('searches links by id, e-mail or name of either record', async () => {
    await t.database.db.deleteFrom('records').execute();
    await seedLinks(10, 2);
    await t.database.db
      .insertInto('records')
      .values([
        {
          system: 'tidsbanken',
          record_type: 'ansatt',
          record_id: '10',
          data: JSON.stringify({ Id: 10, Fornavn: 'Kari', Etternavn: 'Nordmann' }),
          email_key: 'kari@firma.no',
        },
        {
          system: 'poweroffice',
          record_type: 'employee',
          record_id: '50011',
          data: JSON.stringify({ FirstName: 'Ola', LastName: 'Hansen' }),
        },
      ])
      .execute();
    const ids = async (search: string) =>
      (
        await request(t.app)
          .get(`/admin/links?search=${encodeURIComponent(search)}`)
          .set(auth)
      ).body.items.map((l: { tidsbankenId: string }) => l.tidsbankenId);
    expect(await ids('KARI@firma.no')).toEqual(['10']);
    expect(await ids('nordm')).toEqual(['10']);
    expect(await ids('ola hansen')).toEqual(['11']);
    expect(await ids('50011')).toEqual(['11']);
    expect(await ids('100%')).toEqual([]);
  });
});
