import { sql, type RawBuilder } from 'kysely';

// Keyset paging of one record's history (GET /admin/records/…/history), which merges three
// tables newest first by (created_at, source rank, id). A position is exact to the
// microsecond: it carries created_at as PostgreSQL's own text, never a JavaScript Date
// (milliseconds), so entries written in the same millisecond are neither skipped nor repeated.

export interface HistoryPosition {
  /** created_at as `YYYY-MM-DDTHH:MI:SS.USZ` (UTC, microseconds). */
  at: string;
  /** The source table's place among entries of equal time (events 0, audit 1, commands 2). */
  rank: number;
  id: string;
}

/** The sort key of a row's created_at, as stored in a position. */
export const atKey: RawBuilder<string> = sql<string>`to_char(created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`;

/** Rows of the table of `rank` that come after `position` in newest-first order. */
export function olderThan(position: HistoryPosition, rank: number): RawBuilder<boolean> {
  const at = sql`${position.at}::timestamptz`;
  if (rank < position.rank) return sql<boolean>`created_at <= ${at}`;
  if (rank > position.rank) return sql<boolean>`created_at < ${at}`;
  return sql<boolean>`(created_at < ${at} or (created_at = ${at} and id < ${position.id}))`;
}
