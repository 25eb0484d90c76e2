import SwaggerParser from '@apidevtools/swagger-parser';
import { expect } from 'vitest';

type OpenApiDoc = {
  paths: Record<
    string,
    Record<string, { responses: Record<string, { content?: Record<string, unknown> }> }>
  >;
};

let cached: Promise<OpenApiDoc> | undefined;

/** openapi.yaml, validated and with every $ref resolved, by a real OpenAPI parser. */
export function loadOpenApi(): Promise<OpenApiDoc> {
  cached ??= SwaggerParser.validate('openapi.yaml') as unknown as Promise<OpenApiDoc>;
  return cached;
}

/**
 * Asserts that an actual response is one the spec documents for this operation: the status
 * code is listed and the content type is one of that response's media types.
 */
export async function expectDocumentedResponse(
  method: string,
  pathTemplate: string,
  response: { status: number; headers: Record<string, string | undefined> },
): Promise<void> {
  const doc = await loadOpenApi();
  const operation = doc.paths[pathTemplate]?.[method.toLowerCase()];
  expect(operation, `${method} ${pathTemplate} is in openapi.yaml`).toBeDefined();
  const documented = operation!.responses[String(response.status)];
  expect(documented, `${method} ${pathTemplate} documents status ${response.status}`).toBeDefined();
  const mediaTypes = Object.keys(documented!.content ?? {});
  const actual = (response.headers['content-type'] ?? '').split(';')[0]!.trim();
  // A response documented without a body (204) has no content type.
  if (mediaTypes.length === 0 && actual === '') return;
  expect(mediaTypes, `${method} ${pathTemplate} ${response.status} content type`).toContain(actual);
}
