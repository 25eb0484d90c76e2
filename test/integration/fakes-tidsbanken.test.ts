import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  startFakeTidsbanken,
  TIDSBANKEN_MAX_TOP,
  TIDSBANKEN_TEST_PAGE_CAP,
  type FakeTidsbanken,
} from '../fakes/tidsbanken.js';

// Response bodies are asserted on, not typed: any JSON value.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

let fake: FakeTidsbanken;

function headers(extra: Record<string, string> = {}): Record<string, string> {
  return {
    'tb-key': fake.apiKey,
    'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
    'x-api-version': '3.0',
    ...extra,
  };
}

async function get(path: string, init: RequestInit = {}): Promise<{ status: number; body: Body }> {
  const res = await fetch(`${fake.url}${path}`, { headers: headers(), ...init });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined };
}

async function send(
  method: string,
  path: string,
  body: unknown,
): Promise<{ status: number; body: Body }> {
  return get(path, {
    method,
    headers: headers({ 'Content-Type': 'application/json' }),
    body: JSON.stringify(body),
  });
}

const ids = (body: { value: { Id: unknown }[] }) => body.value.map((row) => row.Id);

beforeEach(async () => {
  fake = await startFakeTidsbanken();
});

afterEach(async () => {
  await fake.close();
});

describe('fake Tidsbanken: authentication', () => {
  it.each([
    ['tb-key', /tb-key/],
    ['Ocp-Apim-Subscription-Key', /missing subscription key/],
    ['x-api-version', /x-api-version/],
  ])('without the %s header answers 401 with an APIM-like body', async (missing, message) => {
    const all = headers();
    delete all[missing];
    const res = await fetch(`${fake.url}/ansatt/ansatt`, { headers: all });
    expect(res.status).toBe(401);
    const body = (await res.json()) as { statusCode: number; message: string };
    expect(body.statusCode).toBe(401);
    expect(body.message).toMatch(message);
  });

  it('with a wrong tb-key or subscription key answers 401, and logs the request', async () => {
    expect((await get('/ansatt/ansatt', { headers: headers({ 'tb-key': 'nope' }) })).status).toBe(
      401,
    );
    const wrongSub = await get('/ansatt/ansatt', {
      headers: headers({ 'Ocp-Apim-Subscription-Key': 'nope' }),
    });
    expect(wrongSub.status).toBe(401);
    expect(wrongSub.body.message).toMatch(/invalid subscription key/);
    expect(fake.requests.map((r) => r.status)).toEqual([401, 401]);
    expect(fake.requests[0]).toMatchObject({ method: 'GET', path: '/ansatt/ansatt', seq: 1 });
    expect(fake.requests[0]!.headers['tb-key']).toBe('nope');
  });
});

