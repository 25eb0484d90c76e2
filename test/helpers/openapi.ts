import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { expect, inject } from 'vitest';
import { recordValidated, responseKey } from './contract-coverage.js';

type MediaType = { schema?: object };
type OpenApiDoc = {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, MediaType> }> }>
  >;
  components?: { schemas?: Record<string, object> };
};

let cached: Promise<OpenApiDoc> | undefined;

/** openapi.yaml, validated and with every $ref resolved, by a real OpenAPI parser. */
export function loadOpenApi(): Promise<OpenApiDoc> {
  cached ??= SwaggerParser.validate('openapi.yaml') as unknown as Promise<OpenApiDoc>;
  return cached;
}

// OpenAPI 3.1 schemas are JSON Schema 2020-12. Strict, so a misspelt keyword in the spec is an
// error rather than a schema that allows everything; `example` is OpenAPI's own annotation.
const ajv = new Ajv2020({ strict: true, allErrors: true, allowUnionTypes: true });
ajv.addKeyword('example');
addFormats.default(ajv);
const validators = new WeakMap<object, ValidateFunction>();

function validatorFor(schema: object): ValidateFunction {
  let validate = validators.get(schema);
  if (validate === undefined) {
    validate = ajv.compile(schema);
    validators.set(schema, validate);
  }
  return validate;
}

/** A component schema of openapi.yaml (dereferenced), e.g. for unit tests of its shape. */
export async function componentSchema(name: string): Promise<object> {
  const schema = (await loadOpenApi()).components?.schemas?.[name];
  expect(schema, `components.schemas.${name} is in openapi.yaml`).toBeDefined();
  return schema!;
}

/** Whether `value` is valid against `schema` (a dereferenced openapi.yaml schema); the errors. */
export function validateAgainst(schema: object, value: unknown): string[] {
  const validate = validatorFor(schema);
  if (validate(value)) return [];
  return (validate.errors ?? []).map(
    (e) => `${e.instancePath || '(body)'} ${e.message ?? 'is invalid'} ${JSON.stringify(e.params)}`,
  );
}

const closedSchemas = new WeakMap<object, object>();

/**
 * The schema as a response must match it: an object schema that lists its `properties` and
 * says nothing of others allows no others (a client may rely on exactly what is documented, so
 * a field the code sends but the spec does not name is a mismatch). Where the spec says
 * `additionalProperties: true` (records as the vendors send them, the Problem's extension
 * members) other fields stay allowed. Closed with `unevaluatedProperties` when the level also
 * combines subschemas, so properties named in an `allOf`/`oneOf` branch still count.
 */
export function closedSchema(schema: object): object {
  let closed = closedSchemas.get(schema);
  if (closed === undefined) {
    closed = close(schema) as object;
    closedSchemas.set(schema, closed);
  }
  return closed;
}

function close(node: unknown): unknown {
  if (Array.isArray(node)) return node.map(close);
  if (typeof node !== 'object' || node === null) return node;
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(node)) {
    // Property names and examples are data, not schemas.
    out[key] =
      key === 'properties' && typeof value === 'object' && value !== null
        ? Object.fromEntries(Object.entries(value).map(([name, sub]) => [name, close(sub)]))
        : key === 'example' || key === 'enum' || key === 'const' || key === 'default'
          ? value
          : close(value);
  }
  const open =
    'additionalProperties' in out ||
    'unevaluatedProperties' in out ||
    !('properties' in out) ||
    'if' in out;
  if (!open) {
    const combined = 'allOf' in out || 'oneOf' in out || 'anyOf' in out;
    out[combined ? 'unevaluatedProperties' : 'additionalProperties'] = false;
  }
  return out;
}

/**
 * Asserts that an actual response is one the spec documents for this operation: the status
 * code is listed, the content type is one of that response's media types, and the body is
 * valid against that media type's schema, with no field the schema does not name (closedSchema).
 */
export async function expectDocumentedResponse(
  method: string,
  pathTemplate: string,
  response: {
    status: number;
    headers: Record<string, string | undefined>;
    text?: string;
  },
): Promise<void> {
  const doc = await loadOpenApi();
  const operation = doc.paths[pathTemplate]?.[method.toLowerCase()];
  expect(operation, `${method} ${pathTemplate} is in openapi.yaml`).toBeDefined();
  const documented = operation!.responses[String(response.status)];
  expect(documented, `${method} ${pathTemplate} documents status ${response.status}`).toBeDefined();
  const content = documented!.content ?? {};
  const actual = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
  const text = response.text ?? '';
  // A response documented without a body (204) has neither a content type nor a body.
  if (Object.keys(content).length === 0) {
    expect(actual, `${method} ${pathTemplate} ${response.status} has no content type`).toBe('');
    expect(text, `${method} ${pathTemplate} ${response.status} has no body`).toBe('');
    validated(method, pathTemplate, response.status);
    return;
  }
  expect(
    Object.keys(content),
    `${method} ${pathTemplate} ${response.status} content type`,
  ).toContain(actual);
  const schema = content[actual]!.schema;
  if (schema === undefined) {
    validated(method, pathTemplate, response.status);
    return;
  }
  const body: unknown = /[/+]json$/.test(actual) ? JSON.parse(text) : text;
  expect(
    validateAgainst(closedSchema(schema), body),
    `${method} ${pathTemplate} ${response.status} body matches openapi.yaml: ${text.slice(0, 500)}`,
  ).toEqual([]);
  validated(method, pathTemplate, response.status);
}

/** Counts the response as covered (contract-coverage.ts), once it has passed every check. */
function validated(method: string, pathTemplate: string, status: number): void {
  recordValidated(inject('contractCoverageDir'), responseKey(method, pathTemplate, status));
}
