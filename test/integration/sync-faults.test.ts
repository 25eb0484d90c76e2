import { afterEach, describe, expect, it } from 'vitest';
import type { FakeHttpServer } from '../fakes/fake-server.js';
import { TIDSBANKEN_TEST_PAGE_CAP } from '../fakes/tidsbanken.js';
import { seedEmployeePairs, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

// The whole service against fakes in fault mode: any request (token, polls, reads, writes)
// may get a 429, a 500 or 503, a slow answer, or a dropped connection. The sync must
// converge all the same, with nothing created twice and nothing left dead.

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

/** Requests a fake answered with a fault (or never answered). */
function faulted(fake: FakeHttpServer): number {
  return fake.requests.filter((r) => r.status === 0 || r.status === 429 || r.status >= 500).length;
}

describe('sync under random vendor faults', () => {
  it('links every pair across server-capped pages and lands edits from both sides', async () => {
    const pairs = TIDSBANKEN_TEST_PAGE_CAP + 4;
    h = await startSyncHarness({
      seed: (tb, po) => seedEmployeePairs(tb, po, pairs),
      faults: { probability: 0.15, seed: 7 },
    });
    const s = h;
    await s.settle({ timeoutMs: 50_000 });
    const links = await s.database.db
      .selectFrom('links')
      .select(['tidsbanken_id', 'poweroffice_id'])
      .where('flow', '=', 'ansatt-employee')
      .execute();
    expect(links).toHaveLength(pairs);
    const employeeOf = new Map(
      links.map((l) => [Number(l.tidsbanken_id), Number(l.poweroffice_id)]),
    );

    for (let i = 1; i <= pairs; i++) {
      s.tb.editAnsatt(i, { Tittel: `Tittel ${i}` });
      s.po.editEmployee(employeeOf.get(i)!, {
        PhoneNumber: `+47900000${String(i).padStart(2, '0')}`,
      });
    }
    await s.settle({ timeoutMs: 50_000 });
    for (let i = 1; i <= pairs; i++) {
      const employee = s.po.getEmployee(employeeOf.get(i)!)!;
      expect(employee.JobTitle, `employee ${i}`).toBe(`Tittel ${i}`);
      expect(s.tb.getAnsatt(i)!.Mobil, `ansatt ${i}`).toBe(employee.PhoneNumber);
    }
    // The faults happened, nothing was created, nothing is left dead.
    expect(faulted(s.tb)).toBeGreaterThan(0);
    expect(faulted(s.po)).toBeGreaterThan(0);
    expect(s.writes(s.po).filter((w) => w.method === 'POST')).toEqual([]);
    expect(s.writes(s.tb).filter((w) => w.method === 'POST')).toEqual([]);
    const dead = await s.database.db
      .selectFrom('outbound_commands')
      .select('id')
      .where('status', '=', 'dead')
      .execute();
    expect(dead).toEqual([]);
  }, 120_000);

  it('create-in-poweroffice makes exactly one Customer per Kunde under faults', async () => {
    const kunder = 8;
    h = await startSyncHarness({
      env: { FLOW_KUNDE_CUSTOMER_ON_UNMATCHED: 'create-in-poweroffice' },
      seed: (tb) => {
        for (let i = 1; i <= kunder; i++)
          tb.seedKunde({ Id: String(40000 + i), Navn: `Ny ${i} AS`, Epost: `ny${i}@kunde.no` });
      },
      faults: { probability: 0.2, seed: 3 },
    });
    const s = h;
    await s.settle({ timeoutMs: 50_000 });
    const customers = [...s.po.customers.values()];
    expect(customers.map((c) => c.Name).sort()).toEqual(
      Array.from({ length: kunder }, (_, i) => `Ny ${i + 1} AS`).sort(),
    );
    const links = await s.database.db
      .selectFrom('links')
      .select(['tidsbanken_id', 'poweroffice_id'])
      .where('flow', '=', 'kunde-customer')
      .execute();
    expect(links).toHaveLength(kunder);
    expect(new Set(links.map((l) => l.poweroffice_id)).size).toBe(kunder);
    expect(faulted(s.po)).toBeGreaterThan(0);
  });

  it('the other three flows converge too: customers, their contact persons and projects (with their reference) link, and edits from both sides land', async () => {
    const n = TIDSBANKEN_TEST_PAGE_CAP + 2;
    const customerOf = new Map<number, number>();
    const contactOf = new Map<number, number>();
    const projectOf = new Map<number, number>();
    h = await startSyncHarness({
      seed: (tb, po) => {
        for (let i = 1; i <= n; i++) {
          tb.seedKunde({ Id: `K${i}`, Navn: `Kunde ${i} AS`, Epost: `post@kunde${i}.no` });
          const customer = po.seedCustomer({
            Name: `Kunde ${i} AS`,
            EmailAddress: `post@kunde${i}.no`,
          }).Id as number;
          customerOf.set(i, customer);
          tb.seedAnsatt({
            Id: 100 + i,
            Fornavn: `Kontakt${i}`,
            Etternavn: 'Person',
            Epost: `kontakt${i}@kunde${i}.no`,
          });
          contactOf.set(
            i,
            po.seedContactPerson(customer, {
              FirstName: `Kontakt${i}`,
              LastName: 'Person',
              EmailAddress: `kontakt${i}@kunde${i}.no`,
            }).Id as number,
          );
          tb.seedProsjekt({ Id: `P${i}`, Navn: `Prosjekt ${i}`, KundeId: `K${i}` });
          projectOf.set(i, po.seedProject({ Code: `P${i}`, Name: `Prosjekt ${i}` }).Id as number);
        }
      },
      faults: { probability: 0.15, seed: 11 },
    });
    const s = h;
    await s.settle({ timeoutMs: 90_000 });
    const linked = async (flow: string) =>
      new Map(
        (
          await s.database.db
            .selectFrom('links')
            .select(['tidsbanken_id', 'poweroffice_id'])
            .where('flow', '=', flow)
            .where('unlinked_at', 'is', null)
            .execute()
        ).map((l) => [l.tidsbanken_id, Number(l.poweroffice_id)]),
      );
    const customers = await linked('kunde-customer');
    const contacts = await linked('ansatt-contactperson');
    const projects = await linked('prosjekt-project');
    for (let i = 1; i <= n; i++) {
      expect([i, customers.get(`K${i}`)]).toEqual([i, customerOf.get(i)]);
      expect([i, contacts.get(String(100 + i))]).toEqual([i, contactOf.get(i)]);
      expect([i, projects.get(`P${i}`)]).toEqual([i, projectOf.get(i)]);
      // The project's customer reference was translated to PowerOffice's id and written.
      expect([i, s.po.getProject(projectOf.get(i)!)!.CustomerId]).toEqual([i, customerOf.get(i)]);
    }

    for (let i = 1; i <= n; i++) {
      s.tb.editKunde(`K${i}`, { Telefon: `2200${String(i).padStart(4, '0')}` });
      s.po.editContactPerson(contactOf.get(i)!, {
        PhoneNumber: `+47410${String(i).padStart(5, '0')}`,
      });
      s.po.editProject(projectOf.get(i)!, { Name: `Prosjekt ${i} (endret)` });
    }
    await s.settle({ timeoutMs: 90_000 });
    for (let i = 1; i <= n; i++) {
      expect([i, s.po.getCustomer(customerOf.get(i)!)!.PhoneNumber]).toEqual([
        i,
        `2200${String(i).padStart(4, '0')}`,
      ]);
      expect([i, s.tb.getAnsatt(100 + i)!.Mobil]).toEqual([
        i,
        `+47410${String(i).padStart(5, '0')}`,
      ]);
      expect([i, s.tb.getProsjekt(`P${i}`)!.Navn]).toEqual([i, `Prosjekt ${i} (endret)`]);
    }
    expect(faulted(s.tb)).toBeGreaterThan(0);
    expect(faulted(s.po)).toBeGreaterThan(0);
    // Nothing created (link-only), nothing dead on either side of the pipeline.
    expect(s.writes(s.po).filter((w) => w.method === 'POST')).toEqual([]);
    expect(s.writes(s.tb).filter((w) => w.method === 'POST')).toEqual([]);
    const deadCommands = await s.database.db
      .selectFrom('outbound_commands')
      .select(['id', 'last_error'])
      .where('status', '=', 'dead')
      .execute();
    expect(deadCommands).toEqual([]);
    const deadEvents = await s.database.db
      .selectFrom('inbound_events')
      .select(['id', 'last_error'])
      .where('status', '=', 'dead')
      .execute();
    expect(deadEvents).toEqual([]);
  }, 180_000);
});
