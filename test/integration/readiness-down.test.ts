import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createTestApp } from '../helpers/app.js';
import { signedWebhook } from '../helpers/webhook-client.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';

const SECRET = 'whsec_ZGF0YWJhc2UtZG93bi10ZXN0LXNlY3JldC0wMTIz';

describe('when the database is gone', () => {
  it('GET /readyz answers 503 problem+json', async () => {
    const t = await createTestApp();
    await t.close();
    const res = await request(t.app).get('/readyz');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    await expectDocumentedResponse('GET', '/readyz', res);
  });

  it('a valid webhook answers 503 with Retry-After (not accepted, so the sender retries), never 500', async () => {
    const t = await createTestApp({ TIDSBANKEN_WEBHOOK_SECRET: SECRET });
    await t.close();
    const raw = JSON.stringify({ type: 'ansatt.updated', data: { Id: 5 } });
    const res = await signedWebhook(t.app, '/webhooks/tidsbanken', SECRET, raw);
    expect(res.status).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(JSON.parse(res.text)).toMatchObject({
      status: 503,
      type: expect.stringContaining('storage_unavailable'),
    });
    await expectDocumentedResponse('POST', '/webhooks/tidsbanken', res);
  });
});
