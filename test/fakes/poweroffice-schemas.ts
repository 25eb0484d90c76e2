import { Ajv, type ErrorObject, type ValidateFunction } from 'ajv';
import addFormats from 'ajv-formats';
import { readFileSync } from 'node:fs';

// The PowerOffice Go v2 JSON Schemas from test/fixtures/poweroffice/ (extracted from the
// spec, see the README there), compiled once with ajv.

const SCHEMA_FILE = new URL('../fixtures/poweroffice/poweroffice-v2-schemas.json', import.meta.url);

export type PowerOfficeSchemaName =
  | 'CustomerPostDto'
  | 'CustomerPatchDto'
  | 'CustomerDto'
  | 'EmployeePostDto'
  | 'EmployeePatchDto'
  | 'EmployeeDto'
  | 'ContactPersonPostDto'
  | 'ContactPersonPatchDto'
  | 'ContactPersonDto'
  | 'ContactAddressDto'
  | 'AddressDto'
  | 'ProjectPostDto'
  | 'ProjectPatchDto'
  | 'ProjectDto';

interface SchemaDocument {
  $id: string;
  definitions: Record<string, { properties?: Record<string, unknown> }>;
}

export const powerOfficeSchemas = JSON.parse(readFileSync(SCHEMA_FILE, 'utf8')) as SchemaDocument;

const ajv = new Ajv({ allErrors: true, strict: true });
addFormats.default(ajv);
// OpenAPI's numeric formats; int32/int64 bound the value, double is any number.
ajv.addFormat('int32', {
  type: 'number',
  validate: (n) => Number.isInteger(n) && Math.abs(n) <= 2 ** 31,
});
ajv.addFormat('int64', { type: 'number', validate: (n) => Number.isSafeInteger(n) });
ajv.addFormat('double', { type: 'number', validate: () => true });
ajv.addSchema(powerOfficeSchemas);

const compiled = new Map<string, ValidateFunction>();

function validator(name: PowerOfficeSchemaName): ValidateFunction {
  let validate = compiled.get(name);
  if (!validate) {
    validate = ajv.compile({ $ref: `${powerOfficeSchemas.$id}#/definitions/${name}` });
    compiled.set(name, validate);
  }
  return validate;
}

/** The property names a schema declares (e.g. every field of CustomerDto). */
export function schemaProperties(name: PowerOfficeSchemaName): string[] {
  return Object.keys(powerOfficeSchemas.definitions[name]?.properties ?? {});
}

/** Field path (`MailAddress.City`) → messages; empty when the value is valid. */
export function validateAgainst(
  name: PowerOfficeSchemaName,
  value: unknown,
): Record<string, string[]> {
  const validate = validator(name);
  if (validate(value)) return {};
  const errors: Record<string, string[]> = {};
  for (const error of validate.errors ?? []) {
    const [field, message] = describe(name, error);
    (errors[field] ??= []).push(message);
  }
  return errors;
}

function describe(schema: string, error: ErrorObject): [string, string] {
  const base = error.instancePath.split('/').filter(Boolean).join('.');
  const join = (property: string) => (base ? `${base}.${property}` : property);
  const params = error.params as Record<string, unknown>;
  switch (error.keyword) {
    case 'additionalProperties': {
      const property = String(params.additionalProperty);
      return [
        join(property),
        `'${property}' is not a property of ${schema} (unknown or read-only).`,
      ];
    }
    case 'required': {
      const property = String(params.missingProperty);
      return [join(property), `The ${property} field is required.`];
    }
    default:
      return [base || '$', `${base || 'The body'} ${error.message ?? 'is invalid'}.`];
  }
}
