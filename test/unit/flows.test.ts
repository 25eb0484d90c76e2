import { describe, expect, it } from 'vitest';
import {
  fieldApplies,
  flowById,
  FLOWS,
  flowsForRecordType,
  MERGE_RULE_KEY,
  originIdFor,
  originTidsbankenId,
  powerofficeCreateBody,
  sideOf,
  tidsbankenCreateBody,
  type FieldMapping,
  type FlowDefinition,
} from '../../src/sync/flows.js';
import { setPath } from '../../src/poweroffice/fields.js';
import { RECORD_ADAPTERS } from '../../src/record-types.js';

function flow(id: string): FlowDefinition {
  const f = flowById(id);
  if (f === undefined) throw new Error(`no flow ${id}`);
  return f;
}
function field(f: FlowDefinition, key: string): FieldMapping {
  const m = f.fields.find((x) => x.key === key);
  if (m === undefined) throw new Error(`no field ${key} in ${f.id}`);
  return m;
}
const pairs = (f: FlowDefinition) => f.fields.map((m) => [m.tidsbanken, m.poweroffice]);

const contact = flow('ansatt-contactperson');
const employee = flow('ansatt-employee');
const customer = flow('kunde-customer');

describe('FLOWS', () => {
  it('has exactly the four flows, with their record types', () => {
    expect(FLOWS.map((f) => [f.id, f.tidsbanken, f.poweroffice])).toEqual([
      ['ansatt-contactperson', 'ansatt', 'contactperson'],
      ['ansatt-employee', 'ansatt', 'employee'],
      ['kunde-customer', 'kunde', 'customer'],
      ['prosjekt-project', 'prosjekt', 'project'],
    ]);
    expect(flowById('nope')).toBeUndefined();
  });

  it('has the merge rules of the README per flow', () => {
    expect(contact.mergeRules).toEqual(['email', 'national_id']);
    expect(employee.mergeRules).toEqual(['number']);
    expect(customer.mergeRules).toEqual(['email']);
    expect(flow('prosjekt-project').mergeRules).toEqual(['code']);
    expect(MERGE_RULE_KEY).toEqual({
      email: 'email',
      national_id: 'nationalId',
      number: 'number',
      code: 'code',
    });
  });

  it('maps Ansatt ↔ Employee as the README lists it (Id↔Number is the key, not a field)', () => {
    expect(pairs(employee)).toEqual([
      ['Fornavn', 'FirstName'],
      ['Etternavn', 'LastName'],
      ['Epost', 'EmailAddress'],
      ['Mobil', 'PhoneNumber'],
      ['Fodt', 'DateOfBirth'],
      ['Tittel', 'JobTitle'],
      ['AnsattDato', 'StartDate'],
      ['SluttetDato', 'EndDate'],
      ['Aktiv', 'IsArchived'],
      ['Adresse', 'MailAddress.AddressLine1'],
      ['Postnummer', 'MailAddress.ZipCode'],
      ['Poststed', 'MailAddress.City'],
      ['Personnummer', 'NationalIdNumber'],
    ]);
    for (const key of ['Fodt', 'AnsattDato', 'SluttetDato']) {
      expect(field(employee, key).kind).toBe('date');
    }
    expect(field(employee, 'Epost').kind).toBe('email');
  });

  it('maps Ansatt ↔ ContactPerson as the README lists it', () => {
    expect(pairs(contact)).toEqual([
      ['Fornavn', 'FirstName'],
      ['Etternavn', 'LastName'],
      ['Epost', 'EmailAddress'],
      ['Mobil', 'PhoneNumber'],
      ['Tittel', 'Title'],
      ['Aktiv', 'IsActive'],
      ['Adresse', 'MailAddress.AddressLine1'],
      ['Postnummer', 'MailAddress.ZipCode'],
      ['Poststed', 'MailAddress.City'],
    ]);
    // IsActive means the same as Aktiv: not inverted.
    expect(field(contact, 'Aktiv').invert).toBeUndefined();
  });

  it('maps Kunde ↔ Customer as the README lists it', () => {
    expect(pairs(customer)).toEqual([
      ['Navn', 'Name'],
      ['Epost', 'EmailAddress'],
      ['Telefon', 'PhoneNumber'],
      ['Url', 'WebsiteUrl'],
      ['Organisasjonsnummer', 'OrganizationNumber'],
      ['Gateadresse', 'MailAddress.AddressLine1'],
      ['Postadresse', 'MailAddress.AddressLine2'],
      ['Postnr', 'MailAddress.ZipCode'],
      ['Poststed', 'MailAddress.City'],
    ]);
  });

  it('inverts Aktiv ↔ IsArchived and makes Personnummer one-way to PowerOffice', () => {
    expect(field(employee, 'Aktiv')).toMatchObject({ kind: 'boolean', invert: true });
    expect(field(employee, 'Personnummer')).toMatchObject({
      kind: 'national_id',
      direction: 'to-poweroffice',
    });
    const oneWay = FLOWS.flatMap((f) => f.fields.filter((m) => m.direction !== 'both'));
    expect(oneWay.map((m) => m.key)).toEqual(['Personnummer']);
    const inverted = FLOWS.flatMap((f) => f.fields.filter((m) => m.invert));
    expect(inverted.map((m) => m.poweroffice)).toEqual(['IsArchived', 'IsActive']);
  });

  it('has unique shadow keys within each flow', () => {
    for (const f of FLOWS) {
      const keys = f.fields.map((m) => m.key);
      expect(new Set(keys).size).toBe(keys.length);
    }
  });

  it('finds the flows of a record type and its side in them', () => {
    expect(flowsForRecordType('ansatt').map((f) => f.id)).toEqual([
      'ansatt-contactperson',
      'ansatt-employee',
    ]);
    expect(flowsForRecordType('customer').map((f) => f.id)).toEqual(['kunde-customer']);
    expect(sideOf(employee, 'ansatt')).toBe('tidsbanken');
    expect(sideOf(employee, 'employee')).toBe('poweroffice');
  });
});

