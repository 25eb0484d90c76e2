import { z } from 'zod';
import type { TidsbankenConfig } from '../config.js';
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
  type RequestOptions,
  type UpstreamContext,
} from '../lib/upstream.js';
import { parseListItems, type ListPage } from '../lib/list-page.js';
import {
  AnsattSchema,
  KundeSchema,
  odataList,
  ProsjektSchema,
  type Ansatt,
  type Kunde,
  type Prosjekt,
} from './schemas.js';

// Tidsbanken API v3 (docs/vendor-apis.md). OData v4 reads with a `value`
// envelope; writes as Sesam's connector does them, since the official reference could not
// be reached (array bodies, caller-supplied Id, no nulls on insert).

export interface TidsbankenClientOptions {
  config: TidsbankenConfig;
  pacer: Pacer;
  logger: Logger;
  metrics: Metrics;
  timeoutMs?: number;
  maxAttempts?: number;
  fetch?: typeof fetch;
  /** `$top` of a list page; the API's maximum is not documented (docs/vendor-apis.md). */
  pageSize?: number;
  /** Backoff base between create attempts and 5xx retries (tests shorten it). */
  backoffBaseMs?: number;
}

/** Options of a create: `lookupFirst` checks whether an earlier attempt already landed. */
export interface CreateOptions extends RequestOptions {
  lookupFirst?: boolean;
}

const AnsattListSchema = odataList(AnsattSchema);
const KundeListSchema = odataList(KundeSchema);
const ProsjektListSchema = odataList(ProsjektSchema);
// A list page is parsed item by item (one bad record must not fail the page).
const AnyListSchema = odataList(z.unknown());
// What a write answers is not documented (docs/vendor-apis.md): maybe the entity, maybe an
// array of them, maybe nothing. Accept anything and look for a record in it.
const AnyBody = z.unknown();

export class TidsbankenClient {
  private readonly upstream: UpstreamContext;
  private readonly baseUrl: string;
  private readonly headers: Record<string, string>;
  private readonly pageSize: number;

  constructor(options: TidsbankenClientOptions) {
    this.baseUrl = options.config.baseUrl.replace(/\/+$/, '');
    this.headers = {
      'tb-key': options.config.apiKey,
      'ocp-apim-subscription-key': options.config.subscriptionKey,
      'x-api-version': '3.0',
    };
    this.pageSize = options.pageSize ?? 100;
    this.upstream = createUpstreamContext({
      system: 'tidsbanken',
      pacer: options.pacer,
      logger: options.logger.child({ module: 'tidsbanken-client' }),
      metrics: options.metrics,
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
      ...(options.backoffBaseMs !== undefined ? { backoffBaseMs: options.backoffBaseMs } : {}),
    });
  }

  // ---- Ansatt ------------------------------------------------------------------------

  /** One employee by Id (the employee number), or undefined when there is none. */
  async getAnsatt(id: number, options: RequestOptions = {}): Promise<Ansatt | undefined> {
    // Key syntax `ansatt/ansatt(100)` is not confirmed; Sesam's filter lookup is (docs/vendor-apis.md).
    const page = await this.get(
      'ansatt/ansatt',
      { $filter: `Id eq ${assertAnsattId(id)}`, $select: '*', $top: 1 },
      AnsattListSchema,
      options,
    );
    return page.value[0];
  }

  /** Pages of employees changed after `since` (an ISO timestamp); all of them without it. */
  listAnsatteChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Ansatt>, void, undefined> {
    return this.pages('ansatt/ansatt', since, AnsattSchema, options);
  }

  listAllAnsatte(options: RequestOptions = {}): AsyncGenerator<ListPage<Ansatt>, void, undefined> {
    return this.pages('ansatt/ansatt', undefined, AnsattSchema, options);
  }

