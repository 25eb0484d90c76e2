import { sql } from 'kysely';
import { afterAll, beforeAll, beforeEach } from 'vitest';
import type { Db } from '../../src/db/database.js';
import type { SystemName } from '../../src/db/schema.js';
import { createTestApp, type TestApp } from './app.js';

// What the admin API's tests share: the token, one app per file with tables emptied before
// each test, and rows the engine would have left behind.

export const ADMIN_TOKEN = 'admin-token-0123456789abcdef';
export const adminAuth = { Authorization: `Bearer ${ADMIN_TOKEN}` };

/**
 * The real app with ADMIN_TOKEN on this file's own database for every test of the file
 * (`use` receives it); `tables` are emptied before each test. Call at a file's top level.
 */
export function useAdminApp(tables: readonly string[], use: (app: TestApp) => void): void {
  let app: TestApp | undefined;
  beforeAll(async () => {
    app = await createTestApp({ ADMIN_TOKEN });
    use(app);
  });
  afterAll(async () => {
    await app?.close();
  });
  beforeEach(async () => {
    for (const table of tables)
      await sql`delete from ${sql.table(table)}`.execute(app!.database.db);
  });
}

/** An outbound command as the dispatcher leaves it (a dead one: 7 attempts and a 400). */
export async function seedCommand(
  db: Db,
  values: {
    status: 'pending' | 'sending' | 'sent' | 'dead' | 'dry_run';
    system?: SystemName;
    recordType?: string;
    recordId?: string;
    flow?: string;
    createdAt?: Date;
  },
): Promise<string> {
  const system = values.system ?? 'poweroffice';
  const row = await db
    .insertInto('outbound_commands')
    .values({
      system,
      operation: 'update',
      record_type: values.recordType ?? (system === 'tidsbanken' ? 'kunde' : 'customer'),
      record_id: values.recordId ?? String(Math.floor(Math.random() * 1e9)),
      flow: values.flow ?? 'kunde-customer',
      payload: JSON.stringify({ Name: 'Fjord AS' }),
      status: values.status,
      attempts: values.status === 'dead' ? 7 : 0,
      last_error: values.status === 'dead' ? JSON.stringify({ status: 400, body: 'bad' }) : null,
      run_at: new Date('2026-01-05T10:00:00Z'),
      ...(values.createdAt !== undefined ? { created_at: values.createdAt } : {}),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return row.id;
}