describe('RECORD_ADAPTERS keys()', () => {
  it('ansatt: e-mail lower-cased, national id digits, Id as number', () => {
    expect(
      RECORD_ADAPTERS.ansatt.keys({ Id: 7, Epost: ' Kari@X.NO ', Personnummer: '010190 12345' }),
    ).toEqual({ email: 'kari@x.no', nationalId: '01019012345', number: '7', code: null });
    expect(RECORD_ADAPTERS.ansatt.keys({ Id: 7, Epost: '', Personnummer: null })).toEqual({
      email: null,
      nationalId: null,
      number: '7',
      code: null,
    });
    expect(RECORD_ADAPTERS.ansatt.system).toBe('tidsbanken');
    expect(RECORD_ADAPTERS.ansatt.updatedAtField).toBe('SistEndretDato');
  });

  it('kunde: e-mail and Id, never a national id', () => {
    expect(RECORD_ADAPTERS.kunde.keys({ Id: '0042', Epost: 'Post@Firma.NO' })).toEqual({
      email: 'post@firma.no',
      nationalId: null,
      number: '42',
      code: null,
    });
  });

  it('employee: a "hidden" NationalIdNumber is no key; Number is', () => {
    expect(
      RECORD_ADAPTERS.employee.keys({
        Number: 7,
        EmailAddress: 'a@b.no',
        NationalIdNumber: 'hidden',
      }),
    ).toEqual({ email: 'a@b.no', nationalId: null, number: '7', code: null });
    expect(RECORD_ADAPTERS.employee.system).toBe('poweroffice');
    expect(RECORD_ADAPTERS.employee.updatedAtField).toBe('LastChangedDateTimeOffset');
  });

  it('employee: falls back to SocialSecurityNumber when NationalIdNumber is hidden', () => {
    expect(
      RECORD_ADAPTERS.employee.keys({
        Number: 7,
        NationalIdNumber: 'hidden',
        SocialSecurityNumber: '01019012345',
      }).nationalId,
    ).toBe('01019012345');
  });

  it('contactperson: no number; a v1 SocialSecurityNumber is read when present', () => {
    expect(RECORD_ADAPTERS.contactperson.parentField).toBe('ContactId');
    expect(
      RECORD_ADAPTERS.contactperson.keys({ Id: 5, ContactId: 9, EmailAddress: 'A@B.no' }),
    ).toEqual({ email: 'a@b.no', nationalId: null, number: null, code: null });
    expect(
      RECORD_ADAPTERS.contactperson.keys({ Id: 5, SocialSecurityNumber: '010190-12345' })
        .nationalId,
    ).toBe('01019012345');
    expect(
      RECORD_ADAPTERS.contactperson.keys({ Id: 5, SocialSecurityNumber: 'hidden' }).nationalId,
    ).toBeNull();
  });

  it('customer: e-mail and Number', () => {
    expect(RECORD_ADAPTERS.customer.keys({ Number: 10001, EmailAddress: '' })).toEqual({
      email: null,
      nationalId: null,
      number: '10001',
      code: null,
    });
  });

  it('prosjekt and project: the code (Prosjekt Id, Project Code) trimmed and lower-cased', () => {
    expect(RECORD_ADAPTERS.prosjekt.keys({ Id: ' P-100 ', KundeId: 'K1' })).toEqual({
      email: null,
      nationalId: null,
      number: null,
      code: 'p-100',
    });
    expect(RECORD_ADAPTERS.project.keys({ Id: 5, Code: 'p-100' }).code).toBe('p-100');
    expect(RECORD_ADAPTERS.project.keys({ Id: 5, Code: '  ' }).code).toBeNull();
    expect(RECORD_ADAPTERS.project.keys({ Id: 5, Code: null }).code).toBeNull();
  });
});