  /**
   * Creates an employee. The caller supplies `Id` (docs/vendor-apis.md: "Need to supply primary
   * key at insert"), which also makes the create idempotent: when the answer is lost, the Id
   * is looked up before anything is sent again.
   */
  async createAnsatt(
    record: Ansatt | Record<string, unknown>,
    options: CreateOptions = {},
  ): Promise<Ansatt> {
    const id = assertAnsattId((record as { Id?: unknown }).Id);
    return this.createIdempotently(
      () =>
        this.write(
          'POST',
          // Plural, capital A, and an array body (Sesam commit 8c94492, docs/vendor-apis.md).
          'ansatt/Ansatte',
          [stripNulls(record)],
          options,
        ),
      () => this.getAnsatt(id, options),
      AnsattSchema,
      options,
    );
  }

  /** Replaces an employee: the full object, keyed by Id, in an array (docs/vendor-apis.md). */
  async updateAnsatt(
    record: Ansatt | Record<string, unknown>,
    options: RequestOptions = {},
  ): Promise<Ansatt | undefined> {
    assertAnsattId((record as { Id?: unknown }).Id);
    const body = await this.write('PUT', 'ansatt/ansatt', [withoutAnnotations(record)], options);
    return findRecord(body, AnsattSchema);
  }

  // ---- Kunde -------------------------------------------------------------------------

  /** One customer by its string Id, or undefined when there is none. */
  async getKunde(id: string, options: RequestOptions = {}): Promise<Kunde | undefined> {
    // `$filter=Id eq '…'` rather than the key syntax `Kunde('…')`, which Sesam had to drop
    // for Prosjekt (IS-17087, docs/vendor-apis.md).
    const page = await this.get(
      'prosjekt/Kunde',
      { $filter: `Id eq ${odataString(id)}`, $select: '*', $top: 1 },
      KundeListSchema,
      options,
    );
    return page.value[0];
  }

  listKunderChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Kunde>, void, undefined> {
    return this.pages('prosjekt/Kunde', since, KundeSchema, options);
  }

  listAllKunder(options: RequestOptions = {}): AsyncGenerator<ListPage<Kunde>, void, undefined> {
    return this.pages('prosjekt/Kunde', undefined, KundeSchema, options);
  }

  /** Creates a customer: a single object, not an array, caller-supplied Id (docs/vendor-apis.md). */
  async createKunde(
    record: Kunde | Record<string, unknown>,
    options: CreateOptions = {},
  ): Promise<Kunde> {
    const id = assertKundeId((record as { Id?: unknown }).Id);
    return this.createIdempotently(
      () => this.write('POST', 'prosjekt/Kunde', stripNulls({ ...record, Id: id }), options),
      () => this.getKunde(id, options),
      KundeSchema,
      options,
    );
  }

  /** Replaces a customer: the full object in an array (docs/vendor-apis.md). */
  async updateKunde(
    record: Kunde | Record<string, unknown>,
    options: RequestOptions = {},
  ): Promise<Kunde | undefined> {
    const id = assertKundeId((record as { Id?: unknown }).Id);
    const body = await this.write(
      'PUT',
      'prosjekt/Kunde',
      [withoutAnnotations({ ...record, Id: id })],
      options,
    );
    return findRecord(body, KundeSchema);
  }

  // ---- Prosjekt: next to Kunde in the prosjekt area, with the same shapes -----------------

  /** One project by its string Id, or undefined when there is none. */
  async getProsjekt(id: string, options: RequestOptions = {}): Promise<Prosjekt | undefined> {
    // `$filter=Id eq '…'`: the key syntax `Prosjekt('…')` is the one Sesam had to drop.
    const page = await this.get(
      'prosjekt/Prosjekt',
      { $filter: `Id eq ${odataString(id)}`, $select: '*', $top: 1 },
      ProsjektListSchema,
      options,
    );
    return page.value[0];
  }

  listProsjekterChangedSince(
    since?: string,
    options: RequestOptions = {},
  ): AsyncGenerator<ListPage<Prosjekt>, void, undefined> {
    return this.pages('prosjekt/Prosjekt', since, ProsjektSchema, options);
  }

