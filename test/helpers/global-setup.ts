import type { TestProject } from 'vitest/node';
import { prepareTemplateDatabase, dropTemplateDatabase } from './database.js';

// With DATABASE_URL: migrate one template database once; each test file clones it.
// Without: a dump of a migrated PGlite; each file opens its own in-memory copy of it.
export async function setup(project: TestProject): Promise<() => Promise<void>> {
  const template = await prepareTemplateDatabase();
  project.provide('templateDatabase', template);
  return async () => {
    await dropTemplateDatabase(template);
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    templateDatabase: string;
  }
}
