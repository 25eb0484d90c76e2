import { hostname } from 'node:os';
import request from 'supertest';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t.close();
});

describe('operations endpoints', () => {
  it('GET /healthz answers 200 as documented', async () => {
    const res = await request(t.app).get('/healthz');
    expect(res.status).toBe(200);
    expect(res.body).toEqual({ status: 'ok' });
    await expectDocumentedResponse('GET', '/healthz', res);
  });

  it('GET /readyz answers 200 when the database is reachable and migrated', async () => {
    const res = await request(t.app).get('/readyz');
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({ status: 'ready' });
    await expectDocumentedResponse('GET', '/readyz', res);
  });

  it('has created every table of the pipeline', async () => {
    const { rows } = await sql<{ table_name: string }>`
      select table_name from information_schema.tables where table_schema = 'public'
    `.execute(t.database.db);
    expect(rows.map((r) => r.table_name)).toEqual(
      expect.arrayContaining([
        'inbound_events',
        'records',
        'links',
        'conflicts',
        'outbound_commands',
        'poller_cursors',
        'reconcile_runs',
        'audit_entries',
      ]),
    );
  });

  it('GET /metrics answers Prometheus text with default and HTTP metrics', async () => {
    await request(t.app).get('/healthz');
    const res = await request(t.app).get('/metrics');
    expect(res.status).toBe(200);
    expect(res.text).toContain('process_cpu_user_seconds_total');
    expect(res.text).toMatch(
      /tbpo_http_requests_total\{method="GET",route="\/healthz",code="200"\} \d+/,
    );
    expect(res.text).toContain('tbpo_http_request_duration_seconds_bucket');
    await expectDocumentedResponse('GET', '/metrics', res);
  });

  it('an unknown route answers 404 as problem+json', async () => {
    const res = await request(t.app).get('/no/such/thing');
    expect(res.status).toBe(404);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(JSON.parse(res.text)).toMatchObject({ status: 404, title: 'Not Found' });
  });

  it('sets the API security headers and a request id, keeping a sane caller id', async () => {
    const res = await request(t.app).get('/healthz').set('X-Request-Id', 'partner-abc.1');
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['content-security-policy']).toBe(
      "default-src 'none';frame-ancestors 'none'",
    );
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['strict-transport-security']).toMatch(/^max-age=\d+/);
    expect(res.headers).not.toHaveProperty('x-frame-options');
    expect(res.headers['x-request-id']).toBe('partner-abc.1');
    const generated = await request(t.app).get('/healthz').set('X-Request-Id', 'bad id\twith tab');
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });

  it('logs requests as JSON lines with the request id, pid and hostname', async () => {
    await request(t.app).get('/no/such/log-me').set('X-Request-Id', 'trace-me-123');
    const line = t.logs.lines.map((l) => JSON.parse(l)).find((l) => l.requestId === 'trace-me-123');
    expect(line).toMatchObject({
      res: { statusCode: 404 },
      req: { method: 'GET' },
      pid: process.pid,
      hostname: hostname(),
    });
  });
});
