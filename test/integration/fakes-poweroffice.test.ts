import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { validateAgainst } from '../fakes/poweroffice-schemas.js';

// Response bodies are asserted on, not typed: any JSON value.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Body = any;

let fake: FakePowerOffice;
let token: string;

async function fetchToken(): Promise<Response> {
  return fetch(fake.tokenUrl, {
    method: 'POST',
    headers: {
      Authorization: `Basic ${Buffer.from(`${fake.applicationKey}:${fake.clientKey}`).toString('base64')}`,
      'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
      'Content-Type': 'application/x-www-form-urlencoded',
    },
    body: 'grant_type=client_credentials',
  });
}

async function call(
  method: string,
  path: string,
  body?: unknown,
  contentType = 'application/json',
): Promise<{ status: number; body: Body; headers: Headers }> {
  const res = await fetch(`${fake.baseUrl}${path}`, {
    method,
    headers: {
      Authorization: `Bearer ${token}`,
      'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
      ...(body === undefined ? {} : { 'Content-Type': contentType }),
    },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : undefined, headers: res.headers };
}

const patch = (path: string, ops: unknown) =>
  call('PATCH', path, ops, 'application/json-patch+json');

beforeEach(async () => {
  // No rate limit by default in these tests, except where it is the subject.
  fake = await startFakePowerOffice({ rateLimitPerSecond: 1000 });
  token = ((await (await fetchToken()).json()) as { access_token: string }).access_token;
});

afterEach(async () => {
  await fake.close();
});

describe('fake PowerOffice: token', () => {
  it('issues a bearer token for Basic appKey:clientKey, on any path casing', async () => {
    const res = await fetchToken();
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ token_type: 'bearer', expires_in: 1200 });
    expect(fake.tokensIssued).toBe(2);
    const lower = await fetch(`${fake.url}/oauth/token`, {
      method: 'POST',
      headers: {
        Authorization: `Basic ${Buffer.from(`${fake.applicationKey}:${fake.clientKey}`).toString('base64')}`,
        'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
        'Content-Type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials',
    });
    expect(lower.status).toBe(200);
  });

  it('answers 400 invalid_client for wrong keys and 401 without a subscription key', async () => {
    const bad = await fetch(fake.tokenUrl, {
      method: 'POST',
      headers: {
        Authorization: `Basic ${Buffer.from('a:b').toString('base64')}`,
        'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
        'Content-Type': 'application/x-www-form-urlencoded',
      },
      body: 'grant_type=client_credentials',
    });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: 'invalid_client' });
    const noSub = await fetch(fake.tokenUrl, {
      method: 'POST',
      body: 'grant_type=client_credentials',
    });
    expect(noSub.status).toBe(401);
    expect(fake.tokensIssued).toBe(1);
  });

  it('rejects API calls without a token, after expireTokens() and after expiry', async () => {
    expect((await call('GET', '/Customers')).status).toBe(204);
    const noBearer = await fetch(`${fake.baseUrl}/Customers`, {
      headers: { 'Ocp-Apim-Subscription-Key': fake.subscriptionKey },
    });
    expect(noBearer.status).toBe(401);
    fake.expireTokens();
    expect((await call('GET', '/Customers')).status).toBe(401);

    await fake.close();
    let now = 0;
    fake = await startFakePowerOffice({
      tokenTtlSeconds: 0.2,
      rateLimitPerSecond: 1000,
      clock: () => now,
    });
    const res = (await (await fetchToken()).json()) as { access_token: string; expires_in: number };
    token = res.access_token;
    expect(res.expires_in).toBe(0.2);
    now = 199;
    expect((await call('GET', '/Employees')).status).toBe(204);
    now = 200;
    const expired = await call('GET', '/Employees');
    expect(expired.status).toBe(401);
    expect(expired.headers.get('www-authenticate')).toMatch(/invalid_token/);
  });
});