describe('origin ids', () => {
  it('formats tb-ansatt-<Id> / tb-kunde-<Id> in the field PowerOffice keeps it in', () => {
    expect(originIdFor(employee, '7')).toBe('tb-ansatt-7');
    expect(originIdFor(contact, '7')).toBe('tb-ansatt-7');
    expect(originIdFor(customer, 'K-12')).toBe('tb-kunde-K-12');
    expect(employee.powerofficeOriginField).toBe('ExternalImportReference');
    expect(customer.powerofficeOriginField).toBe('ExternalImportReference');
    expect(contact.powerofficeOriginField).toBe('ExternalCode');
  });

  it('stays within 50 characters for the largest int64 id', () => {
    for (const f of FLOWS) {
      expect(originIdFor(f, '9223372036854775807').length).toBeLessThanOrEqual(50);
    }
  });

  it('reads the Tidsbanken id back only from an origin id of this flow', () => {
    expect(originTidsbankenId(employee, { ExternalImportReference: 'tb-ansatt-7' })).toBe('7');
    expect(originTidsbankenId(contact, { ExternalCode: 'tb-ansatt-7' })).toBe('7');
    expect(originTidsbankenId(contact, { ExternalImportReference: 'tb-ansatt-7' })).toBeUndefined();
    expect(
      originTidsbankenId(customer, { ExternalImportReference: 'tb-ansatt-7' }),
    ).toBeUndefined();
    expect(originTidsbankenId(employee, { ExternalImportReference: 'tb-ansatt-' })).toBeUndefined();
    expect(originTidsbankenId(employee, { ExternalImportReference: 'ERP-7' })).toBeUndefined();
    expect(originTidsbankenId(employee, { ExternalImportReference: 7 })).toBeUndefined();
    expect(originTidsbankenId(employee, {})).toBeUndefined();
  });

  it('round-trips originIdFor → originTidsbankenId', () => {
    for (const f of FLOWS) {
      if (f.powerofficeOriginField === undefined) continue;
      const po = { [f.powerofficeOriginField]: originIdFor(f, '123') };
      expect(originTidsbankenId(f, po)).toBe('123');
    }
  });
});

describe('fieldApplies', () => {
  const org = field(customer, 'Organisasjonsnummer');

  it.each([
    [{ MailAddress: { CountryCode: 'NO' } }, true],
    [{ MailAddress: { CountryCode: ' no ' } }, true],
    [{ MailAddress: { CountryCode: '' } }, true],
    [{ MailAddress: { CountryCode: null } }, true],
    [{ MailAddress: null }, true],
    [{}, true],
    [{ MailAddress: { CountryCode: 'SE' } }, false],
    [{ MailAddress: { CountryCode: 'DK' } }, false],
  ])('OrganizationNumber applies to %j: %s', (po, expected) => {
    expect(fieldApplies(org, po)).toBe(expected);
  });

  it('a field without a condition always applies', () => {
    expect(fieldApplies(field(customer, 'Navn'), { MailAddress: { CountryCode: 'SE' } })).toBe(
      true,
    );
  });
});

