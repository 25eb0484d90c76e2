import { randomBytes } from 'node:crypto';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import {
  migrateToLatest,
  openPglite,
  openPostgres,
  type DatabaseHandle,
} from '../../src/db/database.js';

export interface TestDatabase extends DatabaseHandle {
  /** Connection string of this file's own database (PostgreSQL only), for child processes. */
  url: string | undefined;
}

function serverUrl(databaseUrl: string, database: string): string {
  const url = new URL(databaseUrl);
  url.pathname = `/${database}`;
  return url.toString();
}

async function adminQuery(databaseUrl: string, text: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

const PGLITE_TEMPLATE_PREFIX = 'pglite:';

/**
 * The migrated template every test file clones. PostgreSQL: a template database (its name is
 * returned). PGlite: a dump of a migrated data directory in a temp file (`pglite:<path>`),
 * since running initdb per file costs seconds and loading a dump well under one.
 */
export async function prepareTemplateDatabase(): Promise<string> {
  const databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl === undefined || databaseUrl === '') {
    const handle = await openPglite(undefined);
    try {
      await migrateToLatest(handle.db);
      const dump = await handle.pglite.dumpDataDir('none');
      const path = join(
        tmpdir(),
        `tbpo-pglite-template-${process.pid}-${randomBytes(3).toString('hex')}.tar`,
      );
      await writeFile(path, Buffer.from(await dump.arrayBuffer()));
      return `${PGLITE_TEMPLATE_PREFIX}${path}`;
    } finally {
      await handle.close();
    }
  }
  const name = `tbpo_template_${process.pid}_${randomBytes(3).toString('hex')}`;
  await adminQuery(databaseUrl, `create database ${name}`);
  const handle = openPostgres(serverUrl(databaseUrl, name), 2);
  try {
    await migrateToLatest(handle.db);
  } finally {
    await handle.close();
  }
  return name;
}

export async function dropTemplateDatabase(name: string): Promise<void> {
  if (name.startsWith(PGLITE_TEMPLATE_PREFIX)) {
    await rm(name.slice(PGLITE_TEMPLATE_PREFIX.length), { force: true });
    return;
  }
  const databaseUrl = process.env.DATABASE_URL;
  if (databaseUrl === undefined) return;
  await adminQuery(databaseUrl, `drop database if exists ${name} with (force)`);
}

/**
 * A fresh, migrated database for one test file: a clone of the migrated template on
 * PostgreSQL (DATABASE_URL set), a new in-memory PGlite otherwise.
 */
export async function createTestDatabase(template: string): Promise<TestDatabase> {
  const databaseUrl = process.env.DATABASE_URL;
  if (template.startsWith(PGLITE_TEMPLATE_PREFIX)) {
    const dump = await readFile(template.slice(PGLITE_TEMPLATE_PREFIX.length));
    const handle = await openPglite(undefined, { loadDataDir: new Blob([dump]) });
    return { ...handle, url: undefined };
  }
  if (databaseUrl === undefined || databaseUrl === '' || template === '') {
    const handle = await openPglite(undefined);
    await migrateToLatest(handle.db);
    return { ...handle, url: undefined };
  }
  const name = `tbpo_test_${randomBytes(6).toString('hex')}`;
  await adminQuery(databaseUrl, `create database ${name} template ${template}`);
  const url = serverUrl(databaseUrl, name);
  const handle = openPostgres(url, 10);
  return {
    ...handle,
    url,
    kind: 'postgres',
    close: async () => {
      await handle.close();
      await adminQuery(databaseUrl, `drop database if exists ${name} with (force)`);
    },
  };
}
