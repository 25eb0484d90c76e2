import type { Db } from '../db/database.js';
import type { Logger } from '../lib/logger.js';
import { ChangePoller, type PollSource } from '../lib/pollers.js';
import type { PowerOfficeClient } from './client.js';
import type { ContactPerson, Customer, Employee } from './schemas.js';

// "We do not currently support webhooks" (poweroffice.md §1 "Webhooks"): Employees,
// Customers and ContactPersons are polled with `lastChangedDateTimeOffsetGreaterThan`.
// A Customer's or Employee's timestamp does not move when only its address changes
// (poweroffice.md §1 "Listing"); the reconcile full read catches those.

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
  /** POLL_INTERVAL_MS; 0 turns the timed polling off (full reads on demand still work). */
  intervalMs: number;
  overlapMs?: number;
}

/** The Employee, Customer and ContactPerson pollers, in that order; none without a client. */
export function createPowerOfficePollers(
  options: PowerOfficePollersOptions,
): [ChangePoller<Employee>, ChangePoller<Customer>, ChangePoller<ContactPerson>] | [] {
  const { client } = options;
  if (client === undefined) return [];
  const pollerOptions = {
    db: options.db,
    logger: options.logger,
    intervalMs: options.intervalMs,
    overlapMs: options.overlapMs ?? POWEROFFICE_OVERLAP_MS,
  };
  const employee: PollSource<Employee> = {
    system: 'poweroffice',
    recordType: 'employee',
    list: (since, requestOptions) => client.listEmployeesChangedSince(since, requestOptions),
    formatSince: formatPowerOfficeSince,
    describe: (record) => ({
      recordId: String(record.Id),
      lastChanged: record.LastChangedDateTimeOffset,
      payload: record,
    }),
  };
  const customer: PollSource<Customer> = {
    system: 'poweroffice',
    recordType: 'customer',
    list: (since, requestOptions) => client.listCustomersChangedSince(since, requestOptions),
    formatSince: formatPowerOfficeSince,
    describe: (record) => ({
      recordId: String(record.Id),
      lastChanged: record.LastChangedDateTimeOffset,
      payload: record,
    }),
  };
  const contactPerson: PollSource<ContactPerson> = {
    system: 'poweroffice',
    recordType: 'contactperson',
    list: (since, requestOptions) => client.listContactPersonsChangedSince(since, requestOptions),
    formatSince: formatPowerOfficeSince,
    describe: (record) => ({
      recordId: String(record.Id),
      // Every contact-person path carries the parent (poweroffice.md §4).
      parentId: String(record.ContactId),
      lastChanged: record.LastChangedDateTimeOffset,
      payload: record,
    }),
  };
  return [
    new ChangePoller(employee, pollerOptions),
    new ChangePoller(customer, pollerOptions),
    new ChangePoller(contactPerson, pollerOptions),
  ];
}

/**
 * The spec's own example format, `2021-09-25 08:03:00.123456+00:00` (poweroffice.md §1
 * "Listing"); the client percent-encodes the `+`.
 */
export function formatPowerOfficeSince(ms: number): string {
  const iso = new Date(ms).toISOString(); // 2021-09-25T08:03:00.123Z
  return `${iso.slice(0, 10)} ${iso.slice(11, 23)}000+00:00`;
}
