import { sql, type Kysely } from 'kysely';

// Frozen in time. Retention (RETENTION_DAYS) deletes finished rows oldest first in small
// batches; these partial indexes hold only the rows it may delete, so each batch finds them
// without reading the live or kept rows. Audit entries need none: they are deleted in id order.
// - inbound_events: processed ('done'), by when they were processed.
// - outbound_commands: finished and not a create's only trace ('superseded', 'dropped', and
//   updates that were sent or recorded in dry run), by their last change.
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- frozen migrations see no app types
export async function up(db: Kysely<any>): Promise<void> {
  await sql`create index inbound_events_done on inbound_events (processed_at) where status = 'done'`.execute(
    db,
  );
  await sql`create index outbound_commands_finished on outbound_commands (updated_at)
    where status in ('superseded', 'dropped') or (operation = 'update' and status in ('sent', 'dry_run'))`.execute(
    db,
  );
}
