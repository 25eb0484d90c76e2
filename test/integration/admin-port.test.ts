import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// ADMIN_PORT: main.ts listens with the 'public' app on PORT and the 'admin' app on ADMIN_PORT.

const ADMIN_TOKEN = 'admin-token-0123456789';
let t: TestApp;
let publicApp: ReturnType<typeof createApp>;
let adminApp: ReturnType<typeof createApp>;
beforeAll(async () => {
  t = await createTestApp({
    ADMIN_TOKEN,
    ADMIN_PORT: '9091',
    TIDSBANKEN_WEBHOOK_SECRET: 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=',
  });
  const deps = { config: t.config, db: t.database.db, logger: t.logger, metrics: t.metrics };
  publicApp = createApp(deps, 'public');
  adminApp = createApp(deps, 'admin');
});
afterAll(async () => {
  await t.close();
});

describe('ADMIN_PORT', () => {
  it('is parsed as a port, and a bad value is refused naming the variable', () => {
    expect(t.config.adminPort).toBe(9091);
    expect(loadConfig({}).adminPort).toBeUndefined();
    expect(() => loadConfig({ ADMIN_PORT: 'eighty' })).toThrow(/ADMIN_PORT: must be a port/);
  });

  it('the public port serves webhooks and probes, but not /metrics, /admin or the console', async () => {
    expect((await request(publicApp).get('/healthz')).status).toBe(200);
    expect((await request(publicApp).get('/readyz')).status).toBe(200);
    // A webhook route answers (401: unsigned), not 404.
    const webhook = await request(publicApp)
      .post('/webhooks/tidsbanken')
      .set('content-type', 'application/json')
      .send('{}');
    expect(webhook.status).toBe(401);
    expect((await request(publicApp).get('/metrics')).status).toBe(404);
    const admin = await request(publicApp)
      .get('/admin/links')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`);
    expect(admin.status).toBe(404);
    expect((await request(publicApp).get('/console')).status).toBe(404);
  });

  it('the admin port serves /metrics, /admin, the console and probes, but no webhooks', async () => {
    expect((await request(adminApp).get('/healthz')).status).toBe(200);
    const metrics = await request(adminApp).get('/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.text).toContain('tbpo_http_requests_total');
    const admin = await request(adminApp)
      .get('/admin/links')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`);
    expect(admin.status).toBe(200);
    expect((await request(adminApp).get('/console')).status).not.toBe(404);
    const webhook = await request(adminApp)
      .post('/webhooks/tidsbanken')
      .set('content-type', 'application/json')
      .send('{}');
    expect(webhook.status).toBe(404);
  });

  it('unset, one app serves everything', async () => {
    expect((await request(t.app).get('/metrics')).status).toBe(200);
    const admin = await request(t.app)
      .get('/admin/links')
      .set('authorization', `Bearer ${ADMIN_TOKEN}`);
    expect(admin.status).toBe(200);
  });
});
