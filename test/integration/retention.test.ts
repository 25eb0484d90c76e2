import { sql } from 'kysely';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import type { Db } from '../../src/db/database.js';
import { pruneOnce } from '../../src/lib/retention.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { createRuntime } from '../../src/runtime.js';
import { LogCapture } from '../helpers/app.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

// Retention (RETENTION_DAYS): processed events, finished commands and audit rows older than the
// window are deleted in small batches; everything else is kept. Both databases.

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  cleanup = [];
});

async function freshDatabase(): Promise<TestDatabase> {
  const database = await createTestDatabase(inject('templateDatabase'));
  cleanup.push(() => database.close());
  return database;
}

const OLD = sql<Date>`now() - interval '40 days'`;
const RECENT = sql<Date>`now() - interval '2 days'`;

async function event(
  db: Db,
  eventId: string,
  status: 'pending' | 'done' | 'dead',
  at: typeof OLD,
  rawRecord: string | null = null,
) {
  await db
    .insertInto('inbound_events')
    .values({
      source: 'tidsbanken',
      origin: 'webhook',
      event_id: eventId,
      event_type: 'ansatt.updated',
      record_type: 'ansatt',
      record_id: eventId,
      parent_id: null,
      payload: JSON.stringify({ Id: eventId }),
      content_hash: null,
      occurred_at: null,
      status,
      last_error: null,
      // Not due while the test runs: the service's worker leaves it pending.
      run_at: status === 'pending' ? sql<Date>`now() + interval '1 day'` : at,
      locked_at: null,
      locked_by: null,
      processed_at: status === 'done' ? at : null,
      created_at: at,
      raw_record: rawRecord,
    })
    .execute();
}

async function command(
  db: Db,
  recordId: string,
  operation: 'create' | 'update',
  status: 'pending' | 'sent' | 'dead' | 'dry_run' | 'superseded' | 'dropped',
  at: typeof OLD,
) {
  await db
    .insertInto('outbound_commands')
    .values({
      system: 'poweroffice',
      operation,
      record_type: 'employee',
      record_id: recordId,
      parent_id: null,
      flow: 'ansatt-employee',
      link_id: null,
      origin_system: 'tidsbanken',
      origin_id: `origin-${recordId}`,
      origin_record_id: recordId,
      payload: JSON.stringify({ fields: { JobTitle: recordId } }),
      status,
      last_error: null,
      run_at: at,
      locked_at: null,
      locked_by: null,
      sent_at: null,
      result: null,
      created_at: at,
      updated_at: at,
    })
    .execute();
}

async function audit(db: Db, recordId: string, at: typeof OLD) {
  await db
    .insertInto('audit_entries')
    .values({
      system: 'tidsbanken',
      record_type: 'ansatt',
      record_id: recordId,
      kind: 'diff',
      flow: 'ansatt-employee',
      link_id: null,
      event_id: null,
      command_id: null,
      detail: '{}',
      created_at: at,
    })
    .execute();
}

async function seed(db: Db) {
  for (let i = 1; i <= 5; i++) await event(db, `old-done-${i}`, 'done', OLD);
  await event(db, 'new-done', 'done', RECENT);
  await event(db, 'old-pending', 'pending', OLD);
  await event(db, 'old-dead', 'dead', OLD);
  await event(db, 'old-rejected', 'dead', OLD, '{"Id":"x\\u0000"}');

  for (let i = 1; i <= 3; i++) await command(db, `old-sent-${i}`, 'update', 'sent', OLD);
  await command(db, 'old-dry-run', 'update', 'dry_run', OLD);
  await command(db, 'old-superseded', 'update', 'superseded', OLD);
  await command(db, 'old-dropped', 'update', 'dropped', OLD);
  await command(db, 'new-sent', 'update', 'sent', RECENT);
  await command(db, 'old-pending', 'update', 'pending', OLD);
  await command(db, 'old-dead', 'update', 'dead', OLD);
  // A create that was sent is the record that this origin's record was made: kept.
  await command(db, 'old-created', 'create', 'sent', OLD);

  for (let i = 1; i <= 4; i++) await audit(db, `old-audit-${i}`, OLD);
  await audit(db, 'new-audit', RECENT);

  await db
    .insertInto('links')
    .values({
      flow: 'ansatt-employee',
      tidsbanken_type: 'ansatt',
      tidsbanken_id: '1',
      poweroffice_type: 'employee',
      poweroffice_id: '1',
      poweroffice_parent_id: null,
      linked_by: 'email',
      shadow: '{}',
      last_synced_at: OLD,
      unlinked_at: null,
      unlink_reason: null,
      created_at: OLD,
      updated_at: OLD,
    })
    .execute();
  await db
    .insertInto('records')
    .values({
      system: 'tidsbanken',
      record_type: 'ansatt',
      record_id: '1',
      parent_id: null,
      data: '{}',
      email_key: null,
      national_id_key: null,
      number_key: null,
      source_updated_at: null,
      deleted_at: null,
      last_event_id: null,
      created_at: OLD,
      updated_at: OLD,
    })
    .execute();
  await db
    .insertInto('conflicts')
    .values({
      flow: 'ansatt-employee',
      kind: 'ambiguous_match',
      system: 'tidsbanken',
      record_type: 'ansatt',
      record_id: '1',
      link_id: null,
      field: null,
      tidsbanken_value: null,
      poweroffice_value: null,
      candidates: '[]',
      resolution: null,
      created_at: OLD,
    })
    .execute();
}

