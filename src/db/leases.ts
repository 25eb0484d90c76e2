import { sql, type RawBuilder } from 'kysely';
import type { DbOrTrx } from './database.js';
import type { SystemName } from './schema.js';

// Leadership of a target system as a lease row (docs/ARCHITECTURE.md, "Several replicas").
// The holder renews `expires_at` by heartbeat; anyone may take an expired lease, and every
// take-over raises `epoch`. A term is (system, epoch): statements made on a term's behalf
// carry `termIsCurrent(term)` in their WHERE clause, so once another replica has taken over —
// or the lease merely expired — they change nothing (fencing), whatever the old holder
// believes. All times are the database's `now()`: replicas' clocks never matter.

/** One holder's tenure of one system's lease. */
export interface LeaseTerm {
  system: SystemName;
  /** bigint, as a string. */
  epoch: string;
}

/** SQL condition: `term` is still the current, unexpired lease of its system. */
export function termIsCurrent(term: LeaseTerm): RawBuilder<boolean> {
  return sql<boolean>`exists (
    select 1 from leases
     where leases.system = ${term.system} and leases.epoch = ${term.epoch}::bigint
       and leases.expires_at > now())`;
}

/**
 * Takes the lease when it is free (expired or released), already this holder's, or `force`
 * (an embedded database has one process: a predecessor in its data directory is dead).
 * Raises the epoch. Undefined when someone else holds it.
 */
export async function acquireLease(
  db: DbOrTrx,
  lease: { system: SystemName; holder: string; ttlMs: number; force?: boolean },
): Promise<LeaseTerm | undefined> {
  const ttl = sql`${lease.ttlMs} * interval '1 millisecond'`;
  const result = await sql<{ epoch: string }>`
    insert into leases as l (system, holder, epoch, expires_at, acquired_at, renewed_at)
    values (${lease.system}, ${lease.holder}, 1, now() + ${ttl}, now(), now())
    on conflict (system) do update
       set holder = excluded.holder, epoch = l.epoch + 1, expires_at = excluded.expires_at,
           acquired_at = now(), renewed_at = now()
     where l.expires_at <= now() or l.holder = excluded.holder or ${lease.force === true}
    returning epoch`.execute(db);
  const row = result.rows[0];
  return row === undefined ? undefined : { system: lease.system, epoch: String(row.epoch) };
}

/** Extends the term by `ttlMs` from now; false when it is no longer current (lost). */
export async function renewLease(db: DbOrTrx, term: LeaseTerm, ttlMs: number): Promise<boolean> {
  const result = await sql`
    update leases set expires_at = now() + ${ttlMs} * interval '1 millisecond', renewed_at = now()
     where system = ${term.system} and epoch = ${term.epoch}::bigint and expires_at > now()
    returning epoch`.execute(db);
  return result.rows.length > 0;
}

/** Gives the term up at once (a clean stop): another replica may take over immediately. */
export async function releaseLease(db: DbOrTrx, term: LeaseTerm): Promise<void> {
  await sql`
    update leases set expires_at = now()
     where system = ${term.system} and epoch = ${term.epoch}::bigint and expires_at > now()`.execute(
    db,
  );
}

/** Who leads each system (console overview, admin API); `live` false once it has expired. */
export interface LeaseStatus {
  system: SystemName;
  holder: string | null;
  epoch: string;
  expiresAt: Date;
  live: boolean;
}

/** Every system's lease as stored, with whether it is live right now (database time). */
export async function listLeases(db: DbOrTrx): Promise<LeaseStatus[]> {
  const rows = await db
    .selectFrom('leases')
    .select([
      'system',
      'holder',
      'epoch',
      'expires_at',
      sql<boolean>`expires_at > now()`.as('live'),
    ])
    .orderBy('system')
    .execute();
  return rows.map((r) => ({
    system: r.system,
    holder: r.holder,
    epoch: String(r.epoch),
    expiresAt: r.expires_at,
    live: r.live,
  }));
}
