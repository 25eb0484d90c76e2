import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { UpstreamError } from '../../src/errors.js';
import type { ListPage } from '../../src/lib/list-page.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics, type Metrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import {
  startFakeTidsbanken,
  TIDSBANKEN_TEST_PAGE_CAP,
  type FakeTidsbanken,
} from '../fakes/tidsbanken.js';
import { LogCapture } from '../helpers/app.js';

let fake: FakeTidsbanken;
let client: TidsbankenClient;
let metrics: Metrics;
const logs = new LogCapture();

function makeClient(overrides: Partial<ConstructorParameters<typeof TidsbankenClient>[0]> = {}) {
  return new TidsbankenClient({
    config: { baseUrl: fake.url, apiKey: fake.apiKey, subscriptionKey: fake.subscriptionKey },
    pacer: new Pacer('tidsbanken', 1000),
    // No secrets list: the scrubber must not be what keeps the keys out of the log.
    logger: createLogger({ level: 'debug', destination: logs }),
    metrics,
    timeoutMs: 300,
    maxAttempts: 4,
    backoffBaseMs: 5,
    pageSize: 3,
    ...overrides,
  });
}

beforeAll(async () => {
  fake = await startFakeTidsbanken();
  metrics = createMetrics();
  client = makeClient();
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  fake.ansatte.clear();
  fake.kunder.clear();
  fake.faults.clear();
  fake.clearRequests();
  // Server-driven paging as every test runs it, whatever this test changed.
  fake.pageCap = TIDSBANKEN_TEST_PAGE_CAP;
  fake.pageCapNextLink = true;
});

/** The records of each page; every item of these fixtures reads, so none is set aside. */
async function collect<T>(pages: AsyncIterable<ListPage<T>>): Promise<T[][]> {
  const out: T[][] = [];
  for await (const page of pages) {
    expect(page.rejected).toEqual([]);
    out.push(page.records);
  }
  return out;
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as {
    labels: Record<string, string | number>;
    value: number;
  }[];
  return values
    .filter((v) => Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want))
    .reduce((sum, v) => sum + v.value, 0);
}

