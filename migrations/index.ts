import type { Migration } from 'kysely';
import * as initial from './2026-11-25T00-00-initial.js';
import * as syncState from './2026-11-25T01-00-sync-state.js';
import * as pendingOrder from './2026-11-26T00-00-pending-order.js';
import * as deadEvents from './2026-11-26T01-00-dead-events.js';
import * as inboxEdges from './2026-12-03T02-00-inbox-edges.js';
import * as operatorActions from './2026-12-03T04-00-operator-actions.js';
import * as writeOrigin from './2026-12-04T00-10-write-origin.js';
import * as projects from './2026-12-04T00-10b-projects.js';
import * as leases from './2026-12-04T00-30-leases.js';
import * as retention from './2026-12-04T00-40-retention.js';

// Listed statically (not read from disk) so the same set runs under tsx, a bundle or a test.
// Names sort in the order they must run.
export const migrations: Record<string, Migration> = {
  '2026-11-25T00-00-initial': initial,
  '2026-11-25T01-00-sync-state': syncState,
  '2026-11-26T00-00-pending-order': pendingOrder,
  '2026-11-26T01-00-dead-events': deadEvents,
  '2026-12-03T02-00-inbox-edges': inboxEdges,
  '2026-12-03T04-00-operator-actions': operatorActions,
  '2026-12-04T00-10-write-origin': writeOrigin,
  '2026-12-04T00-10b-projects': projects,
  '2026-12-04T00-30-leases': leases,
  '2026-12-04T00-40-retention': retention,
};
