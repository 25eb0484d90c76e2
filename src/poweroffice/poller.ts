import type { Db } from '../db/database.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import { adapterPollSource, ChangePoller } from '../lib/pollers.js';
import { RECORD_ADAPTERS, recordTypesOf } from '../record-types.js';
import type { PowerOfficeClient } from './client.js';

// PowerOffice sends no webhooks for these records (docs/vendor-apis.md): every record type is
// polled with `lastChangedDateTimeOffsetGreaterThan`. A Customer's or Employee's timestamp
// does not move when only its address changes; the reconcile full read catches those.

/**
 * A record committed a moment after a newer one we already read would fall behind the
 * cursor; a short overlap re-reads it. Re-reads cost requests, not inbox rows.
 */
export const POWEROFFICE_OVERLAP_MS = 5 * 60 * 1000;

export interface PowerOfficePollersOptions {
  /** Undefined when the PowerOffice side has no credentials: then nothing is polled. */
  client: PowerOfficeClient | undefined;
  db: Db;
  logger: Logger;
  /** Counts the records a gate-closed poll puts straight into the mirror as processed events. */
  metrics?: Metrics;
  /** POLL_INTERVAL_MS; 0 turns the timed polling off (full reads on demand still work). */
  intervalMs: number;
  overlapMs?: number;
}

/** One poller per PowerOffice record type, in registry order; none without a client. */
export function createPowerOfficePollers(options: PowerOfficePollersOptions): ChangePoller[] {
  const pollerOptions = {
    db: options.db,
    logger: options.logger,
    metrics: options.metrics,
    intervalMs: options.intervalMs,
    overlapMs: options.overlapMs ?? POWEROFFICE_OVERLAP_MS,
  };
  return recordTypesOf('poweroffice').flatMap((type) => {
    const source = adapterPollSource(RECORD_ADAPTERS[type], { poweroffice: options.client });
    return source === undefined ? [] : [new ChangePoller(source, pollerOptions)];
  });
}