  /**
   * Creates a project: one object with the caller's Id, like a Kunde (docs/vendor-apis.md).
   * The Id is looked up before the POST (always: the Id is the origin id of a project made
   * from a PowerOffice Project), so a create never collides with an earlier one.
   */
  async createProsjekt(
    record: Prosjekt | Record<string, unknown>,
    options: CreateOptions = {},
  ): Promise<Prosjekt> {
    const id = assertKundeId((record as { Id?: unknown }).Id);
    return this.createIdempotently(
      () => this.write('POST', 'prosjekt/Prosjekt', stripNulls({ ...record, Id: id }), options),
      () => this.getProsjekt(id, options),
      ProsjektSchema,
      { ...options, lookupFirst: true },
    );
  }

  /** Replaces a project: the full object in an array, like a Kunde. */
  async updateProsjekt(
    record: Prosjekt | Record<string, unknown>,
    options: RequestOptions = {},
  ): Promise<Prosjekt | undefined> {
    const id = assertKundeId((record as { Id?: unknown }).Id);
    const body = await this.write(
      'PUT',
      'prosjekt/Prosjekt',
      [withoutAnnotations({ ...record, Id: id })],
      options,
    );
    return findRecord(body, ProsjektSchema);
  }

  // ---- plumbing ----------------------------------------------------------------------

  private get<S extends z.ZodType>(
    path: string,
    query: Record<string, string | number | undefined>,
    schema: S,
    options: RequestOptions,
  ): Promise<z.infer<S>> {
    return this.getUrl(`${this.baseUrl}/${path}?${queryString(query)}`, schema, options);
  }

  private async getUrl<S extends z.ZodType>(
    url: string,
    schema: S,
    options: RequestOptions,
  ): Promise<z.infer<S>> {
    const { data } = await upstreamRequest(this.upstream, {
      method: 'GET',
      url,
      priority: options.priority ?? 'read',
      headers: this.headers,
      schema,
      ...passOn(options),
    });
    return data as z.infer<S>;
  }

  private async write(
    method: 'POST' | 'PUT',
    path: string,
    json: unknown,
    options: RequestOptions,
  ): Promise<unknown> {
    const { data } = await upstreamRequest(this.upstream, {
      method,
      url: `${this.baseUrl}/${path}`,
      priority: options.priority ?? 'write',
      headers: this.headers,
      json,
      schema: AnyBody,
      ...passOn(options),
    });
    return data;
  }

  /**
   * OData paging: `$top`/`$skip`, stable by `$orderby=Id`. A server may cap a page below the
   * `$top` asked (OData server-driven paging): then `@odata.nextLink` says where the rest is,
   * and it is followed. Without a link, only an EMPTY page ends the read — a short page may
   * be a capped one, and treating it as the last silently loses every record after it.
   */
  private async *pages<T>(
    path: string,
    since: string | undefined,
    schema: z.ZodType<T>,
    options: RequestOptions,
  ): AsyncGenerator<ListPage<T>, void, undefined> {
    const readOptions = { ...options, priority: options.priority ?? 'read' } as RequestOptions;
    const query = {
      $select: '*',
      // Unquoted timestamp literal, as Sesam sends it (docs/vendor-apis.md).
      $filter: since !== undefined ? `SistEndretDato gt ${since}` : undefined,
      $orderby: 'Id',
      $top: this.pageSize,
    };
    let url = `${this.baseUrl}/${path}?${queryString({ ...query, $skip: 0 })}`;
    let read = 0;
    for (;;) {
      const page = await this.getUrl(url, AnyListSchema, readOptions);
      read += page.value.length;
      if (page.value.length > 0) yield parseListItems(page.value, schema);
      const next = nextLinkUrl(this.baseUrl, path, page, url);
      if (next !== undefined) {
        url = next;
        continue;
      }
      if (page.value.length === 0) return;
      url = `${this.baseUrl}/${path}?${queryString({ ...query, $skip: read })}`;
    }
  }

