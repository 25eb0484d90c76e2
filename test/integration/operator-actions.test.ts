import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import {
  pendingCommandFields,
  startSyncHarness,
  type SyncHarness,
} from '../helpers/sync-harness.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';
import { waitFor } from '../helpers/wait.js';

// Operator actions against the whole running service and both fake APIs: a manual link, an
// unlink that holds the pair apart, and a paused flow whose commands wait and coalesce.

const TOKEN = 'operator-token-0123456789abcdef';
const auth = { Authorization: `Bearer ${TOKEN}` };
let h: SyncHarness;

const activeLink = (flow: string, tidsbankenId: string) =>
  h.database.db
    .selectFrom('links')
    .selectAll()
    .where('flow', '=', flow)
    .where('tidsbanken_id', '=', tidsbankenId)
    .where('unlinked_at', 'is', null)
    .executeTakeFirst();

let customerId: string;
let employee2: number;
let employee3: number;

beforeAll(async () => {
  h = await startSyncHarness({
    env: { ADMIN_TOKEN: TOKEN },
    seed(tb, po) {
      // Two Kunder share the Customer's e-mail: ambiguous, no link.
      tb.seedKunde({ Id: 'K1', Navn: 'Fjord AS', Epost: 'post@fjord.no' });
      tb.seedKunde({ Id: 'K2', Navn: 'Fjord Holding AS', Epost: 'post@fjord.no' });
      customerId = String(po.seedCustomer({ Name: 'Fjord AS', EmailAddress: 'post@fjord.no' }).Id);
      tb.seedAnsatt({ Id: 2, Fornavn: 'Kari', Etternavn: 'Nordmann', Epost: 'kari@firma.no' });
      employee2 = po.seedEmployee({ Number: 2, FirstName: 'Kari', LastName: 'Nordmann' })
        .Id as number;
      tb.seedAnsatt({ Id: 3, Fornavn: 'Per', Etternavn: 'Hansen', Epost: 'per@firma.no' });
      employee3 = po.seedEmployee({ Number: 3, FirstName: 'Per', LastName: 'Hansen' }).Id as number;
    },
  });
  await h.settle();
});
let restarted: Runtime | undefined;
afterAll(async () => {
  await restarted?.close();
  await h.close();
});

describe('manual link', () => {
  it('links an ambiguous pair (201, linkedBy manual), resolves their conflicts, records it, and syncs', async () => {
    const before = await request(h.app)
      .get('/admin/conflicts?kind=ambiguous_match&status=open')
      .set(auth);
    expect(before.body.items.map((c: { recordId: string }) => c.recordId).sort()).toEqual(
      ['K1', 'K2', customerId].sort(),
    );

    const res = await request(h.app)
      .post('/admin/links')
      .set(auth)
      .send({ flow: 'kunde-customer', tidsbankenId: 'K1', powerofficeId: customerId });
    expect(res.status).toBe(201);
    await expectDocumentedResponse('POST', '/admin/links', res);
    expect(res.body).toMatchObject({
      flow: 'kunde-customer',
      tidsbankenId: 'K1',
      powerofficeId: customerId,
      linkedBy: 'manual',
    });
    expect(res.body.lastSyncedAt).not.toBeNull();

    const open = await request(h.app)
      .get('/admin/conflicts?kind=ambiguous_match&status=open')
      .set(auth);
    expect(open.body.items.map((c: { recordId: string }) => c.recordId)).not.toContain('K1');
    expect(open.body.items.map((c: { recordId: string }) => c.recordId)).not.toContain(customerId);

    for (const path of [
      '/admin/records/tidsbanken/kunde/K1/history',
      `/admin/records/poweroffice/customer/${customerId}/history`,
    ]) {
      const history = await request(h.app).get(path).set(auth);
      expect(history.body.items).toContainEqual(
        expect.objectContaining({
          kind: 'link',
          detail: expect.objectContaining({ linkedBy: 'manual', by: 'operator' }),
        }),
      );
    }
  });

  it('answers 409 when either record is already linked in that flow, 404 for a record not in the mirror', async () => {
    const again = await request(h.app)
      .post('/admin/links')
      .set(auth)
      .send({ flow: 'kunde-customer', tidsbankenId: 'K2', powerofficeId: customerId });
    expect(again.status).toBe(409);
    await expectDocumentedResponse('POST', '/admin/links', again);
    const unknown = await request(h.app)
      .post('/admin/links')
      .set(auth)
      .send({ flow: 'kunde-customer', tidsbankenId: 'K404', powerofficeId: customerId });
    expect(unknown.status).toBe(404);
    const bad = await request(h.app)
      .post('/admin/links')
      .set(auth)
      .send({ flow: 'kunde-customer', tidsbankenId: 'K2' });
    expect(bad.status).toBe(400);
    expect(bad.body.parameter).toBe('powerofficeId');
    expect(await activeLink('kunde-customer', 'K2')).toBeUndefined();
  });
});

