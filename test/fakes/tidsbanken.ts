import { randomUUID } from 'node:crypto';
import {
  FakeHttpServer,
  jsonResponse,
  type FakeRequest,
  type FakeResponse,
  type FakeRoute,
} from './fake-server.js';
import {
  compileFilter,
  compileOrderBy,
  ODataError,
  resolveSelect,
  type EdmType,
  type EntityType,
} from './odata.js';

// A fake Tidsbanken API v3 (docs/vendor-apis.md): Ansatt and Kunde over OData,
// behind an APIM-style gateway that wants three headers. See README.md for every choice
// made where the real API is unconfirmed.

type TbRecord = Record<string, unknown>;

export interface FakeTidsbankenOptions {
  apiKey?: string;
  subscriptionKey?: string;
  /** Unset by default: Tidsbanken publishes no limit (docs/vendor-apis.md). */
  rateLimitPerSecond?: number;
  /** Shifts every SistEndretDato the fake writes (Kunde timestamps have been an hour off, docs/vendor-apis.md). */
  clockSkewMs?: number;
  /**
   * Server-driven paging (OData 4.01 §11.2.6.7): a list page holds at most this many rows
   * whatever `$top` asked, and says where the rest is with `@odata.nextLink` (unless
   * `pageCapNextLink` is false). Under vitest the default is TIDSBANKEN_TEST_PAGE_CAP, so
   * every test that reads more rows than that meets server-driven paging; elsewhere
   * (benches) there is no cap beyond TIDSBANKEN_MAX_TOP. Pass undefined for no cap.
   */
  pageCap?: number | undefined;
  /** Whether a capped page carries `@odata.nextLink`; default true. */
  pageCapNextLink?: boolean;
  /** Milliseconds for request arrival times and the rate limit window (default performance.now). */
  clock?: () => number;
}

/**
 * The page cap tests run with: below the client's page size (100), so paging is exercised
 * by any test that lists more than a handful of records.
 */
export const TIDSBANKEN_TEST_PAGE_CAP = 10;

/** The documented maximum of `$top` in this fake, and the page size when `$top` is absent. */
export const TIDSBANKEN_MAX_TOP = 1000;

// docs/vendor-apis.md field table; types from the Dec 2023 `$select=*` sample. Fastlonn and
// PersonaliaBekreftet were null in the sample: their types here are guesses.
const ANSATT: EntityType = {
  name: 'Ansatt',
  properties: {
    Id: 'int',
    Fornavn: 'string',
    Etternavn: 'string',
    Adresse: 'string',
    Postnummer: 'string',
    Poststed: 'string',
    TlfPrivat: 'string',
    Mobil: 'string',
    Epost: 'string',
    Fodt: 'date',
    Tittel: 'string',
    Lonnskonto: 'string',
    AnsattDato: 'date',
    Personnummer: 'string',
    Sluttet: 'bool',
    SluttetDato: 'date',
    AvdelingId: 'string',
    Aktiv: 'bool',
    Identifikator: 'string',
    AntallFerieDager: 'number',
    Notat: 'string',
    ProsjektId: 'string',
    Stillingsprosent: 'number',
    Element1Id: 'string',
    Element2Id: 'string',
    Kjonn: 'string',
    Kommune: 'int',
    MalId: 'int',
    Innleie: 'bool',
    Fastlonn: 'number',
    IceNavn: 'string',
    IceNr: 'string',
    PersonaliaBekreftet: 'datetime',
    AntallHalveFerieDager: 'number',
    SistEndretDato: 'datetime',
    SistEndretAvId: 'int',
    OpprettetDato: 'datetime',
    OpprettetAvId: 'int',
  },
};

// docs/vendor-apis.md: names confirmed, all strings per Sesam; no raw sample exists.
const KUNDE: EntityType = {
  name: 'Kunde',
  properties: {
    Id: 'string',
    Navn: 'string',
    Epost: 'string',
    Telefon: 'string',
    Mobil: 'string',
    Url: 'string',
    Organisasjonsnummer: 'string',
    Gateadresse: 'string',
    Postadresse: 'string',
    Postnr: 'string',
    Poststed: 'string',
    Leveringsadresse: 'string',
    Leveringsadresse2: 'string',
    LevPostNr: 'string',
    LevPoststed: 'string',
    SistEndretDato: 'datetime',
  },
};

