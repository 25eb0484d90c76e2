import { randomBytes, randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import request from 'supertest';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { InboundEventRow } from '../../src/db/schema.js';
import { openPostgres } from '../../src/db/database.js';
import { insertInboundEventBatch } from '../../src/db/inbound-events.js';
import { createInboxWriter } from '../../src/db/inbox-writer.js';
import { signWebhook } from '../../src/http/webhook-signature.js';
import { createApp } from '../../src/app.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { createTestApp, LogCapture, type TestApp } from '../helpers/app.js';
import { expectDocumentedResponse } from '../helpers/openapi.js';
import { signedWebhook } from '../helpers/webhook-client.js';

type System = 'tidsbanken' | 'poweroffice';

const TB_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const PO_SECRET = `whsec_${randomBytes(24).toString('base64')}`;
const OLD_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const SECRETS: Record<System, string> = { tidsbanken: TB_SECRET, poweroffice: PO_SECRET };

let t: TestApp;
let bare: TestApp;
beforeAll(async () => {
  [t, bare] = await Promise.all([
    createTestApp({ TIDSBANKEN_WEBHOOK_SECRET: TB_SECRET, POWEROFFICE_WEBHOOK_SECRET: PO_SECRET }),
    createTestApp({}),
  ]);
});
afterAll(async () => {
  await Promise.all([t.close(), bare.close()]);
});

const now = () => Math.floor(Date.now() / 1000);

interface SendOptions {
  id?: string;
  timestamp?: number | string;
  secret?: string;
  signature?: string;
  contentType?: string;
  omit?: ('webhook-id' | 'webhook-timestamp' | 'webhook-signature')[];
  app?: TestApp;
}

function send(system: System, body: unknown, options: SendOptions = {}) {
  // superagent sends something else for an empty Buffer: send it as ''.
  const raw = Buffer.isBuffer(body)
    ? body.length === 0
      ? ''
      : body
    : typeof body === 'string'
      ? body
      : JSON.stringify(body);
  const id = options.id ?? `msg_${randomUUID()}`;
  const timestamp = options.timestamp ?? now();
  const signature =
    options.signature ?? signWebhook(options.secret ?? SECRETS[system], id, Number(timestamp), raw);
  const headers: Record<string, string> = {
    'content-type': options.contentType ?? 'application/json',
    'webhook-id': id,
    'webhook-timestamp': String(timestamp),
    'webhook-signature': signature,
  };
  for (const name of options.omit ?? []) delete headers[name];
  let req = request((options.app ?? t).app).post(`/webhooks/${system}`);
  for (const [name, value] of Object.entries(headers)) req = req.set(name, value);
  // superagent JSON-encodes a Buffer under a JSON content type: send the bytes as they are.
  if (Buffer.isBuffer(raw)) req = req.serialize((b: unknown) => b as string);
  return req.send(raw);
}

async function rows(where: { source?: System; eventId?: string } = {}): Promise<InboundEventRow[]> {
  let q = t.database.db.selectFrom('inbound_events').selectAll();
  if (where.source !== undefined) q = q.where('source', '=', where.source);
  if (where.eventId !== undefined) q = q.where('event_id', '=', where.eventId);
  return q.orderBy('id').execute();
}

async function count(db = t.database.db): Promise<number> {
  const r = await sql<{ n: string }>`select count(*) as n from inbound_events`.execute(db);
  return Number(r.rows[0]!.n);
}

async function metricValue(
  name: 'webhooksAccepted' | 'webhooksDuplicate' | 'webhooksRejected',
  labels: Record<string, string>,
): Promise<number> {
  const { values } = await t.metrics[name].get();
  return values
    .filter((v) =>
      Object.entries(labels).every(([k, val]) => (v.labels as Record<string, unknown>)[k] === val),
    )
    .reduce((sum, v) => sum + v.value, 0);
}

let seq = 1000;
const nextId = () => ++seq;

const fullAnsatt = (id = nextId()) => ({
  Id: id,
  Fornavn: 'Kari',
  Etternavn: 'Nordmann',
  Epost: `kari${id}@example.no`,
  Mobil: '+4791234567',
  Aktiv: true,
  Sluttet: false,
  SistEndretDato: '2023-12-06T09:27:57.713Z',
});
const fullKunde = (id = `K${nextId()}`) => ({
  Id: id,
  Navn: 'Fjord AS',
  Epost: 'post@fjord.no',
  Postnr: '0150',
  SistEndretDato: '2024-01-02T08:00:00Z',
});
const fullProsjekt = (id = `P${nextId()}`) => ({
  Id: id,
  Navn: 'Bygg',
  KundeId: 'K1',
  AnsvarligId: 7,
  SistEndretDato: '2024-01-02T08:00:00Z',
});
const fullProject = (id = nextId()) => ({
  Id: id,
  Code: 'P1',
  Name: 'Bygg',
  CustomerId: 5,
  LastChangedDateTimeOffset: '2024-02-03T10:11:12Z',
});
const fullEmployee = (id = nextId()) => ({
  Id: id,
  Number: 100,
  FirstName: 'Kari',
  LastName: 'Nordmann',
  EmailAddress: 'kari@example.no',
  IsArchived: false,
  MailAddress: { AddressLine1: 'Gate 1', ZipCode: '0150', City: 'Oslo', CountryCode: 'NO' },
  LastChangedDateTimeOffset: '2024-02-03T10:11:12+01:00',
});
const fullCustomer = (id = nextId()) => ({
  Id: id,
  Number: 5000,
  Name: 'Fjord AS',
  EmailAddress: 'post@fjord.no',
  OrganizationNumber: '999888777',
  LastChangedDateTimeOffset: '2024-02-03T10:11:12Z',
});
const fullContactPerson = (id = nextId()) => ({
  Id: id,
  ContactId: 77,
  FirstName: 'Ola',
  LastName: 'Nordmann',
  EmailAddress: 'ola@fjord.no',
  IsActive: true,
  LastChangedDateTimeOffset: '2024-03-04T05:06:07Z',
});

const valid: Record<System, () => unknown> = {
  tidsbanken: () => ({ type: 'ansatt.updated', data: fullAnsatt() }),
  poweroffice: () => ({ type: 'customer.updated', data: fullCustomer() }),
};

describe.each(['tidsbanken', 'poweroffice'] as const)('POST /webhooks/%s', (system) => {
  const path = `/webhooks/${system}`;

  it('answers 202 with the webhook-id, stores exactly one row, and matches the spec', async () => {
    const id = `msg_${randomUUID()}`;
    const body = valid[system]() as { type: string; data: { Id: number } };
    const res = await send(system, body, { id });
    expect(res.status).toBe(202);
    expect(res.body).toEqual({ id, duplicate: false });
    await expectDocumentedResponse('POST', path, res);
    const stored = await rows({ source: system, eventId: id });
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      origin: 'webhook',
      event_type: body.type,
      record_id: String(body.data.Id),
      payload: body.data,
      is_thin: false,
      status: 'pending',
    });
    expect(stored[0]!.occurred_at).toBeInstanceOf(Date);
  });

  it('when the same webhook-id comes twice, stores one row and answers duplicate: true', async () => {
    const id = `msg_${randomUUID()}`;
    const body = JSON.stringify(valid[system]());
    const first = await send(system, body, { id });
    const second = await send(system, body, { id });
    expect(first.status).toBe(202);
    expect(first.body).toEqual({ id, duplicate: false });
    expect(second.status).toBe(202);
    expect(second.body).toEqual({ id, duplicate: true });
    await expectDocumentedResponse('POST', path, second);
    expect(await rows({ source: system, eventId: id })).toHaveLength(1);
  });

  it('accepts a header with an old and a new signature when the new secret is configured', async () => {
    const id = `msg_${randomUUID()}`;
    const raw = JSON.stringify(valid[system]());
    const ts = now();
    const signature = [
      signWebhook(OLD_SECRET, id, ts, raw),
      signWebhook(SECRETS[system], id, ts, raw),
    ].join(' ');
    const res = await send(system, raw, { id, timestamp: ts, signature });
    expect(res.status).toBe(202);
    expect(await rows({ source: system, eventId: id })).toHaveLength(1);
    // The old one alone is no longer good.
    const oldOnly = await send(system, raw, { id: `${id}-old`, secret: OLD_SECRET });
    expect(oldOnly.status).toBe(401);
    expect(await rows({ source: system, eventId: `${id}-old` })).toHaveLength(0);
  });

  it('accepts a body that starts with a UTF-8 byte order mark', async () => {
    const id = `msg_${randomUUID()}`;
    const body = Buffer.concat([
      Buffer.from([0xef, 0xbb, 0xbf]),
      Buffer.from(JSON.stringify(valid.tidsbanken())),
    ]);
    const res = await send('tidsbanken', body, { id });
    expect(res.status).toBe(202);
    expect(await rows({ eventId: id })).toHaveLength(1);
  });

  it('accepts charset=utf-8 in the content type', async () => {
    const res = await send(system, valid[system](), {
      contentType: 'Application/JSON; charset=UTF-8',
    });
    expect(res.status).toBe(202);
  });

  describe('error matrix: problem+json, documented, nothing stored', () => {
    const cases: [string, number, string, (s: System) => Promise<request.Response>][] = [
      [
        'a missing webhook-signature',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { omit: ['webhook-signature'] }),
      ],
      [
        'a missing webhook-id',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { omit: ['webhook-id'] }),
      ],
      [
        'a missing webhook-timestamp',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { omit: ['webhook-timestamp'] }),
      ],
      [
        'a signature made with another secret',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { secret: OLD_SECRET }),
      ],
      [
        'a body changed after signing',
        401,
        'unauthorized',
        (s) => {
          const id = 'msg_tampered';
          const ts = now();
          const signature = signWebhook(SECRETS[s], id, ts, JSON.stringify(valid[s]()));
          return send(s, valid[s](), { id, timestamp: ts, signature });
        },
      ],
      [
        'a stale timestamp (6 minutes old)',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { timestamp: now() - 360 }),
      ],
      [
        'a future timestamp (6 minutes ahead)',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { timestamp: now() + 360 }),
      ],
      [
        'a non-numeric timestamp',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { timestamp: `${now()}abc`, signature: 'v1,AAAA' }),
      ],
      [
        'a garbage signature',
        401,
        'unauthorized',
        (s) => send(s, valid[s](), { signature: 'v1,bm90IGEgc2lnbmF0dXJl v2,xyz' }),
      ],
      ['malformed JSON', 400, 'invalid_json', (s) => send(s, '{"type": "x", ')],
      ['an empty body', 400, 'invalid_json', (s) => send(s, '')],
      [
        'a text/plain content type',
        415,
        'unsupported_media_type',
        (s) => send(s, JSON.stringify(valid[s]()), { contentType: 'text/plain' }),
      ],
      [
        'a JSON body in another charset',
        415,
        'unsupported_media_type',
        (s) => send(s, valid[s](), { contentType: 'application/json; charset=latin1' }),
      ],
      [
        'a body over 1 MiB',
        413,
        'payload_too_large',
        (s) =>
          send(s, {
            type: 'ansatt.updated',
            data: { Id: 1, Fornavn: 'x'.repeat(1024 * 1024) },
          }),
      ],
      ['a JSON array body', 400, 'validation_failed', (s) => send(s, [valid[s]()])],
      [
        'bytes that are not UTF-8 (validly signed)',
        400,
        'invalid_json',
        (s) => {
          // Well-formed JSON but for two bytes inside a string that no UTF-8 text has.
          const text = JSON.stringify({ ...(valid[s]() as object), note: '@@' });
          const bytes = Buffer.from(text);
          const at = bytes.indexOf('@@');
          bytes[at] = 0xff;
          bytes[at + 1] = 0xfe;
          return send(s, bytes);
        },
      ],
      [
        'a NUL character inside a string',
        400,
        'invalid_json',
        (s) => send(s, { ...(valid[s]() as object), note: 'a\u0000b' }),
      ],
      [
        'a NUL character in a key',
        400,
        'invalid_json',
        (s) => send(s, { ...(valid[s]() as object), ['no\u0000te']: 1 }),
      ],
      [
        'an unpaired surrogate inside a string',
        400,
        'invalid_json',
        (s) => send(s, { ...(valid[s]() as object), note: 'a\ud800b' }),
      ],
      [
        'JSON nested 10 000 levels deep',
        400,
        'invalid_json',
        (s) => send(s, `{"type":"x","data":${'['.repeat(10_000)}${']'.repeat(10_000)}}`),
      ],
    ];

    it.each(cases)('%s → %i', async (_name, status, code, act) => {
      const before = await count();
      const rejectedBefore = await metricValue('webhooksRejected', { system });
      const res = await act(system);
      expect(res.status).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      const problem = JSON.parse(res.text);
      expect(problem).toMatchObject({
        type: `urn:tidsbanken-poweroffice-sync:problem:${code}`,
        status,
      });
      if (status === 401) {
        // One generic message whatever the cause.
        expect(problem.detail).toBe('The webhook signature is missing or invalid.');
      }
      await expectDocumentedResponse('POST', path, res);
      expect(await count()).toBe(before);
      expect(await metricValue('webhooksRejected', { system })).toBe(rejectedBefore + 1);
    });

    it('checks the content type before the signature (415 over 401)', async () => {
      const res = await send(system, 'x', { contentType: 'text/plain', signature: 'v1,bad' });
      expect(res.status).toBe(415);
    });

    it('checks the size before the signature (413 over 401)', async () => {
      const res = await send(system, 'x'.repeat(1024 * 1024 + 1), { signature: 'v1,bad' });
      expect(res.status).toBe(413);
    });

    it('checks the signature before the JSON (401 over 400)', async () => {
      const res = await send(system, '{not json', { signature: 'v1,bad' });
      expect(res.status).toBe(401);
    });

    it('answers 503 when the secret is not configured, before anything else', async () => {
      const before = await count(bare.database.db);
      const res = await send(system, 'not json', { app: bare, contentType: 'text/plain' });
      expect(res.status).toBe(503);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(JSON.parse(res.text)).toMatchObject({
        type: 'urn:tidsbanken-poweroffice-sync:problem:not_configured',
      });
      await expectDocumentedResponse('POST', path, res);
      expect(await count(bare.database.db)).toBe(before);
    });
  });
});

