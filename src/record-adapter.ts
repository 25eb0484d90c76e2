import type { z } from 'zod';
import type { Config } from './config.js';
import type { SystemName } from './db/schema.js';
import type { ListPage } from './lib/list-page.js';
import type { RequestOptions } from './lib/upstream.js';
import type { PowerOfficeClient } from './poweroffice/client.js';
import type { TidsbankenClient } from './tidsbanken/client.js';

// What the engine knows about one record type of one vendor. Everything specific to a type —
// its schema, ids, last-change field, match keys, reads and writes, poller query, webhook
// schema — sits in its adapter in the vendor's folder (src/tidsbanken/*.ts,
// src/poweroffice/*.ts). The registry in src/record-types.ts lists them all.

export type RecordType =
  'ansatt' | 'kunde' | 'prosjekt' | 'employee' | 'customer' | 'contactperson' | 'project';

/** A record as the vendor's API returns it (its schema parsed it; unknown fields kept). */
export type VendorRecord = Record<string, unknown>;

/** The normalized match keys stored in indexed mirror columns. */
export interface MatchKeys {
  email: string | null;
  nationalId: string | null;
  number: string | null;
  /** A code compared trimmed and case-insensitively (Prosjekt Id, Project Code). */
  code: string | null;
}

/** The configured vendor clients; a side without credentials has none. */
export interface Clients {
  tidsbanken?: TidsbankenClient | undefined;
  poweroffice?: PowerOfficeClient | undefined;
}

/** Where a record lives: its id, and its parent's id when the type has one (contact persons). */
export interface RecordRef {
  id: string;
  parentId: string | null;
}

export interface CreateOptions extends RequestOptions {
  /** The parent of the new record, when the type has one. */
  parentId: string | null;
  /** An earlier attempt may have landed: look the origin id up before sending. */
  lookupFirst: boolean;
}

export interface UpdateOptions extends RequestOptions {
  /** The record as last read (the mirror), for vendor rules that depend on its current shape. */
  known: VendorRecord | undefined;
}

export interface UpdateResult {
  /** The record as the vendor holds it after the write, when the API returned it. */
  record?: VendorRecord | undefined;
  /** Other reads made on the way (a read before a whole-record replace). */
  reads?: VendorRecord[];
}

/**
 * An update's read right before its write shows a change of the record that the mirror has
 * not seen: nothing was written. The read goes to the inbox, and the command waits until the
 * worker has decided again by policy.
 */
export class UnseenChangeError extends Error {
  constructor(readonly record: VendorRecord) {
    super('the record changed since it was last read; the change is synced first');
  }
}

/** One record type's reads and writes through a configured client. */
export interface RecordApi {
  /** The record, or undefined when it does not exist. */
  get(ref: RecordRef, options?: RequestOptions): Promise<VendorRecord | undefined>;
  /**
   * Pages of records changed after `since` (a value of the adapter's `formatSince`); all
   * without it. Items failing their schema come set aside in each page's `rejected`.
   */
  listChangedSince(
    since: string | undefined,
    options?: RequestOptions,
  ): AsyncIterable<ListPage<VendorRecord>>;
  /** Creates a record from a body made by the adapter's `createBody`, idempotently. */
  create(body: VendorRecord, options: CreateOptions): Promise<VendorRecord>;
  /** Writes these fields (the flow's field names/paths → values) to the record. */
  update(ref: RecordRef, fields: VendorRecord, options: UpdateOptions): Promise<UpdateResult>;
}

/** How a webhook's `data` is recognized as this type's full record or a thin reference. */
export interface WebhookShape {
  full: z.ZodType;
  thin: z.ZodType;
  /** Key fields: a `data` holding nothing known besides these is thin. */
  keyFields: readonly string[];
}

export interface RecordAdapter {
  system: SystemName;
  type: RecordType;
  /** The vendor's own name of the type (docs, messages). */
  label: string;
  /** Field holding the record's last-change time, as the API gives it. */
  updatedAtField: string;
  /** Field of the parent id that is part of the key (contact persons: ContactId). */
  parentField?: string;
  /** The normalized match keys of a record. */
  keys(record: VendorRecord): MatchKeys;
  /** The fields each match key is read from (the README's merge rules). */
  keyFields: Record<keyof MatchKeys, readonly string[]>;
  webhook: WebhookShape;
  /** The change filter's value for an instant (epoch ms). */
  formatSince(ms: number): string;
  /** The body of a create from the flow's field names/paths → values. */
  createBody(fields: VendorRecord): VendorRecord;
  /**
   * The parent a new record is created under, when the type needs one; undefined when none is
   * configured (then nothing is created). Absent for types without a parent.
   */
  createParentId?(config: Readonly<Config>): string | undefined;
  /** The API through the configured client; undefined when the vendor is not configured. */
  connect(clients: Clients): RecordApi | undefined;
}

/** A record's own id as the engine stores it (a string). */
export function recordIdOf(record: VendorRecord): string | undefined {
  const id = record.Id;
  return typeof id === 'number' || typeof id === 'string' ? String(id) : undefined;
}

/** A record's parent id, for types that have one; null otherwise. */
export function parentIdOf(adapter: RecordAdapter, record: VendorRecord): string | null {
  if (adapter.parentField === undefined) return null;
  const parent = record[adapter.parentField];
  return typeof parent === 'number' || typeof parent === 'string' ? String(parent) : null;
}