describe('fake Tidsbanken: Ansatt', () => {
  it('seeds full records with "" for blank text and an ISO SistEndretDato', () => {
    const seeded = fake.seedAnsatt({ Fornavn: 'Kari' });
    expect(seeded).toMatchObject({
      Id: 100,
      Fornavn: 'Kari',
      Etternavn: '',
      Fodt: null,
      Aktiv: true,
    });
    expect(seeded.SistEndretDato).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(Object.keys(seeded)).toHaveLength(38);
    expect(fake.seedAnsatt().Id).toBe(101);
  });

  it('lists in the OData envelope, ordered by Id', async () => {
    fake.seedAnsatt({ Id: 300 });
    fake.seedAnsatt({ Id: 200 });
    const { status, body } = await get('/ansatt/ansatt?$select=*');
    expect(status).toBe(200);
    expect(body['@odata.context']).toBe('https://api-ansatte.tidsbanken.net/$metadata#Ansatt(*)');
    expect(ids(body)).toEqual([200, 300]);
  });

  it('filters on SistEndretDato gt with ISO and date literals, strictly greater', async () => {
    fake.seedAnsatt({ Id: 1, SistEndretDato: '2024-01-01T10:00:00.000Z' });
    fake.seedAnsatt({ Id: 2, SistEndretDato: '2024-01-02T10:00:00.500Z' });
    const iso = await get(
      `/ansatt/ansatt?$filter=${encodeURIComponent('(SistEndretDato gt 2024-01-01T10:00:00.000Z)')}`,
    );
    expect(ids(iso.body)).toEqual([2]);
    const date = await get(
      `/ansatt/ansatt?$filter=${encodeURIComponent('SistEndretDato gt 1970-01-01')}`,
    );
    expect(ids(date.body)).toEqual([1, 2]);
  });

  it('filters on Id eq with case-insensitive names, and/or/not and parentheses', async () => {
    fake.seedAnsatt({ Id: 100, Fornavn: 'Ola', Aktiv: true });
    fake.seedAnsatt({ Id: 101, Fornavn: 'Kari', Aktiv: false });
    fake.seedAnsatt({ Id: 102, Fornavn: 'Per', Aktiv: true });
    const q = (f: string) => get(`/ansatt/ansatt?$filter=${encodeURIComponent(f)}&$top=1`);
    expect(ids((await q('Id eq 101')).body)).toEqual([101]);
    expect(
      ids(
        (
          await get(
            `/ansatt/ansatt?$filter=${encodeURIComponent("id eq 100 or (fornavn eq 'Per' and aktiv eq true)")}`,
          )
        ).body,
      ),
    ).toEqual([100, 102]);
    expect(
      ids((await get(`/ansatt/ansatt?$filter=${encodeURIComponent('not (Aktiv eq true)')}`)).body),
    ).toEqual([101]);
    expect(
      ids(
        (await get(`/ansatt/ansatt?$filter=${encodeURIComponent("startswith(Fornavn,'K')")}`)).body,
      ),
    ).toEqual([101]);
  });

  it("rejects a quoted numeric key (Id eq '100') and unknown properties with 400", async () => {
    const quoted = await get(`/ansatt/ansatt?$filter=${encodeURIComponent("Id eq '100'")}`);
    expect(quoted.status).toBe(400);
    expect(quoted.body.error.message).toMatch(/incompatible types.*Edm.Int32.*Edm.String/);
    const unknown = await get(`/ansatt/ansatt?$filter=${encodeURIComponent('Nope eq 1')}`);
    expect(unknown.status).toBe(400);
    expect(unknown.body.error.message).toMatch(/Could not find a property named 'Nope'/);
  });

  it('pages with $top/$skip, orders with $orderby, projects with $select and counts', async () => {
    for (let i = 0; i < 5; i += 1) fake.seedAnsatt({ Id: 100 + i, Fornavn: `N${4 - i}` });
    expect(ids((await get('/ansatt/ansatt?$top=2&$skip=2&$orderby=Id')).body)).toEqual([102, 103]);
    expect(ids((await get('/ansatt/ansatt?$top=2&$skip=4')).body)).toEqual([104]);
    expect((await get('/ansatt/ansatt?$top=2&$skip=5')).body.value).toEqual([]);
    expect(ids((await get('/ansatt/ansatt?$orderby=Fornavn&$top=2')).body)).toEqual([104, 103]);
    expect(ids((await get('/ansatt/ansatt?$orderby=Id desc&$top=1')).body)).toEqual([104]);
    const selected = await get('/ansatt/ansatt?$select=id,Fornavn&$top=1&$count=true');
    expect(selected.body.value).toEqual([{ Id: 100, Fornavn: 'N4' }]);
    expect(selected.body['@odata.count']).toBe(5);
    expect(selected.body['@odata.context']).toMatch(/#Ansatt\(Id,Fornavn\)$/);
  });

  it(`in tests caps a page at ${TIDSBANKEN_TEST_PAGE_CAP} rows whatever $top asked, with an @odata.nextLink to the rest`, async () => {
    for (let i = 0; i < 25; i += 1) fake.seedAnsatt({ Id: 100 + i });
    const first = await get('/ansatt/ansatt?$top=100&$skip=0');
    expect(first.body.value).toHaveLength(TIDSBANKEN_TEST_PAGE_CAP);
    const next = new URL(first.body['@odata.nextLink'] as string);
    expect(next.searchParams.get('$skip')).toBe(String(TIDSBANKEN_TEST_PAGE_CAP));
    expect(next.searchParams.get('$top')).toBe(String(100 - TIDSBANKEN_TEST_PAGE_CAP));
    const read: unknown[] = [...ids(first.body)];
    let link: string | undefined = first.body['@odata.nextLink'];
    while (link !== undefined) {
      const page = await get(new URL(link).pathname + new URL(link).search);
      read.push(...ids(page.body));
      link = page.body['@odata.nextLink'];
    }
    expect(read).toEqual(Array.from({ length: 25 }, (_, i) => 100 + i));
    await fake.close();
    fake = await startFakeTidsbanken({ pageCap: undefined });
    for (let i = 0; i < 25; i += 1) fake.seedAnsatt({ Id: 100 + i });
    expect((await get('/ansatt/ansatt?$top=100')).body.value).toHaveLength(25);
  });

  it(`rejects $top above ${TIDSBANKEN_MAX_TOP} and unsupported query options`, async () => {
    const top = await get(`/ansatt/ansatt?$top=${TIDSBANKEN_MAX_TOP + 1}`);
    expect(top.status).toBe(400);
    expect(top.body.error.message).toMatch(/limit of '1000' for Top/);
    expect((await get(`/ansatt/ansatt?$top=${TIDSBANKEN_MAX_TOP}`)).status).toBe(200);
    expect((await get('/ansatt/ansatt?$expand=avdeling')).status).toBe(400);
  });

  it('inserts an array with caller-supplied Ids, filling blanks', async () => {
    const res = await send('POST', '/ansatt/Ansatte', [{ Id: 7, Fornavn: 'Ny', Epost: 'ny@x.no' }]);
    expect(res.status).toBe(201);
    expect(res.body.value[0]).toMatchObject({ Id: 7, Fornavn: 'Ny', Etternavn: '' });
    expect(fake.getAnsatt(7)).toMatchObject({ Epost: 'ny@x.no', Mobil: '' });
    expect(fake.requests[0]!.body).toEqual([{ Id: 7, Fornavn: 'Ny', Epost: 'ny@x.no' }]);
  });

  it('rejects inserts with nulls, a non-array body, no Id, unknown fields, or a duplicate Id', async () => {
    fake.seedAnsatt({ Id: 5 });
    const nulls = await send('POST', '/ansatt/Ansatte', [{ Id: 8, Fodt: null }]);
    expect(nulls.status).toBe(400);
    expect(nulls.body.error.message).toMatch(/Null value.*'Fodt'/);
    expect((await send('POST', '/ansatt/Ansatte', { Id: 8 })).status).toBe(400);
    expect((await send('POST', '/ansatt/Ansatte', [{ Fornavn: 'x' }])).status).toBe(400);
    expect((await send('POST', '/ansatt/Ansatte', [{ Id: 8, fornavn: 'x' }])).status).toBe(400);
    expect((await send('POST', '/ansatt/Ansatte', [{ Id: '8' }])).status).toBe(400);
    const dup = await send('POST', '/ansatt/Ansatte', [{ Id: 9 }, { Id: 5 }]);
    expect(dup.status).toBe(409);
    expect(fake.ansatte.has(9)).toBe(false);
  });

  it('updates with PUT of full objects, bumping SistEndretDato; an unknown Id is 404', async () => {
    const before = fake.seedAnsatt({
      Id: 10,
      Fornavn: 'A',
      Mobil: '123',
      SistEndretDato: '2020-01-01T00:00:00.000Z',
    });
    const res = await send('PUT', '/ansatt/ansatt', [{ ...before, Fornavn: 'B' }]);
    expect(res.status).toBe(200);
    const after = fake.getAnsatt(10)!;
    expect(after).toMatchObject({
      Fornavn: 'B',
      Mobil: '123',
      OpprettetDato: before.OpprettetDato,
    });
    expect(Date.parse(after.SistEndretDato as string)).toBeGreaterThan(Date.parse('2020-01-01'));
    // PUT replaces: a field left out goes back to blank.
    await send('PUT', '/ansatt/ansatt', [{ Id: 10, Fornavn: 'C' }]);
    expect(fake.getAnsatt(10)).toMatchObject({ Fornavn: 'C', Mobil: '' });
    const missing = await send('PUT', '/ansatt/ansatt', [{ Id: 10 }, { Id: 999 }]);
    expect(missing.status).toBe(404);
    expect(fake.getAnsatt(10)!.Fornavn).toBe('C');
  });

  it('editAnsatt simulates a UI edit that a SistEndretDato poll then sees', async () => {
    fake.seedAnsatt({ Id: 1, SistEndretDato: '2024-01-01T00:00:00.000Z' });
    fake.seedAnsatt({ Id: 2, SistEndretDato: '2024-01-01T00:00:00.000Z' });
    fake.editAnsatt(2, { Mobil: '999' });
    const res = await get(
      `/ansatt/ansatt?$filter=${encodeURIComponent('SistEndretDato gt 2024-06-01T00:00:00Z')}`,
    );
    expect(res.body.value).toMatchObject([{ Id: 2, Mobil: '999' }]);
    expect(() => fake.editAnsatt(3, {})).toThrow();
  });
});

describe('fake Tidsbanken: Kunde', () => {
  it("lists, filters on Id eq '10001' and supports the Kunde('id') key syntax", async () => {
    fake.seedKunde({ Id: '10001', Navn: 'Eksempel AS' });
    fake.seedKunde({ Id: '10002', Navn: 'Annen AS' });
    const res = await get(
      `/prosjekt/Kunde?$filter=${encodeURIComponent("Id eq '10001'")}&$select=*&$top=1`,
    );
    expect(res.body['@odata.context']).toBe(
      'https://api-prosjekt.tidsbanken.net/$metadata#Kunde(*)',
    );
    expect(res.body.value).toMatchObject([{ Id: '10001', Navn: 'Eksempel AS', Postnr: '' }]);
    const numeric = await get(`/prosjekt/Kunde?$filter=${encodeURIComponent('Id eq 10001')}`);
    expect(numeric.status).toBe(400);
    const byKey = await get("/prosjekt/Kunde('10002')");
    expect(byKey.body).toMatchObject({ Id: '10002', Navn: 'Annen AS' });
    expect((await get("/prosjekt/Kunde('nope')")).status).toBe(404);
  });

  it('creates from a single object and rejects nulls, arrays, a missing Id and duplicates', async () => {
    const created = await send('POST', '/prosjekt/Kunde', { Id: 'K1', Navn: 'Ny AS' });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ Id: 'K1', Navn: 'Ny AS', Epost: '' });
    expect((await send('POST', '/prosjekt/Kunde', { Id: 'K2', Epost: null })).status).toBe(400);
    expect((await send('POST', '/prosjekt/Kunde', [{ Id: 'K2' }])).status).toBe(400);
    expect((await send('POST', '/prosjekt/Kunde', { Navn: 'x' })).status).toBe(400);
    expect((await send('POST', '/prosjekt/Kunde', { Id: 'K1' })).status).toBe(409);
  });

  it('updates with a PUT array and applies clockSkewMs to SistEndretDato', async () => {
    fake.seedKunde({ Id: 'K1', Navn: 'Old' });
    fake.clockSkewMs = -3_600_000;
    const res = await send('PUT', '/prosjekt/Kunde', [{ Id: 'K1', Navn: 'New' }]);
    expect(res.status).toBe(200);
    const written = Date.parse(fake.getKunde('K1')!.SistEndretDato as string);
    expect(Date.now() - written).toBeGreaterThan(3_500_000);
    expect(fake.getKunde('K1')!.Navn).toBe('New');
    expect((await send('PUT', '/prosjekt/Kunde', [{ Id: 'K9' }])).status).toBe(404);
    fake.editKunde('K1', { Navn: 'UI' });
    expect(fake.getKunde('K1')!.Navn).toBe('UI');
  });
});