// The v3 Prosjekt fields the sync uses and their neighbours (docs/vendor-apis.md). KundeId
// names a Kunde (string), AnsvarligId an Ansatt (int).
const PROSJEKT: EntityType = {
  name: 'Prosjekt',
  properties: {
    Id: 'string',
    PostId: 'int',
    Navn: 'string',
    Notat: 'string',
    Status: 'string',
    KundeId: 'string',
    FakturaKundeId: 'string',
    AvdelingId: 'string',
    AnsvarligId: 'int',
    EksternId: 'string',
    Startet: 'bool',
    StartDato: 'date',
    Ferdig: 'bool',
    FerdigDato: 'date',
    Avsluttet: 'bool',
    AvsluttetDato: 'date',
    InterntProsjekt: 'bool',
    SistEndretDato: 'datetime',
    SistEndretAvId: 'int',
    OpprettetDato: 'datetime',
    OpprettetAvId: 'int',
  },
};

const PROSJEKT_DEFAULTS: TbRecord = {
  PostId: null,
  AnsvarligId: null,
  Startet: false,
  StartDato: null,
  Ferdig: false,
  FerdigDato: null,
  Avsluttet: false,
  AvsluttetDato: null,
  InterntProsjekt: false,
  SistEndretAvId: null,
  OpprettetAvId: null,
};

/** Values of a new record's fields the caller left out; "" for blank text like the real API. */
const ANSATT_DEFAULTS: TbRecord = {
  Fodt: null,
  AnsattDato: null,
  Sluttet: false,
  SluttetDato: null,
  AvdelingId: '1',
  Aktiv: true,
  AntallFerieDager: 25,
  ProsjektId: '0',
  Stillingsprosent: 100,
  Kommune: 9999,
  MalId: 2147400000,
  Innleie: false,
  Fastlonn: null,
  PersonaliaBekreftet: null,
  AntallHalveFerieDager: 0,
  SistEndretAvId: null,
  OpprettetAvId: null,
};

// Set by the server on every write; a value in a request body is ignored, not an error.
const SERVER_MANAGED = new Set([
  'SistEndretDato',
  'OpprettetDato',
  'SistEndretAvId',
  'OpprettetAvId',
]);

interface EntitySet<K extends number | string> {
  entity: EntityType;
  store: Map<K, TbRecord>;
  /** The per-area host the real API puts in @odata.context (docs/vendor-apis.md). */
  contextRoot: string;
  defaults: TbRecord;
}

class TidsbankenHttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function odataError(status: number, code: string, message: string): FakeResponse {
  return jsonResponse(status, { error: { code, message } });
}

function apimError(status: number, message: string): FakeResponse {
  return jsonResponse(status, { statusCode: status, message });
}

const DATE_VALUE = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})?)?$/;

function hasType(value: unknown, type: EdmType): boolean {
  switch (type) {
    case 'int':
      return Number.isInteger(value);
    case 'number':
      return typeof value === 'number' && Number.isFinite(value);
    case 'bool':
      return typeof value === 'boolean';
    case 'string':
      return typeof value === 'string';
    case 'date':
    case 'datetime':
      return (
        typeof value === 'string' && DATE_VALUE.test(value) && !Number.isNaN(Date.parse(value))
      );
  }
}

export class FakeTidsbanken extends FakeHttpServer {
  readonly apiKey: string;
  readonly subscriptionKey: string;
  /** Mutable: tests may change the skew between writes. */
  clockSkewMs: number;
  /** Mutable: see FakeTidsbankenOptions.pageCap. */
  pageCap: number | undefined;
  pageCapNextLink: boolean;
  /**
   * While true, every request is refused with 401 as an invalid `tb-key` (a revoked or
   * rotated API key).
   */
  refuseCredentials = false;
  readonly ansatte = new Map<number, TbRecord>();
  readonly kunder = new Map<string, TbRecord>();
  readonly prosjekter = new Map<string, TbRecord>();
  private readonly ansattSet: EntitySet<number>;
  private readonly kundeSet: EntitySet<string>;
  private readonly prosjektSet: EntitySet<string>;
  private nextPostId = 1;

