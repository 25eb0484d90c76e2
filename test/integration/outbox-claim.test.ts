import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import { claimCommands } from '../../src/db/commands.js';
import { insertInboundEvent } from '../../src/db/inbound-events.js';
import { acquireLease } from '../../src/db/leases.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

// Which commands the dispatcher may take off the outbox. A burst of edits of one record
// arrives as several inbox events; the command they feed must not go out after the first one
// was processed and again after each later one (one PATCH per claim), but once, carrying the
// last value — yet never wait long.

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase(inject('templateDatabase'));
});
afterAll(async () => {
  await database.close();
});

async function linkAndCommand(ansattId: string, employeeId: string, createdAgoMs = 0) {
  const db = database.db;
  const link = await db
    .insertInto('links')
    .values({
      flow: 'ansatt-employee',
      tidsbanken_type: 'ansatt',
      tidsbanken_id: ansattId,
      poweroffice_type: 'employee',
      poweroffice_id: employeeId,
      linked_by: 'number',
      shadow: JSON.stringify({}),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  const command = await db
    .insertInto('outbound_commands')
    .values({
      system: 'poweroffice',
      operation: 'update',
      record_type: 'employee',
      record_id: employeeId,
      flow: 'ansatt-employee',
      link_id: link.id,
      payload: JSON.stringify({ fields: { '/JobTitle': 'x' } }),
      status: 'pending',
      created_at: new Date(Date.now() - createdAgoMs),
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return command.id;
}

async function pendingEventOf(ansattId: string, n: number) {
  const { id } = await insertInboundEvent(database.db, {
    source: 'tidsbanken',
    origin: 'webhook',
    eventId: `claim-${ansattId}-${n}`,
    eventType: 'ansatt.updated',
    recordType: 'ansatt',
    recordId: ansattId,
    payload: { Id: Number(ansattId), Tittel: `t${n}` },
    isThin: false,
  });
  return id!;
}

describe('claiming outbound commands', () => {
  it('holds a command while its source record has unprocessed inbox events, for at most 2 s', async () => {
    const held = await linkAndCommand('101', '9101');
    const event = await pendingEventOf('101', 1);
    // An unrelated record's pending event holds nothing.
    await pendingEventOf('999', 1);
    const free = await linkAndCommand('102', '9102');
    // Held for longer than the limit: goes anyway.
    const overdue = await linkAndCommand('103', '9103', 5_000);
    await pendingEventOf('103', 1);

    const term = await acquireLease(database.db, {
      system: 'poweroffice',
      holder: 'test',
      ttlMs: 60_000,
    });
    const first = await claimCommands(database.db, term!, 10, 'test');
    expect(first.map((c) => c.id).sort()).toEqual([free, overdue].sort());

    await database.db
      .updateTable('inbound_events')
      .set({ status: 'done' })
      .where('id', '=', event)
      .execute();
    const second = await claimCommands(database.db, term!, 10, 'test');
    expect(second.map((c) => c.id)).toEqual([held]);
  });
});