describe('unlink', () => {
  it('holds the pair apart: a later change does not link them again by the merge rule; a manual link does', async () => {
    const link = await activeLink('ansatt-employee', '2');
    expect(link?.linked_by).toBe('number');
    const res = await request(h.app).delete(`/admin/links/${link!.id}`).set(auth);
    expect(res.status).toBe(204);
    await expectDocumentedResponse('DELETE', '/admin/links/{id}', res);

    // A change of the Ansatt is polled, mirrored and matched again.
    h.tb.editAnsatt(2, { Tittel: 'Lagerleder' });
    await waitFor('the edit in the mirror', async () => {
      const row = await h.database.db
        .selectFrom('records')
        .select('data')
        .where('system', '=', 'tidsbanken')
        .where('record_type', '=', 'ansatt')
        .where('record_id', '=', '2')
        .executeTakeFirst();
      return row?.data.Tittel === 'Lagerleder';
    });
    await h.settle();
    expect(await activeLink('ansatt-employee', '2')).toBeUndefined();
    const history = await request(h.app)
      .get('/admin/records/tidsbanken/ansatt/2/history')
      .set(auth);
    expect(history.body.items).toContainEqual(
      expect.objectContaining({
        kind: 'unlink',
        detail: expect.objectContaining({ heldApart: true }),
      }),
    );
    const unlinked = await request(h.app)
      .get('/admin/links?flow=ansatt-employee&unlinked=tidsbanken')
      .set(auth);
    expect(unlinked.body.items.map((r: { recordId: string }) => r.recordId)).toContain('2');

    const relink = await request(h.app)
      .post('/admin/links')
      .set(auth)
      .send({ flow: 'ansatt-employee', tidsbankenId: '2', powerofficeId: String(employee2) });
    expect(relink.status).toBe(201);
    expect((await activeLink('ansatt-employee', '2'))?.linked_by).toBe('manual');
  });

  it('answers 404 for a link that is not active', async () => {
    const res = await request(h.app).delete('/admin/links/999999').set(auth);
    expect(res.status).toBe(404);
    await expectDocumentedResponse('DELETE', '/admin/links/{id}', res);
  });
});