  constructor(opts: FakeTidsbankenOptions = {}) {
    const routes: FakeRoute[] = [];
    super({
      routes,
      clock: opts.clock,
      rateLimitPerSecond: opts.rateLimitPerSecond,
      rateLimitKey: (req) => req.headers['ocp-apim-subscription-key'] ?? '',
      gateway: (req) => this.authenticate(req),
      tooManyRequests: (seconds) => ({
        ...apimError(429, `Rate limit is exceeded. Try again in ${seconds} seconds.`),
        headers: { 'Retry-After': String(seconds) },
      }),
      serverError: (status) =>
        status === 500
          ? odataError(500, 'InternalServerError', 'An error has occurred.')
          : apimError(503, 'Service Unavailable'),
      notFound: (req) => apimError(404, `Resource not found: ${req.method} ${req.path}`),
      methodNotAllowed: (req) =>
        odataError(
          405,
          'MethodNotAllowed',
          `The HTTP method '${req.method}' is not allowed on ${req.path}.`,
        ),
    });
    this.apiKey = opts.apiKey ?? randomUUID();
    this.subscriptionKey = opts.subscriptionKey ?? randomUUID().replaceAll('-', '');
    this.clockSkewMs = opts.clockSkewMs ?? 0;
    this.pageCap =
      'pageCap' in opts
        ? opts.pageCap
        : process.env.VITEST !== undefined
          ? TIDSBANKEN_TEST_PAGE_CAP
          : undefined;
    this.pageCapNextLink = opts.pageCapNextLink ?? true;
    this.ansattSet = {
      entity: ANSATT,
      store: this.ansatte,
      contextRoot: 'https://api-ansatte.tidsbanken.net',
      defaults: ANSATT_DEFAULTS,
    };
    this.kundeSet = {
      entity: KUNDE,
      store: this.kunder,
      contextRoot: 'https://api-prosjekt.tidsbanken.net',
      defaults: {},
    };
    this.prosjektSet = {
      entity: PROSJEKT,
      store: this.prosjekter,
      contextRoot: 'https://api-prosjekt.tidsbanken.net',
      defaults: PROSJEKT_DEFAULTS,
    };
    // Paths are matched case-insensitively: the docs spell them `ansatt/ansatt` and
    // `ansatt/Ansatte`, and ASP.NET routing ignores case.
    routes.push(
      {
        method: 'GET',
        pattern: /^\/ansatt\/ansatt\/?$/i,
        handle: (req) => this.list(this.ansattSet, req),
      },
      {
        method: 'GET',
        pattern: /^\/ansatt\/ansatt\((\d+)\)$/i,
        handle: (req) => this.getByKey(this.ansattSet, Number(req.params[0]), req),
      },
      {
        method: 'POST',
        pattern: /^\/ansatt\/ansatte\/?$/i,
        handle: (req) => this.insertAnsatte(req),
      },
      {
        method: 'PUT',
        pattern: /^\/ansatt\/ansatt\/?$/i,
        handle: (req) => this.update(this.ansattSet, req),
      },
      {
        method: 'GET',
        pattern: /^\/prosjekt\/kunde\/?$/i,
        handle: (req) => this.list(this.kundeSet, req),
      },
      {
        // Sesam's key syntax `Kunde('K123')`, with '' as an escaped quote.
        method: 'GET',
        pattern: /^\/prosjekt\/kunde\('((?:[^']|'')*)'\)$/i,
        handle: (req) => this.getByKey(this.kundeSet, req.params[0]!.replaceAll("''", "'"), req),
      },
      {
        method: 'POST',
        pattern: /^\/prosjekt\/kunde\/?$/i,
        handle: (req) => this.insertKunde(req),
      },
      {
        method: 'PUT',
        pattern: /^\/prosjekt\/kunde\/?$/i,
        handle: (req) => this.update(this.kundeSet, req),
      },
      // No key syntax `Prosjekt('…')`: the API stopped answering it (Sesam moved to $filter).
      {
        method: 'GET',
        pattern: /^\/prosjekt\/prosjekt\/?$/i,
        handle: (req) => this.list(this.prosjektSet, req),
      },
      {
        method: 'POST',
        pattern: /^\/prosjekt\/prosjekt\/?$/i,
        handle: (req) => this.insertOne(this.prosjektSet, req),
      },
      {
        method: 'PUT',
        pattern: /^\/prosjekt\/prosjekt\/?$/i,
        handle: (req) => this.update(this.prosjektSet, req),
      },
    );
  }

  /** Adds an employee as if created in Tidsbanken (no request logged). Returns a copy. */
  seedAnsatt(partial: TbRecord = {}): TbRecord {
    const id = partial.Id ?? Math.max(99, ...this.ansatte.keys()) + 1;
    if (!Number.isInteger(id))
      throw new Error(`Ansatt Id must be an integer, got ${JSON.stringify(id)}`);
    const record = this.newRecord(this.ansattSet, { ...partial, Id: id }, partial);
    this.ansatte.set(id as number, record);
    return structuredClone(record);
  }

  /** Adds a customer as if created in Tidsbanken (no request logged). Returns a copy. */
  seedKunde(partial: TbRecord = {}): TbRecord {
    const id = partial.Id ?? String(10000 + this.kunder.size + 1);
    if (typeof id !== 'string' || id === '') throw new Error('Kunde Id must be a non-empty string');
    const record = this.newRecord(this.kundeSet, { ...partial, Id: id }, partial);
    this.kunder.set(id, record);
    return structuredClone(record);
  }

  /** Adds a project as if created in Tidsbanken (no request logged). Returns a copy. */
  seedProsjekt(partial: TbRecord = {}): TbRecord {
    const id = partial.Id ?? `P${this.prosjekter.size + 1}`;
    if (typeof id !== 'string' || id === '')
      throw new Error('Prosjekt Id must be a non-empty string');
    const record = this.newRecord(this.prosjektSet, { ...partial, Id: id }, partial);
    record.PostId = this.nextPostId++;
    this.prosjekter.set(id, record);
    return structuredClone(record);
  }

  editProsjekt(id: string, patch: TbRecord): TbRecord {
    return this.edit(this.prosjektSet, id, patch);
  }

  getProsjekt(id: string): TbRecord | undefined {
    const record = this.prosjekter.get(id);
    return record && structuredClone(record);
  }

  /** A user edits the employee in the Tidsbanken UI: SistEndretDato moves (unless given). */
  editAnsatt(id: number, patch: TbRecord): TbRecord {
    return this.edit(this.ansattSet, id, patch);
  }

  editKunde(id: string, patch: TbRecord): TbRecord {
    return this.edit(this.kundeSet, id, patch);
  }

  getAnsatt(id: number): TbRecord | undefined {
    const record = this.ansatte.get(id);
    return record && structuredClone(record);
  }

  getKunde(id: string): TbRecord | undefined {
    const record = this.kunder.get(id);
    return record && structuredClone(record);
  }

  /** The SistEndretDato the fake writes now: ISO UTC with ms, shifted by clockSkewMs. */
  now(): string {
    return new Date(Date.now() + this.clockSkewMs).toISOString();
  }

  private edit<K extends number | string>(set: EntitySet<K>, id: K, patch: TbRecord): TbRecord {
    const record = set.store.get(id);
    if (!record) throw new Error(`${set.entity.name} ${String(id)} does not exist in the fake`);
    Object.assign(record, patch, { Id: id, SistEndretDato: patch.SistEndretDato ?? this.now() });
    return structuredClone(record);
  }

  private newRecord<K extends number | string>(
    set: EntitySet<K>,
    fields: TbRecord,
    timestamps: TbRecord = {},
  ): TbRecord {
    const record: TbRecord = {};
    for (const [name, type] of Object.entries(set.entity.properties)) {
      record[name] = name in set.defaults ? set.defaults[name] : type === 'string' ? '' : null;
    }
    const now = this.now();
    Object.assign(record, fields);
    record.SistEndretDato = timestamps.SistEndretDato ?? now;
    if ('OpprettetDato' in set.entity.properties)
      record.OpprettetDato = timestamps.OpprettetDato ?? now;
    return record;
  }

  // docs/vendor-apis.md: tb-key, Ocp-Apim-Subscription-Key and x-api-version.
  // The 401 wording for the subscription key is Azure APIM's own.
  private authenticate(req: FakeRequest): FakeResponse | undefined {
    const subscription = req.headers['ocp-apim-subscription-key'];
    if (subscription === undefined) {
      return apimError(
        401,
        'Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.',
      );
    }
    if (subscription !== this.subscriptionKey) {
      return apimError(
        401,
        'Access denied due to invalid subscription key. Make sure to provide a valid key for an active subscription.',
      );
    }
    if (req.headers['x-api-version'] !== '3.0') {
      return apimError(
        401,
        "Access denied due to missing or unsupported 'x-api-version' header. Use 3.0.",
      );
    }
    const tbKey = req.headers['tb-key'];
    if (tbKey === undefined) return apimError(401, "Access denied due to missing 'tb-key' header.");
    if (tbKey !== this.apiKey || this.refuseCredentials)
      return apimError(401, "Access denied due to invalid 'tb-key'.");
    return undefined;
  }

  private list<K extends number | string>(set: EntitySet<K>, req: FakeRequest): FakeResponse {
    try {
      const options = systemQueryOptions(req.query);
      let rows = [...set.store.values()];
      if (options.$filter !== undefined)
        rows = rows.filter(compileFilter(options.$filter, set.entity));
      rows.sort(compileOrderBy(options.$orderby ?? 'Id', set.entity));
      const count = rows.length;
      const skip = parseCount('$skip', options.$skip) ?? 0;
      const top = parseCount('$top', options.$top) ?? TIDSBANKEN_MAX_TOP;
      if (top > TIDSBANKEN_MAX_TOP) {
        // ASP.NET OData's wording for a query above [EnableQuery(MaxTop = …)].
        throw new ODataError(
          `The limit of '${TIDSBANKEN_MAX_TOP}' for Top query has been exceeded. The value from the incoming request is '${top}'.`,
        );
      }
      const select =
        options.$select === undefined ? undefined : resolveSelect(options.$select, set.entity);
      const served = this.pageCap !== undefined ? Math.min(top, this.pageCap) : top;
      const value = rows.slice(skip, skip + served).map((row) => project(row, select));
      const capped = served < top && skip + served < rows.length;
      return jsonResponse(200, {
        '@odata.context': this.context(set, select),
        ...(options.$count?.toLowerCase() === 'true' ? { '@odata.count': count } : {}),
        value,
        ...(capped && this.pageCapNextLink
          ? { '@odata.nextLink': this.nextLink(req, skip + served, top - served) }
          : {}),
      });
    } catch (error) {
      if (error instanceof ODataError) return odataError(400, 'BadRequest', error.message);
      throw error;
    }
  }

  /** The rest of a capped page's query: the same options, `$skip` moved on, `$top` reduced. */
  private nextLink(req: FakeRequest, skip: number, top: number): string {
    const query = new URLSearchParams();
    for (const [name, value] of Object.entries(req.query)) {
      const lower = name.toLowerCase();
      if (lower !== '$skip' && lower !== '$top') query.set(name, value);
    }
    query.set('$top', String(top));
    query.set('$skip', String(skip));
    return `${this.url}${req.path}?${query.toString()}`;
  }

  private getByKey<K extends number | string>(
    set: EntitySet<K>,
    id: K,
    req: FakeRequest,
  ): FakeResponse {
    try {
      const options = systemQueryOptions(req.query);
      const record = set.store.get(id);
      if (!record) {
        return odataError(
          404,
          'NotFound',
          `${set.entity.name} with key ${String(id)} was not found.`,
        );
      }
      const select =
        options.$select === undefined ? undefined : resolveSelect(options.$select, set.entity);
      return jsonResponse(200, {
        '@odata.context': `${this.context(set, select)}/$entity`,
        ...project(record, select),
      });
    } catch (error) {
      if (error instanceof ODataError) return odataError(400, 'BadRequest', error.message);
      throw error;
    }
  }

  private context<K extends number | string>(
    set: EntitySet<K>,
    select: string[] | undefined,
  ): string {
    return `${set.contextRoot}/$metadata#${set.entity.name}(${select ? select.join(',') : '*'})`;
  }

  // POST ansatt/Ansatte takes an ARRAY with caller-supplied Ids (docs/vendor-apis.md).
  private insertAnsatte(req: FakeRequest): FakeResponse {
    return this.write(req, () => {
      const items = this.arrayBody(req, 'Ansatt');
      const seen = new Set<number>();
      const records = items.map((item) => {
        const fields = this.checkFields(this.ansattSet, item, 'insert') as TbRecord & {
          Id: number;
        };
        if (this.ansatte.has(fields.Id) || seen.has(fields.Id)) {
          throw new TidsbankenHttpError(
            409,
            'Conflict',
            `An Ansatt with Id ${fields.Id} already exists.`,
          );
        }
        seen.add(fields.Id);
        return this.newRecord(this.ansattSet, fields);
      });
      for (const record of records) this.ansatte.set(record.Id as number, record);
      return jsonResponse(201, {
        '@odata.context': this.context(this.ansattSet, undefined),
        value: records,
      });
    });
  }

  // POST prosjekt/Kunde takes ONE object (Sesam does not wrap Kunde inserts; docs/vendor-apis.md);
  // Prosjekt is assumed to take the same shape.
  private insertKunde(req: FakeRequest): FakeResponse {
    return this.insertOne(this.kundeSet, req);
  }

  private insertOne(set: EntitySet<string>, req: FakeRequest): FakeResponse {
    return this.write(req, () => {
      const fields = this.checkFields(set, this.jsonBody(req), 'insert') as TbRecord & {
        Id: string;
      };
      if (set.store.has(fields.Id)) {
        throw new TidsbankenHttpError(
          409,
          'Conflict',
          `A ${set.entity.name} with Id '${fields.Id}' already exists.`,
        );
      }
      const record = this.newRecord(set, fields);
      if (set === this.prosjektSet) record.PostId = this.nextPostId++;
      set.store.set(fields.Id, record);
      return jsonResponse(201, {
        '@odata.context': `${this.context(set, undefined)}/$entity`,
        ...record,
      });
    });
  }

  // PUT takes an ARRAY of full objects keyed by Id (docs/vendor-apis.md). PUT replaces: a field
  // left out is reset to its blank value, as an OData PUT would; the whole batch is
  // checked before anything is written.
  private update<K extends number | string>(set: EntitySet<K>, req: FakeRequest): FakeResponse {
    return this.write(req, () => {
      const items = this.arrayBody(req, set.entity.name);
      const replacements = items.map((item) => {
        const fields = this.checkFields(set, item, 'update');
        const existing = set.store.get(fields.Id as K);
        if (!existing) {
          throw new TidsbankenHttpError(
            404,
            'NotFound',
            `${set.entity.name} with Id ${JSON.stringify(fields.Id)} was not found.`,
          );
        }
        return this.newRecord(set, fields, { OpprettetDato: existing.OpprettetDato });
      });
      for (const record of replacements) {
        if ('OpprettetAvId' in record)
          record.OpprettetAvId = set.store.get(record.Id as K)!.OpprettetAvId;
        set.store.set(record.Id as K, record);
      }
      return jsonResponse(200, {
        '@odata.context': this.context(set, undefined),
        value: replacements,
      });
    });
  }

  private write(req: FakeRequest, run: () => FakeResponse): FakeResponse {
    try {
      return run();
    } catch (error) {
      if (error instanceof TidsbankenHttpError)
        return odataError(error.status, error.code, error.message);
      throw error;
    }
  }

  private jsonBody(req: FakeRequest): unknown {
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/json') {
      throw new TidsbankenHttpError(
        415,
        'UnsupportedMediaType',
        'Content-Type must be application/json.',
      );
    }
    if (req.bodyError !== undefined || req.body === undefined) {
      throw new TidsbankenHttpError(
        400,
        'BadRequest',
        `The request body is not valid JSON: ${req.bodyError ?? 'empty'}`,
      );
    }
    return req.body;
  }

  private arrayBody(req: FakeRequest, entity: string): unknown[] {
    const body = this.jsonBody(req);
    if (!Array.isArray(body)) {
      throw new TidsbankenHttpError(
        400,
        'BadRequest',
        `The request body must be a JSON array of ${entity} objects.`,
      );
    }
    return body;
  }

  /** Checks one body object: Id present, known PascalCase names, types, no nulls on insert. */
  private checkFields<K extends number | string>(
    set: EntitySet<K>,
    item: unknown,
    mode: 'insert' | 'update',
  ): TbRecord {
    const name = set.entity.name;
    if (typeof item !== 'object' || item === null || Array.isArray(item)) {
      throw new TidsbankenHttpError(400, 'BadRequest', `Each ${name} must be a JSON object.`);
    }
    const fields: TbRecord = {};
    for (const [key, value] of Object.entries(item as TbRecord)) {
      const type = set.entity.properties[key];
      if (type === undefined) {
        throw new TidsbankenHttpError(
          400,
          'BadRequest',
          `The property '${key}' does not exist on type '${name}'. Make sure to only use property names that are defined by the type.`,
        );
      }
      if (SERVER_MANAGED.has(key)) continue;
      if (value === null) {
        // Sesam: "Tidsbanken API does not seem like null values at insert" (docs/vendor-apis.md).
        if (mode === 'insert') {
          throw new TidsbankenHttpError(
            400,
            'BadRequest',
            `Null value is not allowed for property '${key}' on insert.`,
          );
        }
      } else if (!hasType(value, type)) {
        throw new TidsbankenHttpError(
          400,
          'BadRequest',
          `Cannot convert the value ${JSON.stringify(value)} of property '${key}' to type '${type}'.`,
        );
      }
      fields[key] = value;
    }
    const id = fields.Id;
    if (id === undefined || id === null || id === '') {
      throw new TidsbankenHttpError(
        400,
        'BadRequest',
        `The key property 'Id' of ${name} must be supplied.`,
      );
    }
    if (set.entity === PROSJEKT) this.checkProsjektReferences(fields);
    return fields;
  }

  /**
   * A Prosjekt's KundeId and AnsvarligId must name an existing Kunde and Ansatt (assumed: a
   * foreign key, as in the Tidsbanken UI). So a PowerOffice id written there by mistake fails.
   */
  private checkProsjektReferences(fields: TbRecord): void {
    const kunde = fields.KundeId;
    if (typeof kunde === 'string' && kunde !== '' && !this.kunder.has(kunde)) {
      throw new TidsbankenHttpError(400, 'BadRequest', `KundeId '${kunde}' does not exist.`);
    }
    const ansvarlig = fields.AnsvarligId;
    if (typeof ansvarlig === 'number' && ansvarlig !== 0 && !this.ansatte.has(ansvarlig)) {
      throw new TidsbankenHttpError(400, 'BadRequest', `AnsvarligId ${ansvarlig} does not exist.`);
    }
  }
}