describe('fake PowerOffice: lists', () => {
  it('returns a bare array, 204 with an empty body when nothing matches, and pages 1-based', async () => {
    for (let i = 0; i < 5; i += 1) fake.seedEmployee({ FirstName: `F${i}`, LastName: 'L' });
    const all = await call('GET', '/Employees');
    expect(all.status).toBe(200);
    expect(Array.isArray(all.body)).toBe(true);
    expect(all.body.map((e: { Number: number }) => e.Number)).toEqual([1, 2, 3, 4, 5]);
    const page2 = await call('GET', '/Employees?PageNumber=2&PageSize=2');
    expect(page2.body.map((e: { FirstName: string }) => e.FirstName)).toEqual(['F2', 'F3']);
    const empty = await fetch(`${fake.baseUrl}/Employees?pageNumber=4&pageSize=2`, {
      headers: {
        Authorization: `Bearer ${token}`,
        'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
      },
    });
    expect(empty.status).toBe(204);
    expect(await empty.text()).toBe('');
  });

  it('rejects PageSize above 20000 and OData options with 400 ProblemDetails', async () => {
    expect((await call('GET', '/Customers?PageSize=20000')).status).toBe(204);
    const big = await call('GET', '/Customers?PageSize=20001');
    expect(big.status).toBe(400);
    expect(big.body.detail).toMatch(/PageSize/);
    for (const option of ['$top=1', '$skip=1', '$filter=Id%20eq%201']) {
      const res = await call('GET', `/Customers?${option}`);
      expect(res.status).toBe(400);
      expect(res.body).toMatchObject({ status: 400, title: expect.any(String) });
    }
  });

  it('filters lastChangedDateTimeOffsetGreaterThan strictly, in ISO and the spec format', async () => {
    fake.seedCustomer({
      Name: 'Old',
      LastChangedDateTimeOffset: '2021-09-25T08:03:00.123456+00:00',
    });
    fake.seedCustomer({
      Name: 'New',
      LastChangedDateTimeOffset: '2021-09-25T08:03:00.123457+00:00',
    });
    const spec = encodeURIComponent('2021-09-25 08:03:00.123456+00:00');
    const res = await call('GET', `/Customers?lastChangedDateTimeOffsetGreaterThan=${spec}`);
    expect(res.body.map((c: { Name: string }) => c.Name)).toEqual(['New']);
    const iso = await call(
      'GET',
      '/Customers?lastChangedDateTimeOffsetGreaterThan=2021-09-25T08:00:00Z',
    );
    expect(iso.body).toHaveLength(2);
    // An unencoded '+' arrives as a space: the real API cannot parse that either.
    const raw = await call(
      'GET',
      '/Customers?lastChangedDateTimeOffsetGreaterThan=2021-09-25 08:03:00+00:00',
    );
    expect(raw.status).toBe(400);
  });

  it('filters on externalImportReference, customerNos/employeeNos, contactIds and externalCodes', async () => {
    const a = fake.seedCustomer({ Name: 'A', ExternalImportReference: 'tb-1' });
    const b = fake.seedCustomer({ Name: 'B', Number: 20000 });
    fake.seedEmployee({
      FirstName: 'E',
      LastName: 'One',
      ExternalImportReference: 'tb-ansatt-1',
      Number: 100,
    });
    fake.seedContactPerson(a.Id as number, { FirstName: 'C', LastName: 'A', ExternalCode: 'cp-1' });
    fake.seedContactPerson(b.Id as number, { FirstName: 'C', LastName: 'B', ExternalCode: 'cp-2' });
    expect((await call('GET', '/Customers?externalImportReference=tb-1')).body).toMatchObject([
      { Name: 'A' },
    ]);
    expect((await call('GET', '/Customers?customerNos=19000-')).body).toMatchObject([
      { Name: 'B' },
    ]);
    expect(
      (await call('GET', '/Employees?externalImportReference=tb-ansatt-1')).body,
    ).toMatchObject([{ Number: 100 }]);
    expect((await call('GET', '/Employees?employeeNos=1-99')).status).toBe(204);
    expect((await call('GET', `/ContactPersons?contactIds=${String(b.Id)}`)).body).toMatchObject([
      { LastName: 'B' },
    ]);
    expect((await call('GET', '/ContactPersons?externalCodes=cp-1,cp-9')).body).toMatchObject([
      { LastName: 'A' },
    ]);
    expect((await call('GET', '/ContactPersons?contactIds=1-2')).status).toBe(400);
  });
});

