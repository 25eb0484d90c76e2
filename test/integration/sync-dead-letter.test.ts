import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { expectDocumentedResponse } from '../helpers/openapi.js';
import { seedEmployeePairs, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

// A write the vendor refuses for good (4xx) goes to the dead list once, with the vendor's
// message; the operator fixes the cause and replays it; the vendor then receives it.

const TOKEN = 'dead-letter-admin-token-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('dead-lettering and replay, end to end', () => {
  it('a refused archive is dead-lettered with the vendor message, not retried; after the cause is fixed a replay archives the Employee', async () => {
    h = await startSyncHarness({
      env: { ADMIN_TOKEN: TOKEN },
      seed: (tb, po) => seedEmployeePairs(tb, po, 1),
    });
    const s = h;
    await s.settle();
    const employee = [...s.po.employees.values()][0]!.Id as number;
    // An open balance on the employee's sub-ledger: PowerOffice refuses to archive (docs/vendor-apis.md).
    s.po.setLedgerBalance(employee, 1250);
    s.tb.editAnsatt(1, { Aktiv: false });
    await s.settle();

    const archives = () =>
      s.po.requests.filter(
        (r) =>
          r.method === 'PATCH' &&
          r.path.endsWith(`/Employees/${employee}`) &&
          JSON.stringify(r.body).includes('/IsArchived'),
      );
    expect(archives().map((r) => r.status)).toEqual([400]);
    expect(s.po.getEmployee(employee)!.IsArchived).toBe(false);
    const dead = await request(s.app).get('/admin/commands?status=dead').set(auth);
    expect(dead.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/commands', dead);
    expect(dead.body.items).toHaveLength(1);
    const command = dead.body.items[0];
    expect(command).toMatchObject({ system: 'poweroffice', recordId: String(employee) });
    expect(JSON.stringify(command.lastError)).toContain('ledger balances');

    // The balance is settled in PowerOffice; the operator replays the dead command.
    s.po.setLedgerBalance(employee, 0);
    const replay = await request(s.app).post(`/admin/commands/${command.id}/replay`).set(auth);
    expect(replay.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/commands/{id}/replay', replay);
    await s.settle();
    expect(archives().map((r) => r.status)).toEqual([400, 200]);
    expect(s.po.getEmployee(employee)!.IsArchived).toBe(true);
    const after = await request(s.app).get('/admin/commands?status=dead').set(auth);
    expect(after.body.items).toEqual([]);
    // The pair stays in step: nothing echoes back to Tidsbanken as a change.
    expect(s.tb.getAnsatt(1)!.Aktiv).toBe(false);
  });

  it('a national id PowerOffice refuses is dead-lettered; the corrected value then syncs without a replay', async () => {
    h = await startSyncHarness({
      env: { ADMIN_TOKEN: TOKEN },
      seed: (tb, po) => seedEmployeePairs(tb, po, 1),
    });
    const s = h;
    await s.settle();
    const employee = [...s.po.employees.values()][0]!.Id as number;
    s.tb.editAnsatt(1, { Personnummer: '01010112345' }); // fails the check digits
    await s.settle();
    const dead = await request(s.app).get('/admin/commands?status=dead').set(auth);
    expect(dead.body.items).toHaveLength(1);
    expect(JSON.stringify(dead.body.items[0].lastError)).toContain(
      'not a valid Norwegian national identity number',
    );
    expect(s.po.getEmployee(employee)!.NationalIdNumber).toBeNull();

    s.tb.editAnsatt(1, { Personnummer: '01010112377' });
    await s.settle();
    expect(s.po.getEmployee(employee)!.NationalIdNumber).toBe('01010112377');
  });
});
