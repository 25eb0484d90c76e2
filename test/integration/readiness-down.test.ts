import request from 'supertest';
import { describe, expect, it } from 'vitest';
import { createTestApp } from '../helpers/app.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';

describe('GET /readyz when the database is gone', () => {
  it('answers 503 problem+json', async () => {
    const t = await createTestApp();
    await t.close();
    const res = await request(t.app).get('/readyz');
    expect(res.status).toBe(503);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    await expectDocumentedResponse('GET', '/readyz', res);
  });
});
