import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { activeLinks, harnessPerTest, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// The fourth flow, prosjekt-project, end to end against both fakes: links by code, syncs
// both ways without echo, translates its reference fields through the kunde-customer and
// ansatt-employee links, and holds a reference back until the record it names is linked —
// whichever way that link is made.

const ADMIN_TOKEN = 'admin-token-prosjekt-0123456789';
const auth = { authorization: `Bearer ${ADMIN_TOKEN}` };

// The first full reads and the link sweep: slow on a loaded machine.
const start = harnessPerTest({ env: { ADMIN_TOKEN }, settleTimeoutMs: 90_000 });

/** The `reference` entries of a record's history (GET /admin/records/…/history). */
async function referenceHistory(s: SyncHarness, system: string, type: string, id: string) {
  const res = await request(s.app)
    .get(`/admin/records/${system}/${type}/${encodeURIComponent(id)}/history`)
    .set(auth);
  expect(res.status).toBe(200);
  return (res.body.items as { kind: string; detail: Record<string, unknown> }[])
    .filter((i) => i.kind === 'reference')
    .map((i) => i.detail);
}

/** A Kunde ↔ Customer pair that links by e-mail, and an Ansatt ↔ Employee pair by number. */
function seedCounterparts(s: { tb: SyncHarness['tb']; po: SyncHarness['po'] }) {
  s.tb.seedKunde({ Id: 'K1', Navn: 'Kunde En AS', Epost: 'post@en.no' });
  const customer = s.po.seedCustomer({ Name: 'Kunde En AS', EmailAddress: 'post@en.no' });
  s.tb.seedAnsatt({ Id: 7, Fornavn: 'Pia', Etternavn: 'Prosjektleder', Epost: 'pia@firma.no' });
  const employee = s.po.seedEmployee({
    Number: 7,
    FirstName: 'Pia',
    LastName: 'Prosjektleder',
    EmailAddress: 'pia@firma.no',
  });
  return { customer: customer.Id as number, employee: employee.Id as number };
}

describe('flow prosjekt-project', { timeout: 120_000 }, () => {
  it('links by code (trimmed, case-insensitive) and syncs edits both ways without echo', async () => {
    let project = 0;
    const s = await start({
      seed: (tb, po) => {
        tb.seedProsjekt({ Id: 'P-100', Navn: 'Bygg', StartDato: '2026-01-05T00:00:00' });
        project = po.seedProject({ Code: ' p-100 ', Name: 'Bygg', EndDate: '2026-12-31' })
          .Id as number;
        // No counterpart with that code: stays unlinked (link-only).
        po.seedProject({ Code: 'P-200', Name: 'Annet' });
      },
    });
    const links = await activeLinks(s, 'prosjekt-project');
    expect(links.map((l) => [l.tidsbanken_id, l.poweroffice_id, l.linked_by])).toEqual([
      ['P-100', String(project), 'code'],
    ]);
    // First sync filled the blanks both ways.
    expect(s.po.getProject(project)).toMatchObject({ StartDate: '2026-01-05', Code: ' p-100 ' });
    expect(s.tb.getProsjekt('P-100')).toMatchObject({ AvsluttetDato: '2026-12-31' });

    s.tb.editProsjekt('P-100', { Navn: 'Bygg og anlegg', Avsluttet: true });
    await s.settle();
    expect(s.po.getProject(project)).toMatchObject({ Name: 'Bygg og anlegg', IsActive: false });

    s.po.editProject(project, { Name: 'Bygg, anlegg og drift', IsActive: true });
    await s.settle();
    expect(s.tb.getProsjekt('P-100')).toMatchObject({
      Navn: 'Bygg, anlegg og drift',
      Avsluttet: false,
    });

    // No echo: with both sides agreeing, further poll cycles write nothing anywhere.
    expect(await s.writesOverQuietCycle()).toEqual({ tb: [], po: [] });
    // The code is never written: set on create only.
    expect(s.po.getProject(project)!.Code).toBe(' p-100 ');
    expect(s.tb.prosjekter.size).toBe(1);
  });

  it('translates KundeId ↔ CustomerId and AnsvarligId ↔ ProjectManagerEmployeeId both ways, and clears', async () => {
    let ids = { customer: 0, employee: 0 };
    let customer2 = 0;
    let project = 0;
    const s = await start({
      seed: (tb, po) => {
        ids = seedCounterparts({ tb, po });
        tb.seedKunde({ Id: 'K2', Navn: 'Kunde To AS', Epost: 'post@to.no' });
        customer2 = po.seedCustomer({ Name: 'Kunde To AS', EmailAddress: 'post@to.no' })
          .Id as number;
        tb.seedProsjekt({ Id: 'P1', Navn: 'Med referanser', KundeId: 'K1', AnsvarligId: 7 });
        project = po.seedProject({ Code: 'P1', Name: 'Med referanser' }).Id as number;
      },
    });
    // Tidsbanken → PowerOffice: the linked records' PowerOffice ids, never Tidsbanken's.
    expect(s.po.getProject(project)).toMatchObject({
      CustomerId: ids.customer,
      ProjectManagerEmployeeId: ids.employee,
    });

    // PowerOffice → Tidsbanken: another linked customer becomes its Kunde's Id.
    s.po.editProject(project, { CustomerId: customer2 });
    await s.settle();
    expect(s.tb.getProsjekt('P1')).toMatchObject({ KundeId: 'K2', AnsvarligId: 7 });

    // Cleared on one side → cleared on the other.
    s.po.editProject(project, { ProjectManagerEmployeeId: null });
    await s.settle();
    expect(s.tb.getProsjekt('P1')!.AnsvarligId).toBeNull();
    s.tb.editProsjekt('P1', { KundeId: '' });
    await s.settle();
    expect(s.po.getProject(project)!.CustomerId).toBeNull();
    expect(await referenceHistory(s, 'tidsbanken', 'prosjekt', 'P1')).toEqual([]);
  });

  it('holds back a reference to an unlinked record (in the history) and writes it when the record links', async () => {
    let project = 0;
    let employee = 0;
    const s = await start({
      seed: (tb, po) => {
        // K5 has no Customer yet; Employee 31 has no Ansatt yet.
        tb.seedKunde({ Id: 'K5', Navn: 'Venter AS', Epost: 'post@venter.no' });
        employee = po.seedEmployee({ Number: 31, FirstName: 'Ola', LastName: 'Leder' })
          .Id as number;
        tb.seedProsjekt({ Id: 'P5', Navn: 'Venter', KundeId: 'K5' });
        project = po.seedProject({
          Code: 'P5',
          Name: 'Venter',
          ProjectManagerEmployeeId: employee,
        }).Id as number;
      },
    });
    // Neither raw id crossed over: the fakes would have refused it, and nothing was sent.
    expect(s.po.getProject(project)!.CustomerId).toBeNull();
    expect(s.tb.getProsjekt('P5')!.AnsvarligId).toBeNull();
    const waiting = await referenceHistory(s, 'tidsbanken', 'prosjekt', 'P5');
    expect(waiting).toEqual(
      expect.arrayContaining([
        {
          reference: 'waiting',
          field: 'KundeId',
          waitsFor: { flow: 'kunde-customer', system: 'tidsbanken', recordId: 'K5' },
        },
        {
          reference: 'waiting',
          field: 'AnsvarligId',
          waitsFor: { flow: 'ansatt-employee', system: 'poweroffice', recordId: String(employee) },
        },
      ]),
    );
    expect(await referenceHistory(s, 'poweroffice', 'project', String(project))).toHaveLength(2);

    // The records appear on the other sides and link one at a time (the worker's own path).
    const customer = s.po.seedCustomer({ Name: 'Venter AS', EmailAddress: 'post@venter.no' });
    s.tb.seedAnsatt({ Id: 31, Fornavn: 'Ola', Etternavn: 'Leder' });
    await s.settle();
    expect(s.po.getProject(project)!.CustomerId).toBe(customer.Id);
    expect(s.tb.getProsjekt('P5')!.AnsvarligId).toBe(31);
    const after = await referenceHistory(s, 'tidsbanken', 'prosjekt', 'P5');
    expect(
      after
        .filter((d) => d.reference === 'resolved')
        .map((d) => d.field)
        .sort(),
    ).toEqual(['AnsvarligId', 'KundeId']);
    const waits = await s.database.db.selectFrom('reference_waits').selectAll().execute();
    expect(waits).toEqual([]);
  });

  it('writes a waiting reference when the link is made by the set-based sweep of a reconcile', async () => {
    let project = 0;
    const s = await start({
      // No polling: the new Customer reaches the mirror only through the reconcile's full
      // read, and so links only in its sweep (insertMergeRuleLinks), not one record at a time.
      env: { POLL_INTERVAL_MS: '0' },
      seed: (tb, po) => {
        tb.seedKunde({ Id: 'K6', Navn: 'Sveip AS', Epost: 'post@sveip.no' });
        tb.seedProsjekt({ Id: 'P6', Navn: 'Sveip', KundeId: 'K6' });
        project = po.seedProject({ Code: 'P6', Name: 'Sveip' }).Id as number;
      },
    });
    expect(await referenceHistory(s, 'tidsbanken', 'prosjekt', 'P6')).toHaveLength(1);
    const customer = s.po.seedCustomer({ Name: 'Sveip AS', EmailAddress: 'post@sveip.no' });
    const res = await request(s.app).post('/admin/reconcile').set(auth);
    expect(res.status).toBe(202);
    await waitFor(
      'the reference written',
      () => s.po.getProject(project)!.CustomerId === customer.Id,
    );
    const [link] = await activeLinks(s, 'kunde-customer');
    expect(link).toMatchObject({ tidsbanken_id: 'K6', linked_by: 'email' });
    // It was the sweep's statement that linked them: its audit entry carries no event.
    const linkAudit = await s.database.db
      .selectFrom('audit_entries')
      .selectAll()
      .where('kind', '=', 'link')
      .where('flow', '=', 'kunde-customer')
      .execute();
    expect(linkAudit.every((a) => a.event_id === null)).toBe(true);
  });

  it('writes a waiting reference when an operator links the record by hand', async () => {
    let project = 0;
    let customer = 0;
    const s = await start({
      seed: (tb, po) => {
        tb.seedKunde({ Id: 'K7', Navn: 'Manuell AS', Epost: 'a@manuell.no' });
        customer = po.seedCustomer({ Name: 'Manuell AS', EmailAddress: 'b@manuell.no' })
          .Id as number;
        tb.seedProsjekt({ Id: 'P7', Navn: 'Manuell', KundeId: 'K7' });
        project = po.seedProject({ Code: 'P7', Name: 'Manuell' }).Id as number;
      },
    });
    expect(s.po.getProject(project)!.CustomerId).toBeNull();
    const res = await request(s.app)
      .post('/admin/links')
      .set(auth)
      .send({ flow: 'kunde-customer', tidsbankenId: 'K7', powerofficeId: String(customer) });
    expect(res.status).toBe(201);
    await waitFor('the reference written', () => s.po.getProject(project)!.CustomerId === customer);
  });

  it('writes a waiting reference when the record it names is created in the other system', async () => {
    let project = 0;
    const s = await start({
      env: { FLOW_KUNDE_CUSTOMER_ON_UNMATCHED: 'create-in-poweroffice' },
      seed: (tb, po) => {
        tb.seedKunde({ Id: 'K8', Navn: 'Ny AS', Epost: 'post@ny.no' });
        tb.seedProsjekt({ Id: 'P8', Navn: 'Ny', KundeId: 'K8' });
        project = po.seedProject({ Code: 'P8', Name: 'Ny' }).Id as number;
      },
    });
    const created = [...s.po.customers.values()].find(
      (c) => c.ExternalImportReference === 'tb-kunde-K8',
    );
    expect(created).toBeDefined();
    await waitFor(
      'the reference written',
      () => s.po.getProject(project)!.CustomerId === created!.Id,
    );
  });

  it('creates both ways by code, idempotently; a Project without a code is never created in Tidsbanken', async () => {
    let ids = { customer: 0, employee: 0 };
    let fromPo = 0;
    const s = await start({
      env: { FLOW_PROSJEKT_PROJECT_ON_UNMATCHED: 'create-both' },
      seed: (tb, po) => {
        ids = seedCounterparts({ tb, po });
        tb.seedProsjekt({
          Id: 'P9',
          Navn: 'Fra Tidsbanken',
          KundeId: 'K1',
          AnsvarligId: 7,
          StartDato: '2026-02-01',
        });
        fromPo = po.seedProject({
          Code: 'X-1',
          Name: 'Fra PowerOffice',
          CustomerId: ids.customer,
          EndDate: '2026-06-30',
        }).Id as number;
        po.seedProject({ Name: 'Uten kode' });
        // The first POST to each system lands, but its answer never arrives.
        po.faults.inject(1, 'drop', {
          process: true,
          match: (r) => r.method === 'POST' && /Projects/.test(r.path),
        });
        tb.faults.inject(1, 'drop', {
          process: true,
          match: (r) => r.method === 'POST' && /Prosjekt/i.test(r.path),
        });
      },
    });
    const made = [...s.po.projects.values()].filter((p) => p.Code === 'P9');
    expect(made).toHaveLength(1);
    // The references follow in the new link's first sync (a create carries none).
    await waitFor('the references of the created Project', () => {
      const p = s.po.getProject(made[0]!.Id as number)!;
      return p.CustomerId === ids.customer && p.ProjectManagerEmployeeId === ids.employee;
    });
    expect(s.po.getProject(made[0]!.Id as number)).toMatchObject({
      Name: 'Fra Tidsbanken',
      StartDate: '2026-02-01',
      CustomerId: ids.customer,
      ProjectManagerEmployeeId: ids.employee,
    });
    await waitFor(
      'the reference of the created Prosjekt',
      () => s.tb.getProsjekt('X-1')?.KundeId === 'K1',
    );
    expect(s.tb.getProsjekt('X-1')).toMatchObject({
      Navn: 'Fra PowerOffice',
      KundeId: 'K1',
      AvsluttetDato: '2026-06-30',
    });
    // One POST each reached the fakes: the retry looked the code up instead.
    expect(s.writes(s.po).filter((w) => w.method === 'POST')).toHaveLength(1);
    expect(s.writes(s.tb).filter((w) => w.method === 'POST')).toHaveLength(1);
    expect(s.tb.prosjekter.size).toBe(2);
    expect(s.po.projects.size).toBe(3);
    const links = await activeLinks(s, 'prosjekt-project');
    expect(links.map((l) => [l.tidsbanken_id, l.poweroffice_id])).toEqual([
      ['P9', String(made[0]!.Id)],
      ['X-1', String(fromPo)],
    ]);
  });
});
