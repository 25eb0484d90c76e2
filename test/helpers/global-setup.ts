import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { TestProject } from 'vitest/node';
import { parse } from 'yaml';
import { documentedResponses, readValidated } from './contract-coverage.js';
import { prepareTemplateDatabase, dropTemplateDatabase } from './database.js';

const INTEGRATION_FOLDER = 'test/integration';

// With DATABASE_URL: migrate one template database once; each test file clones it.
// Without: a dump of a migrated PGlite; each file opens its own in-memory copy of it.
// Also the run's contract coverage folder (contract-coverage.ts), checked at the end.
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const template = await prepareTemplateDatabase();
  project.provide('templateDatabase', template);
  const coverage = mkdtempSync(join(tmpdir(), 'tbpo-contract-coverage-'));
  project.provide('contractCoverageDir', coverage);
  return async () => {
    try {
      checkContractCoverage(project, coverage);
    } finally {
      rmSync(coverage, { recursive: true, force: true });
      await dropTemplateDatabase(template);
    }
  };
}

/**
 * On a run of every integration file (or with CONTRACT_COVERAGE=enforce): every response
 * openapi.yaml documents must have been produced and validated by expectDocumentedResponse.
 * A run of some files, of some tests (-t), or one with failures already says enough.
 */
function checkContractCoverage(project: TestProject, folder: string): void {
  const enforce = process.env.CONTRACT_COVERAGE;
  if (enforce === 'off') return;
  const files = project.vitest.state.getFiles().filter((file) => file.projectName === project.name);
  if (enforce !== 'enforce') {
    const ran = new Set(files.map((file) => resolve(file.filepath)));
    const all = readdirSync(INTEGRATION_FOLDER)
      .filter((name) => name.endsWith('.test.ts'))
      .map((name) => resolve(INTEGRATION_FOLDER, name));
    const fullRun =
      all.every((file) => ran.has(file)) &&
      project.vitest.config.testNamePattern === undefined &&
      files.every((file) => file.result?.state === 'pass');
    if (!fullRun) return;
  }
  const validated = readValidated(folder);
  const doc = parse(readFileSync('openapi.yaml', 'utf8')) as Parameters<
    typeof documentedResponses
  >[0];
  const documented = documentedResponses(doc);
  const missing = documented.filter((key) => !validated.has(key));
  if (missing.length === 0) {
    console.error(
      `\nContract coverage: all ${documented.length} responses documented in openapi.yaml were produced and validated.\n`,
    );
    return;
  }
  process.exitCode = 1;
  console.error(
    `\nContract coverage: ${missing.length} response(s) documented in openapi.yaml were never ` +
      `produced and validated by expectDocumentedResponse (test/helpers/openapi.ts):\n` +
      missing.map((key) => `  ${key}`).join('\n') +
      '\n',
  );
}

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
    contractCoverageDir: string;
  }
}
