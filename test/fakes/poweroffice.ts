import { randomBytes, randomUUID } from 'node:crypto';
import {
  FakeHttpServer,
  jsonResponse,
  type FakeRequest,
  type FakeResponse,
  type FakeRoute,
} from './fake-server.js';
import { applyJsonPatch, JsonPatchError } from './json-patch.js';
import {
  schemaProperties,
  validateAgainst,
  type PowerOfficeSchemaName,
} from './poweroffice-schemas.js';

// A fake PowerOffice Go v2 API (docs/vendor-apis.md): OAuth client-credentials
// tokens, Customers, Employees and ContactPersons, JSON Patch, 204 on empty lists, and
// APIM's 10 requests per second per subscription key. Bodies are validated against the
// spec's schemas (test/fixtures/poweroffice/). See README.md for the unconfirmed choices.

type PoRecord = Record<string, unknown>;

export interface FakePowerOfficeOptions {
  applicationKey?: string;
  clientKey?: string;
  subscriptionKey?: string;
  /** expires_in of issued tokens (default 1200, as observed on demo: docs/vendor-apis.md). */
  tokenTtlSeconds?: number;
  /** Default 10: "10 requests per second, for each subscription key" (docs/vendor-apis.md). */
  rateLimitPerSecond?: number;
  /** Read NationalIdNumber / Gender back as stored, as with the special privilege. Default false. */
  revealHidden?: boolean;
  /**
   * The employee ledger's number series: an Employee Number outside it is refused
   * (docs/vendor-apis.md). Default 1–99 999.
   */
  employeeNumberSeries?: { from: number; to: number };
  /** Milliseconds for token expiry and request arrival times (default performance.now). */
  clock?: () => number;
  /**
   * ValidPrivileges of GET /ClientIntegrationInformation (docs/vendor-apis.md: it lists the
   * integration's privileges). Default: full access to every type the service syncs.
   */
  privileges?: string[];
}

/** Privilege areas per top-level path: any one of them lets a request through. */
const PRIVILEGE_AREAS: Record<string, readonly string[] | undefined> = {
  customers: ['Customer'],
  employees: ['Employee'],
  contactpersons: ['ContactPerson', 'Customer', 'Supplier'],
  projects: ['Project'],
};

export const POWEROFFICE_DEFAULT_PAGE_SIZE = 5000;
export const POWEROFFICE_MAX_PAGE_SIZE = 20000;

type Kind = 'Customer' | 'Employee' | 'ContactPerson' | 'Project';

/**
 * The syntax check of a Norwegian national id (fødselsnummer / D-number): 11 digits whose
 * last two are the modulus 11 check digits. The date part is not checked, so synthetic test
 * numbers pass as they do in the real API's test environments.
 */
export function isNationalIdSyntaxValid(value: string): boolean {
  if (!/^\d{11}$/.test(value)) return false;
  const d = [...value].map(Number);
  const check = (weights: number[]) => {
    const sum = weights.reduce((acc, w, i) => acc + w * d[i]!, 0);
    const k = 11 - (sum % 11);
    return k === 11 ? 0 : k;
  };
  const k1 = check([3, 7, 6, 1, 8, 9, 4, 5, 2]);
  const k2 = check([5, 4, 3, 2, 7, 6, 5, 4, 3, 2]);
  return k1 !== 10 && k2 !== 10 && k1 === d[9] && k2 === d[10];
}

interface Resource {
  kind: Kind;
  store: Map<number, PoRecord>;
  post: PowerOfficeSchemaName;
  patch: PowerOfficeSchemaName;
  dto: PowerOfficeSchemaName;
  /** The address sub-entity's schema; projects have none. */
  address: PowerOfficeSchemaName | undefined;
  /** The property holding the unique external key, and how it is named in messages. */
  uniqueKey: 'ExternalImportReference' | 'ExternalCode' | 'Code';
  createdField: string;
}

class ProblemError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly detail: string,
    readonly errors?: Record<string, string[]>,
  ) {
    super(detail);
  }
}

// The spec's examples use lower-case ProblemDetails keys (`title`, `detail`); ASP.NET also
// writes `type` and `status`. Content type per the spec: application/json.
function problem(
  status: number,
  title: string,
  detail: string,
  errors?: Record<string, string[]>,
): FakeResponse {
  const type =
    status === 404
      ? 'https://tools.ietf.org/html/rfc7231#section-6.5.4'
      : status === 415
        ? 'https://tools.ietf.org/html/rfc7231#section-6.5.13'
        : status >= 500
          ? 'https://tools.ietf.org/html/rfc7231#section-6.6.1'
          : 'https://tools.ietf.org/html/rfc7231#section-6.5.1';
  return jsonResponse(status, { type, title, status, detail, ...(errors ? { errors } : {}) });
}

const TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,7}))?)?)?(Z|[+-]\d{2}:?\d{2})?$/i;

/**
 * A timestamp as 100 ns ticks since the epoch (.NET precision), or undefined when it does not
 * parse. Accepts ISO 8601 and the spec's `2021-09-25 08:03:00.123456+00:00`. A `+` that was
 * not URL-encoded arrives as a space and is rejected, as ASP.NET would (docs/vendor-apis.md).
 */
export function parsePowerOfficeTimestamp(text: string): bigint | undefined {
  const m = TIMESTAMP.exec(text.trim());
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', fraction = '', zone = 'Z'] = m;
  let offsetMinutes = 0;
  if (zone.toUpperCase() !== 'Z') {
    const digits = zone.replace(':', '');
    offsetMinutes =
      (zone.startsWith('-') ? -1 : 1) *
      (Number(digits.slice(1, 3)) * 60 + Number(digits.slice(3, 5)));
  }
  const ms =
    Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s)) -
    offsetMinutes * 60_000;
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 10_000n + BigInt(fraction.padEnd(7, '0'));
}

function formatTicks(ticks: bigint): string {
  const iso = new Date(Number(ticks / 10_000n)).toISOString();
  const fraction = String(ticks % 10_000_000n).padStart(7, '0');
  return `${iso.slice(0, 19)}.${fraction}+00:00`;
}

function lowerKeys(query: Record<string, string>): Record<string, string> {
  return Object.fromEntries(
    Object.entries(query).map(([name, value]) => [name.toLowerCase(), value]),
  );
}