describe('several configured secrets (rotation on our side)', () => {
  it('accepts a webhook signed with any one of the space-separated secrets, and no other', async () => {
    const rotating = await createTestApp({
      TIDSBANKEN_WEBHOOK_SECRET: `${OLD_SECRET} ${TB_SECRET}`,
    });
    try {
      const body = {
        type: 'ansatt.updated',
        timestamp: '2026-01-05T10:00:00Z',
        data: { Id: 4711, Fornavn: 'Rota' },
      };
      for (const secret of [OLD_SECRET, TB_SECRET]) {
        const res = await send('tidsbanken', body, { secret, app: rotating });
        expect(res.status).toBe(202);
      }
      const stranger = await send('tidsbanken', body, { secret: PO_SECRET, app: rotating });
      expect(stranger.status).toBe(401);
      const stored = await rotating.database.db.selectFrom('inbound_events').select('id').execute();
      expect(stored).toHaveLength(1); // the second was the same content: a duplicate
    } finally {
      await rotating.close();
    }
  });
});

describe('schema violations answer 400 naming the field', () => {
  const cases: [System, string, unknown, string][] = [
    ['tidsbanken', 'an unknown event type', { type: 'ansatt.merged', data: { Id: 1 } }, 'type'],
    ['tidsbanken', 'a PowerOffice type', { type: 'employee.updated', data: { Id: 1 } }, 'type'],
    ['tidsbanken', 'no data', { type: 'ansatt.updated' }, 'data'],
    ['tidsbanken', 'data that is an array', { type: 'ansatt.updated', data: [1] }, 'data'],
    ['tidsbanken', 'a missing Id', { type: 'ansatt.updated', data: { Fornavn: 'K' } }, 'data.Id'],
    [
      'tidsbanken',
      'an Ansatt Id that is no employee number',
      { type: 'ansatt.deleted', data: { Id: 'A1' } },
      'data.Id',
    ],
    [
      'tidsbanken',
      'a null envelope timestamp',
      { type: 'kunde.updated', timestamp: null, data: { Id: 'K1' } },
      'timestamp',
    ],
    [
      'tidsbanken',
      'a known field of the wrong type',
      { type: 'ansatt.updated', data: { Id: 1, Aktiv: 'yes' } },
      'data.Aktiv',
    ],
    ['tidsbanken', 'an empty Kunde Id', { type: 'kunde.updated', data: { Id: '' } }, 'data.Id'],
    [
      'tidsbanken',
      'a Kunde Id longer than 200 characters',
      { type: 'kunde.updated', data: { Id: 'K'.repeat(201) } },
      'data.Id',
    ],
    [
      'tidsbanken',
      'a bad envelope timestamp',
      { type: 'kunde.updated', timestamp: 'yesterday', data: { Id: 'K1' } },
      'timestamp',
    ],
    ['poweroffice', 'a Tidsbanken type', { type: 'ansatt.updated', data: { Id: 1 } }, 'type'],
    ['poweroffice', 'a string Id', { type: 'customer.updated', data: { Id: 'abc' } }, 'data.Id'],
    ['poweroffice', 'a camelCase id', { type: 'customer.updated', data: { id: 5 } }, 'data.Id'],
    [
      'poweroffice',
      'a contact person without ContactId',
      { type: 'contactperson.deleted', data: { Id: 5 } },
      'data.ContactId',
    ],
    [
      'poweroffice',
      'a MailAddress of the wrong type',
      { type: 'employee.updated', data: { Id: 5, MailAddress: 'Oslo' } },
      'data.MailAddress',
    ],
  ];

  it.each(cases)('%s: %s → 400 at %s', async (system, _name, body, field) => {
    const before = await count();
    const res = await send(system, body);
    expect(res.status).toBe(400);
    const problem = JSON.parse(res.text);
    expect(problem).toMatchObject({ status: 400, field });
    expect(problem.detail).toContain(field);
    await expectDocumentedResponse('POST', `/webhooks/${system}`, res);
    expect(await count()).toBe(before);
  });
});