describe('fake Tidsbanken: rate limit and faults', () => {
  it('answers 429 with Retry-After: 1 beyond N requests in a sliding second', async () => {
    await fake.close();
    let now = 0;
    fake = await startFakeTidsbanken({ rateLimitPerSecond: 3, clock: () => now });
    const statuses = [];
    for (let i = 0; i < 4; i += 1) statuses.push((await get('/ansatt/ansatt')).status);
    expect(statuses).toEqual([200, 200, 200, 429]);
    const res = await fetch(`${fake.url}/ansatt/ansatt`, { headers: headers() });
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await res.json()).toMatchObject({ statusCode: 429 });
    now = 999;
    expect((await get('/ansatt/ansatt')).status).toBe(429);
    now = 1_000;
    expect((await get('/ansatt/ansatt')).status).toBe(200);
  });

  it('injects 500 and 503 faults only on matching requests', async () => {
    fake.faults.inject(1, '500', { match: (req) => req.method === 'PUT' });
    fake.faults.inject(1, '503', { retryAfterSeconds: 2 });
    const unavailable = await fetch(`${fake.url}/ansatt/ansatt`, { headers: headers() });
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers.get('retry-after')).toBe('2');
    expect((await send('PUT', '/ansatt/ansatt', [])).status).toBe(500);
    expect((await get('/ansatt/ansatt')).status).toBe(200);
    expect(fake.requests.map((r) => r.status)).toEqual([503, 500, 200]);
  });
});
