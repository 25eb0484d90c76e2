import type { FlowId } from '../config.js';
import type { SystemName } from '../db/schema.js';
import {
  emailKey,
  getPath,
  nationalIdKey,
  numberKey,
  writableValue,
  type ValueKind,
} from './normalize.js';

// The three flows of DESIGN.md §1–§2 as data. The engine (sync/*) is generic over these
// tables: adding a fourth flow is a table here, not a new code path.

export type RecordType = 'ansatt' | 'kunde' | 'employee' | 'customer' | 'contactperson';

export interface RecordTypeDefinition {
  system: SystemName;
  type: RecordType;
  /** Field holding the record's last-change time, as the API gives it. */
  updatedAtField: string;
  /** Field of the parent id that is part of the key (contact persons: ContactId). */
  parentField?: string;
  /** The normalized match keys stored in indexed mirror columns. */
  keys(record: Record<string, unknown>): MatchKeys;
}

export interface MatchKeys {
  email: string | null;
  nationalId: string | null;
  number: string | null;
}

const firstKnown = (...values: unknown[]) =>
  values.map(nationalIdKey).find((v) => v !== null) ?? null;

export const RECORD_TYPES: Record<RecordType, RecordTypeDefinition> = {
  ansatt: {
    system: 'tidsbanken',
    type: 'ansatt',
    updatedAtField: 'SistEndretDato',
    keys: (r) => ({
      email: emailKey(r.Epost),
      nationalId: nationalIdKey(r.Personnummer),
      number: numberKey(r.Id),
    }),
  },
  kunde: {
    system: 'tidsbanken',
    type: 'kunde',
    updatedAtField: 'SistEndretDato',
    keys: (r) => ({ email: emailKey(r.Epost), nationalId: null, number: numberKey(r.Id) }),
  },
  employee: {
    system: 'poweroffice',
    type: 'employee',
    updatedAtField: 'LastChangedDateTimeOffset',
    keys: (r) => ({
      email: emailKey(r.EmailAddress),
      nationalId: firstKnown(r.NationalIdNumber, r.SocialSecurityNumber),
      number: numberKey(r.Number),
    }),
  },
  customer: {
    system: 'poweroffice',
    type: 'customer',
    updatedAtField: 'LastChangedDateTimeOffset',
    keys: (r) => ({
      email: emailKey(r.EmailAddress),
      nationalId: firstKnown(r.NationalIdNumber, r.SocialSecurityNumber),
      number: numberKey(r.Number),
    }),
  },
  contactperson: {
    system: 'poweroffice',
    type: 'contactperson',
    updatedAtField: 'LastChangedDateTimeOffset',
    parentField: 'ContactId',
    // v2 contact persons carry no national id; read one if a future version sends it.
    keys: (r) => ({
      email: emailKey(r.EmailAddress),
      nationalId: firstKnown(r.SocialSecurityNumber, r.NationalIdNumber),
      number: null,
    }),
  },
};

export type MergeRuleName = 'email' | 'national_id' | 'number';
export const MERGE_RULE_KEY: Record<MergeRuleName, keyof MatchKeys> = {
  email: 'email',
  national_id: 'nationalId',
  number: 'number',
};

export interface FieldMapping {
  /** Shadow key; the Tidsbanken field name, unique within a flow. */
  key: string;
  tidsbanken: string;
  /** A path; nested address fields as `MailAddress.City`. */
  poweroffice: string;
  kind: ValueKind;
  /** Boolean with opposite meaning on the two sides (Aktiv ↔ IsArchived). */
  invert?: true;
  /** `to-poweroffice`: edits in PowerOffice are never written back (DESIGN.md §2 "→"). */
  direction: 'both' | 'to-poweroffice';
  /** Mapped only while the PowerOffice record's value at `path` is one of `oneOf` (null = empty). */
  when?: { path: string; oneOf: (string | null)[] };
}

export interface FlowDefinition {
  id: FlowId;
  tidsbanken: RecordType;
  poweroffice: RecordType;
  mergeRules: MergeRuleName[];
  fields: FieldMapping[];
  /** `tb-ansatt-<Id>`: carried by a PowerOffice record we created, so it links back (≤ 50 chars). */
  originPrefix: string;
  /** Where PowerOffice keeps that origin id. */
  powerofficeOriginField: 'ExternalImportReference' | 'ExternalCode';
  /** Extra fields of a PowerOffice create, beyond the mapped ones. */
  powerofficeCreateExtras(tidsbanken: Record<string, unknown>): Record<string, unknown>;
  /**
   * The Tidsbanken Id of a record created from a PowerOffice one, or undefined when this
   * flow cannot create in Tidsbanken from it (DESIGN.md §1 "Ids on create").
   */
  tidsbankenIdFrom(poweroffice: Record<string, unknown>): number | string | undefined;
}