describe('webhook-id', () => {
  it('longer than 200 characters (validly signed) answers 400 and stores nothing', async () => {
    const before = await count();
    const res = await send('tidsbanken', valid.tidsbanken(), { id: 'x'.repeat(201) });
    expect(res.status).toBe(400);
    expect(JSON.parse(res.text)).toMatchObject({ field: 'webhook-id' });
    await expectDocumentedResponse('POST', '/webhooks/tidsbanken', res);
    expect(await count()).toBe(before);
  });

  it('is the same id in both systems without colliding', async () => {
    const id = `msg_${randomUUID()}`;
    expect((await send('tidsbanken', valid.tidsbanken(), { id })).body).toEqual({
      id,
      duplicate: false,
    });
    expect((await send('poweroffice', valid.poweroffice(), { id })).body).toEqual({
      id,
      duplicate: false,
    });
    expect(await rows({ eventId: id })).toHaveLength(2);
  });
});

describe('every event type, full and thin', () => {
  const full: Record<string, () => Record<string, unknown>> = {
    ansatt: fullAnsatt,
    kunde: fullKunde,
    prosjekt: fullProsjekt,
    employee: fullEmployee,
    customer: fullCustomer,
    contactperson: fullContactPerson,
    project: fullProject,
  };
  const cases: [System, string][] = [
    ...['ansatt', 'kunde', 'prosjekt'].flatMap((r) =>
      ['created', 'updated', 'deleted'].map((a): [System, string] => ['tidsbanken', `${r}.${a}`]),
    ),
    ...['employee', 'customer', 'contactperson', 'project'].flatMap((r) =>
      ['created', 'updated', 'deleted'].map((a): [System, string] => ['poweroffice', `${r}.${a}`]),
    ),
  ];

  it.each(cases)('%s %s: full record stored as full', async (system, type) => {
    const recordType = type.split('.')[0]!;
    const data = full[recordType]!();
    const id = `msg_${randomUUID()}`;
    const res = await send(system, { type, data }, { id });
    expect(res.status).toBe(202);
    const [row, ...rest] = await rows({ source: system, eventId: id });
    expect(rest).toHaveLength(0);
    expect(row).toMatchObject({
      event_type: type,
      record_type: recordType,
      record_id: String(data.Id),
      parent_id: recordType === 'contactperson' ? '77' : null,
      is_thin: false,
      payload: data,
    });
    // No envelope timestamp: the record's own last-changed time.
    const changed = (data.SistEndretDato ?? data.LastChangedDateTimeOffset) as string;
    expect(row!.occurred_at!.toISOString()).toBe(new Date(changed).toISOString());
  });

  it.each(cases)('%s %s: thin reference stored as thin', async (system, type) => {
    const recordType = type.split('.')[0]!;
    const data: Record<string, unknown> =
      recordType === 'contactperson'
        ? { ContactId: 77, Id: nextId() }
        : recordType === 'kunde'
          ? { Id: `K${nextId()}` }
          : { Id: nextId() };
    const id = `msg_${randomUUID()}`;
    const timestamp = '2026-01-05T10:00:00Z';
    const res = await send(system, { type, timestamp, data }, { id });
    expect(res.status).toBe(202);
    const stored = await rows({ source: system, eventId: id });
    expect(stored).toHaveLength(1);
    expect(stored[0]).toMatchObject({
      record_type: recordType,
      record_id: String(data.Id),
      parent_id: recordType === 'contactperson' ? '77' : null,
      is_thin: true,
      content_hash: null,
      payload: data,
    });
    expect(stored[0]!.occurred_at!.toISOString()).toBe('2026-01-05T10:00:00.000Z');
  });

  it('keeps unknown extra fields in the stored payload, exactly as sent', async () => {
    const id = `msg_${randomUUID()}`;
    const data = {
      ...fullEmployee(),
      firstName: 'camel twin',
      CustomFlag: { nested: [1, 'two', null] },
      '@odata.etag': 'W/"1"',
    };
    const res = await send('poweroffice', { type: 'employee.updated', extra: 1, data }, { id });
    expect(res.status).toBe(202);
    const [row] = await rows({ source: 'poweroffice', eventId: id });
    expect(row!.payload).toEqual(data);
  });

  it('reads PowerOffice keys as the spec names them: a camelCase twin is an unknown field', async () => {
    const id = `msg_${randomUUID()}`;
    const n = nextId();
    const res = await send(
      'poweroffice',
      { type: 'customer.updated', data: { Id: n, name: 'X' } },
      { id },
    );
    expect(res.status).toBe(202);
    expect((await rows({ eventId: id }))[0]).toMatchObject({
      is_thin: true,
      record_id: String(n),
      payload: { Id: n, name: 'X' },
    });
  });

  it('accepts an Ansatt Id sent as its decimal string and stores the number', async () => {
    const id = `msg_${randomUUID()}`;
    const n = nextId();
    const res = await send(
      'tidsbanken',
      { type: 'ansatt.updated', data: { Id: String(n), Fornavn: 'Kari' } },
      { id },
    );
    expect(res.status).toBe(202);
    await expectDocumentedResponse('POST', '/webhooks/tidsbanken', res);
    expect((await rows({ eventId: id }))[0]).toMatchObject({
      is_thin: false,
      record_id: String(n),
      payload: { Id: n, Fornavn: 'Kari' },
    });
  });

  it('treats key fields plus only unknown fields as thin', async () => {
    const id = `msg_${randomUUID()}`;
    const res = await send(
      'tidsbanken',
      { type: 'ansatt.deleted', data: { Id: 5, Reason: 'x' } },
      { id },
    );
    expect(res.status).toBe(202);
    expect((await rows({ eventId: id }))[0]).toMatchObject({
      is_thin: true,
      payload: { Id: 5, Reason: 'x' },
    });
  });

  it('stores a numeric Kunde Id as its decimal string', async () => {
    const id = `msg_${randomUUID()}`;
    const res = await send(
      'tidsbanken',
      { type: 'kunde.updated', data: { Id: 4711, Navn: 'N' } },
      { id },
    );
    expect(res.status).toBe(202);
    expect((await rows({ eventId: id }))[0]).toMatchObject({
      record_id: '4711',
      payload: { Id: 4711 },
    });
  });
});

