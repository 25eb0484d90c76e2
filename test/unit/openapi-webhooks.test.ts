import { describe, expect, it } from 'vitest';
import type { SystemName } from '../../src/db/schema.js';
import { ERROR_CODES } from '../../src/errors.js';
import {
  RECORD_KINDS,
  WEBHOOK_ENVELOPE_SCHEMAS,
  parseWebhookData,
} from '../../src/http/webhook-schemas.js';
import { RECORD_ADAPTERS } from '../../src/record-types.js';
import { closedSchema, componentSchema, validateAgainst } from '../helpers/openapi.js';

// openapi.yaml and the code must say the same about webhook bodies: every body below is
// accepted by both or refused by both. The spec is what senders read; the code is what
// answers them.

const SPEC_SCHEMA = {
  tidsbanken: 'TidsbankenWebhook',
  poweroffice: 'PowerOfficeWebhook',
} as const satisfies Record<SystemName, string>;

async function specAccepts(system: SystemName, body: unknown): Promise<boolean> {
  return validateAgainst(await componentSchema(SPEC_SCHEMA[system]), body).length === 0;
}

function codeAccepts(system: SystemName, body: unknown): boolean {
  const envelope = WEBHOOK_ENVELOPE_SCHEMAS[system].safeParse(body);
  if (!envelope.success) return false;
  return parseWebhookData(envelope.data.type, (body as { data: Record<string, unknown> }).data).ok;
}

async function verdicts(system: SystemName, body: unknown) {
  return { spec: await specAccepts(system, body), code: codeAccepts(system, body) };
}

const both = (accepted: boolean) => ({ spec: accepted, code: accepted });

describe('webhook bodies: openapi.yaml and the code agree', () => {
  const cases: [string, SystemName, unknown, boolean][] = [
    [
      'an Ansatt with a numeric Id',
      'tidsbanken',
      { type: 'ansatt.updated', data: { Id: 100 } },
      true,
    ],
    [
      'an Ansatt whose Id is the employee number as a string',
      'tidsbanken',
      { type: 'ansatt.updated', data: { Id: '100', Fornavn: 'Kari' } },
      true,
    ],
    [
      'an Ansatt Id that is no number',
      'tidsbanken',
      { type: 'ansatt.deleted', data: { Id: 'abc' } },
      false,
    ],
    ['a negative Ansatt Id', 'tidsbanken', { type: 'ansatt.deleted', data: { Id: -1 } }, false],
    ['a Kunde with a string Id', 'tidsbanken', { type: 'kunde.updated', data: { Id: 'K1' } }, true],
    [
      'a Kunde with a numeric Id',
      'tidsbanken',
      { type: 'kunde.updated', data: { Id: 4711 } },
      true,
    ],
    ['an empty Kunde Id', 'tidsbanken', { type: 'kunde.updated', data: { Id: '' } }, false],
    [
      'a Kunde Id over 200 characters',
      'tidsbanken',
      { type: 'kunde.updated', data: { Id: 'K'.repeat(201) } },
      false,
    ],
    [
      'unknown fields in a record',
      'tidsbanken',
      { type: 'ansatt.updated', data: { Id: 1, Fornavn: 'K', Custom: { any: [1] } } },
      true,
    ],
    [
      'a known field of the wrong type',
      'tidsbanken',
      { type: 'ansatt.updated', data: { Id: 1, Aktiv: 'yes' } },
      false,
    ],
    [
      'a timestamp with a time zone',
      'tidsbanken',
      { type: 'kunde.updated', timestamp: '2026-01-05T10:00:00+01:00', data: { Id: 'K1' } },
      true,
    ],
    ['no timestamp', 'tidsbanken', { type: 'kunde.updated', data: { Id: 'K1' } }, true],
    [
      'a null timestamp',
      'tidsbanken',
      { type: 'kunde.updated', timestamp: null, data: { Id: 'K1' } },
      false,
    ],
    [
      'a timestamp without a time zone',
      'tidsbanken',
      { type: 'kunde.updated', timestamp: '2026-01-05T10:00:00', data: { Id: 'K1' } },
      false,
    ],
    [
      'unknown envelope fields',
      'tidsbanken',
      { type: 'kunde.updated', data: { Id: 'K1' }, x: 1 },
      true,
    ],
    ['an unknown event type', 'tidsbanken', { type: 'kunde.merged', data: { Id: 'K1' } }, false],
    ['data that is an array', 'tidsbanken', { type: 'kunde.updated', data: [1] }, false],
    ['a PowerOffice Id', 'poweroffice', { type: 'customer.updated', data: { Id: 5 } }, true],
    ['a camelCase id', 'poweroffice', { type: 'customer.updated', data: { id: 5 } }, false],
    [
      'a string PowerOffice Id',
      'poweroffice',
      { type: 'customer.updated', data: { Id: '5' } },
      false,
    ],
    [
      'a contact person with its ContactId',
      'poweroffice',
      { type: 'contactperson.updated', data: { ContactId: 7, Id: 5 } },
      true,
    ],
    [
      'a contact person without ContactId',
      'poweroffice',
      { type: 'contactperson.deleted', data: { Id: 5 } },
      false,
    ],
    [
      'an Employee with a full MailAddress',
      'poweroffice',
      {
        type: 'employee.updated',
        data: { Id: 5, FirstName: 'K', MailAddress: { AddressLine1: 'Gate 1', City: 'Oslo' } },
      },
      true,
    ],
    [
      'a MailAddress that is text',
      'poweroffice',
      { type: 'employee.updated', data: { Id: 5, MailAddress: 'Oslo' } },
      false,
    ],
    [
      'a null timestamp',
      'poweroffice',
      { type: 'customer.updated', timestamp: null, data: { Id: 5 } },
      false,
    ],
  ];

  it.each(cases)('%s (%s) → accepted: %s', async (_name, system, body, accepted) => {
    expect(await verdicts(system, body)).toEqual(both(accepted));
  });

  // Every known field of every record type: a value of the wrong type is refused by both,
  // null is accepted by both (the APIs send null for an empty field). Covers new record
  // types as soon as they are in the registry.
  const fields = Object.values(RECORD_ADAPTERS).flatMap((adapter) => {
    const kind = RECORD_KINDS[adapter.type];
    return [...kind.known]
      .filter((field) => !kind.keys.includes(field))
      .map((field): [string, string, SystemName, Record<string, unknown>] => [
        adapter.type,
        field,
        adapter.system,
        Object.fromEntries(
          kind.keys.map((k) => [k, k === 'Id' && adapter.type === 'kunde' ? 'K1' : 7]),
        ),
      ]);
  });

  it.each(fields)(
    '%s.%s: wrong type refused and null accepted by both',
    async (type, field, system, keys) => {
      const body = (value: unknown) => ({
        type: `${type}.updated`,
        data: { ...keys, [field]: value },
      });
      // Nothing is both an object with a number inside and a scalar field's type; an object
      // field (MailAddress) gets a number instead.
      const wrong = field === 'MailAddress' ? 7 : { wrong: 7 };
      expect(await verdicts(system, body(wrong)), 'wrong type').toEqual(both(false));
      expect(await verdicts(system, body(null)), 'null').toEqual(both(true));
    },
  );

  it('documents every record type of the registry under its system', async () => {
    for (const adapter of Object.values(RECORD_ADAPTERS)) {
      for (const action of ['created', 'updated', 'deleted']) {
        const keys = Object.fromEntries(RECORD_KINDS[adapter.type].keys.map((k) => [k, 7]));
        const body = { type: `${adapter.type}.${action}`, data: keys };
        expect(await verdicts(adapter.system, body), `${adapter.type}.${action}`).toEqual(
          both(true),
        );
      }
    }
  });
});