const SUPPORTED_OPTIONS = ['$filter', '$top', '$skip', '$orderby', '$select', '$count'] as const;
type SupportedOption = (typeof SUPPORTED_OPTIONS)[number];

/** System query options by canonical name (their names are matched case-insensitively). */
function systemQueryOptions(
  query: Record<string, string>,
): Partial<Record<SupportedOption, string>> {
  const options: Partial<Record<SupportedOption, string>> = {};
  for (const [name, value] of Object.entries(query)) {
    if (!name.startsWith('$')) continue;
    const option = SUPPORTED_OPTIONS.find((known) => known === name.toLowerCase());
    if (!option) {
      throw new ODataError(
        `The query option '${name}' is not supported by the fake Tidsbanken (see test/fakes/README.md).`,
      );
    }
    options[option] = value;
  }
  return options;
}

function parseCount(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value.trim())) {
    throw new ODataError(
      `Invalid value '${value}' for ${name} query option found. The ${name} query option requires a non-negative integer value.`,
    );
  }
  return Number(value);
}

function project(record: TbRecord, select: string[] | undefined): TbRecord {
  if (!select) return structuredClone(record);
  return Object.fromEntries(select.map((name) => [name, structuredClone(record[name] ?? null)]));
}

export async function startFakeTidsbanken(
  opts: FakeTidsbankenOptions = {},
): Promise<FakeTidsbanken> {
  const fake = new FakeTidsbanken(opts);
  await fake.listen();
  return fake;
}