describe('powerofficeCreateBody', () => {
  const ansatt = {
    Id: 7,
    Fornavn: ' Kari ',
    Etternavn: 'Nordmann',
    Epost: 'Kari.Nordmann@Example.NO',
    Mobil: '',
    Fodt: '1990-01-01T00:00:00',
    Tittel: null,
    AnsattDato: '2021-09-25 08:03:00.123456+00:00',
    Aktiv: true,
    Adresse: 'Storgata 1',
    Postnummer: '0155',
    Poststed: 'Oslo',
    Personnummer: '01019012345',
  };

  it('Employee: Number = Ansatt Id, origin id, IsArchived = !Aktiv, nulls omitted', () => {
    expect(powerofficeCreateBody(employee, ansatt, '7')).toEqual({
      Number: 7,
      FirstName: 'Kari',
      LastName: 'Nordmann',
      EmailAddress: 'Kari.Nordmann@Example.NO',
      DateOfBirth: '1990-01-01',
      StartDate: '2021-09-25',
      IsArchived: false,
      MailAddress: { AddressLine1: 'Storgata 1', ZipCode: '0155', City: 'Oslo' },
      NationalIdNumber: '01019012345',
      ExternalImportReference: 'tb-ansatt-7',
    });
  });

  it('Employee from an inactive Ansatt is archived', () => {
    expect(powerofficeCreateBody(employee, { Id: 8, Aktiv: false }, '8')).toEqual({
      Number: 8,
      IsArchived: true,
      ExternalImportReference: 'tb-ansatt-8',
    });
  });

  it('ContactPerson: ExternalCode, IsActive = Aktiv, no Number and no national id', () => {
    const body = powerofficeCreateBody(contact, ansatt, '7');
    expect(body).toEqual({
      FirstName: 'Kari',
      LastName: 'Nordmann',
      EmailAddress: 'Kari.Nordmann@Example.NO',
      IsActive: true,
      MailAddress: { AddressLine1: 'Storgata 1', ZipCode: '0155', City: 'Oslo' },
      ExternalCode: 'tb-ansatt-7',
    });
  });

  it('drops MailAddress unless both ZipCode and City are present', () => {
    const noCity = powerofficeCreateBody(employee, { ...ansatt, Poststed: ' ' }, '7');
    expect(noCity).not.toHaveProperty('MailAddress');
    const noZip = powerofficeCreateBody(contact, { ...ansatt, Postnummer: null }, '7');
    expect(noZip).not.toHaveProperty('MailAddress');
    const onlyZipAndCity = powerofficeCreateBody(
      contact,
      { ...ansatt, Adresse: '', Postnummer: '5003', Poststed: 'Bergen' },
      '7',
    );
    expect(onlyZipAndCity.MailAddress).toEqual({ ZipCode: '5003', City: 'Bergen' });
  });

  it('Customer: mapped fields, address lines and ExternalImportReference tb-kunde-<Id>', () => {
    const kunde = {
      Id: 'K12',
      Navn: 'Firma AS',
      Epost: 'post@firma.no',
      Telefon: '22 22 22 22',
      Url: '',
      Organisasjonsnummer: '999888777',
      Gateadresse: 'Storgata 1',
      Postadresse: 'Postboks 5',
      Postnr: '0155',
      Poststed: 'Oslo',
    };
    expect(powerofficeCreateBody(customer, kunde, 'K12')).toEqual({
      Name: 'Firma AS',
      EmailAddress: 'post@firma.no',
      PhoneNumber: '22 22 22 22',
      OrganizationNumber: '999888777',
      MailAddress: {
        AddressLine1: 'Storgata 1',
        AddressLine2: 'Postboks 5',
        ZipCode: '0155',
        City: 'Oslo',
      },
      ExternalImportReference: 'tb-kunde-K12',
    });
  });
});