describe('pausing a flow', () => {
  it('keeps receiving while paused; its commands wait and coalesce into one write, sent on resume', async () => {
    const pause = await request(h.app).post('/admin/flows/ansatt-employee/pause').set(auth);
    expect(pause.status).toBe(200);
    await expectDocumentedResponse('POST', '/admin/flows/{flow}/pause', pause);
    expect(pause.body).toMatchObject({ flow: 'ansatt-employee', paused: true });
    const flows = await request(h.app).get('/admin/flows').set(auth);
    await expectDocumentedResponse('GET', '/admin/flows', flows);
    expect(flows.body.items).toContainEqual(
      expect.objectContaining({ flow: 'ansatt-employee', paused: true }),
    );

    const employeePath = `/Employees/${employee3}`;
    const writesToEmployee = () =>
      h.writes(h.po).filter((w) => w.path.endsWith(employeePath)).length;
    const sentBefore = writesToEmployee();
    const lastCommand = await h.database.db
      .selectFrom('outbound_commands')
      .select((eb) => eb.fn.max('id').as('id'))
      .executeTakeFirstOrThrow();
    const since = lastCommand.id ?? '0';

    h.tb.editAnsatt(3, { Tittel: 'Selger' });
    await waitFor('a queued command with the first edit', async () => {
      const command = await h.database.db
        .selectFrom('outbound_commands')
        .selectAll()
        .where('record_id', '=', String(employee3))
        .where('id', '>', since)
        .where('status', '=', 'pending')
        .executeTakeFirst();
      return command !== undefined;
    });
    h.tb.editAnsatt(3, { Tittel: 'Salgssjef' });
    const pending = await waitFor('the second edit folded into the same command', async () => {
      const rows = await h.database.db
        .selectFrom('outbound_commands')
        .selectAll()
        .where('record_id', '=', String(employee3))
        .where('id', '>', since)
        .where('status', 'in', ['pending', 'sending', 'sent'])
        .execute();
      const fields = rows[0]?.payload.fields as Record<string, unknown> | undefined;
      return rows.length === 1 && fields?.JobTitle === 'Salgssjef' ? rows : undefined;
    });
    expect(pending[0]!.status).toBe('pending');
    expect(writesToEmployee()).toBe(sentBefore);

    const resume = await request(h.app).post('/admin/flows/ansatt-employee/resume').set(auth);
    expect(resume.status).toBe(200);
    await expectDocumentedResponse('POST', '/admin/flows/{flow}/resume', resume);
    expect(resume.body.paused).toBe(false);
    await waitFor(
      'the write delivered',
      () => h.po.getEmployee(employee3)?.JobTitle === 'Salgssjef',
    );
    await h.settle();
    expect(writesToEmployee()).toBe(sentBefore + 1);
  });

  it('answers 400 for an unknown flow', async () => {
    const res = await request(h.app).post('/admin/flows/nope/pause').set(auth);
    expect(res.status).toBe(400);
    await expectDocumentedResponse('POST', '/admin/flows/{flow}/pause', res);
  });
});

describe('a paused flow across a restart', () => {
  // Last in the file: it stops the harness's service and goes on with a new one.
  it('stays paused: the restarted service receives the edit and holds its write until resumed', async () => {
    expect((await request(h.app).post('/admin/flows/ansatt-employee/pause').set(auth)).status).toBe(
      200,
    );
    await h.service.stop();
    const second = await createRuntime({
      config: h.config,
      logger: createLogger({ level: 'silent' }),
      // The harness closes the database at the end.
      database: { ...h.database, close: () => Promise.resolve() },
      databaseUrl: h.database.url,
      clientOptions: { timeoutMs: 5000, backoffBaseMs: 20, credentialsRetryMs: 500 },
      workerIdleMs: 30,
    });
    restarted = second;
    second.service.start();
    const flows = await request(second.app).get('/admin/flows').set(auth);
    expect(flows.body.items).toContainEqual(
      expect.objectContaining({ flow: 'ansatt-employee', paused: true }),
    );

    const employeePath = `/Employees/${employee3}`;
    const writesToEmployee = () =>
      h.writes(h.po).filter((w) => w.path.endsWith(employeePath)).length;
    const sentBefore = writesToEmployee();
    h.tb.editAnsatt(3, { Tittel: 'Innkjøpssjef' });
    await waitFor('the edit received and its write queued', async () =>
      (await pendingCommandFields(h, employee3)).some((f) => f.JobTitle === 'Innkjøpssjef'),
    );
    // Two more poll cycles of the restarted service (its dispatcher runs meanwhile): not sent.
    const running = second.service.pollers.filter((p) => p.isRunning);
    expect(running.length).toBeGreaterThan(0);
    const marks = running.map((p) => p.readsCompleted);
    await waitFor('two poll cycles', () =>
      running.every((p, i) => p.readsCompleted >= marks[i]! + 2),
    );
    expect(writesToEmployee()).toBe(sentBefore);

    const resume = await request(second.app).post('/admin/flows/ansatt-employee/resume').set(auth);
    expect(resume.body.paused).toBe(false);
    await waitFor(
      'the write delivered',
      () => h.po.getEmployee(employee3)?.JobTitle === 'Innkjøpssjef',
    );
    expect(writesToEmployee()).toBe(sentBefore + 1);
  });
});
