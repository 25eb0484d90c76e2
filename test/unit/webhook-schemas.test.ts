import { describe, expect, it } from 'vitest';
import {
  PowerOfficeWebhookSchema,
  RECORD_KINDS,
  TidsbankenWebhookSchema,
  isThinRecord,
  parseWebhookData,
  toTimestamp,
} from '../../src/http/webhook-schemas.js';

describe('full or thin', () => {
  it.each([
    ['ansatt', { Id: 1 }, true],
    ['ansatt', { Id: 1, '@odata.etag': 'x', Note: 'y' }, true],
    ['ansatt', { Id: 1, Fornavn: null }, false],
    ['kunde', { Id: 'K1' }, true],
    ['kunde', { Id: 'K1', Navn: 'A' }, false],
    ['employee', { Id: 1 }, true],
    // Keys are read as openapi.yaml names them: a camelCase twin is an unknown field.
    ['employee', { Id: 1, firstName: 'K' }, true],
    ['employee', { Id: 1, FirstName: 'K' }, false],
    ['customer', { Id: 1, Name: 'A' }, false],
    ['contactperson', { ContactId: 2, Id: 1 }, true],
    ['contactperson', { ContactId: 2, Id: 1, EmailAddress: 'a@b' }, false],
  ] as const)('%s %j → thin %s', (type, data, thin) => {
    expect(isThinRecord(RECORD_KINDS[type], data)).toBe(thin);
  });
});

describe('parseWebhookData', () => {
  it('extracts record id, parent id and the last-changed time', () => {
    expect(
      parseWebhookData('contactperson.updated', {
        Id: 9,
        ContactId: 77,
        FirstName: 'Ola',
        LastChangedDateTimeOffset: '2024-03-04T05:06:07+01:00',
      }),
    ).toEqual({
      ok: true,
      payload: {
        Id: 9,
        ContactId: 77,
        FirstName: 'Ola',
        LastChangedDateTimeOffset: '2024-03-04T05:06:07+01:00',
      },
      recordType: 'contactperson',
      recordId: '9',
      parentId: '77',
      isThin: false,
      changedAt: new Date('2024-03-04T04:06:07Z'),
    });
    expect(parseWebhookData('kunde.deleted', { Id: 12 })).toMatchObject({
      ok: true,
      recordId: '12',
      parentId: null,
      isThin: true,
      changedAt: null,
    });
  });

  it('stores an Ansatt Id sent as its decimal string as the number; a Kunde Id as sent', () => {
    expect(parseWebhookData('ansatt.updated', { Id: '100', Fornavn: 'K' })).toMatchObject({
      ok: true,
      recordId: '100',
      payload: { Id: 100, Fornavn: 'K' },
    });
    expect(parseWebhookData('kunde.updated', { Id: 4711 })).toMatchObject({
      ok: true,
      recordId: '4711',
      payload: { Id: 4711 },
    });
  });

  it.each([
    ['ansatt.updated', { Fornavn: 'K' }, ['Id']],
    ['ansatt.updated', { Id: 'abc' }, ['Id']],
    ['employee.updated', { id: 1 }, ['Id']],
    ['ansatt.updated', { Id: -1 }, ['Id']],
    ['ansatt.updated', { Id: 1.5 }, ['Id']],
    ['ansatt.updated', { Id: 1, Epost: 5 }, ['Epost']],
    ['kunde.updated', { Id: 'K'.repeat(201) }, ['Id']],
    ['employee.updated', { Id: '1' }, ['Id']],
    ['contactperson.created', { Id: 1 }, ['ContactId']],
    ['customer.updated', { Id: 1, MailAddress: { City: 5 } }, ['MailAddress', 'City']],
  ] as const)('%s %j fails at %j', (type, data, path) => {
    const result = parseWebhookData(type, data);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.issues[0]?.path).toEqual(path);
  });
});

describe('envelopes', () => {
  it('keeps unknown envelope fields and accepts a missing timestamp', () => {
    const parsed = TidsbankenWebhookSchema.parse({
      type: 'kunde.created',
      data: { Id: 'K' },
      extra: 1,
    });
    expect(parsed).toMatchObject({ type: 'kunde.created', extra: 1 });
  });

  it('refuses the other system’s event types', () => {
    expect(TidsbankenWebhookSchema.safeParse({ type: 'employee.created', data: {} }).success).toBe(
      false,
    );
    expect(PowerOfficeWebhookSchema.safeParse({ type: 'ansatt.created', data: {} }).success).toBe(
      false,
    );
  });

  it('wants a time zone on the timestamp', () => {
    const base = { type: 'employee.created', data: { Id: 1 } };
    expect(
      PowerOfficeWebhookSchema.safeParse({ ...base, timestamp: '2026-01-05T10:00:00Z' }).success,
    ).toBe(true);
    expect(
      PowerOfficeWebhookSchema.safeParse({ ...base, timestamp: '2026-01-05T10:00:00+01:00' })
        .success,
    ).toBe(true);
    expect(
      PowerOfficeWebhookSchema.safeParse({ ...base, timestamp: '2026-01-05T10:00:00' }).success,
    ).toBe(false);
  });
});

describe('toTimestamp', () => {
  it.each([
    ['2023-12-06T09:27:57.713Z', '2023-12-06T09:27:57.713Z'],
    ['not a date', null],
    ['0000-01-01T00:00:00Z', null],
    [12345, null],
    [null, null],
  ])('%j → %j', (input, expected) => {
    const result = toTimestamp(input);
    expect(result === null ? null : result.toISOString()).toBe(expected);
  });
});
