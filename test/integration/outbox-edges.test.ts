import { sql } from 'kysely';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { expectDocumentedResponse } from '../helpers/openapi.js';
import {
  seedEmployeePairs,
  sendSignedWebhook,
  startSyncHarness,
  type SyncHarness,
} from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// The outbox at its edges: commands that have to wait, retried writes, and the bookkeeping of a
// command's status. Each case once sent a stale value, undid an edit or sent a write twice;
// each test failed before its fix.

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const SECRET = 'whsec_b3V0Ym94LWVkZ2VzLXNlY3JldC0wMTIzNDU2Nzg5';
const isPatch = (r: { method: string }) => r.method === 'PATCH';
const isPut = (r: { method: string }) => r.method === 'PUT';
const answered = (r: { status: number }) => r.status >= 200 && r.status < 300;

async function linkedEmployeeId(s: SyncHarness): Promise<number> {
  const { poweroffice_id } = await s.database.db
    .selectFrom('links')
    .select('poweroffice_id')
    .where('flow', '=', 'ansatt-employee')
    .executeTakeFirstOrThrow();
  return Number(poweroffice_id);
}

describe('command status changes', () => {
  it('a write whose answer cannot be stored is sent once: the sent command does not go back to pending', async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1) });
    const s = h;
    await s.settle();
    const employeeId = await linkedEmployeeId(s);
    // An unmapped field of the employee holds a NUL character: every answer about it (the
    // PATCH's too) carries a value PostgreSQL cannot store. Its change time stays, so the
    // poller does not read it again.
    const current = s.po.getEmployee(employeeId)!;
    s.po.editEmployee(employeeId, {
      Initials: 'A\u0000B',
      LastChangedDateTimeOffset: current.LastChangedDateTimeOffset,
    });
    s.po.clearRequests();
    s.tb.editAnsatt(1, { Tittel: 'Sjef' });
    await waitFor(
      'the title to reach PowerOffice',
      () => s.po.getEmployee(employeeId)?.JobTitle === 'Sjef',
    );
    await s.settle();
    expect(s.writes(s.po).filter(isPatch)).toHaveLength(1);
    const statuses = await s.database.db.selectFrom('outbound_commands').select('status').execute();
    expect(statuses.map((c) => c.status)).toEqual(['sent']);
  });
});

describe('a command that has to wait waits in the outbox', () => {
  it('a PATCH answered 429 stays absorbable: a newer PowerOffice edit of the same field takes it out, and the old value is never sent', async () => {
    h = await startSyncHarness({
      env: { POWEROFFICE_WEBHOOK_SECRET: SECRET },
      seed: (tb, po) => seedEmployeePairs(tb, po, 1),
    });
    const s = h;
    await s.settle();
    const employeeId = await linkedEmployeeId(s);
    s.po.faults.inject(1, '429', { match: isPatch, retryAfterSeconds: 4 });
    s.tb.editAnsatt(1, { Tittel: 'Gammel' });
    await waitFor('the PATCH to be refused', () =>
      s.po.requests.some((r) => isPatch(r) && r.status === 429),
    );
    // During the wait a PowerOffice user sets the same field; it is newer, so it wins.
    const edited = s.po.editEmployee(employeeId, { JobTitle: 'Ny' });
    await sendSignedWebhook(s, 'poweroffice', SECRET, { type: 'employee.updated', data: edited });
    await waitFor(
      'the PowerOffice title to reach Tidsbanken',
      () => s.tb.getAnsatt(1)?.Tittel === 'Ny',
    );
    await s.settle();
    expect(s.po.getEmployee(employeeId)?.JobTitle).toBe('Ny');
    const sentOld = s.po.requests.filter(
      (r) => isPatch(r) && answered(r) && JSON.stringify(r.body).includes('Gammel'),
    );
    expect(sentOld).toEqual([]);
  });
});

describe('a Tidsbanken update reads the record right before every PUT', () => {
  it('a PUT retried after a 429 keeps what a Tidsbanken user edited in another field during the wait', async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1) });
    const s = h;
    await s.settle();
    const employeeId = await linkedEmployeeId(s);
    s.tb.faults.inject(1, '429', { match: isPut, retryAfterSeconds: 3 });
    s.po.editEmployee(employeeId, { JobTitle: 'Sjef' });
    await waitFor('the PUT to be refused', () =>
      s.tb.requests.some((r) => isPut(r) && r.status === 429),
    );
    s.tb.editAnsatt(1, { Mobil: '99887766' });
    await waitFor('the title to reach Tidsbanken', () => s.tb.getAnsatt(1)?.Tittel === 'Sjef');
    await s.settle();
    expect(s.tb.getAnsatt(1)?.Mobil).toBe('99887766');
    expect(s.po.getEmployee(employeeId)?.PhoneNumber).toBe('99887766');
  });

  it('a change the mirror has not seen stops the PUT: the read goes to the inbox and the newer Tidsbanken edit of the same field wins', async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1) });
    const s = h;
    await s.settle();
    const employeeId = await linkedEmployeeId(s);
    s.tb.faults.inject(1, '429', { match: isPut, retryAfterSeconds: 3 });
    s.po.editEmployee(employeeId, { JobTitle: 'Fra PowerOffice' });
    await waitFor('the PUT to be refused', () =>
      s.tb.requests.some((r) => isPut(r) && r.status === 429),
    );
    s.tb.editAnsatt(1, { Tittel: 'Fra Tidsbanken' });
    await waitFor(
      'the Tidsbanken title to reach PowerOffice',
      () => s.po.getEmployee(employeeId)?.JobTitle === 'Fra Tidsbanken',
    );
    await s.settle();
    expect(s.tb.getAnsatt(1)?.Tittel).toBe('Fra Tidsbanken');
    const putsOfOld = s.tb.requests.filter(
      (r) => isPut(r) && answered(r) && JSON.stringify(r.body).includes('Fra PowerOffice'),
    );
    expect(putsOfOld).toEqual([]);
  });
});

