import type { Db } from '../db/database.js';
import type { Logger } from '../lib/logger.js';
import { ChangePoller, type PollSource } from '../lib/pollers.js';
import type { TidsbankenClient } from './client.js';
import type { Ansatt, Kunde } from './schemas.js';

// Tidsbanken pushes no Ansatt/Kunde changes (tidsbanken.md §4), so both are polled with
// `SistEndretDato gt <cursor − overlap>`.

/**
 * Sesam had to shift Kunde's SistEndretDato by an hour (IS-17110, tidsbanken.md §3): a
 * Kunde edited now may carry a timestamp an hour behind the cursor. Re-reading the last two
 * hours absorbs that; the inbox drops what it has already stored.
 */
export const TIDSBANKEN_OVERLAP_MS = 2 * 60 * 60 * 1000;

export interface TidsbankenPollersOptions {
  /** Undefined when the Tidsbanken side has no credentials: then nothing is polled. */
  client: TidsbankenClient | undefined;
  db: Db;
  logger: Logger;
  /** POLL_INTERVAL_MS; 0 turns the timed polling off (full reads on demand still work). */
  intervalMs: number;
  overlapMs?: number;
}

/** The Ansatt and Kunde pollers, in that order; none without a client. */
export function createTidsbankenPollers(
  options: TidsbankenPollersOptions,
): [ChangePoller<Ansatt>, ChangePoller<Kunde>] | [] {
  const { client } = options;
  if (client === undefined) return [];
  const pollerOptions = {
    db: options.db,
    logger: options.logger,
    intervalMs: options.intervalMs,
    overlapMs: options.overlapMs ?? TIDSBANKEN_OVERLAP_MS,
  };
  const ansatt: PollSource<Ansatt> = {
    system: 'tidsbanken',
    recordType: 'ansatt',
    list: (since, requestOptions) => client.listAnsatteChangedSince(since, requestOptions),
    formatSince: formatTidsbankenSince,
    describe: (record) => ({
      recordId: String(record.Id),
      lastChanged: record.SistEndretDato,
      payload: record,
    }),
  };
  const kunde: PollSource<Kunde> = {
    system: 'tidsbanken',
    recordType: 'kunde',
    list: (since, requestOptions) => client.listKunderChangedSince(since, requestOptions),
    formatSince: formatTidsbankenSince,
    describe: (record) => ({
      recordId: record.Id,
      lastChanged: record.SistEndretDato,
      payload: record,
    }),
  };
  return [new ChangePoller(ansatt, pollerOptions), new ChangePoller(kunde, pollerOptions)];
}

/** An unquoted ISO 8601 UTC literal, as Sesam filters (tidsbanken.md §1 "Date filters"). */
export function formatTidsbankenSince(ms: number): string {
  return new Date(ms).toISOString();
}
