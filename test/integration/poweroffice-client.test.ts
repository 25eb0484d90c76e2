import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CredentialsError, UpstreamError } from '../../src/errors.js';
import type { ListPage } from '../../src/lib/list-page.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { PowerOfficeTokenProvider } from '../../src/poweroffice/token.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { LogCapture } from '../helpers/app.js';

let fake: FakePowerOffice;
let client: PowerOfficeClient;
const logs = new LogCapture();
// No secrets list: the scrubber must not be what keeps the keys out of the log.
const logger = createLogger({ level: 'debug', destination: logs });
const metrics = createMetrics();

function config() {
  return {
    baseUrl: fake.baseUrl,
    tokenUrl: fake.tokenUrl,
    applicationKey: fake.applicationKey,
    clientKey: fake.clientKey,
    subscriptionKey: fake.subscriptionKey,
  };
}

function makeClient(overrides: Partial<ConstructorParameters<typeof PowerOfficeClient>[0]> = {}) {
  return new PowerOfficeClient({
    config: config(),
    pacer: new Pacer('poweroffice', 1000),
    logger,
    metrics,
    timeoutMs: 300,
    maxAttempts: 4,
    backoffBaseMs: 5,
    pageSize: 2,
    ...overrides,
  });
}

beforeAll(async () => {
  fake = await startFakePowerOffice({ rateLimitPerSecond: 1000 });
  client = makeClient();
});
afterAll(async () => {
  await fake.close();
});
afterEach(() => {
  fake.employees.clear();
  fake.customers.clear();
  fake.contactPersons.clear();
  fake.faults.clear();
  fake.clearRequests();
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

const apiRequests = () => fake.requests.filter((r) => !/oauth\/token/i.test(r.path));

describe('PowerOfficeClient against the fake API', () => {
  it('gets an employee with a bearer token and the subscription key; 404 → undefined', async () => {
    const seeded = fake.seedEmployee({ FirstName: 'Kari', LastName: 'Nordmann', Number: 100 });
    const employee = await client.getEmployee(seeded.Id as number);
    expect(employee).toMatchObject({ Id: seeded.Id, FirstName: 'Kari', Number: 100 });
    const req = apiRequests()[0]!;
    expect(req.path).toBe(`/v2/Employees/${String(seeded.Id)}`);
    expect(req.headers.authorization).toMatch(/^Bearer .+/);
    expect(req.headers['ocp-apim-subscription-key']).toBe(fake.subscriptionKey);
    expect(await client.getEmployee(999999)).toBeUndefined();
  });

  it('lists employees in 1-based pages, stopping at a short page', async () => {
    for (let n = 1; n <= 5; n++) fake.seedEmployee({ FirstName: `E${n}`, LastName: 'X' });
    const pages = await collect(client.listAllEmployees());
    expect(pages.map((p) => p.length)).toEqual([2, 2, 1]);
    expect(apiRequests().map((r) => [r.query.PageNumber, r.query.PageSize])).toEqual([
      ['1', '2'],
      ['2', '2'],
      ['3', '2'],
    ]);
  });

  it('asks for every list page in a stable order (OrderBy Id), so paging skips and repeats nothing', async () => {
    for (let n = 1; n <= 3; n++) fake.seedCustomer({ Name: `C${n}` });
    await collect(client.listAllCustomers());
    await collect(client.listEmployeesChangedSince('2000-01-01 00:00:00+00:00'));
    await collect(client.listAllContactPersons());
    const lists = apiRequests().filter((r) => r.query.PageNumber !== undefined);
    expect(lists.length).toBeGreaterThan(2);
    for (const request of lists) expect(request.query.OrderBy).toBe('Id');
  });

  it('treats 204 as an empty page (empty list, and after a full last page)', async () => {
    expect(await collect(client.listAllCustomers())).toEqual([]);
    expect(apiRequests()[0]!.status).toBe(204);
    fake.clearRequests();
    fake.seedCustomer({ Name: 'A AS' });
    fake.seedCustomer({ Name: 'B AS' });
    const pages = await collect(client.listAllCustomers());
    expect(pages.map((p) => p.length)).toEqual([2]);
    expect(apiRequests().map((r) => r.status)).toEqual([200, 204]);
  });

  it('listChangedSince sends lastChangedDateTimeOffsetGreaterThan with the + encoded', async () => {
    fake.seedCustomer({
      Name: 'Old',
      LastChangedDateTimeOffset: '2024-01-01 10:00:00.000000+00:00',
    });
    fake.seedCustomer({
      Name: 'New',
      LastChangedDateTimeOffset: '2025-01-01 10:00:00.000000+00:00',
    });
    const since = '2024-06-01 00:00:00.000000+00:00';
    const pages = await collect(client.listCustomersChangedSince(since));
    expect(pages.flat().map((c) => c.Name)).toEqual(['New']);
    // The fake rejects a "+" that arrived as a space, so this also proves the encoding.
    expect(apiRequests()[0]!.query.lastChangedDateTimeOffsetGreaterThan).toBe(since);
  });

  it('creates a customer (201 → Dto), finds it by ExternalImportReference, and patches it', async () => {
    const created = await client.createCustomer({
      Name: 'Ny Kunde AS',
      EmailAddress: 'post@ny.no',
      ExternalImportReference: 'tb-kunde-20001',
    });
    expect(created).toMatchObject({
      Name: 'Ny Kunde AS',
      ExternalImportReference: 'tb-kunde-20001',
    });
    expect(typeof created.Id).toBe('number');

    const found = await client.findCustomerByExternalImportReference('tb-kunde-20001');
    expect(found?.Id).toBe(created.Id);
    expect(await client.findCustomerByExternalImportReference('tb-kunde-nope')).toBeUndefined();

    const patched = await client.patchCustomer(created.Id, [
      { op: 'replace', path: '/PhoneNumber', value: '+4712345678' },
    ]);
    expect(patched).toMatchObject({ Id: created.Id, PhoneNumber: '+4712345678' });
    const patch = apiRequests().find((r) => r.method === 'PATCH')!;
    expect(patch.headers['content-type']).toMatch(/^application\/json-patch\+json/);
    expect(patch.body).toEqual([{ op: 'replace', path: '/PhoneNumber', value: '+4712345678' }]);
    expect(fake.getCustomer(created.Id)).toMatchObject({ PhoneNumber: '+4712345678' });
    expect(await client.getCustomer(created.Id)).toMatchObject({ Name: 'Ny Kunde AS' });
  });

  it('creates, finds and patches an employee', async () => {
    const created = await client.createEmployee({
      FirstName: 'Ola',
      LastName: 'Nordmann',
      Number: 500,
      ExternalImportReference: 'tb-ansatt-500',
    });
    expect(created).toMatchObject({ Number: 500, FirstName: 'Ola' });
    expect((await client.findEmployeeByExternalImportReference('tb-ansatt-500'))?.Id).toBe(
      created.Id,
    );
    const patched = await client.patchEmployee(created.Id, [
      { op: 'replace', path: '/JobTitle', value: 'Sjef' },
    ]);
    expect(patched.JobTitle).toBe('Sjef');
    const changed = await collect(client.listEmployeesChangedSince('2000-01-01 00:00:00+00:00'));
    expect(changed.flat().map((e) => e.Id)).toEqual([created.Id]);
  });

  it('contact persons: create under a parent, get, find by ExternalCode, list, patch', async () => {
    const parent = fake.seedCustomer({ Name: 'Forelder AS', EmailAddress: 'f@f.no' });
    const parentId = parent.Id as number;
    const created = await client.createContactPerson(parentId, {
      FirstName: 'Kari',
      LastName: 'Kontakt',
      EmailAddress: 'kari@f.no',
      ExternalCode: 'tb-ansatt-7',
    });
    expect(created).toMatchObject({ ContactId: parentId, FirstName: 'Kari' });
    const post = apiRequests().find((r) => r.method === 'POST')!;
    expect(post.path).toBe(`/v2/ContactPersons/${parentId}`);

    expect(await client.getContactPerson(parentId, created.Id)).toMatchObject({
      LastName: 'Kontakt',
    });
    expect(await client.getContactPerson(parentId, 987654)).toBeUndefined();
    expect((await client.findContactPersonByExternalCode('tb-ansatt-7'))?.Id).toBe(created.Id);

    const patched = await client.patchContactPerson(parentId, created.Id, [
      { op: 'replace', path: '/Title', value: 'CEO' },
    ]);
    expect(patched.Title).toBe('CEO');
    fake.seedContactPerson(parentId, { FirstName: 'Per', LastName: 'P' });
    fake.seedContactPerson(parentId, { FirstName: 'Pål', LastName: 'P' });
    const all = await collect(client.listAllContactPersons());
    expect(all.flat()).toHaveLength(3);
    const changed = await collect(client.listContactPersonsChangedSince('2000-01-01T00:00:00Z'));
    expect(changed.flat()).toHaveLength(3);
  });

  it('a create whose answer is lost after it landed ends with exactly one record', async () => {
    fake.faults.inject(1, 'drop', { process: true, match: (r) => r.method === 'POST' });
    const created = await client.createEmployee({
      FirstName: 'Lost',
      LastName: 'Answer',
      ExternalImportReference: 'tb-ansatt-901',
    });
    expect(created).toMatchObject({ FirstName: 'Lost', ExternalImportReference: 'tb-ansatt-901' });
    expect(fake.employees.size).toBe(1);
    expect(apiRequests().map((r) => r.method)).toEqual(['POST', 'GET']);
  });

  it('a create that timed out without landing is looked up, then sent once more', async () => {
    const parent = fake.seedCustomer({ Name: 'P AS', EmailAddress: 'p@p.no' });
    fake.faults.inject(1, 'timeout', { match: (r) => r.method === 'POST' });
    const created = await client.createContactPerson(parent.Id as number, {
      FirstName: 'T',
      LastName: 'O',
      ExternalCode: 'tb-ansatt-77',
    });
    expect(created.ExternalCode).toBe('tb-ansatt-77');
    expect(fake.contactPersons.size).toBe(1);
    expect(apiRequests().map((r) => r.method)).toEqual(['POST', 'GET', 'POST']);
  });

  it('with lookupFirst, a create whose record already exists sends no POST', async () => {
    fake.seedCustomer({
      Name: 'Already',
      EmailAddress: 'a@a.no',
      ExternalImportReference: 'tb-kunde-5',
    });
    const created = await client.createCustomer(
      { Name: 'Already', ExternalImportReference: 'tb-kunde-5' },
      { lookupFirst: true },
    );
    expect(created.Name).toBe('Already');
    expect(fake.customers.size).toBe(1);
    expect(apiRequests().map((r) => r.method)).toEqual(['GET']);
  });

  it('a 400 is a non-retryable UpstreamError with the problem details', async () => {
    const error = await client.createEmployee({ FirstName: 'NoLastName' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    const upstream = error as UpstreamError;
    expect(upstream.retryable).toBe(false);
    expect(upstream.upstreamStatus).toBe(400);
    expect(upstream.body).toMatchObject({ status: 400 });
    expect(typeof (upstream.body as { title?: unknown }).title).toBe('string');
    expect(apiRequests()).toHaveLength(1);
  });

  it('recovers from 503 and a timeout on reads', async () => {
    const seeded = fake.seedCustomer({ Name: 'R AS', EmailAddress: 'r@r.no' });
    fake.faults.inject(1, '503', { match: (r) => r.method === 'GET' });
    fake.faults.inject(1, 'timeout', { match: (r) => r.method === 'GET' });
    expect(await client.getCustomer(seeded.Id as number)).toMatchObject({ Name: 'R AS' });
    expect(apiRequests().map((r) => r.status)).toEqual([503, 0, 200]);
  });

  it('never writes the keys or tokens to the log', () => {
    expect(logs.lines.length).toBeGreaterThan(0);
    for (const secret of [fake.applicationKey, fake.clientKey, fake.subscriptionKey]) {
      expect(logs.text).not.toContain(secret);
    }
    expect(logs.text).not.toMatch(/Bearer [A-Za-z0-9_-]{20,}/);
  });
});

describe('PowerOffice token lifecycle', () => {
  it('sends client credentials as Basic auth with the subscription key, and reuses the token', async () => {
    const c = makeClient();
    const issued = fake.tokensIssued;
    const seeded = fake.seedCustomer({ Name: 'T AS', EmailAddress: 't@t.no' });
    await c.getCustomer(seeded.Id as number);
    await c.getCustomer(seeded.Id as number);
    await c.getCustomer(seeded.Id as number);
    expect(fake.tokensIssued - issued).toBe(1);
    const tokenRequest = fake.requests.find((r) => /oauth\/token/i.test(r.path))!;
    expect(tokenRequest.method).toBe('POST');
    expect(tokenRequest.headers.authorization).toBe(
      `Basic ${Buffer.from(`${fake.applicationKey}:${fake.clientKey}`).toString('base64')}`,
    );
    expect(tokenRequest.headers['ocp-apim-subscription-key']).toBe(fake.subscriptionKey);
    expect(tokenRequest.headers['content-type']).toMatch(/^application\/x-www-form-urlencoded/);
    expect(tokenRequest.body).toBe('grant_type=client_credentials');
  });

  it('concurrent first callers share one token request', async () => {
    const c = makeClient();
    const issued = fake.tokensIssued;
    fake.seedCustomer({ Name: 'C AS', EmailAddress: 'c@c.no' });
    await Promise.all(Array.from({ length: 8 }, () => collect(c.listAllCustomers())));
    expect(fake.tokensIssued - issued).toBe(1);
  });

  it('renews proactively at 80% of expires_in, before the API would answer 401', async () => {
    let now = 1_000_000;
    const token = new PowerOfficeTokenProvider({
      config: config(),
      pacer: new Pacer('poweroffice', 1000),
      logger,
      metrics,
      now: () => now,
    });
    const c = makeClient({ token });
    const seeded = fake.seedCustomer({ Name: 'P AS', EmailAddress: 'p@p.no' });
    const issued = fake.tokensIssued;
    await c.getCustomer(seeded.Id as number);
    now += 1200 * 1000 * 0.79;
    await c.getCustomer(seeded.Id as number);
    expect(fake.tokensIssued - issued).toBe(1);
    now += 1200 * 1000 * 0.02;
    await c.getCustomer(seeded.Id as number);
    expect(fake.tokensIssued - issued).toBe(2);
    expect(apiRequests().every((r) => r.status === 200)).toBe(true);
  });

  it('on a 401 renews the token once and retries the request once', async () => {
    const c = makeClient();
    const seeded = fake.seedCustomer({ Name: 'E AS', EmailAddress: 'e@e.no' });
    await c.getCustomer(seeded.Id as number);
    const issued = fake.tokensIssued;
    fake.clearRequests();
    fake.expireTokens();
    expect(await c.getCustomer(seeded.Id as number)).toMatchObject({ Name: 'E AS' });
    expect(fake.tokensIssued - issued).toBe(1);
    expect(fake.requests.map((r) => `${r.method} ${r.status}`)).toEqual([
      'GET 401',
      'POST 200',
      'GET 200',
    ]);
  });

  it('a 401 that persists after one renewal is refused credentials (the system pauses), not a loop', async () => {
    const seeded = fake.seedCustomer({ Name: 'E AS', EmailAddress: 'e@e.no' });
    let apiCalls = 0;
    const issued = fake.tokensIssued;
    const c = makeClient({
      // Every token dies just before each API call: the renewed one too.
      fetch: (input, init) => {
        if (!/oauth\/token/i.test(input instanceof Request ? input.url : input.toString())) {
          apiCalls++;
          fake.expireTokens();
        }
        return fetch(input, init);
      },
    });
    const error = await c.getCustomer(seeded.Id as number).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).upstreamStatus).toBe(401);
    // Retryable: refused credentials pause the system; nothing goes dead for them.
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as UpstreamError).retryable).toBe(true);
    expect(apiCalls).toBe(2);
    expect(fake.tokensIssued - issued).toBe(2);
  });

  it('bad client keys are refused credentials from the token endpoint, with its answer', async () => {
    const c = makeClient({ config: { ...config(), clientKey: 'wrong' } });
    const error = await c.getCustomer(1).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(CredentialsError);
    expect((error as UpstreamError).upstreamStatus).toBe(400);
    expect((error as UpstreamError).body).toMatchObject({ error: 'invalid_client' });
    expect(apiRequests()).toHaveLength(0);
  });
});