describe('fake PowerOffice: get, create, patch', () => {
  it('gets one by id, and answers 404 ProblemDetails for an unknown id', async () => {
    const c = fake.seedCustomer({ Name: 'Ford' });
    expect((await call('GET', `/Customers/${String(c.Id)}`)).body).toMatchObject({ Name: 'Ford' });
    const missing = await call('GET', '/Customers/12345');
    expect(missing.status).toBe(404);
    expect(missing.body).toMatchObject({
      title: 'Object(s) not found',
      detail: 'Customer with id = 12345 not found.',
    });
    const cp = fake.seedContactPerson(c.Id as number, { FirstName: 'A', LastName: 'B' });
    expect((await call('GET', `/ContactPersons/${String(c.Id)}/${String(cp.Id)}`)).status).toBe(
      200,
    );
    expect((await call('GET', `/ContactPersons/1/${String(cp.Id)}`)).status).toBe(404);
  });

  it('creates with 201 and a full Dto that satisfies the spec schema', async () => {
    const res = await call('POST', '/Customers', {
      Name: 'Eksempel AS',
      EmailAddress: 'post@eksempel.no',
      ExternalImportReference: 'tb-10001',
      MailAddress: { AddressLine1: 'Storgata 1', ZipCode: '0150', City: 'OSLO' },
    });
    expect(res.status).toBe(201);
    expect(res.body).toMatchObject({
      Name: 'Eksempel AS',
      Number: 10000,
      MailAddress: { City: 'OSLO', CountryCode: 'NO' },
    });
    expect(res.body.LastChangedDateTimeOffset).toMatch(
      /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}\+00:00$/,
    );
    expect(validateAgainst('CustomerDto', res.body)).toEqual({});
    const employee = await call('POST', '/Employees', {
      FirstName: 'Kari',
      LastName: 'N',
      Number: 42,
      NationalIdNumber: '01010112377',
    });
    expect(employee.body).toMatchObject({ Number: 42, NationalIdNumber: 'hidden' });
    expect(validateAgainst('EmployeeDto', employee.body)).toEqual({});
    expect(fake.getEmployee(employee.body.Id)!.NationalIdNumber).toBe('01010112377');
    const cp = await call('POST', `/ContactPersons/${String(res.body.Id)}`, {
      FirstName: 'A',
      LastName: 'B',
      ExternalCode: 'x1',
    });
    expect(cp.status).toBe(201);
    expect(cp.body.ContactId).toBe(res.body.Id);
    expect(validateAgainst('ContactPersonDto', cp.body)).toEqual({});
  });

  it('rejects POST bodies the spec rejects, naming the field', async () => {
    const long = await call('POST', '/Customers', {
      Name: 'x',
      ExternalImportReference: 'r'.repeat(51),
    });
    expect(long.status).toBe(400);
    expect(long.body.errors).toHaveProperty('ExternalImportReference');
    const readOnly = await call('POST', '/Customers', { Name: 'x', Id: 5 });
    expect(readOnly.body.errors).toHaveProperty('Id');
    const wrongType = await call('POST', '/Employees', {
      FirstName: 'a',
      LastName: 'b',
      Number: '7',
    });
    expect(wrongType.body.errors).toHaveProperty('Number');
    const missing = await call('POST', '/Employees', { FirstName: 'a' });
    expect(missing.body.errors).toHaveProperty('LastName');
    const noZip = await call('POST', '/Customers', { Name: 'x', MailAddress: { City: 'Oslo' } });
    expect(noZip.body.errors).toHaveProperty(['MailAddress.ZipCode']);
    const title = await call(
      'POST',
      `/ContactPersons/${String(fake.seedCustomer({ Name: 'P' }).Id)}`,
      { FirstName: 'a', LastName: 'b', JobTitle: 'CEO' },
    );
    expect(title.body.errors).toHaveProperty('JobTitle');
    expect(
      (await call('POST', '/Customers', { EmailAddress: 'a@b.no' })).body.errors,
    ).toHaveProperty('Name');
    expect(fake.customers.size).toBe(1);
  });

  it('rejects a duplicate ExternalImportReference / ExternalCode like the spec example', async () => {
    const c = fake.seedCustomer({ Name: 'A', ExternalImportReference: 'ABC123' });
    const dup = await call('POST', '/Customers', { Name: 'B', ExternalImportReference: 'ABC123' });
    expect(dup.status).toBe(400);
    expect(dup.body.detail).toBe(
      `ExternalImportReference is already in use. 'ABC123' is used on (contact) Id = ${String(c.Id)}.`,
    );
    // Unique among customers only: an employee may use the same reference.
    expect(
      (
        await call('POST', '/Employees', {
          FirstName: 'a',
          LastName: 'b',
          ExternalImportReference: 'ABC123',
        })
      ).status,
    ).toBe(201);
    fake.seedContactPerson(c.Id as number, { FirstName: 'a', LastName: 'b', ExternalCode: 'X' });
    expect(
      (
        await call('POST', `/ContactPersons/${String(c.Id)}`, {
          FirstName: 'c',
          LastName: 'd',
          ExternalCode: 'X',
        })
      ).status,
    ).toBe(400);
  });

  it('applies JSON Patch (replace/add/remove/test, nested, any casing) and bumps LastChanged', async () => {
    const c = fake.seedCustomer({
      Name: 'Old',
      PhoneNumber: '1',
      ContactGroupIds: [1],
      MailAddress: { City: 'Oslo', ZipCode: '0150' },
    });
    const res = await patch(`/Customers/${String(c.Id)}`, [
      { op: 'test', path: '/name', value: 'Old' },
      { op: 'replace', path: '/Name', value: 'New' },
      { op: 'replace', path: '/mailAddress/city', value: 'Bergen' },
      { op: 'remove', path: '/PhoneNumber' },
      { op: 'add', path: '/ContactGroupIds/-', value: 2 },
      { op: 'add', path: '/EmailAddress', value: 'a@b.no' },
    ]);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      Name: 'New',
      PhoneNumber: null,
      EmailAddress: 'a@b.no',
      ContactGroupIds: [1, 2],
    });
    expect(res.body.MailAddress).toMatchObject({ City: 'Bergen', ZipCode: '0150', Id: c.Id });
    expect(res.body.LastChangedDateTimeOffset > (c.LastChangedDateTimeOffset as string)).toBe(true);
    expect(fake.requests.at(-1)!.headers['content-type']).toBe('application/json-patch+json');
  });

  it('rejects PATCH with the wrong content type (415), a failed test, unknown or read-only paths, invalid results', async () => {
    const e = fake.seedEmployee({ FirstName: 'A', LastName: 'B' });
    const path = `/Employees/${String(e.Id)}`;
    expect(
      (await call('PATCH', path, [{ op: 'replace', path: '/JobTitle', value: 'x' }])).status,
    ).toBe(415);
    const failed = await patch(path, [{ op: 'test', path: '/FirstName', value: 'Z' }]);
    expect(failed.status).toBe(400);
    expect(failed.body.detail).toMatch(/not equal to the test value/);
    const unknown = await patch(path, [{ op: 'replace', path: '/Title', value: 'x' }]);
    expect(unknown.body.detail).toMatch(
      /EmployeePatchDto: The target location specified by path segment 'Title' was not found/,
    );
    expect((await patch(path, [{ op: 'replace', path: '/Id', value: 1 }])).status).toBe(400);
    const long = await patch(path, [
      { op: 'replace', path: '/ExternalImportReference', value: 'x'.repeat(51) },
    ]);
    expect(long.body.errors).toHaveProperty('ExternalImportReference');
    expect((await patch(path, [{ op: 'replace', path: '/FirstName', value: '' }])).status).toBe(
      400,
    );
    expect((await patch('/Employees/1', [])).status).toBe(404);
    expect(fake.getEmployee(e.Id as number)).toMatchObject({
      FirstName: 'A',
      ExternalImportReference: null,
    });
  });

  it('editX simulates a UI edit that a lastChanged poll then sees', async () => {
    const a = fake.seedEmployee({ FirstName: 'A', LastName: 'A' });
    fake.seedEmployee({ FirstName: 'B', LastName: 'B' });
    const cursor = encodeURIComponent(a.LastChangedDateTimeOffset as string);
    fake.editEmployee(a.Id as number, { JobTitle: 'Boss' });
    const res = await call('GET', `/Employees?lastChangedDateTimeOffsetGreaterThan=${cursor}`);
    expect(res.body.map((e: { FirstName: string }) => e.FirstName)).toEqual(['A', 'B']);
    expect(res.body[0].JobTitle).toBe('Boss');
  });
});

