import { afterEach, describe, expect, it } from 'vitest';
import { startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('flow ansatt-employee', () => {
  it('links by Ansatt Id = Employee Number, fills blanks both ways, then syncs edits on either side without echo loops', async () => {
    h = await startSyncHarness({
      seed: (tb, po) => {
        tb.seedAnsatt({
          Id: 7,
          Fornavn: 'Kari',
          Etternavn: 'Nordmann',
          Epost: 'kari@firma.no',
          Mobil: '',
        });
        po.seedEmployee({
          Number: 7,
          FirstName: 'Kari',
          LastName: 'Nordmann',
          EmailAddress: 'KARI@firma.no',
          PhoneNumber: '+4799999999',
        });
        tb.seedAnsatt({ Id: 8, Fornavn: 'Ola', Etternavn: 'Uten', Epost: 'ola@firma.no' });
      },
    });
    const { tb, po, database } = h;
    await h.settle();

    const links = await database.db
      .selectFrom('links')
      .selectAll()
      .where('flow', '=', 'ansatt-employee')
      .execute();
    expect(links).toHaveLength(1);
    expect(links[0]).toMatchObject({ tidsbanken_id: '7', linked_by: 'number' });
    const employeeId = Number(links[0]!.poweroffice_id);
    // The phone number filled Tidsbanken's blank; an e-mail differing in case only is no change.
    expect(tb.getAnsatt(7)!.Mobil).toBe('+4799999999');
    expect(tb.getAnsatt(7)!.Epost).toBe('kari@firma.no');
    expect(po.getEmployee(employeeId)!.EmailAddress).toBe('KARI@firma.no');

    // An edit in Tidsbanken reaches PowerOffice as a JSON Patch of that one field.
    tb.clearRequests();
    po.clearRequests();
    tb.editAnsatt(7, { Tittel: 'Regnskapsfører' });
    await h.settle();
    expect(po.getEmployee(employeeId)!.JobTitle).toBe('Regnskapsfører');
    const patches = h.writes(po);
    expect(patches).toEqual([
      {
        method: 'PATCH',
        path: `/v2/Employees/${employeeId}`,
        body: [{ op: 'replace', path: '/JobTitle', value: 'Regnskapsfører' }],
      },
    ]);
    expect(h.writes(tb)).toEqual([]);

    // An edit in PowerOffice reaches Tidsbanken (a PUT of the full record), inverted flag too.
    tb.clearRequests();
    po.clearRequests();
    po.editEmployee(employeeId, { LastName: 'Hansen', IsArchived: true });
    await h.settle();
    expect(tb.getAnsatt(7)).toMatchObject({
      Etternavn: 'Hansen',
      Aktiv: false,
      Tittel: 'Regnskapsfører',
    });
    expect(h.writes(tb).map((w) => `${w.method} ${w.path}`)).toEqual(['PUT /ansatt/ansatt']);
    expect(h.writes(po)).toEqual([]);

    // Converged: three poll cycles later, nothing has been written anywhere (no echo loop).
    tb.clearRequests();
    po.clearRequests();
    for (let cycle = 0; cycle < 3; cycle++) await h.pollCycle();
    await h.settle();
    expect(h.writes(tb)).toEqual([]);
    expect(h.writes(po)).toEqual([]);
    expect(tb.requests.filter((r) => r.method === 'GET').length).toBeGreaterThanOrEqual(10);
  });
});