describe('TidsbankenClient against the fake API', () => {
  it('getAnsatt sends the three auth headers and the Id filter, and returns the record', async () => {
    fake.seedAnsatt({ Id: 100, Fornavn: 'Kari', Epost: 'kari@example.no' });
    const ansatt = await client.getAnsatt(100);
    expect(ansatt).toMatchObject({ Id: 100, Fornavn: 'Kari', Epost: 'kari@example.no' });
    const req = fake.requests[0]!;
    expect(req.method).toBe('GET');
    expect(req.path).toBe('/ansatt/ansatt');
    expect(req.query).toMatchObject({ $filter: 'Id eq 100', $select: '*', $top: '1' });
    expect(req.headers['tb-key']).toBe(fake.apiKey);
    expect(req.headers['ocp-apim-subscription-key']).toBe(fake.subscriptionKey);
    expect(req.headers['x-api-version']).toBe('3.0');
  });

  it('getAnsatt answers undefined when there is no such employee', async () => {
    expect(await client.getAnsatt(4242)).toBeUndefined();
  });

  it('listAllAnsatte pages by $top/$skip ordered by Id and reads on past a short page until an empty one', async () => {
    for (let id = 101; id <= 107; id++) fake.seedAnsatt({ Id: id, Fornavn: `A${id}` });
    const pages = await collect(client.listAllAnsatte());
    expect(pages.map((p) => p.map((a) => a.Id))).toEqual([[101, 102, 103], [104, 105, 106], [107]]);
    // A short page is not the end (a server may cap pages without saying so): only an
    // empty one is.
    expect(fake.requests.map((r) => [r.query.$skip, r.query.$top, r.query.$orderby])).toEqual([
      ['0', '3', 'Id'],
      ['3', '3', 'Id'],
      ['6', '3', 'Id'],
      ['7', '3', 'Id'],
    ]);
  });

  it('listAllAnsatte stops at an empty page when the last page was full', async () => {
    for (let id = 1; id <= 6; id++) fake.seedAnsatt({ Id: id });
    const pages = await collect(client.listAllAnsatte());
    expect(pages.map((p) => p.length)).toEqual([3, 3]);
    expect(fake.requests).toHaveLength(3);
  });

  it('listAllKunder follows @odata.nextLink when the server caps a page below $top', async () => {
    fake.pageCap = 2;
    for (let n = 1; n <= 13; n++) fake.seedKunde({ Id: `K${String(n).padStart(2, '0')}` });
    const wide = makeClient({ pageSize: 5 });
    const ids = (await collect(wide.listAllKunder())).flat().map((k) => k.Id);
    expect(ids).toHaveLength(13);
    expect(new Set(ids).size).toBe(13);
    // Each capped page's next link was followed (its $top and $skip, not our own). Distinct
    // queries in order: a request that timed out on a loaded machine is sent again as it was.
    const queries = [...new Set(fake.requests.map((r) => `${r.query.$skip},${r.query.$top}`))];
    expect(queries.slice(0, 3).map((q) => q.split(','))).toEqual([
      ['0', '5'],
      ['2', '3'],
      ['4', '1'],
    ]);
  });

  it('listAllKunder reads every record when the server caps pages without a next link', async () => {
    fake.pageCap = 2;
    fake.pageCapNextLink = false;
    for (let n = 1; n <= 13; n++) fake.seedKunde({ Id: `K${String(n).padStart(2, '0')}` });
    const wide = makeClient({ pageSize: 5 });
    const ids = (await collect(wide.listAllKunder())).flat().map((k) => k.Id);
    expect(ids).toEqual([...fake.kunder.keys()].sort());
  });

  it('listAnsatteChangedSince filters on SistEndretDato', async () => {
    fake.seedAnsatt({ Id: 1, SistEndretDato: '2024-01-01T00:00:00.000Z' });
    fake.seedAnsatt({ Id: 2, SistEndretDato: '2024-06-01T00:00:00.000Z' });
    fake.seedAnsatt({ Id: 3, SistEndretDato: '2025-01-01T00:00:00.000Z' });
    const pages = await collect(client.listAnsatteChangedSince('2024-03-01T00:00:00.000Z'));
    expect(pages.flat().map((a) => a.Id)).toEqual([2, 3]);
    expect(fake.requests[0]!.query.$filter).toBe('SistEndretDato gt 2024-03-01T00:00:00.000Z');
  });

  it('createAnsatt POSTs an array to ansatt/Ansatte with nulls stripped and the caller Id', async () => {
    const created = await client.createAnsatt({
      Id: 500,
      Fornavn: 'Ola',
      Etternavn: 'Nordmann',
      Fodt: null,
      Epost: 'ola@example.no',
    });
    expect(created).toMatchObject({ Id: 500, Fornavn: 'Ola', Etternavn: 'Nordmann' });
    const post = fake.requests.find((r) => r.method === 'POST')!;
    expect(post.path).toBe('/ansatt/Ansatte');
    expect(post.body).toEqual([
      { Id: 500, Fornavn: 'Ola', Etternavn: 'Nordmann', Epost: 'ola@example.no' },
    ]);
    expect(fake.getAnsatt(500)).toMatchObject({ Fornavn: 'Ola' });
  });

  it('updateAnsatt PUTs the full record as an array', async () => {
    fake.seedAnsatt({ Id: 7, Fornavn: 'Per', Mobil: '111' });
    const current = (await client.getAnsatt(7))!;
    const updated = await client.updateAnsatt({ ...current, Mobil: '222' });
    expect(updated).toMatchObject({ Id: 7, Fornavn: 'Per', Mobil: '222' });
    const put = fake.requests.find((r) => r.method === 'PUT')!;
    expect(put.path).toBe('/ansatt/ansatt');
    expect(Array.isArray(put.body)).toBe(true);
    expect((put.body as unknown[])[0]).toMatchObject({ Id: 7, Fornavn: 'Per', Mobil: '222' });
    expect(fake.getAnsatt(7)).toMatchObject({ Mobil: '222', Fornavn: 'Per' });
  });

  it('getKunde filters on the quoted string Id, doubling an embedded quote', async () => {
    fake.seedKunde({ Id: "K'1", Navn: 'Kunde AS' });
    expect(await client.getKunde("K'1")).toMatchObject({ Id: "K'1", Navn: 'Kunde AS' });
    expect(fake.requests[0]!.path).toBe('/prosjekt/Kunde');
    expect(fake.requests[0]!.query.$filter).toBe("Id eq 'K''1'");
    expect(await client.getKunde('nope')).toBeUndefined();
  });

  it('createKunde POSTs one object; updateKunde PUTs an array; listAllKunder pages', async () => {
    const created = await client.createKunde({ Id: '20001', Navn: 'Ny AS', Url: null });
    expect(created).toMatchObject({ Id: '20001', Navn: 'Ny AS' });
    const post = fake.requests.find((r) => r.method === 'POST')!;
    expect(post.path).toBe('/prosjekt/Kunde');
    expect(post.body).toEqual({ Id: '20001', Navn: 'Ny AS' });

    const updated = await client.updateKunde({ ...created, Epost: 'post@ny.no' });
    expect(updated).toMatchObject({ Id: '20001', Epost: 'post@ny.no' });
    const put = fake.requests.find((r) => r.method === 'PUT')!;
    expect(Array.isArray(put.body)).toBe(true);
    expect(fake.getKunde('20001')).toMatchObject({ Epost: 'post@ny.no', Navn: 'Ny AS' });

    fake.seedKunde({ Id: '20002' });
    fake.seedKunde({ Id: '20003' });
    fake.seedKunde({ Id: '20004' });
    const pages = await collect(client.listAllKunder());
    expect(pages.map((p) => p.map((k) => k.Id))).toEqual([['20001', '20002', '20003'], ['20004']]);
  });

  it('a create whose answer is lost after it landed ends with exactly one record', async () => {
    fake.faults.inject(1, 'drop', { process: true, match: (r) => r.method === 'POST' });
    const created = await client.createAnsatt({ Id: 900, Fornavn: 'Lost', Etternavn: 'Answer' });
    expect(created).toMatchObject({ Id: 900, Fornavn: 'Lost' });
    expect([...fake.ansatte.keys()]).toEqual([900]);
    // One POST, then a lookup that found it: never a second POST.
    expect(fake.requests.map((r) => r.method)).toEqual(['POST', 'GET']);
  });

  it('a create that timed out without landing is looked up, then sent again once', async () => {
    fake.faults.inject(1, 'timeout', { match: (r) => r.method === 'POST' });
    const created = await client.createKunde({ Id: '777', Navn: 'Retry AS' });
    expect(created).toMatchObject({ Id: '777', Navn: 'Retry AS' });
    expect([...fake.kunder.keys()]).toEqual(['777']);
    expect(fake.requests.map((r) => r.method)).toEqual(['POST', 'GET', 'POST']);
  });

  it('recovers from 500 and 503 on a read with backoff', async () => {
    fake.seedAnsatt({ Id: 1 });
    const before = await metricValue('tbpo_upstream_retries_total', {
      system: 'tidsbanken',
      reason: '5xx',
    });
    fake.faults.inject(1, '500');
    fake.faults.inject(1, '503');
    expect(await client.getAnsatt(1)).toMatchObject({ Id: 1 });
    expect(fake.requests.map((r) => r.status)).toEqual([500, 503, 200]);
    const after = await metricValue('tbpo_upstream_retries_total', {
      system: 'tidsbanken',
      reason: '5xx',
    });
    expect(after - before).toBe(2);
  });

  it('recovers from a read that times out', async () => {
    fake.seedAnsatt({ Id: 2 });
    fake.faults.inject(1, 'timeout');
    expect(await client.getAnsatt(2)).toMatchObject({ Id: 2 });
    expect(fake.requests).toHaveLength(2);
    expect(
      await metricValue('tbpo_upstream_requests_total', { system: 'tidsbanken', code: 'timeout' }),
    ).toBeGreaterThanOrEqual(1);
  });

  it('gives up after maxAttempts with a retryable UpstreamError', async () => {
    fake.faults.inject(4, '500');
    const error = await client.getAnsatt(1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).retryable).toBe(true);
    expect((error as UpstreamError).upstreamStatus).toBe(500);
    expect(fake.requests).toHaveLength(4);
  });

  it('a POST answered 500 is not retried blindly without a record landing check', async () => {
    fake.faults.inject(1, '500', { match: (r) => r.method === 'POST' });
    await client.createAnsatt({ Id: 31, Fornavn: 'X' });
    // POST (500) → GET lookup (absent) → POST: exactly one record.
    expect(fake.requests.map((r) => `${r.method} ${r.status}`)).toEqual([
      'POST 500',
      'GET 200',
      'POST 201',
    ]);
    expect(fake.ansatte.size).toBe(1);
  });

  it('a 4xx is a non-retryable UpstreamError carrying the problem details', async () => {
    const error = await client
      .createAnsatt({ Id: 40, Fornavn: 'Bad', NoSuchField: 'x' })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    const upstream = error as UpstreamError;
    expect(upstream.retryable).toBe(false);
    expect(upstream.upstreamStatus).toBe(400);
    expect(upstream.system).toBe('tidsbanken');
    expect(upstream.body).toMatchObject({ error: { code: 'BadRequest' } });
    expect(upstream.message).toContain('NoSuchField');
    expect(fake.requests).toHaveLength(1);
  });

  it('on 429 pauses at least Retry-After (min 1 s) before trying again', async () => {
    fake.seedAnsatt({ Id: 3 });
    fake.faults.inject(1, '429', { retryAfterSeconds: 1 });
    expect(await client.getAnsatt(3)).toMatchObject({ Id: 3 });
    const [first, second] = fake.requests;
    expect(first!.status).toBe(429);
    expect(second!.status).toBe(200);
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(1000);
  });

  it('never writes the keys to the log', () => {
    expect(logs.lines.length).toBeGreaterThan(0);
    expect(logs.text).not.toContain(fake.apiKey);
    expect(logs.text).not.toContain(fake.subscriptionKey);
  });
});
