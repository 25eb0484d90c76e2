import { describe, expect, it } from 'vitest';
import {
  emailKey,
  getPath,
  HIDDEN,
  nationalIdKey,
  normalizeDate,
  normalizeValue,
  numberKey,
  UNKNOWN,
  writableValue,
} from '../../src/sync/normalize.js';

describe('normalizeValue', () => {
  it('treats "" and whitespace-only text as null, like a missing value', () => {
    expect(normalizeValue('text', '')).toBeNull();
    expect(normalizeValue('text', '   ')).toBeNull();
    expect(normalizeValue('text', null)).toBeNull();
    expect(normalizeValue('text', undefined)).toBeNull();
    expect(normalizeValue('email', '')).toBeNull();
    expect(normalizeValue('date', '')).toBeNull();
    expect(normalizeValue('national_id', '')).toBeNull();
  });

  it('trims text but keeps its case and inner spaces', () => {
    expect(normalizeValue('text', '  Kari  Nordmann ')).toBe('Kari  Nordmann');
  });

  it('reads numbers as text (a Tidsbanken number field compares with a PowerOffice string)', () => {
    expect(normalizeValue('text', 4012)).toBe('4012');
  });

  it.each([
    ['2023-12-06T09:27:57.713Z', '2023-12-06'],
    ['2021-09-25 08:03:00.123456+00:00', '2021-09-25'],
    ['2003-07-15', '2003-07-15'],
    ['  2003-07-15T00:00:00 ', '2003-07-15'],
  ])('reads the date %j as %j', (input, expected) => {
    expect(normalizeValue('date', input)).toBe(expected);
    expect(normalizeDate(input)).toBe(expected);
  });

  it('keeps the calendar date as written, not shifted to UTC', () => {
    expect(normalizeValue('date', '2023-12-06T23:30:00-05:00')).toBe('2023-12-06');
  });

  it('compares e-mail case-insensitively and trimmed', () => {
    expect(normalizeValue('email', '  Kari.Nordmann@Example.NO ')).toBe('kari.nordmann@example.no');
    expect(normalizeValue('email', 'KARI@X.NO')).toBe(normalizeValue('email', 'kari@x.no'));
  });

  it('keeps booleans and reads anything else as null', () => {
    expect(normalizeValue('boolean', true)).toBe(true);
    expect(normalizeValue('boolean', false)).toBe(false);
    expect(normalizeValue('boolean', null)).toBeNull();
    expect(normalizeValue('boolean', 'true')).toBeNull();
  });

  it('reads a national id as digits only', () => {
    expect(normalizeValue('national_id', ' 010190 12345 ')).toBe('01019012345');
    expect(normalizeValue('national_id', '010190-12345')).toBe('01019012345');
    expect(normalizeValue('national_id', 'abc')).toBeNull();
  });

  it('reads a "hidden" national id as UNKNOWN, in any case', () => {
    expect(HIDDEN).toBe('hidden');
    expect(normalizeValue('national_id', 'hidden')).toBe(UNKNOWN);
    expect(normalizeValue('national_id', ' Hidden ')).toBe(UNKNOWN);
  });
});

describe('writableValue', () => {
  it('keeps the case of an e-mail address (only the comparison ignores it)', () => {
    expect(writableValue('email', ' Kari.Nordmann@Example.NO ')).toBe('Kari.Nordmann@Example.NO');
  });

  it('writes dates as YYYY-MM-DD and "" as null', () => {
    expect(writableValue('date', '2023-12-06T09:27:57.713Z')).toBe('2023-12-06');
    expect(writableValue('text', '')).toBeNull();
    expect(writableValue('text', '  Oslo ')).toBe('Oslo');
  });

  it('never writes a "hidden" national id, but keeps a real one as given', () => {
    expect(writableValue('national_id', 'hidden')).toBeNull();
    expect(writableValue('national_id', ' 01019012345 ')).toBe('01019012345');
  });

  it('writes booleans as booleans', () => {
    expect(writableValue('boolean', false)).toBe(false);
    expect(writableValue('boolean', 'false')).toBeNull();
  });
});

describe('match keys', () => {
  it('emailKey: trimmed and lower-cased; empty never matches', () => {
    expect(emailKey(' Kari@Example.NO ')).toBe('kari@example.no');
    expect(emailKey('')).toBeNull();
    expect(emailKey('  ')).toBeNull();
    expect(emailKey(null)).toBeNull();
    expect(emailKey(undefined)).toBeNull();
  });

  it('nationalIdKey: digits only; empty, non-digit and "hidden" never match', () => {
    expect(nationalIdKey('010190 12345')).toBe('01019012345');
    expect(nationalIdKey('hidden')).toBeNull();
    expect(nationalIdKey('HIDDEN')).toBeNull();
    expect(nationalIdKey('')).toBeNull();
    expect(nationalIdKey('n/a')).toBeNull();
    expect(nationalIdKey(null)).toBeNull();
  });

  it('numberKey: integers and digit strings compare as integers', () => {
    expect(numberKey(42)).toBe('42');
    expect(numberKey('0042')).toBe('42');
    expect(numberKey(' 42 ')).toBe('42');
    expect(numberKey('42')).toBe(numberKey(42));
  });

  it('numberKey: empty, fractional and non-digit values never match', () => {
    expect(numberKey('')).toBeNull();
    expect(numberKey(null)).toBeNull();
    expect(numberKey(undefined)).toBeNull();
    expect(numberKey(42.5)).toBeNull();
    expect(numberKey('42a')).toBeNull();
    expect(numberKey('4e3')).toBeNull();
    expect(numberKey('-')).toBeNull();
    expect(numberKey(Number.NaN)).toBeNull();
  });
});

describe('getPath', () => {
  it('follows dotted paths into nested objects', () => {
    expect(getPath({ MailAddress: { City: 'Oslo' } }, 'MailAddress.City')).toBe('Oslo');
    expect(getPath({ MailAddress: null }, 'MailAddress.City')).toBeUndefined();
    expect(getPath({}, 'MailAddress.City')).toBeUndefined();
    expect(getPath(null, 'Name')).toBeUndefined();
  });
});
