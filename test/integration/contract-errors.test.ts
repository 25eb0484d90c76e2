import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Reconciler } from '../../src/sync/reconcile.js';
import { linkGateEngine } from '../../src/sync/sweep.js';
import { ADMIN_TOKEN, adminAuth } from '../helpers/admin.js';
import { signedWebhook } from '../helpers/webhook-client.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectDocumentedResponse, loadOpenApi } from '../helpers/openapi.js';

// The errors every admin route documents, produced for real on each route and validated
// against openapi.yaml: 401 (no token), 503 (ADMIN_TOKEN not configured), 400 (a query
// parameter the route does not take) and 500 (the database lost its tables: the generic
// `internal` problem, which names nothing of the fault). Route-specific answers (200, 404,
// 409, ...) are produced where each route is tested; the run's contract coverage check
// (test/helpers/contract-coverage.ts) fails when any documented answer is never produced.

interface AdminCall {
  method: 'GET' | 'POST' | 'DELETE';
  template: string;
  url: string;
  body?: object;
}

const CALLS: AdminCall[] = [
  { method: 'GET', template: '/admin/links', url: '/admin/links' },
  {
    method: 'POST',
    template: '/admin/links',
    url: '/admin/links',
    body: { flow: 'kunde-customer', tidsbankenId: 'K1', powerofficeId: '1' },
  },
  { method: 'DELETE', template: '/admin/links/{id}', url: '/admin/links/1' },
  { method: 'GET', template: '/admin/conflicts', url: '/admin/conflicts' },
  {
    method: 'POST',
    template: '/admin/conflicts/{id}/dismiss',
    url: '/admin/conflicts/1/dismiss',
  },
  { method: 'GET', template: '/admin/commands', url: '/admin/commands' },
  {
    method: 'POST',
    template: '/admin/commands/replay',
    url: '/admin/commands/replay',
    body: { status: 'dead' },
  },
  { method: 'POST', template: '/admin/commands/{id}/drop', url: '/admin/commands/1/drop' },
  { method: 'POST', template: '/admin/commands/{id}/replay', url: '/admin/commands/1/replay' },
  { method: 'GET', template: '/admin/systems', url: '/admin/systems' },
  { method: 'GET', template: '/admin/flows', url: '/admin/flows' },
  {
    method: 'POST',
    template: '/admin/flows/{flow}/pause',
    url: '/admin/flows/kunde-customer/pause',
  },
  {
    method: 'POST',
    template: '/admin/flows/{flow}/resume',
    url: '/admin/flows/kunde-customer/resume',
  },
  { method: 'GET', template: '/admin/events', url: '/admin/events' },
  {
    method: 'POST',
    template: '/admin/events/retry',
    url: '/admin/events/retry',
    body: { status: 'dead' },
  },
  { method: 'POST', template: '/admin/events/{id}/retry', url: '/admin/events/1/retry' },
  { method: 'POST', template: '/admin/reconcile', url: '/admin/reconcile' },
  { method: 'GET', template: '/admin/reconcile', url: '/admin/reconcile' },
  {
    method: 'GET',
    template: '/admin/records/{system}/{type}/{id}/history',
    url: '/admin/records/tidsbanken/kunde/K1/history',
  },
];

const name = (call: AdminCall) => `${call.method} ${call.template}`;

function send(app: TestApp['app'], call: AdminCall, url = call.url, auth = true) {
  const method = call.method === 'DELETE' ? 'delete' : call.method === 'POST' ? 'post' : 'get';
  let req = request(app)[method](url);
  if (auth) req = req.set(adminAuth);
  return call.body === undefined ? req : req.send(call.body);
}

const SECRET = 'whsec_Y29udHJhY3QtZXJyb3JzLXRlc3Qtc2VjcmV0LTAxMjM=';

let configured: TestApp;
let unconfigured: TestApp;
let broken: TestApp;
let brokenApp: TestApp['app'];