/** `"10000-11000, 12000, 13000-"` (the spec's customerNos syntax) → a predicate. */
function numberRanges(text: string, parameter: string): (n: unknown) => boolean {
  const ranges = text.split(',').map((part) => {
    const m = /^\s*(\d+)?\s*(-)?\s*(\d+)?\s*$/.exec(part);
    if (!m || (m[1] === undefined && m[3] === undefined)) {
      throw new ProblemError(
        400,
        'Unable to cast object(s)',
        `${parameter} contains an invalid number or range: '${part.trim()}'.`,
      );
    }
    const low = m[1] === undefined ? -Infinity : Number(m[1]);
    const high = m[2] === undefined ? low : m[3] === undefined ? Infinity : Number(m[3]);
    return [low, high] as const;
  });
  return (n) => typeof n === 'number' && ranges.some(([low, high]) => n >= low && n <= high);
}

function idList(text: string, parameter: string): number[] {
  return text.split(',').map((part) => {
    const value = part.trim();
    if (!/^\d+$/.test(value)) {
      throw new ProblemError(
        400,
        'Unable to cast object(s)',
        `${parameter} contains negative numbers and/or range of numbers. '-' is not allowed, only comma ',' separated single positive numbers are allowed.`,
      );
    }
    return Number(value);
  });
}

const JSON_TYPES = new Set(['application/json', 'text/json', 'application/json-patch+json']);

