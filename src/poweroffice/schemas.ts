import { z } from 'zod';

// PowerOffice Go v2 records as the API returns them (docs/vendor-apis.md and
// the v2 spec's CustomerDto / EmployeeDto / ContactPersonDto). Loose: unknown fields are
// kept. Wire casing is PascalCase, but nested MailAddress keys have been seen in camelCase
// (docs/vendor-apis.md), so keys are read case-insensitively by upper-casing the first letter.

function pascalKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(pascalKeys);
  if (value === null || typeof value !== 'object') return value;
  const out: Record<string, unknown> = {};
  for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
    const pascal = key.length > 0 ? key[0]!.toUpperCase() + key.slice(1) : key;
    // An exact PascalCase key wins over a camelCase twin.
    if (!(pascal in out) || pascal === key) out[pascal] = pascalKeys(v);
  }
  return out;
}

const text = z.string().nullish();
const flag = z.boolean().nullish();
const int64 = z.number().int();

export const AddressSchema = z.looseObject({
  AddressLine1: text,
  AddressLine2: text,
  ZipCode: text,
  City: text,
  CountryCode: text,
});

const EmployeeObject = z.looseObject({
  Id: int64,
  Number: int64.nullish(),
  FirstName: text,
  LastName: text,
  EmailAddress: text,
  PhoneNumber: text,
  DateOfBirth: text,
  JobTitle: text,
  StartDate: text,
  EndDate: text,
  IsArchived: flag,
  // Reads back as "hidden" without a special privilege: "unknown", never a value.
  NationalIdNumber: text,
  SocialSecurityNumber: text,
  ExternalImportReference: text,
  MailAddress: AddressSchema.nullish(),
  LastChangedDateTimeOffset: text,
});
export const EmployeeSchema = z.preprocess(pascalKeys, EmployeeObject);
export type Employee = z.infer<typeof EmployeeObject>;

const CustomerObject = z.looseObject({
  Id: int64,
  Number: int64.nullish(),
  Name: text,
  EmailAddress: text,
  PhoneNumber: text,
  WebsiteUrl: text,
  OrganizationNumber: text,
  IsArchived: flag,
  IsPerson: flag,
  NationalIdNumber: text,
  ExternalImportReference: text,
  MailAddress: AddressSchema.nullish(),
  LastChangedDateTimeOffset: text,
});
export const CustomerSchema = z.preprocess(pascalKeys, CustomerObject);
export type Customer = z.infer<typeof CustomerObject>;

const ProjectObject = z.looseObject({
  Id: int64,
  // The project code users see: the match key (a project may have none).
  Code: text,
  Name: text,
  // References to a Customer's and an Employee's Id (not their Number).
  CustomerId: int64.nullish(),
  ProjectManagerEmployeeId: int64.nullish(),
  StartDate: text,
  EndDate: text,
  IsActive: flag,
  LastChangedDateTimeOffset: text,
});
export const ProjectSchema = z.preprocess(pascalKeys, ProjectObject);
export type Project = z.infer<typeof ProjectObject>;

const ContactPersonObject = z.looseObject({
  Id: int64,
  // The parent customer or supplier contact id; part of the key on every path.
  ContactId: int64,
  FirstName: text,
  LastName: text,
  EmailAddress: text,
  PhoneNumber: text,
  Title: text,
  IsActive: flag,
  IsDefault: flag,
  ExternalCode: text,
  // v1 had it; v2 has no national id on contact persons (docs/vendor-apis.md). Read if present.
  SocialSecurityNumber: text,
  NationalIdNumber: text,
  MailAddress: AddressSchema.nullish(),
  LastChangedDateTimeOffset: text,
});
export const ContactPersonSchema = z.preprocess(pascalKeys, ContactPersonObject);
export type ContactPerson = z.infer<typeof ContactPersonObject>;

// Webhook `data` (openapi.yaml): top-level keys exactly as the API spells them, so a body
// means the same to the spec and to us (`{"id": 5}` has no `Id`); nested objects (MailAddress)
// are read case-insensitively, as in API answers.
function pascalNestedKeys(value: unknown): unknown {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return value;
  return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, pascalKeys(v)]));
}
export const EmployeeWebhookSchema = z.preprocess(pascalNestedKeys, EmployeeObject);
export const CustomerWebhookSchema = z.preprocess(pascalNestedKeys, CustomerObject);
export const ContactPersonWebhookSchema = z.preprocess(pascalNestedKeys, ContactPersonObject);
export const ProjectWebhookSchema = z.preprocess(pascalNestedKeys, ProjectObject);

/** Thin webhook references, completed with a GET before processing. */
export const PowerOfficeRefSchema = z.looseObject({ Id: int64 });
export const ContactPersonRefSchema = z.looseObject({ Id: int64, ContactId: int64 });
