import { randomBytes, randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signWebhook } from '../../src/http/webhook-signature.js';
import { Pacer } from '../../src/lib/pacer.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import { createTidsbankenPollers } from '../../src/tidsbanken/poller.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// Secrets never appear in logs (docs/ARCHITECTURE.md "Invariants"). Every configured secret is exercised where a
// careless line could leak it (admin auth right and wrong, signed webhooks, secrets sent
// in headers and in the URL, upstream calls that fail) at debug level, and then none of
// them may be found in the captured output, not even the base64 part of a whsec_ secret.

const secret = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;
const SECRETS = {
  ADMIN_TOKEN: secret('admin'),
  TIDSBANKEN_WEBHOOK_SECRET: `whsec_${randomBytes(32).toString('base64')}`,
  POWEROFFICE_WEBHOOK_SECRET: `whsec_${randomBytes(24).toString('base64')}`,
  TIDSBANKEN_API_KEY: secret('tbkey'),
  TIDSBANKEN_SUBSCRIPTION_KEY: secret('tbsub'),
  POWEROFFICE_APPLICATION_KEY: randomUUID(),
  POWEROFFICE_CLIENT_KEY: randomUUID(),
  POWEROFFICE_SUBSCRIPTION_KEY: secret('posub'),
};

let t: TestApp;
let tb: FakeTidsbanken;
let po: FakePowerOffice;

beforeAll(async () => {
  tb = await startFakeTidsbanken({
    apiKey: SECRETS.TIDSBANKEN_API_KEY,
    subscriptionKey: SECRETS.TIDSBANKEN_SUBSCRIPTION_KEY,
  });
  po = await startFakePowerOffice({
    applicationKey: SECRETS.POWEROFFICE_APPLICATION_KEY,
    clientKey: SECRETS.POWEROFFICE_CLIENT_KEY,
    subscriptionKey: SECRETS.POWEROFFICE_SUBSCRIPTION_KEY,
    rateLimitPerSecond: 1000,
  });
  t = await createTestApp({
    ...SECRETS,
    TIDSBANKEN_BASE_URL: tb.url,
    POWEROFFICE_BASE_URL: po.baseUrl,
    POWEROFFICE_TOKEN_URL: po.tokenUrl,
  });
});
afterAll(async () => {
  await t.close();
  await tb.close();
  await po.close();
});

function signed(system: 'tidsbanken' | 'poweroffice', body: unknown, key: string) {
  const raw = JSON.stringify(body);
  const id = `msg_${randomUUID()}`;
  const ts = Math.floor(Date.now() / 1000);
  return request(t.app)
    .post(`/webhooks/${system}`)
    .set({
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(ts),
      'webhook-signature': signWebhook(key, id, ts, raw),
    })
    .send(raw);
}

