import { afterEach, describe, expect, it } from 'vitest';
import { sendSignedWebhook, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

// The webhook path into the engine (polling off after the first full read), and the
// unmatched policies that create records.

const SECRET = 'whsec_c3luYy13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg5';

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const send = (s: SyncHarness, system: 'tidsbanken' | 'poweroffice', body: unknown) =>
  sendSignedWebhook(s, system, SECRET, body);

describe('changes pushed by webhook', () => {
  it('a thin event is completed with a GET and synced; a delete unlinks without deleting anything', async () => {
    let customer = 0;
    h = await startSyncHarness({
      env: {
        POLL_INTERVAL_MS: '0',
        TIDSBANKEN_WEBHOOK_SECRET: SECRET,
        POWEROFFICE_WEBHOOK_SECRET: SECRET,
      },
      seed: (tb, po) => {
        tb.seedKunde({ Id: '70001', Navn: 'Hook AS', Epost: 'hook@as.no' });
        customer = po.seedCustomer({ Name: 'Hook AS', EmailAddress: 'hook@as.no' }).Id as number;
      },
    });
    const s = h;
    await s.settle();
    expect((await s.database.db.selectFrom('links').selectAll().execute()).length).toBe(1);

    // Edited in Tidsbanken; the sender only says which record.
    s.tb.editKunde('70001', { Url: 'https://hook.no' });
    await send(s, 'tidsbanken', { type: 'kunde.updated', data: { Id: '70001' } });
    await s.settle();
    expect(s.po.getCustomer(customer)!.WebsiteUrl).toBe('https://hook.no');
    expect(
      s.tb.requests.some(
        (r) => r.method === 'GET' && /Kunde/.test(r.path) && /70001/.test(JSON.stringify(r.query)),
      ),
    ).toBe(true);

    // A full PowerOffice record pushed by webhook.
    const full = {
      ...s.po.toDto(s.po.getCustomer(customer)!),
      PhoneNumber: '98765432',
      LastChangedDateTimeOffset: s.po.timestamp(),
    };
    s.po.editCustomer(customer, {
      PhoneNumber: '98765432',
      LastChangedDateTimeOffset: full.LastChangedDateTimeOffset,
    });
    await send(s, 'poweroffice', { type: 'customer.updated', data: full });
    await s.settle();
    expect(s.tb.getKunde('70001')!.Telefon).toBe('98765432');

    // Deleted in PowerOffice: the link ends, Tidsbanken keeps its Kunde.
    await send(s, 'poweroffice', { type: 'customer.deleted', data: { Id: customer } });
    await s.settle();
    const link = await s.database.db.selectFrom('links').selectAll().executeTakeFirstOrThrow();
    expect(link.unlinked_at).not.toBeNull();
    expect(link.unlink_reason).toBe('deleted in poweroffice');
    expect(s.tb.getKunde('70001')).toBeDefined();
    // writes() includes DELETE, which both fakes route (PowerOffice deletes, Tidsbanken
    // answers 405), so an attempted delete on either side shows here.
    expect(s.writes(s.tb).filter((w) => w.method !== 'PUT')).toEqual([]);
    expect(s.writes(s.po).filter((w) => w.method === 'DELETE')).toEqual([]);
  });

  it('a record that appears later and matches an already linked counterpart gets a conflict; the link stands', async () => {
    h = await startSyncHarness({
      env: { POLL_INTERVAL_MS: '0', POWEROFFICE_WEBHOOK_SECRET: SECRET },
      seed: (tb, po) => {
        tb.seedKunde({ Id: '80001', Navn: 'Først AS', Epost: 'delt@post.no' });
        po.seedCustomer({ Name: 'Først AS', EmailAddress: 'delt@post.no' });
      },
    });
    const s = h;
    await s.settle();
    const late = s.po.seedCustomer({ Name: 'Sent AS', EmailAddress: 'DELT@post.no' });
    await send(s, 'poweroffice', { type: 'customer.created', data: late });
    await s.settle();
    const links = await s.database.db.selectFrom('links').selectAll().execute();
    expect(links).toHaveLength(1);
    expect(links[0]!.poweroffice_id).not.toBe(String(late.Id));
    const conflict = await s.database.db
      .selectFrom('conflicts')
      .selectAll()
      .where('record_id', '=', String(late.Id))
      .executeTakeFirstOrThrow();
    expect(conflict).toMatchObject({
      kind: 'ambiguous_match',
      system: 'poweroffice',
      status: 'open',
    });
  });
});

describe('unmatched policies', () => {
  it('create-in-tidsbanken: an Employee without an Ansatt gets one with Id = Number, linked, created once', async () => {
    h = await startSyncHarness({
      env: { FLOW_ANSATT_EMPLOYEE_ON_UNMATCHED: 'create-in-tidsbanken' },
      seed: (_tb, po) => {
        po.seedEmployee({
          Number: 501,
          FirstName: 'Nils',
          LastName: 'Ny',
          EmailAddress: 'nils@firma.no',
          IsArchived: false,
        });
      },
    });
    const s = h;
    await s.settle();
    expect(s.tb.getAnsatt(501)).toMatchObject({
      Fornavn: 'Nils',
      Etternavn: 'Ny',
      Epost: 'nils@firma.no',
      Aktiv: true,
    });
    expect(s.writes(s.tb).filter((w) => w.method === 'POST')).toHaveLength(1);
    const links = await s.database.db
      .selectFrom('links')
      .selectAll()
      .where('flow', '=', 'ansatt-employee')
      .execute();
    expect(links.map((l) => [l.tidsbanken_id, l.linked_by])).toEqual([['501', 'created']]);
    // No Employee was created back for the new Ansatt, and nothing else was written.
    expect(s.po.employees.size).toBe(1);
  });

  it('create-in-poweroffice for contact persons needs POWEROFFICE_CONTACT_PARENT_ID and carries the origin id in ExternalCode', async () => {
    let parent = 0;
    h = await startSyncHarness({
      env: { FLOW_ANSATT_CONTACTPERSON_ON_UNMATCHED: 'create-in-poweroffice' },
      seed: (tb, po) => {
        parent = po.seedCustomer({ Name: 'Morselskap AS', EmailAddress: 'mor@selskap.no' })
          .Id as number;
        tb.seedAnsatt({ Id: 33, Fornavn: 'Kim', Etternavn: 'Kontakt', Epost: 'kim@firma.no' });
      },
      start: false,
    });
    // Without a parent configured nothing is created.
    h.service.start();
    await h.settle();
    expect(h.po.contactPersons.size).toBe(0);
    await h.close();

    h = await startSyncHarness({
      env: {
        FLOW_ANSATT_CONTACTPERSON_ON_UNMATCHED: 'create-in-poweroffice',
        POWEROFFICE_CONTACT_PARENT_ID: String(parent || 1),
      },
      seed: (tb, po) => {
        parent = po.seedCustomer({ Name: 'Morselskap AS', EmailAddress: 'mor@selskap.no' })
          .Id as number;
        tb.seedAnsatt({ Id: 33, Fornavn: 'Kim', Etternavn: 'Kontakt', Epost: 'kim@firma.no' });
      },
    });
    await h.settle();
    const contacts = [...h.po.contactPersons.values()];
    expect(contacts).toHaveLength(1);
    expect(contacts[0]).toMatchObject({
      ContactId: parent,
      FirstName: 'Kim',
      ExternalCode: 'tb-ansatt-33',
    });
  });
});