describe('group commit', () => {
  it('concurrent webhooks each get their own answer; a webhook-id repeated in one burst is stored once', async () => {
    const shared = `msg_${randomUUID()}`;
    const body = JSON.stringify(valid.tidsbanken());
    const ids = Array.from({ length: 20 }, () => `msg_${randomUUID()}`);
    const responses = await Promise.all([
      ...ids.map((id) =>
        send('tidsbanken', { type: 'ansatt.updated', data: fullAnsatt() }, { id }),
      ),
      ...Array.from({ length: 5 }, () => send('tidsbanken', body, { id: shared })),
    ]);
    expect(responses.every((r) => r.status === 202)).toBe(true);
    const sharedAnswers = responses.slice(20).map((r) => r.body.duplicate as boolean);
    expect(sharedAnswers.filter((d) => !d)).toHaveLength(1);
    for (const id of ids) expect(await rows({ eventId: id })).toHaveLength(1);
    expect(await rows({ eventId: shared })).toHaveLength(1);
  });
});

describe('inbox writer (group commit)', () => {
  it('stores a webhook-id repeated inside one batch once, and same-content rows once', async () => {
    const writer = createInboxWriter(t.database.db);
    const event = (eventId: string, recordId: string, payload: Record<string, unknown>) => ({
      source: 'tidsbanken' as const,
      origin: 'webhook' as const,
      eventId,
      eventType: 'ansatt.updated',
      recordType: 'ansatt',
      recordId,
      payload,
      isThin: false,
    });
    const repeated = `msg_${randomUUID()}`;
    const n = nextId();
    const sameContent = { Id: n, Fornavn: 'Same' };
    // Written in one tick: one batch.
    const results = await Promise.all([
      writer.write(event(repeated, String(nextId()), { Id: 1, Fornavn: 'first' })),
      writer.write(event(repeated, String(nextId()), { Id: 2, Fornavn: 'second' })),
      writer.write(event(`msg_${randomUUID()}`, String(n), sameContent)),
      writer.write(event(`msg_${randomUUID()}`, String(n), sameContent)),
      writer.write(event(`msg_${randomUUID()}`, String(nextId()), { Id: 3 })),
    ]);
    expect(results.map((r) => r.duplicate)).toEqual([false, true, false, true, false]);
    const stored = await rows({ eventId: repeated });
    expect(stored).toHaveLength(1);
    expect(stored[0]!.payload).toEqual({ Id: 1, Fornavn: 'first' });
    const sameRows = await t.database.db
      .selectFrom('inbound_events')
      .select('id')
      .where('record_id', '=', String(n))
      .execute();
    expect(sameRows).toHaveLength(1);
    // A repeated id whose first occurrence is a content duplicate: the next one is stored,
    // exactly as if they had come one after another.
    const again = `msg_${randomUUID()}`;
    const later = await Promise.all([
      writer.write(event(again, String(n), sameContent)),
      writer.write(event(again, String(n), { Id: n, Fornavn: 'Changed' })),
      writer.write(event(again, String(n), { Id: n, Fornavn: 'Changed again' })),
    ]);
    expect(later.map((r) => r.duplicate)).toEqual([true, false, true]);
    expect((await rows({ eventId: again })).map((r) => r.payload)).toEqual([
      { Id: n, Fornavn: 'Changed' },
    ]);
    // A later batch sees the stored id as a duplicate too.
    expect(await writer.write(event(repeated, '1', { Id: 1 }))).toEqual({ duplicate: true });
    // Same content in another key order (and with other whitespace) is the same content.
    const m = nextId();
    expect(
      await writer.write(event(`msg_${randomUUID()}`, String(m), { Id: m, A: 'x', B: [1, 2] })),
    ).toEqual({ duplicate: false });
    expect(
      await writer.write(event(`msg_${randomUUID()}`, String(m), { B: [1, 2], A: 'x', Id: m })),
    ).toEqual({ duplicate: true });
    expect(
      await writer.write(event(`msg_${randomUUID()}`, String(m), { B: [2, 1], A: 'x', Id: m })),
    ).toEqual({ duplicate: false });
  });
});

