import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

// The console's log-in, session and CSRF rules over HTTP (the pages themselves are driven in
// a real browser in console-browser.test.ts).

const TOKEN = 'console-token-0123456789abcdef';
let t: TestApp;

beforeAll(async () => {
  t = await createTestApp({ ADMIN_TOKEN: TOKEN });
});
afterAll(async () => {
  await t.close();
});

async function logIn(): Promise<{ cookie: string; csrf: string }> {
  const res = await request(t.app).post('/console/login').type('form').send({ token: TOKEN });
  expect(res.status).toBe(303);
  const cookie = String(res.headers['set-cookie']?.[0] ?? '').split(';')[0]!;
  const overview = await request(t.app).get('/console').set('Cookie', cookie);
  expect(overview.status).toBe(200);
  const csrf = /name="csrf" value="([^"]+)"/.exec(overview.text)?.[1];
  expect(csrf).toBeDefined();
  return { cookie, csrf: csrf! };
}

describe('console session', () => {
  it('sends a visitor without a session to the log-in page', async () => {
    const res = await request(t.app).get('/console/flows');
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/console/login');
    const post = await request(t.app)
      .post('/console/flows/kunde-customer/pause')
      .type('form')
      .send({});
    expect(post.status).toBe(401);
  });

  it('refuses a wrong token and sets no cookie', async () => {
    const res = await request(t.app).post('/console/login').type('form').send({ token: 'wrong' });
    expect(res.status).toBe(401);
    expect(res.headers['set-cookie']).toBeUndefined();
    expect(res.text).toContain('That is not the admin token.');
  });

  it('logs in into an HttpOnly, SameSite=Strict cookie scoped to /console, never a URL', async () => {
    const res = await request(t.app).post('/console/login').type('form').send({ token: TOKEN });
    expect(res.status).toBe(303);
    expect(res.headers.location).toBe('/console');
    const cookie = String(res.headers['set-cookie']?.[0]);
    expect(cookie).toMatch(/^tbpo_console=[A-Za-z0-9_-]{40,};/);
    expect(cookie).toContain('HttpOnly');
    expect(cookie).toContain('SameSite=Strict');
    expect(cookie).toContain('Path=/console');
    expect(cookie).not.toContain(TOKEN);
    const stored = await t.database.db.selectFrom('console_sessions').select('id_hash').execute();
    expect(stored.map((s) => s.id_hash)).not.toContain(cookie.split(';')[0]!.split('=')[1]);
  });

  it('serves pages under a strict CSP with no inline script, and only same-origin assets', async () => {
    const { cookie } = await logIn();
    for (const path of [
      '/console',
      '/console/links',
      '/console/conflicts',
      '/console/dead',
      '/console/flows',
    ]) {
      const res = await request(t.app).get(path).set('Cookie', cookie);
      expect(res.status, path).toBe(200);
      const csp = String(res.headers['content-security-policy']);
      expect(csp).toContain("default-src 'none'");
      expect(csp).toContain("script-src 'self'");
      expect(csp).not.toContain('unsafe-inline');
      expect(res.text).not.toMatch(/<script(?![^>]*\bsrc=)/);
      expect(res.text).not.toMatch(/(src|href)="(https?:)?\/\//);
      expect(res.text).not.toMatch(/ on[a-z]+="/);
    }
  });

  it('refuses a state change without the CSRF token or from another origin, changing nothing', async () => {
    const { cookie, csrf } = await logIn();
    const noToken = await request(t.app)
      .post('/console/flows/kunde-customer/pause')
      .set('Cookie', cookie)
      .type('form')
      .send({});
    expect(noToken.status).toBe(401);
    const crossSite = await request(t.app)
      .post('/console/flows/kunde-customer/pause')
      .set('Cookie', cookie)
      .set('Origin', 'https://evil.example')
      .type('form')
      .send({ csrf });
    expect(crossSite.status).toBe(401);
    expect(await t.database.db.selectFrom('flow_controls').selectAll().execute()).toEqual([]);

    const ok = await request(t.app)
      .post('/console/flows/kunde-customer/pause')
      .set('Cookie', cookie)
      .type('form')
      .send({ csrf, back: 'https://evil.example/x' });
    expect(ok.status).toBe(303);
    expect(ok.headers.location).toBe('/console/flows?notice=paused');
    const rows = await t.database.db.selectFrom('flow_controls').selectAll().execute();
    expect(rows).toEqual([
      expect.objectContaining({ flow: 'kunde-customer', paused_at: expect.any(Date) }),
    ]);
  });

  it('shows field conflicts, resolved by the conflict policy, with both values and the resolution', async () => {
    const { cookie } = await logIn();
    await t.database.db
      .insertInto('conflicts')
      .values({
        flow: 'ansatt-employee',
        kind: 'field_conflict',
        system: 'poweroffice',
        record_type: 'employee',
        record_id: '7',
        field: 'Mobil',
        tidsbanken_value: JSON.stringify('+47 900 00 001'),
        poweroffice_value: JSON.stringify('+47 900 00 002'),
        resolution: 'poweroffice-wins (newest)',
        status: 'resolved',
      })
      .execute();
    // The default page (open conflicts) points to them.
    const open = await request(t.app).get('/console/conflicts').set('Cookie', cookie);
    expect(open.status).toBe(200);
    expect(open.text).toContain('href="/console/conflicts?kind=field_conflict"');
    // Choosing the kind shows them, whatever their status, side by side.
    const res = await request(t.app)
      .get('/console/conflicts?kind=field_conflict')
      .set('Cookie', cookie);
    expect(res.status).toBe(200);
    expect(res.text).toContain('Mobil');
    expect(res.text).toContain('+47 900 00 001');
    expect(res.text).toContain('+47 900 00 002');
    expect(res.text).toContain('poweroffice-wins (newest)');
  });

  it('escapes record data on the page', async () => {
    const { cookie } = await logIn();
    await t.database.db
      .insertInto('records')
      .values({
        system: 'tidsbanken',
        record_type: 'kunde',
        record_id: 'X1',
        data: JSON.stringify({ Id: 'X1', Navn: '<script>alert(1)</script>' }),
      })
      .execute();
    const res = await request(t.app)
      .get('/console/records/tidsbanken/kunde/X1')
      .set('Cookie', cookie);
    expect(res.status).toBe(200);
    expect(res.text).not.toContain('<script>alert(1)</script>');
    expect(res.text).toContain('&lt;script&gt;alert(1)&lt;/script&gt;');
  });

  it('logs out: the session ends and its cookie is cleared', async () => {
    const { cookie, csrf } = await logIn();
    const res = await request(t.app)
      .post('/console/logout')
      .set('Cookie', cookie)
      .type('form')
      .send({ csrf });
    expect(res.status).toBe(303);
    expect(String(res.headers['set-cookie']?.[0])).toContain('Max-Age=0');
    const after = await request(t.app).get('/console').set('Cookie', cookie);
    expect(after.status).toBe(303);
    expect(after.headers.location).toBe('/console/login');
  });
});
