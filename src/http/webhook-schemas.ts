import { z } from 'zod';
import type { SystemName } from '../db/schema.js';
import { parentIdOf, type RecordAdapter, type RecordType } from '../record-adapter.js';
import { RECORD_ADAPTERS, recordTypesOf } from '../record-types.js';

// Webhook bodies (openapi.yaml, README "Endpoints"): `{ type, timestamp?, data }`. `data` is the record as that
// system's API returns it, or a thin reference holding only its key.
//
// Full or thin: a `data` object is THIN when it holds no field of the record's schema other
// than its key fields (`Id`; contact persons `Id` + `ContactId`). Unknown extra fields
// (`@odata.etag`, a sender's own notes) do not make it full, because the worker could not
// map them anyway; they are still stored. Keys are matched exactly as openapi.yaml names them.

const ACTIONS = ['created', 'updated', 'deleted'] as const;
export type WebhookEventType = `${RecordType}.${(typeof ACTIONS)[number]}`;

/** `<recordType>.<action>` for every record type of the system, in registry order. */
function eventTypesOf(system: SystemName): [WebhookEventType, ...WebhookEventType[]] {
  return recordTypesOf(system).flatMap((type) =>
    ACTIONS.map((action): WebhookEventType => `${type}.${action}`),
  ) as [WebhookEventType, ...WebhookEventType[]];
}

export const TIDSBANKEN_EVENT_TYPES = eventTypesOf('tidsbanken');
export const POWEROFFICE_EVENT_TYPES = eventTypesOf('poweroffice');

// Optional, but when present a date-time (null is not "absent": openapi.yaml says string).
const timestamp = z.iso
  .datetime({ offset: true, error: 'must be an ISO 8601 date-time with a time zone' })
  .refine((v) => Number.isFinite(Date.parse(v)), { error: 'must be a real date-time' })
  .optional();

// A loose object: extra envelope fields are kept (and ignored).
const data = z.record(z.string(), z.unknown(), { error: 'must be a JSON object' });

export const TidsbankenWebhookSchema = z.looseObject({
  type: z.enum(TIDSBANKEN_EVENT_TYPES, {
    error: `must be one of ${TIDSBANKEN_EVENT_TYPES.join(', ')}`,
  }),
  timestamp,
  data,
});

export const PowerOfficeWebhookSchema = z.looseObject({
  type: z.enum(POWEROFFICE_EVENT_TYPES, {
    error: `must be one of ${POWEROFFICE_EVENT_TYPES.join(', ')}`,
  }),
  timestamp,
  data,
});

export const WEBHOOK_ENVELOPE_SCHEMAS = {
  tidsbanken: TidsbankenWebhookSchema,
  poweroffice: PowerOfficeWebhookSchema,
} as const satisfies Record<SystemName, z.ZodType>;

// Ids end up in unique btree indexes (PostgreSQL caps an index row near 2.7 kB) and in
// admin URLs; no real record id comes near this.
export const MAX_ID_LENGTH = 200;

interface RecordKind {
  adapter: RecordAdapter;
  /** Full record schema. */
  full: z.ZodType;
  /** Thin reference schema. */
  thin: z.ZodType;
  /** Key fields: a `data` holding nothing known besides these is thin. */
  keys: readonly string[];
  /** Every field the full schema knows, key fields included. */
  known: ReadonlySet<string>;
}

function shapeKeys(schema: z.ZodType): ReadonlySet<string> {
  // EmployeeWebhookSchema etc. are z.preprocess(…, object): the object is the pipe's `out`.
  const object =
    schema instanceof z.ZodPipe ? (schema.out as unknown as z.ZodObject) : (schema as z.ZodObject);
  return new Set(Object.keys(object.shape));
}

function kindOf(adapter: RecordAdapter): RecordKind {
  const { full, thin, keyFields } = adapter.webhook;
  return { adapter, full, thin, keys: keyFields, known: shapeKeys(full) };
}

export const RECORD_KINDS = Object.fromEntries(
  Object.entries(RECORD_ADAPTERS).map(([type, adapter]) => [type, kindOf(adapter)]),
) as Record<RecordType, RecordKind>;

export function isThinRecord(kind: RecordKind, record: Record<string, unknown>): boolean {
  return !Object.keys(record).some((k) => kind.known.has(k) && !kind.keys.includes(k));
}

export type ParsedWebhookData =
  | {
      ok: true;
      /**
       * `data` to store: as sent, except a key field sent as text that the record's schema
       * reads as a number (an Ansatt `Id` of "100"), which is stored as that number, as the
       * API itself gives it.
       */
      payload: Record<string, unknown>;
      recordType: RecordType;
      recordId: string;
      parentId: string | null;
      isThin: boolean;
      /** The record's own last-changed time, when it has a usable one. */
      changedAt: Date | null;
    }
  | { ok: false; issues: z.core.$ZodIssue[] };

/** Validates `data` for an event type (`<recordType>.<action>`) and extracts its keys. */
export function parseWebhookData(
  eventType: WebhookEventType,
  record: Record<string, unknown>,
): ParsedWebhookData {
  const recordType = eventType.slice(0, eventType.indexOf('.')) as RecordType;
  const kind = RECORD_KINDS[recordType];
  const isThin = isThinRecord(kind, record);
  const parsed = (isThin ? kind.thin : kind.full).safeParse(record);
  if (!parsed.success) return { ok: false, issues: parsed.error.issues };
  const value = parsed.data as Record<string, unknown>;
  const recordId = String(value.Id);
  if (recordId.length > MAX_ID_LENGTH) {
    return {
      ok: false,
      issues: [
        {
          code: 'too_big',
          origin: 'string',
          maximum: MAX_ID_LENGTH,
          inclusive: true,
          path: ['Id'],
          message: `must be at most ${MAX_ID_LENGTH} characters`,
          input: value.Id,
        },
      ],
    };
  }
  const parentId = parentIdOf(kind.adapter, value);
  return {
    ok: true,
    payload: withNumericKeys(kind, record, value),
    recordType,
    recordId,
    parentId,
    isThin,
    changedAt: toTimestamp(value[kind.adapter.updatedAtField]),
  };
}

function withNumericKeys(
  kind: RecordKind,
  sent: Record<string, unknown>,
  parsed: Record<string, unknown>,
): Record<string, unknown> {
  const numeric = kind.keys.filter(
    (k) => typeof sent[k] === 'string' && typeof parsed[k] === 'number',
  );
  if (numeric.length === 0) return sent;
  return { ...sent, ...Object.fromEntries(numeric.map((k) => [k, parsed[k]])) };
}

/**
 * A time PostgreSQL's timestamptz surely accepts, or null. Record timestamps are loosely
 * typed text (Tidsbanken sends ISO UTC strings; docs/vendor-apis.md), so a value we cannot
 * read is dropped rather than refused: it only orders events, and the record is still good.
 */
export function toTimestamp(value: unknown): Date | null {
  if (typeof value !== 'string' || value.length > 64) return null;
  const ms = Date.parse(value);
  if (!Number.isFinite(ms)) return null;
  const date = new Date(ms);
  const year = date.getUTCFullYear();
  return year >= 1 && year <= 9999 ? date : null;
}