describe('error codes', () => {
  it('openapi.yaml lists exactly the codes of src/errors.ts', async () => {
    const schema = (await componentSchema('ErrorCode')) as { enum: string[] };
    expect([...schema.enum].sort()).toEqual([...ERROR_CODES].sort());
  });
});

describe('response bodies as the contract tests check them (closedSchema)', () => {
  const link = {
    id: '1',
    flow: 'kunde-customer',
    tidsbankenId: 'K1',
    powerofficeId: '5',
    linkedBy: 'email',
    lastSyncedAt: null,
    shadow: { Navn: 'Firma AS' },
  };

  it('a field the spec does not name is a mismatch, also inside oneOf and nested objects', async () => {
    const schema = closedSchema(await componentSchema('Link'));
    expect(validateAgainst(schema, link)).toEqual([]);
    expect(validateAgainst(schema, { ...link, linkId: '1' })).not.toEqual([]);
    const page = closedSchema({
      type: 'object',
      properties: { items: { type: 'array', items: { oneOf: [await componentSchema('Link')] } } },
    });
    expect(validateAgainst(page, { items: [link] })).toEqual([]);
    expect(validateAgainst(page, { items: [{ ...link, extra: 1 }] })).not.toEqual([]);
    expect(validateAgainst(page, { items: [], extra: 1 })).not.toEqual([]);
  });

  it('where the spec allows other members (a record, the shadow, a Problem) they stay allowed', async () => {
    const schema = closedSchema(await componentSchema('Link'));
    expect(validateAgainst(schema, { ...link, shadow: { Anything: 1 } })).toEqual([]);
    const problem = closedSchema(await componentSchema('Problem'));
    const body = { type: 'urn:tidsbanken-poweroffice-sync:problem:conflict', code: 'conflict' };
    expect(
      validateAgainst(problem, { ...body, title: 'Conflict', status: 409, detail: 'x', extra: 1 }),
    ).toEqual([]);
  });
});