describe('inbox writer (flush policy)', () => {
  it('runs one statement at a time; what arrives meanwhile goes into the next one', async () => {
    // Counts the statements the writer sends and how many run at once, and holds the first
    // one back until the test lets it go (the real database underneath).
    let statements = 0;
    let running = 0;
    let maxRunning = 0;
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    const db = t.database.db;
    const observed = new Proxy(db, {
      get(target, prop, receiver) {
        if (prop !== 'executeQuery') return Reflect.get(target, prop, receiver) as unknown;
        return async (...args: Parameters<typeof db.executeQuery>) => {
          statements += 1;
          const n = statements;
          running += 1;
          maxRunning = Math.max(maxRunning, running);
          try {
            if (n === 1) await held;
            return await target.executeQuery(...args);
          } finally {
            running -= 1;
          }
        };
      },
    });
    const writer = createInboxWriter(observed);
    const event = () => ({
      source: 'tidsbanken' as const,
      origin: 'webhook' as const,
      eventId: `msg_${randomUUID()}`,
      eventType: 'ansatt.updated',
      recordType: 'ansatt',
      recordId: String(nextId()),
      payload: { Id: 1 },
      isThin: false,
    });
    const first = writer.write(event());
    // The first statement is on its way (the writer starts a batch on the next turn).
    await new Promise((resolve) => setImmediate(resolve));
    expect(statements).toBe(1);
    const later = Array.from({ length: 20 }, () => writer.write(event()));
    // While the first statement runs, nothing else is sent however long it takes.
    for (let turn = 0; turn < 3; turn++) await new Promise((resolve) => setImmediate(resolve));
    expect(statements).toBe(1);
    release();
    const results = await Promise.all([first, ...later]);
    expect(results.every((r) => !r.duplicate)).toBe(true);
    expect(statements).toBe(2);
    expect(maxRunning).toBe(1);
  });
});