const address = (prefix: 'Ansatt' | 'Kunde'): FieldMapping[] =>
  prefix === 'Ansatt'
    ? [
        {
          key: 'Adresse',
          tidsbanken: 'Adresse',
          poweroffice: 'MailAddress.AddressLine1',
          kind: 'text',
          direction: 'both',
        },
        {
          key: 'Postnummer',
          tidsbanken: 'Postnummer',
          poweroffice: 'MailAddress.ZipCode',
          kind: 'text',
          direction: 'both',
        },
        {
          key: 'Poststed',
          tidsbanken: 'Poststed',
          poweroffice: 'MailAddress.City',
          kind: 'text',
          direction: 'both',
        },
      ]
    : [
        {
          key: 'Gateadresse',
          tidsbanken: 'Gateadresse',
          poweroffice: 'MailAddress.AddressLine1',
          kind: 'text',
          direction: 'both',
        },
        {
          key: 'Postadresse',
          tidsbanken: 'Postadresse',
          poweroffice: 'MailAddress.AddressLine2',
          kind: 'text',
          direction: 'both',
        },
        {
          key: 'Postnr',
          tidsbanken: 'Postnr',
          poweroffice: 'MailAddress.ZipCode',
          kind: 'text',
          direction: 'both',
        },
        {
          key: 'Poststed',
          tidsbanken: 'Poststed',
          poweroffice: 'MailAddress.City',
          kind: 'text',
          direction: 'both',
        },
      ];

export const FLOWS: readonly FlowDefinition[] = [
  {
    id: 'ansatt-contactperson',
    tidsbanken: 'ansatt',
    poweroffice: 'contactperson',
    mergeRules: ['email', 'national_id'],
    fields: [
      {
        key: 'Fornavn',
        tidsbanken: 'Fornavn',
        poweroffice: 'FirstName',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Etternavn',
        tidsbanken: 'Etternavn',
        poweroffice: 'LastName',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Epost',
        tidsbanken: 'Epost',
        poweroffice: 'EmailAddress',
        kind: 'email',
        direction: 'both',
      },
      {
        key: 'Mobil',
        tidsbanken: 'Mobil',
        poweroffice: 'PhoneNumber',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Tittel',
        tidsbanken: 'Tittel',
        poweroffice: 'Title',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Aktiv',
        tidsbanken: 'Aktiv',
        poweroffice: 'IsActive',
        kind: 'boolean',
        direction: 'both',
      },
      ...address('Ansatt'),
    ],
    originPrefix: 'tb-ansatt-',
    powerofficeOriginField: 'ExternalCode',
    powerofficeCreateExtras: () => ({}),
    // A contact person has no number to give an Ansatt its Id: never created from one.
    tidsbankenIdFrom: () => undefined,
  },
  {
    id: 'ansatt-employee',
    tidsbanken: 'ansatt',
    poweroffice: 'employee',
    mergeRules: ['number'],
    fields: [
      {
        key: 'Fornavn',
        tidsbanken: 'Fornavn',
        poweroffice: 'FirstName',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Etternavn',
        tidsbanken: 'Etternavn',
        poweroffice: 'LastName',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Epost',
        tidsbanken: 'Epost',
        poweroffice: 'EmailAddress',
        kind: 'email',
        direction: 'both',
      },
      {
        key: 'Mobil',
        tidsbanken: 'Mobil',
        poweroffice: 'PhoneNumber',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'Fodt',
        tidsbanken: 'Fodt',
        poweroffice: 'DateOfBirth',
        kind: 'date',
        direction: 'both',
      },
      {
        key: 'Tittel',
        tidsbanken: 'Tittel',
        poweroffice: 'JobTitle',
        kind: 'text',
        direction: 'both',
      },
      {
        key: 'AnsattDato',
        tidsbanken: 'AnsattDato',
        poweroffice: 'StartDate',
        kind: 'date',
        direction: 'both',
      },
      {
        key: 'SluttetDato',
        tidsbanken: 'SluttetDato',
        poweroffice: 'EndDate',
        kind: 'date',
        direction: 'both',
      },
      {
        key: 'Aktiv',
        tidsbanken: 'Aktiv',
        poweroffice: 'IsArchived',
        kind: 'boolean',
        invert: true,
        direction: 'both',
      },
      ...address('Ansatt'),
      // PowerOffice reads it back as "hidden": unknown, never a change, never written back.
      {
        key: 'Personnummer',
        tidsbanken: 'Personnummer',
        poweroffice: 'NationalIdNumber',
        kind: 'national_id',
        direction: 'to-poweroffice',
      },
    ],
    originPrefix: 'tb-ansatt-',
    powerofficeOriginField: 'ExternalImportReference',
    // Number = Ansatt Id, so the merge rule holds from then on (DESIGN.md §1).
    powerofficeCreateExtras: (tb) => ({ Number: tb.Id }),
    tidsbankenIdFrom: (po) => (typeof po.Number === 'number' ? po.Number : undefined),
  },
  {
    id: 'kunde-customer',
    tidsbanken: 'kunde',
    poweroffice: 'customer',
    mergeRules: ['email'],
    fields: [
      { key: 'Navn', tidsbanken: 'Navn', poweroffice: 'Name', kind: 'text', direction: 'both' },
      {
        key: 'Epost',
        tidsbanken: 'Epost',
        poweroffice: 'EmailAddress',
        kind: 'email',
        direction: 'both',
      },
      {
        key: 'Telefon',
        tidsbanken: 'Telefon',
        poweroffice: 'PhoneNumber',
        kind: 'text',
        direction: 'both',
      },
      { key: 'Url', tidsbanken: 'Url', poweroffice: 'WebsiteUrl', kind: 'text', direction: 'both' },
      // Sesam maps it only for Norwegian customers (tidsbanken.md §6).
      {
        key: 'Organisasjonsnummer',
        tidsbanken: 'Organisasjonsnummer',
        poweroffice: 'OrganizationNumber',
        kind: 'text',
        direction: 'both',
        when: { path: 'MailAddress.CountryCode', oneOf: ['NO', null] },
      },
      ...address('Kunde'),
    ],
    originPrefix: 'tb-kunde-',
    powerofficeOriginField: 'ExternalImportReference',
    powerofficeCreateExtras: () => ({}),
    // Kunde Id = Customer Number, as a string (DESIGN.md §1).
    tidsbankenIdFrom: (po) => (typeof po.Number === 'number' ? String(po.Number) : undefined),
  },
];

