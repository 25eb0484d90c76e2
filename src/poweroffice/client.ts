import { z } from 'zod';
import type { PowerOfficeConfig } from '../config.js';
import { UpstreamError } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { Pacer } from '../lib/pacer.js';
import {
  backoffMs,
  createUpstreamContext,
  queryString,
  passOn,
  upstreamRequest,
  type HttpMethod,
  type RequestOptions,
  type UpstreamContext,
} from '../lib/upstream.js';
import {
  ContactPersonSchema,
  CustomerSchema,
  EmployeeSchema,
  ProjectSchema,
  type ContactPerson,
  type Customer,
  type Employee,
  type Project,
} from './schemas.js';
import { PowerOfficeTokenProvider } from './token.js';
import { parseListItems, type ListPage } from '../lib/list-page.js';

// PowerOffice Go v2 (docs/vendor-apis.md). Bare JSON arrays for lists and 204 when
// nothing matches; JSON Patch for updates; ExternalImportReference / ExternalCode as the
// idempotency key of a create.

/** One RFC 6902 operation; PATCH bodies are arrays of these (docs/vendor-apis.md). */
export type JsonPatchOperation =
  | { op: 'add' | 'replace' | 'test'; path: string; value: unknown }
  | { op: 'remove'; path: string }
  | { op: 'copy' | 'move'; from: string; path: string };

export interface PowerOfficeClientOptions {
  config: PowerOfficeConfig;
  pacer: Pacer;
  logger: Logger;
  metrics: Metrics;
  timeoutMs?: number;
  maxAttempts?: number;
  fetch?: typeof fetch;
  /** `PageSize` of a list page: default 5000, at most 20 000 (docs/vendor-apis.md). */
  pageSize?: number;
  backoffBaseMs?: number;
  /** A shared token provider; one is made from `config` otherwise. */
  token?: PowerOfficeTokenProvider;
}

/** Options of a create: `lookupFirst` checks whether an earlier attempt already landed. */
export interface CreateOptions extends RequestOptions {
  lookupFirst?: boolean;
}

export type EmployeePostBody = Record<string, unknown> & { ExternalImportReference?: string };
export type CustomerPostBody = Record<string, unknown> & { ExternalImportReference?: string };
export type ContactPersonPostBody = Record<string, unknown> & { ExternalCode?: string };

const MAX_PAGE_SIZE = 20_000;

const ClientIntegrationSchema = z.looseObject({
  ClientName: z.string().nullish(),
  ValidPrivileges: z.array(z.string()).nullish(),
  InvalidPrivileges: z.array(z.string()).nullish(),
});
export type ClientIntegrationInformation = z.infer<typeof ClientIntegrationSchema>;

export class PowerOfficeClient {
  readonly token: PowerOfficeTokenProvider;
  private readonly upstream: UpstreamContext;
  private readonly baseUrl: string;
  private readonly pageSize: number;

  constructor(options: PowerOfficeClientOptions) {
    this.baseUrl = options.config.baseUrl.replace(/\/+$/, '');
    this.pageSize = Math.min(options.pageSize ?? 5000, MAX_PAGE_SIZE);
    const logger = options.logger.child({ module: 'poweroffice-client' });
    this.token =
      options.token ??
      new PowerOfficeTokenProvider({
        config: options.config,
        pacer: options.pacer,
        logger: options.logger,
        metrics: options.metrics,
        ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
        ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
        ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
      });
    this.upstream = createUpstreamContext({
      system: 'poweroffice',
      pacer: options.pacer,
      logger,
      metrics: options.metrics,
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
      ...(options.backoffBaseMs !== undefined ? { backoffBaseMs: options.backoffBaseMs } : {}),
    });
  }

  /** The integration's privileges (docs/vendor-apis.md: the place to look after a 403). */
  async getClientIntegrationInformation(
    options: RequestOptions = {},
  ): Promise<ClientIntegrationInformation> {
    const info = await this.getOne(
      'ClientIntegrationInformation',
      ClientIntegrationSchema,
      options,
    );
    if (info === undefined) throw new Error('GET /ClientIntegrationInformation answered 404');
    return info;
  }