  /**
   * POST, and when the answer is lost (5xx, timeout, network), look the Id up before sending
   * again: a POST is never repeated blindly, so a retried create never makes a duplicate.
   */
  private async createIdempotently<T>(
    post: () => Promise<unknown>,
    lookup: () => Promise<T | undefined>,
    schema: z.ZodType<T>,
    options: CreateOptions,
  ): Promise<T> {
    if (options.lookupFirst === true) {
      const existing = await lookup();
      if (existing !== undefined) return existing;
    }
    for (let attempt = 1; ; attempt++) {
      let body: unknown;
      try {
        body = await post();
      } catch (error) {
        // A 429 after all attempts was refused, not lost; anything else retryable may have
        // landed.
        const unknownOutcome =
          error instanceof UpstreamError && error.retryable && error.upstreamStatus !== 429;
        if (!unknownOutcome || attempt >= (options.once === true ? 1 : this.upstream.maxAttempts))
          throw error;
        const existing = await lookup();
        if (existing !== undefined) return existing;
        await this.upstream.sleep(backoffMs(this.upstream, attempt), options.signal);
        continue;
      }
      return findRecord(body, schema) ?? (await landed(lookup));
    }
  }
}

/**
 * Where a capped page's `@odata.nextLink` points, on our own base URL and path: the link may
 * name the API's internal per-area host (as `@odata.context` does, docs/vendor-apis.md), and only
 * our configured host is reachable and carries our keys, so only its query is taken. A link
 * that repeats the current page is ignored (it would loop forever).
 */
function nextLinkUrl(
  baseUrl: string,
  path: string,
  page: unknown,
  current: string,
): string | undefined {
  const link = (page as Record<string, unknown>)['@odata.nextLink'];
  if (typeof link !== 'string' || link === '') return undefined;
  let search: string;
  try {
    search = new URL(link, `${baseUrl}/${path}`).search;
  } catch {
    return undefined;
  }
  const next = `${baseUrl}/${path}${search}`;
  return next === current ? undefined : next;
}

async function landed<T>(lookup: () => Promise<T | undefined>): Promise<T> {
  const found = await lookup();
  if (found === undefined) {
    throw new UpstreamError(
      'tidsbanken',
      undefined,
      true,
      'tidsbanken accepted a create, but the record cannot be read back',
    );
  }
  return found;
}

/** The record in a write's answer: the entity itself, `[entity]`, or `{ value: [entity] }`. */
function findRecord<T>(body: unknown, schema: z.ZodType<T>): T | undefined {
  const candidates: unknown[] = Array.isArray(body)
    ? body.slice(0, 1)
    : body !== null &&
        typeof body === 'object' &&
        Array.isArray((body as { value?: unknown }).value)
      ? (body as { value: unknown[] }).value.slice(0, 1)
      : [body];
  for (const candidate of candidates) {
    const parsed = schema.safeParse(withoutAnnotations(candidate));
    if (parsed.success) return parsed.data;
  }
  return undefined;
}

/**
 * Drops OData annotations (`@odata.context` on a single-entity answer): they are not
 * properties, and the API rejects unknown properties in a write body.
 */
function withoutAnnotations(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).filter(([key]) => !key.includes('@')));
}

/** Tidsbanken rejects null values on insert (Sesam's ansatt.json/kunde.json, docs/vendor-apis.md). */
export function stripNulls(record: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(record)) {
    if (value === null || value === undefined || key.includes('@')) continue;
    out[key] =
      typeof value === 'object' && !Array.isArray(value)
        ? stripNulls(value as Record<string, unknown>)
        : value;
  }
  return out;
}

/** An unquoted ISO 8601 UTC literal, as Sesam filters (docs/vendor-apis.md). */
export function formatTidsbankenSince(ms: number): string {
  return new Date(ms).toISOString();
}

/** OData string literal: single quotes, an embedded quote doubled. */
function odataString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

function assertAnsattId(id: unknown): number {
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) {
    throw new TypeError('An Ansatt needs a numeric Id (the employee number)');
  }
  return id;
}

/** Kunde and Prosjekt have string keys; a number is taken as its decimal string. */
function assertKundeId(id: unknown): string {
  if (typeof id === 'number' && Number.isSafeInteger(id)) return String(id);
  if (typeof id !== 'string' || id === '')
    throw new TypeError('A Kunde or Prosjekt needs a string Id');
  return id;
}