export function flowById(id: string): FlowDefinition | undefined {
  return FLOWS.find((f) => f.id === id);
}

/** Flows a record of this type takes part in, and on which side. */
export function flowsForRecordType(type: RecordType): FlowDefinition[] {
  return FLOWS.filter((f) => f.tidsbanken === type || f.poweroffice === type);
}

export function sideOf(flow: FlowDefinition, type: RecordType): SystemName {
  return flow.tidsbanken === type ? 'tidsbanken' : 'poweroffice';
}

export function originIdFor(flow: FlowDefinition, tidsbankenId: string): string {
  return `${flow.originPrefix}${tidsbankenId}`;
}

/** The Tidsbanken id a PowerOffice record's origin field points at, if it carries one of ours. */
export function originTidsbankenId(
  flow: FlowDefinition,
  poweroffice: Record<string, unknown>,
): string | undefined {
  const value = poweroffice[flow.powerofficeOriginField];
  if (typeof value !== 'string' || !value.startsWith(flow.originPrefix)) return undefined;
  const id = value.slice(flow.originPrefix.length);
  return id === '' ? undefined : id;
}

/** Whether the mapping applies to this pair (the OrganizationNumber country condition). */
export function fieldApplies(field: FieldMapping, poweroffice: Record<string, unknown>): boolean {
  if (field.when === undefined) return true;
  const raw = getPath(poweroffice, field.when.path);
  const value = typeof raw === 'string' && raw.trim() !== '' ? raw.trim().toUpperCase() : null;
  return field.when.oneOf.includes(value);
}

/** The body of a PowerOffice create from a Tidsbanken record: mapped fields + origin id. */
export function powerofficeCreateBody(
  flow: FlowDefinition,
  tidsbanken: Record<string, unknown>,
  tidsbankenId: string,
): Record<string, unknown> {
  const body: Record<string, unknown> = {};
  for (const field of flow.fields) {
    let value = writableValue(field.kind, tidsbanken[field.tidsbanken]);
    if (value === null) continue;
    if (field.invert && typeof value === 'boolean') value = !value;
    setPath(body, field.poweroffice, value);
  }
  // PowerOffice requires ZipCode and City when an address is sent (poweroffice.md §2).
  const mail = body.MailAddress as Record<string, unknown> | undefined;
  if (mail !== undefined && (mail.ZipCode === undefined || mail.City === undefined)) {
    delete body.MailAddress;
  }
  Object.assign(body, flow.powerofficeCreateExtras(tidsbanken));
  body[flow.powerofficeOriginField] = originIdFor(flow, tidsbankenId);
  return body;
}

/** The body of a Tidsbanken create from a PowerOffice record, or undefined when not possible. */
export function tidsbankenCreateBody(
  flow: FlowDefinition,
  poweroffice: Record<string, unknown>,
): Record<string, unknown> | undefined {
  const id = flow.tidsbankenIdFrom(poweroffice);
  if (id === undefined) return undefined;
  const body: Record<string, unknown> = { Id: id };
  for (const field of flow.fields) {
    if (field.direction !== 'both' || !fieldApplies(field, poweroffice)) continue;
    let value = writableValue(field.kind, getPath(poweroffice, field.poweroffice));
    if (value === null) continue;
    if (field.invert && typeof value === 'boolean') value = !value;
    body[field.tidsbanken] = value;
  }
  return body;
}

export function setPath(target: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let current = target;
  for (const part of parts.slice(0, -1)) {
    const next = current[part];
    if (next === null || typeof next !== 'object') current[part] = {};
    current = current[part] as Record<string, unknown>;
  }
  current[parts[parts.length - 1]!] = value;
}