describe.runIf(process.env.DATABASE_URL)('on PostgreSQL: the inbox insert', () => {
  it('runs as a named prepared statement, also inside a transaction, and plain queries still work', async () => {
    // One connection, so the statement prepared by the insert is visible to the next query.
    const one = openPostgres(t.database.url!, 1);
    try {
      const event = (id: number) => ({
        source: 'tidsbanken' as const,
        origin: 'webhook' as const,
        eventId: `msg_${randomUUID()}`,
        eventType: 'ansatt.updated',
        recordType: 'ansatt',
        recordId: String(id),
        payload: { Id: id, Fornavn: 'Prepared' },
        isThin: false,
      });
      const a = nextId();
      const b = nextId();
      expect(await insertInboundEventBatch(one.db, [event(a)])).toHaveLength(1);
      expect(
        await one.db.transaction().execute((trx) => insertInboundEventBatch(trx, [event(b)])),
      ).toHaveLength(1);
      const prepared = await sql<{ name: string; statement: string }>`
        select name, statement from pg_prepared_statements`.execute(one.db);
      expect(prepared.rows.map((r) => r.name)).toEqual(['inbox_insert_events']);
      expect(prepared.rows[0]!.statement).toContain('json_to_recordset');
      const stored = await t.database.db
        .selectFrom('inbound_events')
        .select('record_id')
        .where('record_id', 'in', [String(a), String(b)])
        .execute();
      expect(stored).toHaveLength(2);
    } finally {
      await one.close();
    }
  });
});

describe('metrics', () => {
  it('counts accepted, duplicate and rejected-by-reason webhooks, and the accept latency', async () => {
    const labels = { system: 'poweroffice' };
    const acc = await metricValue('webhooksAccepted', labels);
    const dup = await metricValue('webhooksDuplicate', labels);
    const sig = await metricValue('webhooksRejected', { ...labels, reason: 'signature' });
    const schema = await metricValue('webhooksRejected', { ...labels, reason: 'schema' });
    const id = `msg_${randomUUID()}`;
    const body = JSON.stringify(valid.poweroffice());
    await send('poweroffice', body, { id });
    await send('poweroffice', body, { id });
    await send('poweroffice', valid.poweroffice());
    await send('poweroffice', valid.poweroffice(), { secret: OLD_SECRET });
    await send('poweroffice', { type: 'nope', data: { Id: 1 } });
    expect(await metricValue('webhooksAccepted', labels)).toBe(acc + 2);
    expect(await metricValue('webhooksDuplicate', labels)).toBe(dup + 1);
    expect(await metricValue('webhooksRejected', { ...labels, reason: 'signature' })).toBe(sig + 1);
    expect(await metricValue('webhooksRejected', { ...labels, reason: 'schema' })).toBe(schema + 1);
    const text = (await request(t.app).get('/metrics')).text;
    expect(text).toMatch(
      /tbpo_webhook_accept_duration_seconds_count\{system="poweroffice"\} [1-9]\d*/,
    );
    expect(text).toMatch(/tbpo_webhooks_accepted_total\{system="poweroffice"\} [1-9]\d*/);
  });
});

