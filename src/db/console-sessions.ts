import { sql } from 'kysely';
import type { DbOrTrx } from './database.js';

// Console log-ins. Only a hash of the cookie's session id is stored, so a copy of the table
// opens no session.

export interface ConsoleSession {
  csrfToken: string;
}

export async function insertConsoleSession(
  db: DbOrTrx,
  session: { idHash: string; csrfToken: string; ttlSeconds: number },
): Promise<void> {
  await db
    .insertInto('console_sessions')
    .values({
      id_hash: session.idHash,
      csrf_token: session.csrfToken,
      expires_at: sql<Date>`now() + make_interval(secs => ${session.ttlSeconds})`,
    })
    .execute();
  // Expired sessions go on the next log-in: the table stays the size of the live ones.
  await db
    .deleteFrom('console_sessions')
    .where('expires_at', '<', sql<Date>`now()`)
    .execute();
}

export async function findConsoleSession(
  db: DbOrTrx,
  idHash: string,
): Promise<ConsoleSession | undefined> {
  const row = await db
    .selectFrom('console_sessions')
    .select('csrf_token')
    .where('id_hash', '=', idHash)
    .where('expires_at', '>', sql<Date>`now()`)
    .executeTakeFirst();
  return row === undefined ? undefined : { csrfToken: row.csrf_token };
}

export async function deleteConsoleSession(db: DbOrTrx, idHash: string): Promise<void> {
  await db.deleteFrom('console_sessions').where('id_hash', '=', idHash).execute();
}