describe('tidsbankenCreateBody', () => {
  it('Ansatt from an Employee: Id = Number, Aktiv = !IsArchived, never the hidden national id', () => {
    const body = tidsbankenCreateBody(employee, {
      Id: 555,
      Number: 42,
      FirstName: 'Ola',
      LastName: ' Hansen ',
      EmailAddress: 'Ola@X.no',
      DateOfBirth: '1985-03-04T00:00:00Z',
      EndDate: null,
      IsArchived: true,
      NationalIdNumber: 'hidden',
      MailAddress: { AddressLine1: 'Vei 2', ZipCode: '5003', City: 'Bergen', CountryCode: 'NO' },
    });
    expect(body).toEqual({
      Id: 42,
      Fornavn: 'Ola',
      Etternavn: 'Hansen',
      Epost: 'Ola@X.no',
      Fodt: '1985-03-04',
      Aktiv: false,
      Adresse: 'Vei 2',
      Postnummer: '5003',
      Poststed: 'Bergen',
    });
  });

  it('never writes Personnummer from PowerOffice, even when it is readable', () => {
    const body = tidsbankenCreateBody(employee, { Number: 42, NationalIdNumber: '01019012345' });
    expect(body).toEqual({ Id: 42 });
  });

  it('Kunde from a Customer: Id = String(Number)', () => {
    const body = tidsbankenCreateBody(customer, {
      Id: 9001,
      Number: 10001,
      Name: 'Firma AS',
      OrganizationNumber: '999888777',
      MailAddress: { CountryCode: 'NO', City: 'Oslo' },
    });
    expect(body).toEqual({
      Id: '10001',
      Navn: 'Firma AS',
      Organisasjonsnummer: '999888777',
      Poststed: 'Oslo',
    });
  });

  it('Kunde from a foreign Customer: no Organisasjonsnummer', () => {
    const body = tidsbankenCreateBody(customer, {
      Number: 10002,
      Name: 'Firma AB',
      OrganizationNumber: '556677-8899',
      MailAddress: { CountryCode: 'SE' },
    });
    expect(body).toEqual({ Id: '10002', Navn: 'Firma AB' });
  });

  it('undefined without a Number, and always for a contact person', () => {
    expect(tidsbankenCreateBody(employee, { FirstName: 'Ola' })).toBeUndefined();
    expect(tidsbankenCreateBody(customer, { Number: '10001', Name: 'X' })).toBeUndefined();
    expect(
      tidsbankenCreateBody(contact, { Id: 5, ContactId: 9, FirstName: 'Ola', Number: 1 }),
    ).toBeUndefined();
  });
});

describe('setPath', () => {
  it('creates nested objects and keeps siblings', () => {
    const target: Record<string, unknown> = { MailAddress: { City: 'Oslo' } };
    setPath(target, 'MailAddress.ZipCode', '0155');
    setPath(target, 'Name', 'X');
    expect(target).toEqual({ MailAddress: { City: 'Oslo', ZipCode: '0155' }, Name: 'X' });
    const fromNull: Record<string, unknown> = { MailAddress: null };
    setPath(fromNull, 'MailAddress.City', 'Bergen');
    expect(fromNull).toEqual({ MailAddress: { City: 'Bergen' } });
  });
});

describe('prosjekt-project create bodies', () => {
  const project = flow('prosjekt-project');

  it('Project from a Prosjekt: Code = Id, IsActive = !Avsluttet, references left to the first sync', () => {
    expect(
      powerofficeCreateBody(
        project,
        {
          Id: 'P-7',
          Navn: ' Bygg ',
          KundeId: 'K1',
          AnsvarligId: 7,
          StartDato: '2026-01-05T00:00:00',
          Avsluttet: false,
        },
        'P-7',
      ),
    ).toEqual({ Code: 'P-7', Name: 'Bygg', StartDate: '2026-01-05', IsActive: true });
  });

  it('Prosjekt from a Project: Id = Code trimmed; a Project without a code gives none', () => {
    expect(
      tidsbankenCreateBody(project, {
        Id: 5,
        Code: ' X-1 ',
        Name: 'Fra PowerOffice',
        CustomerId: 100,
        EndDate: '2026-06-30',
        IsActive: false,
      }),
    ).toEqual({ Id: 'X-1', Navn: 'Fra PowerOffice', AvsluttetDato: '2026-06-30', Avsluttet: true });
    expect(tidsbankenCreateBody(project, { Id: 5, Name: 'Uten kode' })).toBeUndefined();
    expect(tidsbankenCreateBody(project, { Id: 5, Code: ' ', Name: 'Blank' })).toBeUndefined();
  });
});