  // ---- Employees ---------------------------------------------------------------------

  getEmployee(id: number | string, options: RequestOptions = {}): Promise<Employee | undefined> {
    return this.getOne(`Employees/${encodeURIComponent(String(id))}`, EmployeeSchema, options);
  }

  listEmployeesChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Employee>, void, undefined> {
    return this.pages(
      'Employees',
      { lastChangedDateTimeOffsetGreaterThan: since },
      EmployeeSchema,
      options,
    );
  }

  listAllEmployees(
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Employee>, void, undefined> {
    return this.pages('Employees', {}, EmployeeSchema, options);
  }

  async findEmployeeByExternalImportReference(
    ref: string,
    options: RequestOptions = {},
  ): Promise<Employee | undefined> {
    return this.findFirst(
      'Employees',
      { externalImportReference: ref },
      EmployeeSchema,
      options,
      (e) => e.ExternalImportReference === ref,
    );
  }

  createEmployee(body: EmployeePostBody, options: CreateOptions = {}): Promise<Employee> {
    const ref = body.ExternalImportReference;
    return this.createIdempotently(
      () => this.send('POST', 'Employees', body, EmployeeSchema, options),
      ref !== undefined && ref !== ''
        ? () => this.findEmployeeByExternalImportReference(ref, options)
        : undefined,
      options,
    );
  }

  patchEmployee(
    id: number | string,
    ops: JsonPatchOperation[],
    options: RequestOptions = {},
  ): Promise<Employee> {
    return this.send(
      'PATCH',
      `Employees/${encodeURIComponent(String(id))}`,
      ops,
      EmployeeSchema,
      options,
    );
  }

  // ---- Customers ---------------------------------------------------------------------

  getCustomer(id: number | string, options: RequestOptions = {}): Promise<Customer | undefined> {
    return this.getOne(`Customers/${encodeURIComponent(String(id))}`, CustomerSchema, options);
  }

  listCustomersChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Customer>, void, undefined> {
    return this.pages(
      'Customers',
      { lastChangedDateTimeOffsetGreaterThan: since },
      CustomerSchema,
      options,
    );
  }

  listAllCustomers(
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Customer>, void, undefined> {
    return this.pages('Customers', {}, CustomerSchema, options);
  }

  async findCustomerByExternalImportReference(
    ref: string,
    options: RequestOptions = {},
  ): Promise<Customer | undefined> {
    return this.findFirst(
      'Customers',
      { externalImportReference: ref },
      CustomerSchema,
      options,
      (c) => c.ExternalImportReference === ref,
    );
  }

  createCustomer(body: CustomerPostBody, options: CreateOptions = {}): Promise<Customer> {
    const ref = body.ExternalImportReference;
    return this.createIdempotently(
      () => this.send('POST', 'Customers', body, CustomerSchema, options),
      ref !== undefined && ref !== ''
        ? () => this.findCustomerByExternalImportReference(ref, options)
        : undefined,
      options,
    );
  }

  patchCustomer(
    id: number | string,
    ops: JsonPatchOperation[],
    options: RequestOptions = {},
  ): Promise<Customer> {
    return this.send(
      'PATCH',
      `Customers/${encodeURIComponent(String(id))}`,
      ops,
      CustomerSchema,
      options,
    );
  }

  // ---- ContactPersons: a top-level path keyed by the parent contact (docs/vendor-apis.md) -

  getContactPerson(
    contactId: number | string,
    id: number | string,
    options: RequestOptions = {},
  ): Promise<ContactPerson | undefined> {
    return this.getOne(contactPersonPath(contactId, id), ContactPersonSchema, options);
  }

  listContactPersonsChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<ContactPerson>, void, undefined> {
    return this.pages(
      'ContactPersons',
      { lastChangedDateTimeOffsetGreaterThan: since },
      ContactPersonSchema,
      options,
    );
  }

  listAllContactPersons(
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<ContactPerson>, void, undefined> {
    return this.pages('ContactPersons', {}, ContactPersonSchema, options);
  }

  async findContactPersonByExternalCode(
    code: string,
    options: RequestOptions = {},
  ): Promise<ContactPerson | undefined> {
    return this.findFirst(
      'ContactPersons',
      { externalCodes: code },
      ContactPersonSchema,
      options,
      (p) => p.ExternalCode === code,
    );
  }

  createContactPerson(
    contactId: number | string,
    body: ContactPersonPostBody,
    options: CreateOptions = {},
  ): Promise<ContactPerson> {
    const code = body.ExternalCode;
    return this.createIdempotently(
      () =>
        this.send(
          'POST',
          `ContactPersons/${encodeURIComponent(String(contactId))}`,
          body,
          ContactPersonSchema,
          options,
        ),
      code !== undefined && code !== ''
        ? () => this.findContactPersonByExternalCode(code, options)
        : undefined,
      options,
    );
  }

  patchContactPerson(
    contactId: number | string,
    id: number | string,
    ops: JsonPatchOperation[],
    options: RequestOptions = {},
  ): Promise<ContactPerson> {
    return this.send('PATCH', contactPersonPath(contactId, id), ops, ContactPersonSchema, options);
  }

  // ---- Projects: the code is the key users see, and a created project's origin id -------

  getProject(id: number | string, options: RequestOptions = {}): Promise<Project | undefined> {
    return this.getOne(`Projects/${encodeURIComponent(String(id))}`, ProjectSchema, options);
  }

  listProjectsChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Project>, void, undefined> {
    return this.pages(
      'Projects',
      { lastChangedDateTimeOffsetGreaterThan: since },
      ProjectSchema,
      options,
    );
  }

  /** The project with this code (trimmed, case-insensitive), or undefined. */
  async findProjectByCode(
    code: string,
    options: RequestOptions = {},
  ): Promise<Project | undefined> {
    const wanted = code.trim().toLowerCase();
    return this.findFirst(
      'Projects',
      { projectCodes: code.trim() },
      ProjectSchema,
      options,
      (p) => typeof p.Code === 'string' && p.Code.trim().toLowerCase() === wanted,
    );
  }

  /**
   * Creates a project. Its code is its origin id: the code is looked up before the POST
   * (always, not only after a lost answer), so a create never makes a second project of it.
   */
  createProject(body: Record<string, unknown>, options: CreateOptions = {}): Promise<Project> {
    const code = typeof body.Code === 'string' ? body.Code : undefined;
    return this.createIdempotently(
      () => this.send('POST', 'Projects', body, ProjectSchema, options),
      code !== undefined && code.trim() !== ''
        ? () => this.findProjectByCode(code, options)
        : undefined,
      { ...options, lookupFirst: true },
    );
  }

  patchProject(
    id: number | string,
    ops: JsonPatchOperation[],
    options: RequestOptions = {},
  ): Promise<Project> {
    return this.send(
      'PATCH',
      `Projects/${encodeURIComponent(String(id))}`,
      ops,
      ProjectSchema,
      options,
    );
  }

  // ---- plumbing ----------------------------------------------------------------------

  private async getOne<S extends z.ZodType>(
    path: string,
    schema: S,
    options: RequestOptions,
  ): Promise<z.infer<S> | undefined> {
    const { data } = await upstreamRequest(this.upstream, {
      method: 'GET',
      url: `${this.baseUrl}/${path}`,
      priority: options.priority ?? 'read',
      auth: this.token,
      schema,
      acceptStatus: [404],
      ...passOn(options),
    });
    return data;
  }

  /** One list page, item by item: a record failing its schema is set aside, not fatal. */
  private async list<T>(
    path: string,
    query: Record<string, string | number | undefined>,
    schema: z.ZodType<T>,
    options: RequestOptions,
  ): Promise<{ size: number; page: ListPage<T> }> {
    const { data } = await upstreamRequest(this.upstream, {
      method: 'GET',
      url: `${this.baseUrl}/${path}?${queryString(query)}`,
      priority: options.priority ?? 'read',
      auth: this.token,
      schema: z.array(z.unknown()),
      // 204 No Content when nothing matches (docs/vendor-apis.md).
      empty: [],
      ...passOn(options),
    });
    const items = data ?? [];
    return { size: items.length, page: parseListItems(items, schema) };
  }

  /**
   * Pages until an empty, 204 or short page: there is no total count or next link
   * (docs/vendor-apis.md, Sesam's `not-full-page`). PageNumber is 1-based. Ordered
   * by Id: page numbers address an ordered list, and without an order the API may hand out
   * the same row twice and another never.
   */
  private async *pages<T>(
    path: string,
    filter: Record<string, string | undefined>,
    schema: z.ZodType<T>,
    options: RequestOptions,
  ): AsyncGenerator<ListPage<T>, void, undefined> {
    for (let pageNumber = 1; ; pageNumber++) {
      const { size, page } = await this.list(
        path,
        { ...filter, OrderBy: 'Id', PageNumber: pageNumber, PageSize: this.pageSize },
        schema,
        options,
      );
      if (size > 0) yield page;
      if (size < this.pageSize) return;
    }
  }

  /** The filter narrows server-side; the predicate guards against a filter the API ignores. */
  private async findFirst<T>(
    path: string,
    filter: Record<string, string>,
    schema: z.ZodType<T>,
    options: RequestOptions,
    matches: (item: T) => boolean,
  ): Promise<T | undefined> {
    const { page } = await this.list(
      path,
      { ...filter, PageNumber: 1, PageSize: 10 },
      schema,
      options,
    );
    return page.records.find(matches);
  }

  private async send<S extends z.ZodType>(
    method: HttpMethod,
    path: string,
    json: unknown,
    schema: S,
    options: RequestOptions,
  ): Promise<z.infer<S>> {
    const { data } = await upstreamRequest(this.upstream, {
      method,
      url: `${this.baseUrl}/${path}`,
      priority: options.priority ?? 'write',
      auth: this.token,
      json,
      ...(method === 'PATCH' ? { contentType: 'application/json-patch+json' } : {}),
      schema,
      ...passOn(options),
    });
    return data as z.infer<S>;
  }

  /**
   * POST, and when the answer is lost (5xx, timeout, network), look the origin id up before
   * sending again: a POST is never repeated blindly (docs/ARCHITECTURE.md "Outbox and dispatcher").
   * Without an origin id there is nothing to look up, and the error goes to the caller.
   */
  private async createIdempotently<T>(
    post: () => Promise<T>,
    lookup: (() => Promise<T | undefined>) | undefined,
    options: CreateOptions,
  ): Promise<T> {
    if (lookup !== undefined && options.lookupFirst === true) {
      const existing = await lookup();
      if (existing !== undefined) return existing;
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await post();
      } catch (error) {
        const unknownOutcome =
          error instanceof UpstreamError && error.retryable && error.upstreamStatus !== 429;
        if (
          !unknownOutcome ||
          lookup === undefined ||
          attempt >= (options.once === true ? 1 : this.upstream.maxAttempts)
        ) {
          throw error;
        }
        const existing = await lookup();
        if (existing !== undefined) return existing;
        await this.upstream.sleep(backoffMs(this.upstream, attempt), options.signal);
      }
    }
  }
}

/**
 * The spec's own example format, `2021-09-25 08:03:00.123456+00:00` (docs/vendor-apis.md); the client percent-encodes the `+`.
 */
export function formatPowerOfficeSince(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2021-09-25T08:03:00.123Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000+00:00`;
}

function contactPersonPath(contactId: number | string, id: number | string): string {
  return `ContactPersons/${encodeURIComponent(String(contactId))}/${encodeURIComponent(String(id))}`;
}