describe('fake PowerOffice: what the API refuses or does not report (docs/vendor-apis.md)', () => {
  it('an address-only edit (UI or PATCH) does not move LastChangedDateTimeOffset, so a lastChanged poll misses it', async () => {
    const e = fake.seedEmployee({ FirstName: 'A', LastName: 'A', MailAddress: { City: 'Oslo' } });
    const c = fake.seedCustomer({ Name: 'C AS', MailAddress: { City: 'Oslo' } });
    const cursor = encodeURIComponent(fake.timestamp());
    const poll = async (path: string) =>
      (await call('GET', `${path}?lastChangedDateTimeOffsetGreaterThan=${cursor}`)).status;

    const edited = fake.editEmployee(e.Id as number, { MailAddress: { City: 'Bergen' } });
    expect(edited.LastChangedDateTimeOffset).toBe(e.LastChangedDateTimeOffset);
    expect((edited.MailAddress as Body).City).toBe('Bergen');
    const patched = await patch(`/Customers/${String(c.Id)}`, [
      { op: 'replace', path: '/MailAddress/City', value: 'Bergen' },
    ]);
    expect(patched.status).toBe(200);
    expect(patched.body.MailAddress.City).toBe('Bergen');
    expect(patched.body.LastChangedDateTimeOffset).toBe(c.LastChangedDateTimeOffset);
    // The address's own timestamp moves; the filter does not look at it.
    expect(patched.body.MailAddress.LastChangedDateTimeOffset > cursor).toBe(true);
    expect(await poll('/Employees')).toBe(204);
    expect(await poll('/Customers')).toBe(204);
    // Any other field with it: the record's timestamp moves.
    fake.editEmployee(e.Id as number, { JobTitle: 'Sjef', MailAddress: { City: 'Oslo' } });
    expect(await poll('/Employees')).toBe(200);
  });

  it('refuses to archive a customer or employee with ledger balances (400), and a DELETE of one (409)', async () => {
    const e = fake.seedEmployee({ FirstName: 'A', LastName: 'A' });
    const c = fake.seedCustomer({ Name: 'C AS' });
    fake.setLedgerBalance(e.Id as number, 1250);
    fake.setLedgerBalance(c.Id as number, -10);
    for (const path of [`/Employees/${String(e.Id)}`, `/Customers/${String(c.Id)}`]) {
      const refused = await patch(path, [{ op: 'replace', path: '/IsArchived', value: true }]);
      expect(refused.status).toBe(400);
      expect(refused.body.detail).toMatch(
        /IsArchived cannot be set if the contact has ledger balances/,
      );
      expect((await call('DELETE', path)).status).toBe(409);
    }
    expect(fake.getEmployee(e.Id as number)!.IsArchived).toBe(false);
    fake.setLedgerBalance(e.Id as number, 0);
    const archived = await patch(`/Employees/${String(e.Id)}`, [
      { op: 'replace', path: '/IsArchived', value: true },
    ]);
    expect(archived.status).toBe(200);
    expect(archived.body.IsArchived).toBe(true);
    expect((await call('DELETE', `/Employees/${String(e.Id)}`)).status).toBe(200);
    expect(fake.getEmployee(e.Id as number)).toBeUndefined();
    expect((await call('GET', `/Employees/${String(e.Id)}`)).status).toBe(404);
  });

  it('numbers a new record after the highest Number stored: seeded, created or patched, also once deleted', async () => {
    fake.seedCustomer({ Name: 'A' });
    fake.seedCustomer({ Name: 'B', Number: 20000 });
    expect(fake.seedCustomer({ Name: 'C' }).Number).toBe(20001);
    const created = await call('POST', '/Customers', { Name: 'D', EmailAddress: 'd@x.no' });
    expect(created.body.Number).toBe(20002);
    const renumbered = await patch(`/Customers/${String(created.body.Id)}`, [
      { op: 'replace', path: '/Number', value: 30000 },
    ]);
    expect(renumbered.status).toBe(200);
    fake.editCustomer(created.body.Id as number, { Number: 40000 });
    const e = fake.seedCustomer({ Name: 'E' });
    expect(e.Number).toBe(40001);
    // A number series does not hand a deleted record's number out again.
    expect((await call('DELETE', `/Customers/${String(e.Id)}`)).status).toBe(200);
    expect(fake.seedCustomer({ Name: 'F' }).Number).toBe(40002);
    // Each series on its own: employees start at 1.
    expect(fake.seedEmployee({ FirstName: 'A', LastName: 'B' }).Number).toBe(1);
  });

  it('refuses employee numbers outside the ledger series and national ids that fail the syntax check', async () => {
    fake.employeeNumberSeries = { from: 1, to: 999 };
    const outside = await call('POST', '/Employees', {
      FirstName: 'A',
      LastName: 'B',
      Number: 1000,
    });
    expect(outside.status).toBe(400);
    expect(outside.body.errors.Number[0]).toMatch(/outside the employee ledger's number series/);
    const inside = await call('POST', '/Employees', { FirstName: 'A', LastName: 'B', Number: 999 });
    expect(inside.status).toBe(201);
    const renumbered = await patch(`/Employees/${String(inside.body.Id)}`, [
      { op: 'replace', path: '/Number', value: 5000 },
    ]);
    expect(renumbered.status).toBe(400);

    for (const bad of ['01010112345', '0101011237', '0101011237x']) {
      const res = await call('POST', '/Employees', {
        FirstName: 'A',
        LastName: 'B',
        NationalIdNumber: bad,
      });
      expect(res.status, bad).toBe(400);
      expect(res.body.errors.NationalIdNumber[0]).toMatch(
        /not a valid Norwegian national identity number/,
      );
    }
    const badPatch = await patch(`/Employees/${String(inside.body.Id)}`, [
      { op: 'replace', path: '/NationalIdNumber', value: '31129954381' },
    ]);
    expect(badPatch.status).toBe(400);
    const good = await patch(`/Employees/${String(inside.body.Id)}`, [
      { op: 'replace', path: '/NationalIdNumber', value: '31129954380' },
    ]);
    expect(good.status).toBe(200);
    expect(fake.getEmployee(inside.body.Id)!.NationalIdNumber).toBe('31129954380');
  });

  it('DELETE removes a contact person (200) and answers 404 for an unknown one', async () => {
    const c = fake.seedCustomer({ Name: 'C AS' });
    const cp = fake.seedContactPerson(c.Id as number, { FirstName: 'A', LastName: 'B' });
    const path = `/ContactPersons/${String(c.Id)}/${String(cp.Id)}`;
    expect((await call('DELETE', path)).status).toBe(200);
    expect((await call('DELETE', path)).status).toBe(404);
    expect(fake.contactPersons.size).toBe(0);
  });
});

describe('fake PowerOffice: rate limit', () => {
  it('allows 10 requests per sliding second per subscription key, then 429 with Retry-After: 1', async () => {
    await fake.close();
    // The fake's clock stands still unless moved: which requests share a second is exact.
    let now = 10_000;
    fake = await startFakePowerOffice({ clock: () => now });
    token = ((await (await fetchToken()).json()) as { access_token: string }).access_token;
    now += 500; // the token request, half a second earlier, still counts
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await call('GET', '/Customers')).status);
    expect(statuses).toEqual([...Array<number>(9).fill(204), 429]);
    const limited = await call('GET', '/Customers');
    expect(limited.status).toBe(429);
    expect(limited.headers.get('retry-after')).toBe('1');
    expect(limited.body).toEqual({
      statusCode: '429',
      message: 'Rate limit is exceeded. Try again in 1 seconds.',
    });
    now += 500; // the token request leaves the window: one slot frees
    expect((await call('GET', '/Customers')).status).toBe(204);
    expect((await call('GET', '/Customers')).status).toBe(429);
    now += 1_000;
    expect((await call('GET', '/Customers')).status).toBe(204);
    // A 429 is not counted: the window holds 9 requests after one second has passed.
    const other = await call('GET', '/Employees');
    expect(other.status).toBe(204);
  });
});