beforeAll(async () => {
  configured = await createTestApp({ ADMIN_TOKEN });
  unconfigured = await createTestApp();
  broken = await createTestApp({ ADMIN_TOKEN, TIDSBANKEN_WEBHOOK_SECRET: SECRET });
  // The database lost every table the routes read and write (a restore gone wrong, an
  // operator's mistake): queries fail with errors the service does not expect.
  await sql`drop schema public cascade`.execute(broken.database.db);
  await sql`create schema public`.execute(broken.database.db);
  const reconciler = new Reconciler({
    db: broken.database.db,
    logger: broken.logger,
    config: broken.config,
    pollers: [],
    engine: linkGateEngine,
  });
  brokenApp = createApp({
    config: broken.config,
    db: broken.database.db,
    logger: broken.logger,
    metrics: createMetrics(),
    reconciler,
  });
});

afterAll(async () => {
  await configured?.close();
  await unconfigured?.close();
  await broken?.close();
});

it('covers every admin operation openapi.yaml documents', async () => {
  const doc = await loadOpenApi();
  const documented = Object.entries(doc.paths)
    .filter(([path]) => path.startsWith('/admin/'))
    .flatMap(([path, item]) => Object.keys(item).map((m) => `${m.toUpperCase()} ${path}`));
  expect(CALLS.map(name).sort()).toEqual(documented.sort());
});

describe.each(CALLS)('$method $template', (call) => {
  it('answers 401 without the admin token', async () => {
    const res = await send(configured.app, call, call.url, false);
    expect(res.status).toBe(401);
    await expectDocumentedResponse(call.method, call.template, res);
  });

  it('answers 503 when ADMIN_TOKEN is not configured', async () => {
    const res = await send(unconfigured.app, call);
    expect(res.status).toBe(503);
    expect(res.body.code).toBe('not_configured');
    await expectDocumentedResponse(call.method, call.template, res);
  });

  it('answers 400 for a query parameter it does not take', async () => {
    const res = await send(configured.app, call, `${call.url}?unexpected=1`);
    expect(res.status).toBe(400);
    expect(res.body.code).toBe('validation_failed');
    await expectDocumentedResponse(call.method, call.template, res);
  });

  // GET /admin/systems reads no database: this replica's state, in memory.
  it.skipIf(call.template === '/admin/systems')(
    'answers 500 (internal, naming nothing of the fault) when the database fails unexpectedly',
    async () => {
      const res = await send(brokenApp, call);
      expect(res.status).toBe(500);
      expect(res.body).toMatchObject({ code: 'internal', detail: 'Something went wrong.' });
      expect(res.text).not.toMatch(/relation|does not exist|select|insert|update/i);
      await expectDocumentedResponse(call.method, call.template, res);
      // The fault itself is in the log, under the answer's request id.
      expect(broken.logs.text).toContain(res.body.requestId);
    },
  );
});

it('POST /admin/links answers 404 when a record is not in the mirror', async () => {
  const res = await send(configured.app, CALLS[1]!);
  expect(res.status).toBe(404);
  expect(res.body.detail).toContain('K1');
  await expectDocumentedResponse('POST', '/admin/links', res);
});

it('the probes, /metrics and the webhooks answer a database fault without a 500', async () => {
  const raw = JSON.stringify({
    type: 'ansatt.updated',
    timestamp: new Date().toISOString(),
    data: { Id: 7, Fornavn: 'Kari', Etternavn: 'Nordmann', Epost: 'kari@firma.no' },
  });
  const webhook = await signedWebhook(brokenApp, '/webhooks/tidsbanken', SECRET, raw);
  expect(webhook.status).toBe(503);
  expect(webhook.body.code).toBe('storage_unavailable');
  await expectDocumentedResponse('POST', '/webhooks/tidsbanken', webhook);

  const ready = await request(brokenApp).get('/readyz');
  expect(ready.status).toBe(503);
  await expectDocumentedResponse('GET', '/readyz', ready);

  const metrics = await request(brokenApp).get('/metrics');
  expect(metrics.status).toBe(200);
  expect(metrics.text).toContain('tbpo_ops_metrics_up 0');
  await expectDocumentedResponse('GET', '/metrics', metrics);

  const health = await request(brokenApp).get('/healthz');
  expect(health.status).toBe(200);
  await expectDocumentedResponse('GET', '/healthz', health);
});
