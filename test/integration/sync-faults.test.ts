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
});
