import { PGlite, types as pgliteTypes } from '@electric-sql/pglite';
import { Kysely, Migrator, PostgresDialect, sql, type Transaction } from 'kysely';
import { PGliteDialect } from 'kysely-pglite-dialect';
import pg from 'pg';
import { migrations } from '../../migrations/index.js';
import { acquireDataDirLock } from './data-dir-lock.js';
import type { Database } from './schema.js';

export type Db = Kysely<Database>;
export type DbOrTrx = Kysely<Database> | Transaction<Database>;

export interface DatabaseHandle {
  db: Db;
  kind: 'postgres' | 'pglite';
  close(): Promise<void>;
}

// int8 (bigserial ids, counts) as strings on both drivers, so ids compare the same way
// whichever database runs underneath.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => v);

// Statements on the hot path run as named prepared statements: PostgreSQL parses and plans
// them once per connection instead of on every call. Kysely hands the driver plain
// (text, values) pairs, so the pool's clients recognise a registered text and send it by
// name. bench/ingest: the inbox insert's planning was a fifth of PostgreSQL's CPU per webhook.
const PREPARED = new Map<string, string>();

/** Registers `text` to run as the prepared statement `name` on PostgreSQL; returns `text`. */
export function preparedStatement(name: string, text: string): string {
  const known = PREPARED.get(text);
  if (known !== undefined && known !== name) throw new Error(`statement already named ${known}`);
  PREPARED.set(text, name);
  return text;
}

class QuietClient extends pg.Client {
  constructor(config?: string | pg.ClientConfig) {
    super(config);
    // The server may end a session while it is checked out between two statements (the idle
    // transaction timeout after a freeze, a failover): the error surfaces on the next query,
    // and must not crash the process as an unhandled 'error' event meanwhile.
    this.on('error', () => undefined);
  }
}

class PreparingClient extends QuietClient {
  // pg's query() has many overloads; only (text, values) from Kysely is rewritten.
  override query(...args: unknown[]): never {
    const [text, values] = args;
    const name = typeof text === 'string' ? PREPARED.get(text) : undefined;
    const forward = name === undefined ? args : [{ name, text, values }];
    return (super.query as (...a: unknown[]) => never)(...forward);
  }
}

/** See openPostgres; a replica taking over waits at most this long for a frozen one's locks. */
const IDLE_IN_TRANSACTION_TIMEOUT_MS = 5000;

/** Bounds on every wait for PostgreSQL (0 or undefined: none). */
export interface PostgresTimeouts {
  /** Longest wait for a connection: a free one from the pool or a new one. */
  connectTimeoutMs?: number;
  /** The server cancels a statement running longer (`statement_timeout`). */
  statementTimeoutMs?: number;
  /**
   * Hot-path statements as named prepared statements (default). Off behind a transaction
   * pooler that cannot keep them: each statement may run on another server session.
   */
  preparedStatements?: boolean;
}

export function openPostgres(
  connectionString: string,
  poolSize = 10,
  timeouts: PostgresTimeouts = {},
): DatabaseHandle {
  const pool = new pg.Pool({
    connectionString,
    max: poolSize,
    Client: timeouts.preparedStatements === false ? QuietClient : PreparingClient,
    // A hung server or network: the caller gets an error instead of waiting for ever.
    ...(timeouts.connectTimeoutMs ? { connectionTimeoutMillis: timeouts.connectTimeoutMs } : {}),
    ...(timeouts.statementTimeoutMs ? { statement_timeout: timeouts.statementTimeoutMs } : {}),
    // A peer that vanished (a node lost, a NAT entry dropped) is found by TCP keepalive
    // instead of after the kernel's retransmission timeout (minutes to hours).
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
    // A process frozen (SIGSTOP, a VM pause) or cut off inside a transaction would hold its
    // row and advisory locks for as long as its session lives, blocking the replica that takes
    // its leases over. No transaction of ours waits this long between statements: the server
    // ends such a session and its locks go with it.
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_TIMEOUT_MS,
  });
  // An idle client's error (server restart) must not crash the process; the next query
  // gets a fresh connection.
  pool.on('error', () => undefined);
  const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) });
  return { db, kind: 'postgres', close: () => db.destroy() };
}

/**
 * Embedded PostgreSQL (PGlite). `dataDir` undefined → in memory (tests); `loadDataDir` starts
 * from a dumped data directory (tests clone a migrated template this way: initdb is the slow
 * part of opening PGlite).
 */
export async function openPglite(
  dataDir: string | undefined,
  options: { loadDataDir?: Blob } = {},
): Promise<DatabaseHandle & { pglite: PGlite }> {
  // One process at a time in a data directory (data-dir-lock.ts): a second one is refused.
  const lock = dataDir !== undefined ? await acquireDataDirLock(dataDir) : undefined;
  let pglite: PGlite;
  try {
    pglite = await PGlite.create({
      ...(dataDir !== undefined ? { dataDir } : {}),
      ...(options.loadDataDir !== undefined ? { loadDataDir: options.loadDataDir } : {}),
      parsers: { [pgliteTypes.INT8]: (v: string) => v },
    });
  } catch (err) {
    await lock?.release();
    throw err;
  }
  const db = new Kysely<Database>({ dialect: new PGliteDialect(pglite) });
  const close = async () => {
    // Kysely skips the driver's destroy when it never ran a query; close PGlite ourselves.
    try {
      await db.destroy();
      if (!pglite.closed) await pglite.close();
    } finally {
      await lock?.release();
    }
  };
  return { db, kind: 'pglite', pglite, close };
}

export async function openDatabase(options: {
  databaseUrl: string | undefined;
  dataDir: string;
  database?: PostgresTimeouts;
}): Promise<DatabaseHandle> {
  return options.databaseUrl !== undefined
    ? openPostgres(options.databaseUrl, 10, options.database)
    : openPglite(options.dataDir);
}

/**
 * Runs every pending migration. Kysely's Postgres adapter takes an advisory lock around
 * the run, so two replicas starting at once apply each migration exactly once.
 */
export async function migrateToLatest(db: Db): Promise<string[]> {
  // On one connection without the statement timeout: an index built over a large table, or
  // the wait for another replica's migration lock, may take longer than any live statement.
  const { error, results } = await db.connection().execute(async (conn) => {
    await sql`set statement_timeout = 0`.execute(conn);
    try {
      const migrator = new Migrator({
        db: conn,
        provider: { getMigrations: () => Promise.resolve(migrations) },
      });
      return await migrator.migrateToLatest();
    } finally {
      await sql`reset statement_timeout`.execute(conn);
    }
  });
  if (error !== undefined) {
    throw new Error('Database migration failed', { cause: error });
  }
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}

/** Names of the migrations this build knows that the database has not applied yet. */
export async function pendingMigrations(db: Db): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: { getMigrations: () => Promise.resolve(migrations) },
  });
  const all = await migrator.getMigrations();
  return all.filter((m) => m.executedAt === undefined).map((m) => m.name);
}

export async function pingDatabase(db: Db): Promise<void> {
  await sql`select 1`.execute(db);
}