describe('log output', () => {
  it('never contains a configured secret after admin, webhook and upstream traffic', async () => {
    const { app } = t;
    // Admin: right token, wrong token, token in other headers, in the query, as a parameter name.
    await request(app)
      .get('/admin/links')
      .set('Authorization', `Bearer ${SECRETS.ADMIN_TOKEN}`)
      .expect(200);
    await request(app)
      .get('/admin/commands?status=dead')
      .set('Authorization', `Bearer ${SECRETS.ADMIN_TOKEN}`)
      .expect(200);
    await request(app)
      .get('/admin/links')
      .set('Authorization', 'Bearer not-the-token-at-all')
      .expect(401);
    await request(app)
      .get('/admin/links')
      .set('Authorization', `Basic ${SECRETS.ADMIN_TOKEN}`)
      .expect(401);
    await request(app)
      .get(`/admin/links?tidsbankenId=${SECRETS.ADMIN_TOKEN}`)
      .set('Authorization', `Bearer ${SECRETS.ADMIN_TOKEN}`)
      .expect(200);
    await request(app)
      .get(`/admin/links?${SECRETS.TIDSBANKEN_API_KEY}=1`)
      .set('Authorization', `Bearer ${SECRETS.ADMIN_TOKEN}`)
      .expect(400);
    await request(app)
      .post('/admin/commands/1/replay')
      .set('Authorization', `Bearer ${SECRETS.ADMIN_TOKEN}`)
      .expect(404);

    // Webhooks: valid signatures, a signature made with the other system's secret, and every
    // vendor credential sent along in the headers a vendor would use.
    await signed(
      'tidsbanken',
      { type: 'kunde.updated', data: { Id: 'K1' } },
      SECRETS.TIDSBANKEN_WEBHOOK_SECRET,
    ).expect(202);
    await signed(
      'poweroffice',
      { type: 'customer.updated', data: { Id: 501 } },
      SECRETS.POWEROFFICE_WEBHOOK_SECRET,
    ).expect(202);
    await signed(
      'poweroffice',
      { type: 'customer.updated', data: { Id: 502 } },
      SECRETS.TIDSBANKEN_WEBHOOK_SECRET,
    ).expect(401);
    await signed(
      'tidsbanken',
      { type: 'nope', data: { Id: SECRETS.POWEROFFICE_CLIENT_KEY } },
      SECRETS.TIDSBANKEN_WEBHOOK_SECRET,
    ).expect(400);
    await request(app)
      .post('/webhooks/tidsbanken')
      .set({
        'content-type': 'application/json',
        'tb-key': SECRETS.TIDSBANKEN_API_KEY,
        'ocp-apim-subscription-key': SECRETS.TIDSBANKEN_SUBSCRIPTION_KEY,
        authorization: `Bearer ${SECRETS.POWEROFFICE_APPLICATION_KEY}`,
        cookie: `k=${SECRETS.POWEROFFICE_SUBSCRIPTION_KEY}`,
        'x-webhook-secret': SECRETS.TIDSBANKEN_WEBHOOK_SECRET,
      })
      .send('{}')
      .expect(401);

    // Upstream: a successful read and failed ones, through the real clients and logger.
    const tbClient = new TidsbankenClient({
      config: t.config.tidsbanken.credentials!,
      pacer: new Pacer('tidsbanken', 1000),
      logger: t.logger,
      metrics: t.metrics,
      maxAttempts: 2,
      backoffBaseMs: 1,
    });
    const [ansatt] = createTidsbankenPollers({
      client: tbClient,
      db: t.database.db,
      logger: t.logger,
      intervalMs: 0,
    });
    tb.seedAnsatt({});
    await ansatt!.fullRead();
    tb.faults.inject(5, '500');
    await expect(ansatt!.fullRead()).rejects.toThrow();
    const poClient = new PowerOfficeClient({
      config: t.config.poweroffice.credentials!,
      pacer: new Pacer('poweroffice', 1000),
      logger: t.logger,
      metrics: t.metrics,
      maxAttempts: 1,
    });
    po.seedCustomer({ Name: 'Fjord AS' });
    const customers = [];
    for await (const page of poClient.listCustomersChangedSince()) customers.push(...page.records);
    expect(customers).toHaveLength(1);
    po.faults.inject(1, '500');
    await expect(poClient.getCustomer(1)).rejects.toThrow();

    const text = t.logs.text;
    // The capture saw the traffic, at debug level, including refusals and upstream failures.
    expect(t.logs.lines.length).toBeGreaterThan(15);
    expect(text).toContain('"statusCode":401');
    expect(text).toContain('poll failed');
    // Secrets did reach the logger (in URLs) and were scrubbed there: the check can fail.
    expect(text).toContain('[redacted]');
    for (const [name, value] of Object.entries(SECRETS)) {
      expect(text.includes(value), `${name} in the logs`).toBe(false);
      if (value.startsWith('whsec_')) {
        expect(text.includes(value.slice('whsec_'.length)), `${name} (base64) in the logs`).toBe(
          false,
        );
      }
    }
    // Nor the derived credentials: the Basic header of the token call.
    const basic = Buffer.from(
      `${SECRETS.POWEROFFICE_APPLICATION_KEY}:${SECRETS.POWEROFFICE_CLIENT_KEY}`,
    ).toString('base64');
    expect(text.includes(basic)).toBe(false);
  });
});