describe('fake API faults', () => {
  it("'429' and '500' faults hit the next matching requests", async () => {
    fake.faults.inject(2, '429', {
      retryAfterSeconds: 3,
      match: (r) => r.path.endsWith('/Employees'),
    });
    fake.faults.inject(1, '500');
    const a = await call('GET', '/Customers');
    const b = await call('GET', '/Employees');
    const c = await call('GET', '/Employees');
    const d = await call('GET', '/Employees');
    expect([a.status, b.status, c.status, d.status]).toEqual([500, 429, 429, 204]);
    expect(b.headers.get('retry-after')).toBe('3');
    expect(fake.faults.remaining).toBe(0);
  });

  it("'drop' destroys the socket, and with process: true the write still happens", async () => {
    fake.faults.inject(1, 'drop', { process: true });
    await expect(call('POST', '/Customers', { Name: 'Lost answer' })).rejects.toThrow();
    expect([...fake.customers.values()].map((c) => c.Name)).toEqual(['Lost answer']);
    expect(fake.requests.at(-1)!.status).toBe(0);
  });

  it("'timeout' never answers until the client aborts, and close() ends the socket", async () => {
    fake.faults.inject(2, 'timeout');
    const aborted = fetch(`${fake.baseUrl}/Customers`, {
      headers: {
        Authorization: `Bearer ${token}`,
        'Ocp-Apim-Subscription-Key': fake.subscriptionKey,
      },
      signal: AbortSignal.timeout(100),
    });
    await expect(aborted).rejects.toThrow(/aborted|timeout/i);
    const hanging = call('GET', '/Customers');
    await vi.waitFor(() => expect(fake.requests).toHaveLength(2));
    // Unanswered until close(): the test would time out if close() waited for the client.
    await fake.close();
    await expect(hanging).rejects.toThrow();
  });

  it("'slow' handles the request at once and answers after delayMs", async () => {
    fake.faults.inject(1, 'slow', { delayMs: 60_000 });
    let answered = false;
    const slow = call('POST', '/Customers', { Name: 'Slow AS' }).then((r) => {
      answered = true;
      return r;
    });
    // The write took effect on arrival; later requests are answered while the slow one waits.
    await vi.waitFor(() => expect(fake.customers.size).toBe(1));
    expect((await call('GET', '/Customers')).status).toBe(200);
    expect(answered).toBe(false);
    expect(fake.requests.slice(-2).map((r) => r.status)).toEqual([0, 200]);
    await fake.close();
    await expect(slow).rejects.toThrow();
  });

  it('random faults are reproducible for a seed, and clear() stops them', async () => {
    const run = async () => {
      fake.clearRequests();
      fake.faults.random({ probability: 0.5, kinds: ['500', '503'], seed: 42 });
      for (let i = 0; i < 8; i += 1) await call('GET', '/Customers');
      fake.faults.clear();
      return fake.requests.map((r) => r.status);
    };
    const first = await run();
    expect(await run()).toEqual(first);
    expect(first.some((s) => s >= 500)).toBe(true);
    expect(first.some((s) => s === 204)).toBe(true);
    expect((await call('GET', '/Customers')).status).toBe(204);
  });
});