describe('logs', () => {
  it('never contain a webhook secret or a signature header; the refusal reason is at warn', async () => {
    const signatures: string[] = [];
    for (const system of ['tidsbanken', 'poweroffice'] as const) {
      const raw = JSON.stringify(valid[system]());
      const id = `msg_${randomUUID()}`;
      const ts = now();
      const good = signWebhook(SECRETS[system], id, ts, raw);
      signatures.push(good.slice(3));
      await send(system, raw, { id, timestamp: ts, signature: good });
      await send(system, raw, { signature: 'v1,c2VjcmV0LWxvb2tpbmctc2lnbmF0dXJl' });
      await send(system, raw, { timestamp: now() - 1000 });
    }
    const text = t.logs.text;
    expect(text.length).toBeGreaterThan(0);
    for (const secret of [TB_SECRET, PO_SECRET]) {
      expect(text).not.toContain(secret);
      expect(text).not.toContain(secret.slice('whsec_'.length));
    }
    for (const sig of signatures) expect(text).not.toContain(sig);
    expect(text).not.toContain('c2VjcmV0LWxvb2tpbmctc2lnbmF0dXJl');
    const warns = t.logs.lines
      .map((l) => JSON.parse(l) as { level: number; msg: string; reason?: string })
      .filter((l) => l.msg === 'webhook refused');
    expect(warns.map((l) => l.level)).toContain(40);
    expect(warns.map((l) => l.reason)).toEqual(
      expect.arrayContaining(['no_matching_signature', 'stale_timestamp']),
    );
  });
});

describe('the request line of a webhook', () => {
  type Line = { level: number; msg: string; requestId?: string };
  const lineOf = (logs: LogCapture, requestId: string) =>
    logs.lines
      .map((l) => JSON.parse(l) as Line)
      .filter((l) => l.requestId === requestId && l.msg === 'request completed');

  it('is at debug when the webhook is accepted, at warn when it is refused', async () => {
    const accepted = await send('tidsbanken', valid.tidsbanken()).set('X-Request-Id', 'acc-1');
    const refused = await send('tidsbanken', valid.tidsbanken(), {
      signature: 'v1,bm90LWEtc2lnbmF0dXJl',
    }).set('X-Request-Id', 'ref-1');
    expect([accepted.status, refused.status]).toEqual([202, 401]);
    expect(lineOf(t.logs, 'acc-1').map((l) => [l.level, l.msg])).toEqual([
      [20, 'request completed'],
    ]);
    expect(lineOf(t.logs, 'ref-1').map((l) => [l.level, l.msg])).toEqual([
      [40, 'request completed'],
    ]);
  });

  it('is not written at info when the webhook is accepted; a refusal and a 404 still are', async () => {
    const logs = new LogCapture();
    const app = createApp({
      config: t.config,
      db: t.database.db,
      logger: createLogger({ level: 'info', destination: logs }),
      metrics: createMetrics(),
    });
    const accepted = await send('poweroffice', valid.poweroffice(), { app: { ...t, app } }).set(
      'X-Request-Id',
      'acc-2',
    );
    const refused = await send('poweroffice', valid.poweroffice(), {
      app: { ...t, app },
      timestamp: now() - 1000,
    }).set('X-Request-Id', 'ref-2');
    const missing = await request(app).get('/webhooks/nowhere').set('X-Request-Id', 'nf-2');
    expect([accepted.status, refused.status, missing.status]).toEqual([202, 401, 404]);
    expect(lineOf(logs, 'acc-2')).toEqual([]);
    expect(lineOf(logs, 'ref-2').map((l) => l.level)).toEqual([40]);
    expect(lineOf(logs, 'nf-2').map((l) => l.level)).toEqual([40]);
  });
});

describe('response headers', () => {
  it('are the API set on an accepted webhook and on a refusal: no browser-page headers', async () => {
    const accepted = await send('tidsbanken', valid.tidsbanken());
    const refused = await send('tidsbanken', valid.tidsbanken(), { omit: ['webhook-signature'] });
    expect([accepted.status, refused.status]).toEqual([202, 401]);
    for (const res of [accepted, refused]) {
      expect(res.headers).toMatchObject({
        'content-security-policy': "default-src 'none';frame-ancestors 'none'",
        'strict-transport-security': 'max-age=31536000; includeSubDomains',
        'x-content-type-options': 'nosniff',
        'referrer-policy': 'no-referrer',
      });
      for (const name of [
        'cross-origin-opener-policy',
        'cross-origin-resource-policy',
        'cross-origin-embedder-policy',
        'origin-agent-cluster',
        'x-dns-prefetch-control',
        'x-download-options',
        'x-frame-options',
        'x-permitted-cross-domain-policies',
        'x-xss-protection',
      ]) {
        expect(res.headers).not.toHaveProperty(name);
      }
    }
  });
});