describe('creates look the origin id up before every POST', () => {
  it('a replayed dead create whose POST had landed links the record instead of making a second one', async () => {
    const token = 'outbox-edges-admin-token';
    h = await startSyncHarness({
      start: false,
      env: { ADMIN_TOKEN: token, FLOW_ANSATT_EMPLOYEE_ON_UNMATCHED: 'create-in-poweroffice' },
      seed: (tb) => {
        tb.seedAnsatt({ Id: 7, Fornavn: 'Ny', Etternavn: 'Ansatt', Epost: 'ny@firma.no' });
      },
    });
    const s = h;
    // One attempt per command, so the create goes dead at its first failure.
    await sql`alter table outbound_commands alter column max_attempts set default 1`.execute(
      s.database.db,
    );
    // The POST lands, its answer is lost.
    s.po.faults.inject(1, 'drop', {
      match: (r) => r.method === 'POST' && r.path.endsWith('/Employees'),
      process: true,
    });
    s.service.start();
    const dead = await waitFor('the create to go dead', () =>
      s.database.db
        .selectFrom('outbound_commands')
        .select('id')
        .where('status', '=', 'dead')
        .executeTakeFirst(),
    );
    expect(s.po.employees.size).toBe(1);
    const replay = await request(s.app)
      .post(`/admin/commands/${dead.id}/replay`)
      .set('authorization', `Bearer ${token}`);
    expect(replay.status).toBe(202);
    await s.settle();
    expect(s.po.employees.size).toBe(1);
    expect(s.writes(s.po).filter((w) => w.method === 'POST')).toHaveLength(1);
    const links = await s.database.db.selectFrom('links').select('tidsbanken_id').execute();
    expect(links).toEqual([{ tidsbanken_id: '7' }]);
  });
});

describe('refused credentials pause the system', () => {
  it('a token endpoint answering 401 for a while pauses PowerOffice: queued writes wait, none goes dead, all are delivered after', async () => {
    const token = 'outbox-edges-admin-token';
    h = await startSyncHarness({
      env: { ADMIN_TOKEN: token },
      seed: (tb, po) => seedEmployeePairs(tb, po, 3),
    });
    const s = h;
    await s.settle();
    const admin = (path: string) =>
      request(s.app).get(path).set('authorization', `Bearer ${token}`);
    const powerOffice = async () => {
      const res = await admin('/admin/systems');
      expect(res.status).toBe(200);
      await expectDocumentedResponse('GET', '/admin/systems', res);
      return (res.body as { items: { system: string; credentialsRefused: boolean }[] }).items.find(
        (i) => i.system === 'poweroffice',
      )!;
    };
    s.po.refuseCredentials = true;
    s.po.expireTokens();
    for (const id of [1, 2, 3]) s.tb.editAnsatt(id, { Tittel: `Tittel ${id}` });
    await waitFor('PowerOffice to be paused', async () => (await powerOffice()).credentialsRefused);
    const metrics = await request(s.app).get('/metrics');
    expect(metrics.text).toContain('tbpo_credentials_refused{system="poweroffice"} 1');
    // Held for a while: several retries of the credentials are refused.
    await waitFor(
      'the credentials to be retried',
      () => s.po.requests.filter((r) => /token/i.test(r.path) && r.status === 401).length >= 3,
    );
    s.po.refuseCredentials = false;
    const employees = [...s.po.employees.values()];
    await waitFor('every title to reach PowerOffice', () =>
      employees.every((e) => {
        const now = s.po.getEmployee(e.Id as number)!;
        return now.JobTitle === `Tittel ${String(now.Number)}`;
      }),
    );
    await s.settle();
    const dead = await s.database.db
      .selectFrom('outbound_commands')
      .select('id')
      .where('status', '=', 'dead')
      .execute();
    expect(dead).toEqual([]);
    expect((await powerOffice()).credentialsRefused).toBe(false);
  });
});