describe('fake PowerOffice: privileges', () => {
  it('refuses a request to an area the integration holds no privilege for with 403, until it is granted', async () => {
    const customer = fake.seedCustomer({ Name: 'Priv AS', EmailAddress: 'priv@as.no' });
    const id = customer.Id as number;
    const granted = fake.privileges;

    fake.privileges = ['Employee_Full'];
    const read = await call('GET', `/Customers/${id}`);
    expect(read.status).toBe(403);
    expect(read.headers.get('content-type')).toMatch(/json/);
    expect(read.body).toMatchObject({ status: 403 });
    expect((await call('GET', '/Customers')).status).toBe(403);
    expect(
      (await patch(`/Customers/${id}`, [{ op: 'replace', path: '/Name', value: 'X' }])).status,
    ).toBe(403);
    expect(fake.getCustomer(id)!.Name).toBe('Priv AS');
    // Another area, and the privilege list itself, stay readable.
    expect((await call('GET', '/Employees')).status).not.toBe(403);
    expect((await call('GET', '/ClientIntegrationInformation')).body.ValidPrivileges).toEqual([
      'Employee_Full',
    ]);

    // A read-only privilege reads, but does not write.
    fake.privileges = ['Customer_Read'];
    expect((await call('GET', `/Customers/${id}`)).status).toBe(200);
    expect(
      (await patch(`/Customers/${id}`, [{ op: 'replace', path: '/Name', value: 'X' }])).status,
    ).toBe(403);

    // Contact persons come under the customer privileges too.
    fake.privileges = ['Customer_Full'];
    expect((await call('GET', '/ContactPersons')).status).not.toBe(403);

    fake.privileges = granted;
    expect((await call('GET', `/Customers/${id}`)).status).toBe(200);
  });
});