describe('the fast path and Express answer alike', () => {
  // POST /webhooks/{system} spelled exactly is answered before Express (answerWebhooksFirst);
  // any other spelling Express routes to the same handler. A caller must not tell them apart.
  const spellings = ['/webhooks/tidsbanken', '/WEBHOOKS/Tidsbanken', '/webhooks/tidsbanken/?x=1'];
  const VARYING = new Set(['date', 'x-request-id', 'content-length', 'connection', 'keep-alive']);
  const stable = (headers: Record<string, string>) =>
    Object.fromEntries(Object.entries(headers).filter(([name]) => !VARYING.has(name)));

  const post = (path: string, body: unknown, options: { secret?: string } = {}) =>
    signedWebhook(t.app, path, options.secret ?? TB_SECRET, JSON.stringify(body), {
      headers: { 'X-Request-Id': `alike-${randomUUID()}` },
    });

  const requestsTotal = async (code: string) => {
    const { values } = await t.metrics.httpRequests.get();
    return values
      .filter((v) => v.labels.route === '/webhooks/tidsbanken' && v.labels.code === code)
      .reduce((n, v) => n + v.value, 0);
  };

  it('the same status, headers, body, stored row, metrics and request line', async () => {
    const accepted = [];
    const refused = [];
    const before = { accepted: await requestsTotal('202'), refused: await requestsTotal('401') };
    for (const path of spellings) {
      accepted.push(await post(path, valid.tidsbanken()));
      refused.push(await post(path, valid.tidsbanken(), { secret: OLD_SECRET }));
    }
    expect(accepted.map((r) => r.status)).toEqual([202, 202, 202]);
    expect(refused.map((r) => r.status)).toEqual([401, 401, 401]);
    for (const group of [accepted, refused]) {
      const [fast, ...others] = group;
      for (const other of others) {
        expect(stable(other.headers)).toEqual(stable(fast!.headers));
        expect(Object.keys(other.body as object).sort()).toEqual(
          Object.keys(fast!.body as object).sort(),
        );
      }
    }
    for (const res of refused) {
      const { requestId, ...problem } = res.body as { requestId: string };
      expect(requestId).toBe(res.headers['x-request-id']);
      expect(problem).toEqual({
        type: 'urn:tidsbanken-poweroffice-sync:problem:unauthorized',
        code: 'unauthorized',
        title: 'Unauthorized',
        status: 401,
        detail: 'The webhook signature is missing or invalid.',
      });
      await expectDocumentedResponse('POST', '/webhooks/tidsbanken', res);
    }
    for (const res of accepted) {
      const { id } = res.body as { id: string };
      expect(await rows({ source: 'tidsbanken', eventId: id })).toHaveLength(1);
      await expectDocumentedResponse('POST', '/webhooks/tidsbanken', res);
    }
    expect(await requestsTotal('202')).toBe(before.accepted + 3);
    expect(await requestsTotal('401')).toBe(before.refused + 3);
    for (const res of [...accepted, ...refused]) {
      const lines = t.logs.lines
        .map((l) => JSON.parse(l) as { requestId?: string; msg: string; req?: { url?: string } })
        .filter(
          (l) => l.requestId === res.headers['x-request-id'] && l.msg === 'request completed',
        );
      expect(lines).toHaveLength(1);
      expect(lines[0]!.req?.url?.toLowerCase()).toContain('/webhooks/tidsbanken');
    }
  });
});

describe('arbitrary input (property-based)', () => {
  const headerValue = fc.oneof(
    fc.string({ maxLength: 60 }),
    fc.constant(''),
    fc.integer().map(String),
    fc.constant('v1,AAAA'),
  );
  const jsonBody = fc.oneof(
    fc.json(),
    fc
      .record({
        type: fc.constantFrom(
          'ansatt.updated',
          'kunde.deleted',
          'employee.created',
          'contactperson.updated',
          'x',
        ),
        timestamp: fc.oneof(
          fc.constant(undefined),
          fc.string(),
          fc.date().map((d) => (Number.isNaN(d.getTime()) ? 'bad' : d.toISOString())),
        ),
        data: fc.oneof(
          fc.anything(),
          fc.dictionary(fc.string(), fc.jsonValue()),
          fc.record({
            Id: fc.oneof(fc.integer(), fc.string(), fc.double()),
            ContactId: fc.oneof(fc.integer(), fc.string()),
          }),
        ),
      })
      .map((v) => JSON.stringify(v)),
    fc.string(),
    fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a)),
  );
  const contentType = fc.constantFrom(
    'application/json',
    'application/json; charset=utf-8',
    'text/plain',
    'application/x-www-form-urlencoded',
    'application/json; charset=latin1',
  );

  it('never answers 5xx and stores nothing without a valid signature', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<System>('tidsbanken', 'poweroffice'),
        jsonBody,
        contentType,
        fc.record({ id: headerValue, ts: headerValue, sig: headerValue }),
        async (system, body, ct, h) => {
          const before = await count();
          const res = await send(system, body, {
            id: h.id === '' ? 'x' : h.id,
            timestamp: h.ts,
            signature: h.sig,
            contentType: ct,
          }).catch((err: unknown) => {
            // Headers supertest refuses to send (control characters) never reach us.
            if (err instanceof TypeError) return undefined;
            throw err;
          });
          if (res === undefined) return;
          expect(res.status).toBeLessThan(500);
          expect(res.status).not.toBe(202);
          expect(await count()).toBe(before);
        },
      ),
      { numRuns: 150 },
    );
  });

  it('with a valid signature: never 5xx, and a row only when the answer is 202', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom<System>('tidsbanken', 'poweroffice'),
        jsonBody,
        async (system, body) => {
          const id = `msg_${randomUUID()}`;
          const res = await send(system, body, { id });
          expect(res.status).toBeLessThan(500);
          const stored = await rows({ source: system, eventId: id });
          if (res.status === 202) expect(stored.length + Number(res.body.duplicate)).toBe(1);
          else {
            expect([400]).toContain(res.status);
            expect(stored).toHaveLength(0);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});
