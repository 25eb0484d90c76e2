// Values are compared after normalization (README "Field mappings"): "" equals null, strings trimmed,
// dates as YYYY-MM-DD, e-mail case-insensitively. Booleans stay booleans.

/** `reference`: another record's id (compared as text; translated between the systems). */
export type ValueKind = 'text' | 'email' | 'date' | 'boolean' | 'national_id' | 'reference';
export type Normalized = string | boolean | null;

/** PowerOffice reads a national id back as "hidden" without a special privilege. */
export const HIDDEN = 'hidden';

/** A read that says nothing about the value (PowerOffice's "hidden"). */
export const UNKNOWN = Symbol('unknown');
export type Read = Normalized | typeof UNKNOWN;

export function getPath(record: Record<string, unknown> | null | undefined, path: string): unknown {
  let current: unknown = record;
  for (const part of path.split('.')) {
    if (current === null || typeof current !== 'object') return undefined;
    current = (current as Record<string, unknown>)[part];
  }
  return current;
}

function text(value: unknown): string | null {
  if (value === null || value === undefined) return null;
  const s =
    typeof value === 'string'
      ? value.trim()
      : typeof value === 'number' || typeof value === 'boolean'
        ? String(value)
        : JSON.stringify(value);
  return s === '' ? null : s;
}

/** A date or date-time in any of the vendors' formats → YYYY-MM-DD (its calendar date as written). */
export function normalizeDate(value: unknown): string | null {
  const s = text(value);
  if (s === null) return null;
  const m = /^(\d{4})-(\d{2})-(\d{2})/.exec(s);
  return m ? `${m[1]}-${m[2]}-${m[3]}` : s;
}

/** The comparable form of a value: equal normalized values are "no change". */
export function normalizeValue(kind: ValueKind, value: unknown): Read {
  switch (kind) {
    case 'boolean':
      return typeof value === 'boolean' ? value : null;
    case 'date':
      return normalizeDate(value);
    case 'email': {
      const s = text(value);
      return s === null ? null : s.toLowerCase();
    }
    case 'national_id': {
      const s = text(value);
      if (s === null) return null;
      if (s.toLowerCase() === HIDDEN) return UNKNOWN;
      const digits = s.replace(/\D/g, '');
      return digits === '' ? null : digits;
    }
    case 'text':
    case 'reference':
      return text(value);
  }
}

/** The value as it should be written to the other system (trimmed, dates as YYYY-MM-DD). */
export function writableValue(kind: ValueKind, value: unknown): string | boolean | null {
  switch (kind) {
    case 'boolean':
      return typeof value === 'boolean' ? value : null;
    case 'date':
      return normalizeDate(value);
    case 'email':
    case 'text':
    case 'reference':
      return text(value);
    case 'national_id': {
      const s = text(value);
      return s === null || s.toLowerCase() === HIDDEN ? null : s;
    }
  }
}

// ---- match keys -----------------------------------------------------------------------

/** E-mail as a match key: trimmed and lower-cased; empty never matches. */
export function emailKey(value: unknown): string | null {
  const s = text(value);
  return s === null ? null : s.toLowerCase();
}

/** National id as a match key: digits only; empty or "hidden" never matches. */
export function nationalIdKey(value: unknown): string | null {
  const s = text(value);
  if (s === null || s.toLowerCase() === HIDDEN) return null;
  const digits = s.replace(/\D/g, '');
  return digits === '' ? null : digits;
}

/** A code as a match key: trimmed and lower-cased; empty never matches. */
export function codeKey(value: unknown): string | null {
  const s = text(value);
  return s === null ? null : s.toLowerCase();
}

/** A number as a match key: an integer (or a string of digits); anything else never matches. */
export function numberKey(value: unknown): string | null {
  if (typeof value === 'number' && Number.isSafeInteger(value)) return String(value);
  const s = text(value);
  if (s === null || !/^\d{1,18}$/.test(s)) return null;
  return String(BigInt(s));
}
