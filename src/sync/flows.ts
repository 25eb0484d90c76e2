import type { FlowId } from '../config.js';
import type { SystemName } from '../db/schema.js';
import type { MatchKeys, RecordType } from '../record-adapter.js';
import { RECORD_ADAPTERS } from '../record-types.js';
import { getPath, writableValue, type ValueKind } from './normalize.js';

// The flows as data: which record types they link, by which merge rules, with which field
// mappings. The engine (sync/*) is generic over these tables and the record adapters
// (src/record-types.ts): adding a flow is a table here, not a new code path.

export type { MatchKeys, RecordType };

export type MergeRuleName = 'email' | 'national_id' | 'number' | 'code';
export const MERGE_RULE_KEY: Record<MergeRuleName, keyof MatchKeys> = {
  email: 'email',
  national_id: 'nationalId',
  number: 'number',
  code: 'code',
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
  /** `to-poweroffice`: edits in PowerOffice are never written back (the README's "Field mappings", `→`). */
  direction: 'both' | 'to-poweroffice';
  /** Mapped only while the PowerOffice record's value at `path` is one of `oneOf` (null = empty). */
  when?: { path: string; oneOf: (string | null)[] };
  /**
   * A reference field (kind `reference`): it holds the id of a record of this other flow, and
   * is translated through that flow's links. While the record it names has no link there, the
   * field waits: nothing is written, and the wait is recorded.
   */
  references?: FlowId;
}

export interface FlowDefinition {
  id: FlowId;
  tidsbanken: RecordType;
  poweroffice: RecordType;
  mergeRules: MergeRuleName[];
  fields: FieldMapping[];
  /** `tb-ansatt-<Id>`: carried by a PowerOffice record we created, so it links back (≤ 50 chars). */
  originPrefix: string;
  /**
   * Where PowerOffice keeps that origin id. None when the merge rule itself is the origin (a
   * Project carries the Prosjekt's Id as its Code): then our creates link by the rule.
   */
  powerofficeOriginField?: 'ExternalImportReference' | 'ExternalCode';
  /** Extra fields of a PowerOffice create, beyond the mapped ones. */
  powerofficeCreateExtras(tidsbanken: Record<string, unknown>): Record<string, unknown>;
  /**
   * The Tidsbanken Id of a record created from a PowerOffice one, or undefined when this
   * flow cannot create in Tidsbanken from it (docs/ARCHITECTURE.md "Linking", ids on create).
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
    // Number = Ansatt Id, so the merge rule holds from then on.
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
      // Sesam maps it only for Norwegian customers (docs/vendor-apis.md).
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
    // Kunde Id = Customer Number, as a string, so the counterpart keeps its number as its id.
    tidsbankenIdFrom: (po) => (typeof po.Number === 'number' ? String(po.Number) : undefined),
  },
  {
    id: 'prosjekt-project',
    tidsbanken: 'prosjekt',
    poweroffice: 'project',
    mergeRules: ['code'],
    fields: [
      { key: 'Navn', tidsbanken: 'Navn', poweroffice: 'Name', kind: 'text', direction: 'both' },
      {
        key: 'KundeId',
        tidsbanken: 'KundeId',
        poweroffice: 'CustomerId',
        kind: 'reference',
        references: 'kunde-customer',
        direction: 'both',
      },
      {
        key: 'AnsvarligId',
        tidsbanken: 'AnsvarligId',
        poweroffice: 'ProjectManagerEmployeeId',
        kind: 'reference',
        references: 'ansatt-employee',
        direction: 'both',
      },
      {
        key: 'StartDato',
        tidsbanken: 'StartDato',
        poweroffice: 'StartDate',
        kind: 'date',
        direction: 'both',
      },
      {
        key: 'AvsluttetDato',
        tidsbanken: 'AvsluttetDato',
        poweroffice: 'EndDate',
        kind: 'date',
        direction: 'both',
      },
      {
        key: 'Avsluttet',
        tidsbanken: 'Avsluttet',
        poweroffice: 'IsActive',
        kind: 'boolean',
        invert: true,
        direction: 'both',
      },
    ],
    // The code is the origin id: Code = Prosjekt Id, so the merge rule links what we create.
    originPrefix: '',
    powerofficeCreateExtras: (tb) => ({ Code: tb.Id }),
    // Id = Code; a Project without a code is never created in Tidsbanken (it waits, link-only).
    tidsbankenIdFrom: (po) =>
      typeof po.Code === 'string' && po.Code.trim() !== '' ? po.Code.trim() : undefined,
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
  if (flow.powerofficeOriginField === undefined) return undefined;
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

/**
 * The body of a PowerOffice create from a Tidsbanken record: mapped fields + origin id.
 * Reference fields are left out: the new link's first sync writes them, translated, once the
 * records they name are linked.
 */
export function powerofficeCreateBody(
  flow: FlowDefinition,
  tidsbanken: Record<string, unknown>,
  tidsbankenId: string,
): Record<string, unknown> {
  const fields: Record<string, unknown> = {};
  for (const field of flow.fields) {
    if (field.references !== undefined) continue;
    let value = writableValue(field.kind, tidsbanken[field.tidsbanken]);
    if (value === null) continue;
    if (field.invert && typeof value === 'boolean') value = !value;
    fields[field.poweroffice] = value;
  }
  return {
    ...RECORD_ADAPTERS[flow.poweroffice].createBody(fields),
    ...flow.powerofficeCreateExtras(tidsbanken),
    ...(flow.powerofficeOriginField === undefined
      ? {}
      : { [flow.powerofficeOriginField]: originIdFor(flow, tidsbankenId) }),
  };
}

/** The body of a Tidsbanken create from a PowerOffice record, or undefined when not possible. */
export function tidsbankenCreateBody(
  flow: FlowDefinition,
  poweroffice: Record<string, unknown>,
): Record<string, unknown> | undefined {
  const id = flow.tidsbankenIdFrom(poweroffice);
  if (id === undefined) return undefined;
  const fields: Record<string, unknown> = { Id: id };
  for (const field of flow.fields) {
    if (field.direction !== 'both' || field.references !== undefined) continue;
    if (!fieldApplies(field, poweroffice)) continue;
    let value = writableValue(field.kind, getPath(poweroffice, field.poweroffice));
    if (value === null) continue;
    if (field.invert && typeof value === 'boolean') value = !value;
    fields[field.tidsbanken] = value;
  }
  return RECORD_ADAPTERS[flow.tidsbanken].createBody(fields);
}
