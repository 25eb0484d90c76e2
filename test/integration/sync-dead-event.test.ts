import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import { expectDocumentedResponse } from '../helpers/openapi.js';
import { sendSignedWebhook, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// An inbox event the real worker gives up on, end to end: a thin webhook whose completing GET
// PowerOffice refuses for good (403: the integration lacks the Customer privilege). The event
// goes dead at once (a final 4xx is not retried) and shows in GET /admin/events?status=dead.
// The operator grants the privilege and retries it: the worker completes it, and Tidsbanken
// receives the write. Polling is off, so nothing but the retried event can carry the change.

const SECRET = 'whsec_ZGVhZC1ldmVudC13ZWJob29rLXNlY3JldC0wMTIzNDU=';
const TOKEN = 'dead-event-admin-token-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('a dead inbox event, end to end', () => {
  it('a thin webhook whose GET is refused goes dead, is listed, and after the cause is fixed a retry delivers the write', async () => {
    let customer = 0;
    h = await startSyncHarness({
      env: {
        ADMIN_TOKEN: TOKEN,
        POLL_INTERVAL_MS: '0',
        POWEROFFICE_WEBHOOK_SECRET: SECRET,
      },
      seed: (tb, po) => {
        tb.seedKunde({ Id: '70001', Navn: 'Dead AS', Epost: 'dead@as.no', Telefon: '11111111' });
        customer = po.seedCustomer({
          Name: 'Dead AS',
          EmailAddress: 'dead@as.no',
          PhoneNumber: '11111111',
        }).Id as number;
      },
    });
    const s = h;
    await s.settle();
    expect(s.writes(s.tb)).toEqual([]);

    // The integration loses its Customer privilege; the customer is edited in PowerOffice and
    // a sender announces it with a thin event.
    const granted = s.po.privileges;
    s.po.privileges = granted.filter((p) => !p.startsWith('Customer_'));
    s.po.editCustomer(customer, { PhoneNumber: '22222222' });
    await sendSignedWebhook(s, 'poweroffice', SECRET, {
      type: 'customer.updated',
      data: { Id: customer },
    });

    const dead = await waitFor('the event to go dead', async () => {
      const res = await request(s.app).get('/admin/events?status=dead').set(auth);
      return res.body.items?.length > 0 ? res : undefined;
    });
    expect(dead.status).toBe(200);
    await expectDocumentedResponse('GET', '/admin/events', dead);
    expect(dead.body.items).toHaveLength(1);
    const event = dead.body.items[0];
    expect(event).toMatchObject({
      source: 'poweroffice',
      eventType: 'customer.updated',
      recordType: 'customer',
      recordId: String(customer),
      status: 'dead',
      isThin: true,
      attempts: 1,
    });
    expect(event.lastError).toMatch(/403/);
    // One refused GET, not retried, and nothing written anywhere.
    const gets = () =>
      s.po.requests.filter((r) => r.method === 'GET' && r.path.endsWith(`/Customers/${customer}`));
    expect(gets().map((r) => r.status)).toEqual([403]);
    await s.settle();
    expect(s.writes(s.tb)).toEqual([]);
    expect(s.tb.getKunde('70001')!.Telefon).toBe('11111111');

    // The privilege is granted again; the operator retries the event.
    s.po.privileges = granted;
    const retried = await request(s.app).post(`/admin/events/${event.id}/retry`).set(auth);
    expect(retried.status).toBe(202);
    await expectDocumentedResponse('POST', '/admin/events/{id}/retry', retried);
    expect(retried.body).toMatchObject({ id: event.id, status: 'pending' });
    await s.settle();

    expect(gets().map((r) => r.status)).toEqual([403, 200]);
    expect(s.tb.getKunde('70001')!.Telefon).toBe('22222222');
    const puts = s.writes(s.tb);
    expect(puts).toHaveLength(1);
    expect(JSON.stringify(puts[0]!.body)).toContain('22222222');
    const after = await request(s.app).get('/admin/events?status=dead').set(auth);
    expect(after.body.items).toEqual([]);
  });
});
