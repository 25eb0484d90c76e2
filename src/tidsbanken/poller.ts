import type { Db } from '../db/database.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import { adapterPollSource, ChangePoller } from '../lib/pollers.js';
import { RECORD_ADAPTERS, recordTypesOf } from '../record-types.js';
import type { TidsbankenClient } from './client.js';

// Tidsbanken pushes no changes of its master data (docs/vendor-apis.md), so every record type
// is polled with `SistEndretDato gt <cursor − overlap>`.

/**
 * Sesam had to shift Kunde's SistEndretDato by an hour (IS-17110, docs/vendor-apis.md): a
 * Kunde edited now may carry a timestamp an hour behind the cursor. Re-reading the last two
 * hours absorbs that; the inbox drops what it has already stored.
 */
export const TIDSBANKEN_OVERLAP_MS = 2 * 60 * 60 * 1000;

export interface TidsbankenPollersOptions {
  /** Undefined when the Tidsbanken side has no credentials: then nothing is polled. */
  client: TidsbankenClient | undefined;
  db: Db;
  logger: Logger;
  /** Counts the records a gate-closed poll puts straight into the mirror as processed events. */
  metrics?: Metrics;
  /** POLL_INTERVAL_MS; 0 turns the timed polling off (full reads on demand still work). */
  intervalMs: number;
  overlapMs?: number;
}

/** One poller per Tidsbanken record type, in registry order; none without a client. */
export function createTidsbankenPollers(options: TidsbankenPollersOptions): ChangePoller[] {
  const pollerOptions = {
    db: options.db,
    logger: options.logger,
    metrics: options.metrics,
    intervalMs: options.intervalMs,
    overlapMs: options.overlapMs ?? TIDSBANKEN_OVERLAP_MS,
  };
  return recordTypesOf('tidsbanken').flatMap((type) => {
    const source = adapterPollSource(RECORD_ADAPTERS[type], { tidsbanken: options.client });
    return source === undefined ? [] : [new ChangePoller(source, pollerOptions)];
  });
}
