import { appendFileSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';

// Which documented responses the integration tests validated. expectDocumentedResponse
// appends each (method, path, status) it validated to a file of this run's folder (one file
// per worker, created by global-setup.ts); at the end of a run that includes every
// integration file, global-setup.ts compares them with openapi.yaml and fails the run when a
// documented response was never produced and validated.

/** `GET /admin/links 200`: one documented response of openapi.yaml. */
export function responseKey(method: string, path: string, status: number | string): string {
  return `${method.toUpperCase()} ${path} ${status}`;
}

/** Notes that a test validated this response (no-op outside a run with a coverage folder). */
export function recordValidated(folder: string | undefined, key: string): void {
  if (folder === undefined || folder === '') return;
  appendFileSync(join(folder, `${process.pid}-${threadId}.txt`), `${key}\n`);
}

/** Every response the tests of this run validated. */
export function readValidated(folder: string): Set<string> {
  const keys = new Set<string>();
  for (const name of readdirSync(folder)) {
    for (const line of readFileSync(join(folder, name), 'utf8').split('\n')) {
      if (line !== '') keys.add(line);
    }
  }
  return keys;
}

/** Every response openapi.yaml documents, as responseKey()s. */
export function documentedResponses(doc: {
  paths: Record<string, Record<string, { responses?: Record<string, unknown> }>>;
}): string[] {
  const methods = new Set(['get', 'put', 'post', 'delete', 'patch', 'head', 'options']);
  const keys: string[] = [];
  for (const [path, item] of Object.entries(doc.paths)) {
    for (const [method, operation] of Object.entries(item)) {
      if (!methods.has(method)) continue;
      for (const status of Object.keys(operation.responses ?? {})) {
        keys.push(responseKey(method, path, status));
      }
    }
  }
  return keys;
}