function mediaType(req: FakeRequest): string {
  return (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
}

export class FakePowerOffice extends FakeHttpServer {
  readonly applicationKey: string;
  readonly clientKey: string;
  readonly subscriptionKey: string;
  tokenTtlSeconds: number;
  revealHidden: boolean;
  readonly employees = new Map<number, PoRecord>();
  readonly customers = new Map<number, PoRecord>();
  readonly contactPersons = new Map<number, PoRecord>();
  readonly projects = new Map<number, PoRecord>();
  tokensIssued = 0;
  employeeNumberSeries: { from: number; to: number };
  /** Open ledger balance per contact Id (customers and employees); see setLedgerBalance. */
  private readonly ledgerBalances = new Map<number, number>();
  privileges: string[];
  private readonly tokens = new Map<string, number>();
  private nextId = 100_001;
  /** The highest Number ever stored per store (customers, employees): new ones continue after it. */
  private readonly highestNumber = new Map<Map<number, PoRecord>, number>();
  private lastTicks = 0n;
  private readonly resources: Record<Kind, Resource>;

  constructor(opts: FakePowerOfficeOptions = {}) {
    const routes: FakeRoute[] = [];
    super({
      routes,
      clock: opts.clock,
      rateLimitPerSecond: opts.rateLimitPerSecond ?? 10,
      rateLimitKey: (req) => subscriptionKeyOf(req) ?? '',
      gateway: (req) => this.checkSubscription(req),
      // The gateway's body, documented for /Token (docs/vendor-apis.md), used everywhere.
      tooManyRequests: (seconds) =>
        jsonResponse(
          429,
          {
            statusCode: '429',
            message: `Rate limit is exceeded. Try again in ${seconds} seconds.`,
          },
          { 'Retry-After': String(seconds) },
        ),
      serverError: (status) =>
        status === 500
          ? problem(
              500,
              'An error occurred while processing your request.',
              'Internal server error.',
            )
          : jsonResponse(503, { statusCode: '503', message: 'Service Unavailable' }),
      notFound: (req) =>
        jsonResponse(404, {
          statusCode: 404,
          message: `Resource not found: ${req.method} ${req.path}`,
        }),
      methodNotAllowed: (req) =>
        problem(405, 'Method Not Allowed', `${req.method} is not allowed on ${req.path}.`),
    });
    this.applicationKey = opts.applicationKey ?? randomUUID();
    this.clientKey = opts.clientKey ?? randomUUID();
    this.subscriptionKey = opts.subscriptionKey ?? randomUUID().replaceAll('-', '');
    this.tokenTtlSeconds = opts.tokenTtlSeconds ?? 1200;
    this.revealHidden = opts.revealHidden ?? false;
    this.employeeNumberSeries = opts.employeeNumberSeries ?? { from: 1, to: 99_999 };
    this.privileges = opts.privileges ?? [
      'Customer_Full',
      'Employee_Full',
      'ContactPerson_Full',
      'Project_Full',
    ];
    this.resources = {
      Customer: {
        kind: 'Customer',
        store: this.customers,
        post: 'CustomerPostDto',
        patch: 'CustomerPatchDto',
        dto: 'CustomerDto',
        address: 'ContactAddressDto',
        uniqueKey: 'ExternalImportReference',
        createdField: 'CustomerCreatedDateTimeOffset',
      },
      Employee: {
        kind: 'Employee',
        store: this.employees,
        post: 'EmployeePostDto',
        patch: 'EmployeePatchDto',
        dto: 'EmployeeDto',
        address: 'ContactAddressDto',
        uniqueKey: 'ExternalImportReference',
        createdField: 'EmployeeCreatedDateTimeOffset',
      },
      ContactPerson: {
        kind: 'ContactPerson',
        store: this.contactPersons,
        post: 'ContactPersonPostDto',
        patch: 'ContactPersonPatchDto',
        dto: 'ContactPersonDto',
        address: 'AddressDto',
        uniqueKey: 'ExternalCode',
        createdField: 'CreatedDateTimeOffset',
      },
      Project: {
        kind: 'Project',
        store: this.projects,
        post: 'ProjectPostDto',
        patch: 'ProjectPatchDto',
        dto: 'ProjectDto',
        address: undefined,
        uniqueKey: 'Code',
        createdField: 'CreatedDateTimeOffset',
      },
    };
    const v2 = '^/(?:demo/)?v2';
    const route = (
      method: string,
      path: string,
      handle: (req: FakeRequest) => FakeResponse,
    ): FakeRoute => ({
      method,
      pattern: new RegExp(`${v2}${path}/?$`, 'i'),
      handle: (req) => this.api(req, handle),
    });
    const { Customer, Employee, ContactPerson, Project } = this.resources;
    routes.push(
      // docs/vendor-apis.md: /OAuth/Token, /oauth/token … all used by working clients.
      {
        method: 'POST',
        pattern: /^\/(?:demo\/)?oauth\/token\/?$/i,
        handle: (req) => this.issueToken(req),
      },
      // ClientIntegrationInformationDto of the v2 spec.
      route('GET', '/ClientIntegrationInformation', () =>
        jsonResponse(200, {
          ClientId: 'fake-client',
          ClientName: 'Fake Client AS',
          ActiveClientSubscriptions: ['Accounting'],
          ValidPrivileges: this.privileges,
          InvalidPrivileges: [],
        }),
      ),
      route('GET', '/Customers', (req) => this.list(Customer, req)),
      route('POST', '/Customers', (req) => this.create(Customer, req, undefined)),
      route('GET', '/Customers/(\\d+)', (req) => this.getOne(Customer, req)),
      route('PATCH', '/Customers/(\\d+)', (req) => this.patch(Customer, req)),
      route('DELETE', '/Customers/(\\d+)', (req) => this.remove(Customer, req)),
      route('GET', '/Employees', (req) => this.list(Employee, req)),
      route('POST', '/Employees', (req) => this.create(Employee, req, undefined)),
      route('GET', '/Employees/(\\d+)', (req) => this.getOne(Employee, req)),
      route('PATCH', '/Employees/(\\d+)', (req) => this.patch(Employee, req)),
      route('DELETE', '/Employees/(\\d+)', (req) => this.remove(Employee, req)),
      route('GET', '/ContactPersons', (req) => this.list(ContactPerson, req)),
      route('POST', '/ContactPersons/(\\d+)', (req) =>
        this.create(ContactPerson, req, Number(req.params[0])),
      ),
      route('GET', '/ContactPersons/(\\d+)/(\\d+)', (req) => this.getOne(ContactPerson, req)),
      route('PATCH', '/ContactPersons/(\\d+)/(\\d+)', (req) => this.patch(ContactPerson, req)),
      route('DELETE', '/ContactPersons/(\\d+)/(\\d+)', (req) => this.remove(ContactPerson, req)),
      route('GET', '/Projects', (req) => this.list(Project, req)),
      route('POST', '/Projects', (req) => this.create(Project, req, undefined)),
      route('GET', '/Projects/(\\d+)', (req) => this.getOne(Project, req)),
      route('PATCH', '/Projects/(\\d+)', (req) => this.patch(Project, req)),
      route('DELETE', '/Projects/(\\d+)', (req) => this.remove(Project, req)),
    );
  }

  /** POWEROFFICE_BASE_URL */
  get baseUrl(): string {
    return `${this.url}/v2`;
  }

  get tokenUrl(): string {
    return `${this.url}/OAuth/Token`;
  }

  /**
   * While true, the token endpoint refuses the integration's keys (401 invalid_client, as
   * during a key rotation or an identity-provider fault).
   */
  refuseCredentials = false;

  /** Every issued token becomes invalid: the next API call with one answers 401. */
  expireTokens(): void {
    this.tokens.clear();
  }

  seedCustomer(partial: PoRecord = {}): PoRecord {
    return this.seed(this.resources.Customer, partial, undefined);
  }

  seedEmployee(partial: PoRecord = {}): PoRecord {
    return this.seed(this.resources.Employee, partial, undefined);
  }

  seedContactPerson(contactId: number, partial: PoRecord = {}): PoRecord {
    return this.seed(this.resources.ContactPerson, partial, contactId);
  }

  seedProject(partial: PoRecord = {}): PoRecord {
    return this.seed(this.resources.Project, partial, undefined);
  }

  /**
   * Books (or with 0 settles) an open balance on a customer's or employee's sub-ledger. While
   * one is open, archiving is refused (400) and DELETE answers 409 (docs/vendor-apis.md).
   */
  setLedgerBalance(contactId: number, amount: number): void {
    if (!this.customers.has(contactId) && !this.employees.has(contactId))
      throw new Error(`no customer or employee ${contactId} in the fake`);
    if (amount === 0) this.ledgerBalances.delete(contactId);
    else this.ledgerBalances.set(contactId, amount);
  }

  /**
   * A user edits the customer in the PowerOffice UI: LastChangedDateTimeOffset moves, unless
   * only the address changed (a sub-entity: only MailAddress's own timestamp moves; docs/vendor-apis.md).
   */
  editCustomer(id: number, patch: PoRecord): PoRecord {
    return this.edit(this.resources.Customer, id, patch);
  }

  editEmployee(id: number, patch: PoRecord): PoRecord {
    return this.edit(this.resources.Employee, id, patch);
  }

  editContactPerson(id: number, patch: PoRecord): PoRecord {
    return this.edit(this.resources.ContactPerson, id, patch);
  }

  editProject(id: number, patch: PoRecord): PoRecord {
    return this.edit(this.resources.Project, id, patch);
  }

  /** The stored records (NationalIdNumber as stored, not "hidden"). */
  getCustomer(id: number): PoRecord | undefined {
    return structuredClone(this.customers.get(id));
  }

  getEmployee(id: number): PoRecord | undefined {
    return structuredClone(this.employees.get(id));
  }

  getContactPerson(id: number): PoRecord | undefined {
    return structuredClone(this.contactPersons.get(id));
  }

  getProject(id: number): PoRecord | undefined {
    return structuredClone(this.projects.get(id));
  }

  /** What the API would answer for a stored record (hidden fields masked). */
  toDto(record: PoRecord): PoRecord {
    const dto = structuredClone(record);
    if (!this.revealHidden) {
      // "Reads return "hidden" unless a special privilege is granted" (docs/vendor-apis.md).
      if (typeof dto.NationalIdNumber === 'string' && dto.NationalIdNumber !== '')
        dto.NationalIdNumber = 'hidden';
      if ('Gender' in dto && dto.Gender !== null && 'EmployeeCreatedDateTimeOffset' in dto)
        dto.Gender = 'Hidden';
    }
    return dto;
  }

  /** Strictly increasing, 100 ns precision like .NET, in the `+00:00` form System.Text.Json writes. */
  timestamp(): string {
    const now = BigInt(Date.now()) * 10_000n;
    this.lastTicks = now > this.lastTicks ? now : this.lastTicks + 1n;
    return formatTicks(this.lastTicks);
  }

  private seed(resource: Resource, partial: PoRecord, contactId: number | undefined): PoRecord {
    if (resource.kind === 'ContactPerson' && !this.customers.has(contactId!)) {
      throw new Error(
        `seedContactPerson: customer ${String(contactId)} does not exist in the fake`,
      );
    }
    const { MailAddress, ...rest } = partial;
    const record = this.newRecord(resource, rest, contactId);
    if (MailAddress !== undefined)
      record.MailAddress = this.address(resource, MailAddress, record.MailAddress);
    if (partial.Id !== undefined) {
      record.Id = partial.Id;
      if (resource.kind !== 'ContactPerson' && resource.address !== undefined)
        (record.MailAddress as PoRecord).Id = partial.Id;
    }
    if (resource.kind === 'Project') this.deriveProjectNumbers(record);
    for (const field of ['LastChangedDateTimeOffset', resource.createdField]) {
      if (partial[field] !== undefined) record[field] = partial[field];
    }
    resource.store.set(record.Id as number, record);
    this.noteNumber(resource.store, record);
    return this.toDto(record);
  }

  private edit(resource: Resource, id: number, patch: PoRecord): PoRecord {
    const record = resource.store.get(id);
    if (!record) throw new Error(`${resource.kind} ${id} does not exist in the fake`);
    const { MailAddress, ...rest } = patch;
    Object.assign(record, rest);
    if (MailAddress !== undefined)
      record.MailAddress = this.address(resource, MailAddress, record.MailAddress);
    if (resource.kind === 'Project') this.deriveProjectNumbers(record);
    const addressOnly = Object.keys(rest).length === 0 && resource.kind !== 'ContactPerson';
    if (patch.LastChangedDateTimeOffset !== undefined || !addressOnly)
      record.LastChangedDateTimeOffset = patch.LastChangedDateTimeOffset ?? this.timestamp();
    this.noteNumber(resource.store, record);
    return this.toDto(record);
  }

  /** A full Dto with every property of the spec's *Dto, defaults for what was not given. */
  private newRecord(resource: Resource, fields: PoRecord, contactId: number | undefined): PoRecord {
    const id = this.nextId++;
    const now = this.timestamp();
    const record: PoRecord = Object.fromEntries(
      schemaProperties(resource.dto).map((name) => [name, null]),
    );
    record.Id = id;
    if (resource.address !== undefined)
      record.MailAddress = this.address(resource, null, undefined, id);
    record.LastChangedDateTimeOffset = now;
    record[resource.createdField] = now;
    switch (resource.kind) {
      case 'Customer': {
        const email = fields.EmailAddress ?? fields.InvoiceEmailAddress;
        // docs/vendor-apis.md: "PowerOffice requires either an email, or for the invoice
        // delivery type to be print" (reported, not in the spec): default accordingly.
        const delivery = email ? 'PdfByEmail' : 'Print';
        Object.assign(record, {
          Number: this.nextNumber(this.customers, 10000),
          IsPerson: false,
          IsArchived: false,
          IsActive: true,
          IsVatFree: false,
          CurrencyCode: 'NOK',
          ContactGroupIds: [],
          InvoiceDeliveryType: delivery,
          ReminderDeliveryType: delivery,
          NoticeOfDebtCollectionDeliveryType: delivery,
          SubledgerAccountId: id,
          ContactCreatedDateTimeOffset: now,
        });
        break;
      }
      case 'Employee':
        Object.assign(record, {
          Number: this.nextNumber(this.employees, 1),
          IsArchived: false,
          ContactGroupIds: [],
          InternationalIdReportToAltinn: false,
          SubledgerAccountId: id,
          ContactCreatedDateTimeOffset: now,
        });
        break;
      case 'ContactPerson':
        Object.assign(record, { ContactId: contactId, IsActive: true, IsDefault: false });
        break;
      case 'Project':
        Object.assign(record, {
          IsActive: true,
          ProjectStatus: 'Active',
          AllowAllActivities: true,
          AllowAllEmployees: true,
          IsBillable: true,
          IsInternal: false,
        });
        break;
    }
    const dtoProperties = new Set(schemaProperties(resource.dto));
    for (const [name, value] of Object.entries(fields)) {
      // PostDto-only fields (SubLedgerNumberSeriesId) have no place in the Dto.
      if (dtoProperties.has(name) && name !== 'MailAddress') record[name] = value;
    }
    return record;
  }

  /** The next number of the series: one after the highest stored, O(1) (seeding 100 000). */
  private nextNumber(store: Map<number, PoRecord>, first: number): number {
    return Math.max(first - 1, this.highestNumber.get(store) ?? -Infinity) + 1;
  }

  /** Call after a record's Number may have been stored or changed (seed, create, edit, patch). */
  private noteNumber(store: Map<number, PoRecord>, record: PoRecord): void {
    if (typeof record.Number !== 'number') return;
    const highest = this.highestNumber.get(store);
    if (highest === undefined || record.Number > highest)
      this.highestNumber.set(store, record.Number);
  }

  /** A project's CustomerNo / ProjectManagerEmployeeNo follow its CustomerId / manager's Id. */
  private deriveProjectNumbers(record: PoRecord): void {
    const customer =
      typeof record.CustomerId === 'number' ? this.customers.get(record.CustomerId) : undefined;
    record.CustomerNo = customer?.Number ?? null;
    const manager =
      typeof record.ProjectManagerEmployeeId === 'number'
        ? this.employees.get(record.ProjectManagerEmployeeId)
        : undefined;
    record.ProjectManagerEmployeeNo = manager?.Number ?? null;
  }

  /** The stored address object, always present (so `/MailAddress/City` can be patched). */
  private address(resource: Resource, given: unknown, current: unknown, id?: number): PoRecord {
    const base: PoRecord =
      typeof current === 'object' && current !== null
        ? structuredClone(current as PoRecord)
        : Object.fromEntries(
            schemaProperties(resource.address ?? 'AddressDto').map((name) => [name, null]),
          );
    if ('Id' in base && base.Id === null) base.Id = id ?? this.nextId++;
    if (typeof given === 'object' && given !== null) Object.assign(base, given);
    if (given !== null && given !== undefined) base.CountryCode ??= 'NO';
    if ('LastChangedDateTimeOffset' in base) base.LastChangedDateTimeOffset = this.timestamp();
    return base;
  }

  // docs/vendor-apis.md: Basic base64(appKey:clientKey), subscription key, form body.
  private issueToken(req: FakeRequest): FakeResponse {
    const oauthError = (error: string, description: string) =>
      jsonResponse(400, { error, error_description: description }, { 'Cache-Control': 'no-store' });
    if (mediaType(req) !== 'application/x-www-form-urlencoded') {
      return oauthError(
        'invalid_request',
        'The request must be application/x-www-form-urlencoded.',
      );
    }
    const form = new URLSearchParams(req.rawBody);
    const grantType = form.get('grant_type');
    if (grantType === null)
      return oauthError('invalid_request', 'The grant_type parameter is missing.');
    if (grantType !== 'client_credentials') {
      return oauthError(
        'unsupported_grant_type',
        `The grant type '${grantType}' is not supported.`,
      );
    }
    const authorization = req.headers.authorization ?? '';
    const basic = /^Basic\s+(.+)$/i.exec(authorization);
    const [appKey, clientKey] = basic
      ? Buffer.from(basic[1]!, 'base64').toString('utf8').split(':')
      : [];
    if (this.refuseCredentials) {
      return jsonResponse(401, {
        error: 'invalid_client',
        error_description: 'The client credentials are not valid at this time.',
      });
    }
    if (appKey !== this.applicationKey || clientKey !== this.clientKey) {
      return oauthError(
        'invalid_client',
        'Client integration not found. Please ensure the provided keys are matching the desired environment.',
      );
    }
    const token = randomBytes(32).toString('base64url');
    this.tokens.set(token, this.clock() + this.tokenTtlSeconds * 1000);
    this.tokensIssued += 1;
    return jsonResponse(
      200,
      { access_token: token, token_type: 'bearer', expires_in: this.tokenTtlSeconds },
      { 'Cache-Control': 'no-store' },
    );
  }

  // APIM checks the subscription key (header, or the `subscription-key` query alternative
  // from the auth spec) on every call before anything else; these are Azure APIM's messages.
  private checkSubscription(req: FakeRequest): FakeResponse | undefined {
    const key = subscriptionKeyOf(req);
    if (key === undefined) {
      return jsonResponse(401, {
        statusCode: 401,
        message:
          'Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.',
      });
    }
    if (key !== this.subscriptionKey) {
      return jsonResponse(401, {
        statusCode: 401,
        message:
          'Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.',
      });
    }
    return undefined;
  }

  /** Bearer check (the exact 401 body is unconfirmed: empty, with WWW-Authenticate), then the handler. */
  private api(req: FakeRequest, handle: (req: FakeRequest) => FakeResponse): FakeResponse {
    const bearer = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '')?.[1];
    const expiresAt = bearer === undefined ? undefined : this.tokens.get(bearer);
    if (expiresAt === undefined || expiresAt <= this.clock()) {
      const reason =
        bearer === undefined
          ? 'error="invalid_request"'
          : 'error="invalid_token", error_description="The token is expired or invalid"';
      return { status: 401, headers: { 'WWW-Authenticate': `Bearer ${reason}` } };
    }
    const refused = this.missingPrivilege(req);
    if (refused !== undefined) return refused;
    try {
      return handle(req);
    } catch (error) {
      if (error instanceof ProblemError)
        return problem(error.status, error.title, error.detail, error.errors);
      throw error;
    }
  }

  /**
   * 403 when the integration holds no privilege for the area a request touches (a missing
   * privilege, not bad credentials: docs/vendor-apis.md). Reads take any privilege of the
   * area, writes its `_Full`; contact persons also come under the customer and supplier
   * privileges. The exact 403 body is unconfirmed; problem details like the API's other errors.
   */
  private missingPrivilege(req: FakeRequest): FakeResponse | undefined {
    const segment = /^\/(?:demo\/)?v2\/([^/]+)/i.exec(req.path)?.[1]?.toLowerCase();
    const areas = segment === undefined ? undefined : PRIVILEGE_AREAS[segment];
    if (areas === undefined) return undefined;
    const allowed = (p: string) =>
      areas.some((area) =>
        req.method === 'GET' ? p.startsWith(`${area}_`) : p === `${area}_Full`,
      );
    if (this.privileges.some(allowed)) return undefined;
    return problem(
      403,
      'Forbidden',
      `The integration lacks the privilege for this request (${areas.map((a) => `${a}_Full`).join(' or ')}).`,
    );
  }

  private list(resource: Resource, req: FakeRequest): FakeResponse {
    const odata = Object.keys(req.query).find((name) => name.startsWith('$'));
    if (odata !== undefined) {
      // docs/vendor-apis.md: OData options are v1 only and give 400 on v2.
      throw new ProblemError(
        400,
        'Invalid query parameter(s)',
        `The query parameter '${odata}' is not supported in v2. Use PageNumber, PageSize and the filter parameters.`,
      );
    }
    const query = lowerKeys(req.query);
    const pageNumber = this.intParameter(
      query,
      'pagenumber',
      'PageNumber',
      1,
      1,
      Number.MAX_SAFE_INTEGER,
    );
    const pageSize = this.intParameter(
      query,
      'pagesize',
      'PageSize',
      POWEROFFICE_DEFAULT_PAGE_SIZE,
      1,
      POWEROFFICE_MAX_PAGE_SIZE,
    );
    const filters: ((record: PoRecord) => boolean)[] = [];
    const after = (parameter: string, field: string) => {
      const value = query[parameter.toLowerCase()];
      if (value === undefined || value.trim() === '') return;
      const ticks = parsePowerOfficeTimestamp(value);
      if (ticks === undefined) {
        throw new ProblemError(
          400,
          'Unable to cast object(s)',
          `The value '${value}' is not valid for ${parameter}.`,
        );
      }
      // "greater than … not inclusive" (docs/vendor-apis.md).
      filters.push(
        (record) =>
          (typeof record[field] === 'string'
            ? (parsePowerOfficeTimestamp(record[field]) ?? -1n)
            : -1n) > ticks,
      );
    };
    after('lastChangedDateTimeOffsetGreaterThan', 'LastChangedDateTimeOffset');
    const createdParameter = {
      Customer: 'customerCreatedDateTimeOffsetGreaterThan',
      Employee: 'employeeCreatedDateTimeOffsetGreaterThan',
      ContactPerson: 'createdDateTimeOffsetGreaterThan',
      Project: 'createdDateTimeOffsetGreaterThan',
    }[resource.kind];
    after(createdParameter, resource.createdField);
    const text = (name: string) => {
      const value = query[name.toLowerCase()];
      return value === undefined || value.trim() === '' ? undefined : value;
    };
    if (resource.kind === 'Project') {
      const codes = text('projectCodes');
      if (codes !== undefined) {
        // SQL Server's default collation: codes match ignoring case.
        const wanted = new Set(codes.split(',').map((c) => c.trim().toLowerCase()));
        filters.push(
          (record) =>
            typeof record.Code === 'string' && wanted.has(record.Code.trim().toLowerCase()),
        );
      }
      const numbers = text('customerNos');
      if (numbers !== undefined) {
        const matches = numberRanges(numbers, 'customerNos');
        filters.push((record) => matches(record.CustomerNo));
      }
    } else if (resource.kind === 'ContactPerson') {
      const contactIds = text('contactIds');
      if (contactIds !== undefined) {
        const ids = new Set(idList(contactIds, 'contactIds'));
        filters.push((record) => ids.has(record.ContactId as number));
      }
      const codes = text('externalCodes');
      if (codes !== undefined) {
        const wanted = new Set(codes.split(',').map((code) => code.trim().toLowerCase()));
        filters.push(
          (record) =>
            typeof record.ExternalCode === 'string' &&
            wanted.has(record.ExternalCode.toLowerCase()),
        );
      }
    } else {
      const reference = text('externalImportReference');
      if (reference !== undefined) {
        // SQL Server's default collation: the match ignores case.
        filters.push(
          (record) =>
            typeof record.ExternalImportReference === 'string' &&
            record.ExternalImportReference.toLowerCase() === reference.trim().toLowerCase(),
        );
      }
      const numbersParameter = resource.kind === 'Customer' ? 'customerNos' : 'employeeNos';
      const numbers = text(numbersParameter);
      if (numbers !== undefined) {
        const matches = numberRanges(numbers, numbersParameter);
        filters.push((record) => matches(record.Number));
      }
      const externalNos = text('externalNos');
      if (externalNos !== undefined) {
        const matches = numberRanges(externalNos, 'externalNos');
        filters.push((record) => matches(record.ExternalNumber));
      }
      const groups = text('contactGroupIds');
      if (groups !== undefined) {
        const wanted = idList(groups, 'contactGroupIds');
        filters.push((record) =>
          wanted.some((id) => ((record.ContactGroupIds as number[] | null) ?? []).includes(id)),
        );
      }
    }
    const rows = [...resource.store.values()]
      .filter((record) => filters.every((filter) => filter(record)))
      .sort(this.orderBy(resource, text('OrderBy')));
    const page = rows.slice((pageNumber - 1) * pageSize, pageNumber * pageSize);
    // docs/vendor-apis.md: "204 No Content with an empty body when nothing matches".
    if (page.length === 0) return { status: 204 };
    const fields = text('Fields');
    return jsonResponse(
      200,
      page.map((record) => this.project(resource, this.toDto(record), fields)),
    );
  }

  private intParameter(
    query: Record<string, string>,
    key: string,
    name: string,
    fallback: number,
    min: number,
    max: number,
  ): number {
    const raw = query[key];
    if (raw === undefined || raw.trim() === '') return fallback;
    const value = Number(raw);
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new ProblemError(
        400,
        'Invalid query parameter(s)',
        `${name} must be an integer between ${min} and ${max}; got '${raw}'.`,
      );
    }
    return value;
  }

  private orderBy(
    resource: Resource,
    text: string | undefined,
  ): (a: PoRecord, b: PoRecord) => number {
    const properties = schemaProperties(resource.dto);
    const keys = (text ?? 'Id').split(',').map((part) => {
      const [name = '', direction = 'asc'] = part.trim().split(/\s+/);
      const property = properties.find((p) => p.toLowerCase() === name.toLowerCase());
      if (!property || !['asc', 'desc'].includes(direction.toLowerCase())) {
        throw new ProblemError(
          400,
          'Invalid query parameter(s)',
          `OrderBy '${part.trim()}' is not valid for ${resource.dto}.`,
        );
      }
      return { property, sign: direction.toLowerCase() === 'desc' ? -1 : 1 };
    });
    return (a, b) => {
      for (const { property, sign } of keys) {
        const x = a[property] ?? null;
        const y = b[property] ?? null;
        if (x === y) continue;
        if (x === null) return -sign;
        if (y === null) return sign;
        const order =
          typeof x === 'number' && typeof y === 'number'
            ? x - y
            : JSON.stringify(x).localeCompare(JSON.stringify(y));
        if (order !== 0) return sign * order;
      }
      return 0;
    };
  }

  private project(resource: Resource, dto: PoRecord, fields: string | undefined): PoRecord {
    if (fields === undefined) return dto;
    const properties = schemaProperties(resource.dto);
    const picked: PoRecord = {};
    for (const name of fields.split(',').map((field) => field.trim())) {
      const property = properties.find((p) => p.toLowerCase() === name.toLowerCase());
      if (!property) {
        throw new ProblemError(
          400,
          'Invalid query parameter(s)',
          `Fields: '${name}' is not a property of ${resource.dto}.`,
        );
      }
      picked[property] = dto[property];
    }
    return picked;
  }

  private find(resource: Resource, req: FakeRequest): PoRecord {
    const contactId = resource.kind === 'ContactPerson' ? Number(req.params[0]) : undefined;
    const id = Number(req.params[resource.kind === 'ContactPerson' ? 1 : 0]);
    const record = resource.store.get(id);
    if (!record || (contactId !== undefined && record.ContactId !== contactId)) {
      const where = contactId === undefined ? '' : ` on contact with id = ${contactId}`;
      const label = resource.kind === 'ContactPerson' ? 'Contact person' : resource.kind;
      throw new ProblemError(
        404,
        'Object(s) not found',
        `${label} with id = ${id} not found${where}.`,
      );
    }
    return record;
  }

  private getOne(resource: Resource, req: FakeRequest): FakeResponse {
    return jsonResponse(200, this.toDto(this.find(resource, req)));
  }

  private jsonBody(req: FakeRequest, allowed: Set<string>): unknown {
    const type = mediaType(req);
    if (!allowed.has(type)) {
      throw new ProblemError(
        415,
        'Unsupported Media Type',
        `Content-Type '${type || '(none)'}' is not supported here.`,
      );
    }
    if (req.bodyError !== undefined || req.body === undefined) {
      throw new ProblemError(
        400,
        'One or more validation errors occurred.',
        `The request body is not valid JSON: ${req.bodyError ?? 'empty body'}.`,
      );
    }
    return req.body;
  }

  private validationError(
    resource: Resource,
    schema: string,
    errors: Record<string, string[]>,
  ): ProblemError {
    const detail = Object.entries(errors)
      .map(([field, messages]) => `${field}: ${messages.join(' ')}`)
      .join(' ');
    const label = resource.kind === 'ContactPerson' ? 'Contact person' : resource.kind;
    return new ProblemError(400, `${label} validation error(s)`, `${schema}: ${detail}`, errors);
  }

  /** Rules the real API enforces beyond the schema (docs/vendor-apis.md), on POST and after PATCH. */
  private checkRules(
    resource: Resource,
    candidate: PoRecord,
    selfId: number | undefined,
    previous?: PoRecord,
  ): void {
    const errors: Record<string, string[]> = {};
    const blank = (value: unknown) => typeof value !== 'string' || value.trim() === '';
    if (resource.kind === 'Customer') {
      if (candidate.IsPerson === true) {
        if (blank(candidate.FirstName))
          errors.FirstName = ['FirstName is required when IsPerson is true.'];
        if (blank(candidate.LastName))
          errors.LastName = ['LastName is required when IsPerson is true.'];
      } else if (blank(candidate.Name)) {
        errors.Name = ['Name is required for a customer that is not a person.'];
      }
      if (
        candidate.InvoiceDeliveryType === 'PdfByEmail' &&
        blank(candidate.EmailAddress) &&
        blank(candidate.InvoiceEmailAddress)
      ) {
        errors.InvoiceDeliveryType = ['PdfByEmail requires EmailAddress or InvoiceEmailAddress.'];
      }
    } else if (resource.kind === 'Project') {
      if (blank(candidate.Name)) errors.Name = ['The Name field is required.'];
      // The ids must name an existing Customer / Employee: a Tidsbanken id sent here fails.
      const customerId = candidate.CustomerId;
      if (typeof customerId === 'number' && !this.customers.has(customerId))
        errors.CustomerId = [`Customer with id = ${customerId} not found.`];
      const managerId = candidate.ProjectManagerEmployeeId;
      if (typeof managerId === 'number' && !this.employees.has(managerId))
        errors.ProjectManagerEmployeeId = [`Employee with id = ${managerId} not found.`];
    } else {
      if (blank(candidate.FirstName)) errors.FirstName = ['The FirstName field is required.'];
      if (blank(candidate.LastName)) errors.LastName = ['The LastName field is required.'];
    }
    // docs/vendor-apis.md: national ids are syntax-checked, employee numbers must lie in the
    // ledger's series, and a contact with ledger balances cannot be archived.
    if (
      typeof candidate.NationalIdNumber === 'string' &&
      candidate.NationalIdNumber !== '' &&
      candidate.NationalIdNumber !== previous?.NationalIdNumber &&
      !isNationalIdSyntaxValid(candidate.NationalIdNumber)
    ) {
      errors.NationalIdNumber = [
        `'${candidate.NationalIdNumber}' is not a valid Norwegian national identity number.`,
      ];
    }
    if (
      resource.kind === 'Employee' &&
      typeof candidate.Number === 'number' &&
      candidate.Number !== previous?.Number
    ) {
      const { from, to } = this.employeeNumberSeries;
      if (candidate.Number < from || candidate.Number > to)
        errors.Number = [
          `Number ${candidate.Number} is outside the employee ledger's number series (${from}-${to}).`,
        ];
    }
    if (
      candidate.IsArchived === true &&
      previous?.IsArchived !== true &&
      selfId !== undefined &&
      (this.ledgerBalances.get(selfId) ?? 0) !== 0
    ) {
      errors.IsArchived = ['IsArchived cannot be set if the contact has ledger balances.'];
    }
    if (Object.keys(errors).length > 0) throw this.validationError(resource, resource.kind, errors);
    const key = resource.uniqueKey;
    const value = candidate[key];
    // Project codes are unique ignoring case and surrounding blanks (SQL Server collation).
    const same = (other: unknown) =>
      resource.kind === 'Project'
        ? typeof other === 'string' &&
          other.trim().toLowerCase() === String(value).trim().toLowerCase()
        : other === value;
    if (typeof value === 'string' && value !== '') {
      for (const other of resource.store.values()) {
        if (other.Id !== selfId && same(other[key])) {
          const label = resource.kind === 'ContactPerson' ? 'Contact person' : resource.kind;
          const on = resource.kind === 'ContactPerson' ? 'contact person' : '(contact)';
          throw new ProblemError(
            400,
            `${label} validation error(s)`,
            `${key} is already in use. '${value}' is used on ${on} Id = ${String(other.Id)}.`,
          );
        }
      }
    }
    if (
      (resource.kind === 'Customer' || resource.kind === 'Employee') &&
      typeof candidate.Number === 'number'
    ) {
      for (const other of resource.store.values()) {
        if (other.Id !== selfId && other.Number === candidate.Number) {
          throw new ProblemError(
            400,
            `${resource.kind} validation error(s)`,
            `Number is already in use. '${candidate.Number}' is used on (contact) Id = ${String(other.Id)}.`,
          );
        }
      }
    }
  }

  // POST: 201 with the full Dto (docs/vendor-apis.md).
  private create(
    resource: Resource,
    req: FakeRequest,
    contactId: number | undefined,
  ): FakeResponse {
    const body = this.jsonBody(req, new Set([...JSON_TYPES, 'application/*+json']));
    if (
      typeof body === 'object' &&
      body !== null &&
      !Array.isArray(body) &&
      (body as PoRecord).MailAddress === null
    ) {
      // ASP.NET binds a null object to "no address"; the spec's $ref just cannot say nullable.
      delete (body as PoRecord).MailAddress;
    }
    const errors = validateAgainst(resource.post, body);
    if (Object.keys(errors).length > 0) throw this.validationError(resource, resource.post, errors);
    const fields = body as PoRecord;
    if (contactId !== undefined) {
      const parent = this.customers.get(contactId);
      if (!parent) {
        if (this.employees.has(contactId)) {
          throw new ProblemError(
            400,
            'Contact person validation error(s)',
            'Contact persons are not available for employee contacts.',
          );
        }
        throw new ProblemError(
          404,
          'Object(s) not found',
          `Contact with id = ${contactId} not found.`,
        );
      }
      if (parent.IsPerson === true) {
        throw new ProblemError(
          400,
          'Contact person validation error(s)',
          'Contact persons are not available for person customers.',
        );
      }
    }
    this.checkRules(resource, { ...fields, Number: fields.Number ?? null }, undefined);
    const { MailAddress, ...rest } = fields;
    const record = this.newRecord(resource, rest, contactId);
    if (MailAddress !== undefined)
      record.MailAddress = this.address(resource, MailAddress, record.MailAddress);
    if (resource.kind === 'Project') this.deriveProjectNumbers(record);
    resource.store.set(record.Id as number, record);
    this.noteNumber(resource.store, record);
    if (record.IsDefault === true) this.clearOtherDefaults(record);
    return jsonResponse(201, this.toDto(record));
  }

  // PATCH: RFC 6902 on the *PatchDto view of the record; the result is validated against
  // the *PatchDto schema, then merged (docs/vendor-apis.md).
  private patch(resource: Resource, req: FakeRequest): FakeResponse {
    const record = this.find(resource, req);
    const body = this.jsonBody(req, new Set(['application/json-patch+json']));
    const patchProperties = schemaProperties(resource.patch);
    const addressProperties = schemaProperties(
      resource.patch === 'ContactPersonPatchDto' ? 'AddressDto' : 'ContactAddressDto',
    ).filter((name) => name !== 'Id' && name !== 'LastChangedDateTimeOffset');
    const view: PoRecord = {};
    for (const name of patchProperties) view[name] = structuredClone(record[name] ?? null);
    if (view.MailAddress !== null && view.MailAddress !== undefined) {
      const address = view.MailAddress as PoRecord;
      view.MailAddress = Object.fromEntries(
        addressProperties.map((name) => [name, address[name] ?? null]),
      );
    }
    let patched: PoRecord;
    try {
      patched = applyJsonPatch(view, body, resource.patch);
    } catch (error) {
      if (error instanceof JsonPatchError) {
        const label = resource.kind === 'ContactPerson' ? 'Contact person' : resource.kind;
        throw new ProblemError(400, `${label} validation error(s)`, error.message);
      }
      throw error;
    }
    const errors = validateAgainst(resource.patch, patched);
    if (Object.keys(errors).length > 0)
      throw this.validationError(resource, resource.patch, errors);
    this.checkRules(resource, { ...record, ...patched }, record.Id as number, record);
    const { MailAddress, ...rest } = patched;
    const { MailAddress: oldAddress, ...oldRest } = view;
    void oldAddress;
    const mainChanged = !isDeepStrictEqualJson(oldRest, rest);
    Object.assign(record, rest);
    this.noteNumber(resource.store, record);
    if (resource.kind === 'Project') this.deriveProjectNumbers(record);
    if (resource.address !== undefined && !isDeepStrictEqualJson(view.MailAddress, MailAddress)) {
      // A replaced address keeps its Id; fields the new value leaves out become null.
      const old = record.MailAddress as PoRecord | null;
      const fresh: PoRecord = Object.fromEntries(addressProperties.map((name) => [name, null]));
      Object.assign(fresh, MailAddress ?? {});
      fresh.CountryCode ??= 'NO';
      record.MailAddress =
        resource.kind === 'ContactPerson'
          ? fresh
          : { Id: old?.Id ?? record.Id, ...fresh, LastChangedDateTimeOffset: this.timestamp() };
    }
    // The address is a sub-entity of a customer or employee: changing only it leaves the
    // record's LastChangedDateTimeOffset where it was (docs/vendor-apis.md).
    if (mainChanged || resource.kind === 'ContactPerson')
      record.LastChangedDateTimeOffset = this.timestamp();
    if (record.IsDefault === true && view.IsDefault !== true) this.clearOtherDefaults(record);
    return jsonResponse(200, this.toDto(record));
  }

  // DELETE: 200 with no body, 409 while the contact is in use (docs/vendor-apis.md).
  private remove(resource: Resource, req: FakeRequest): FakeResponse {
    const record = this.find(resource, req);
    const id = record.Id as number;
    if ((this.ledgerBalances.get(id) ?? 0) !== 0) {
      throw new ProblemError(
        409,
        'Conflict',
        `${resource.kind} with id = ${id} is in use and cannot be deleted.`,
      );
    }
    resource.store.delete(id);
    this.ledgerBalances.delete(id);
    return { status: 200 };
  }

  /** One default contact person per parent: setting IsDefault clears it on the others. */
  private clearOtherDefaults(record: PoRecord): void {
    for (const other of this.contactPersons.values()) {
      if (other !== record && other.ContactId === record.ContactId && other.IsDefault === true) {
        other.IsDefault = false;
        other.LastChangedDateTimeOffset = this.timestamp();
      }
    }
  }
}

function isDeepStrictEqualJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

function subscriptionKeyOf(req: FakeRequest): string | undefined {
  return req.headers['ocp-apim-subscription-key'] ?? req.query['subscription-key'];
}

export async function startFakePowerOffice(
  opts: FakePowerOfficeOptions = {},
): Promise<FakePowerOffice> {
  const fake = new FakePowerOffice(opts);
  await fake.listen();
  return fake;
}