async function left(db: Db) {
  const events = await db.selectFrom('inbound_events').select('event_id').execute();
  const commands = await db.selectFrom('outbound_commands').select('record_id').execute();
  const audits = await db.selectFrom('audit_entries').select('record_id').execute();
  const count = async (table: 'links' | 'records' | 'conflicts') =>
    Number(
      (
        await db
          .selectFrom(table)
          .select(sql<string>`count(*)`.as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );
  return {
    events: events.map((r) => r.event_id).sort(),
    commands: commands.map((r) => r.record_id).sort(),
    audits: audits.map((r) => r.record_id).sort(),
    links: await count('links'),
    records: await count('records'),
    conflicts: await count('conflicts'),
  };
}

const KEPT = {
  events: ['new-done', 'old-dead', 'old-pending', 'old-rejected'],
  commands: ['new-sent', 'old-created', 'old-dead', 'old-pending'],
  audits: ['new-audit'],
  links: 1,
  records: 1,
  conflicts: 1,
};

describe('retention', () => {
  it('deletes processed events, finished commands and audit rows older than RETENTION_DAYS in small batches, keeps new rows, open work, dead items, creates, links, mirror and conflicts, and counts what it pruned', async () => {
    const { db } = await freshDatabase();
    await seed(db);
    const metrics = createMetrics();

    const pruned = await pruneOnce(db, { retentionDays: 30, batchSize: 2, metrics });

    expect(pruned).toEqual({ inbound_events: 5, outbound_commands: 6, audit_entries: 4 });
    expect(await left(db)).toEqual(KEPT);
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/tbpo_retention_pruned_rows_total\{table="inbound_events"\} 5/);
    expect(text).toMatch(/tbpo_retention_pruned_rows_total\{table="outbound_commands"\} 6/);
    expect(text).toMatch(/tbpo_retention_pruned_rows_total\{table="audit_entries"\} 4/);
  });

  it('RETENTION_DAYS=0 keeps everything', async () => {
    const { db } = await freshDatabase();
    await seed(db);
    const before = await left(db);
    const pruned = await pruneOnce(db, { retentionDays: 0, batchSize: 2 });
    expect(pruned).toEqual({ inbound_events: 0, outbound_commands: 0, audit_entries: 0 });
    expect(await left(db)).toEqual(before);
  });

  it('the running service prunes by itself (the leader does it)', async () => {
    const database = await freshDatabase();
    await seed(database.db);
    const runtime = await createRuntime({
      config: loadConfig({ POLL_INTERVAL_MS: '0', RETENTION_DAYS: '30' }),
      logger: createLogger({ level: 'info', destination: new LogCapture() }),
      database,
      databaseUrl: database.url,
      retentionFirstRunMs: 0,
    });
    runtime.service.start();
    cleanup.push(() => runtime.service.stop());
    const deadline = Date.now() + 30_000;
    while ((await left(database.db)).audits.length > 1) {
      if (Date.now() > deadline) throw new Error('the service never pruned');
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(await left(database.db)).toEqual(KEPT);
  });
});
