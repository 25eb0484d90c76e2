import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { inject } from 'vitest';
import {
  claimCommands,
  markCommandRetry,
  requeueCommand,
  requeueSendingCommands,
  upsertPendingUpdate,
} from '../../src/db/commands.js';
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

/** A live ansatt-employee link between the two ids; its id. */
async function insertLink(ansattId: string, employeeId: string): Promise<string> {
  const link = await database.db
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
  return link.id;
}

async function linkAndCommand(ansattId: string, employeeId: string, createdAgoMs = 0) {
  const db = database.db;
  const link = { id: await insertLink(ansattId, employeeId) };
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

  // Regression (a handover that never finished): while an update of a record was on the wire,
  // the worker queued a newer pending update of it. Putting the in-flight one back to pending
  // broke the one-pending-update-per-record rule, so the successor's start-up failed on every
  // retry and nothing was sent to that system. The in-flight fields fold into the pending
  // update instead, the newer values winning.
  it('a command left in flight folds into a newer pending update of its record on requeue', async () => {
    const db = database.db;
    const linkOf = (ansattId: string) => insertLink(ansattId, `9${ansattId}`);
    const target = (recordId: string) => ({
      system: 'tidsbanken' as const,
      recordType: 'ansatt',
      recordId,
      parentId: null,
      flow: 'ansatt-employee',
    });
    const at201 = { ...target('201'), linkId: await linkOf('201') };
    const at202 = { ...target('202'), linkId: await linkOf('202') };
    const old = await acquireLease(db, { system: 'tidsbanken', holder: 'old', ttlMs: 60_000 });
    // Two records, each with an update claimed (on the wire) under the old term.
    const first = await upsertPendingUpdate(db, at201, {
      Tittel: 'old title',
      Mobil: '111',
    });
    const alone = await upsertPendingUpdate(db, at202, { Tittel: 'a' });
    const claimed = await claimCommands(db, old!, 10, 'old');
    expect(claimed.map((c) => c.id).sort()).toEqual([first, alone].sort());
    // Meanwhile a newer edit of record 201's title is queued.
    const newer = await upsertPendingUpdate(db, at201, {
      Tittel: 'new title',
    });
    expect(newer).not.toBe(first);

    const next = await acquireLease(db, {
      system: 'tidsbanken',
      holder: 'next',
      ttlMs: 60_000,
      force: true,
    });
    await requeueSendingCommands(db, next!);
    const rows = await db
      .selectFrom('outbound_commands')
      .select(['id', 'status', 'payload'])
      .where('id', 'in', [first, alone, newer])
      .execute();
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(first)!.status).toBe('superseded');
    expect(byId.get(newer)!.status).toBe('pending');
    expect(byId.get(newer)!.payload).toEqual({ fields: { Tittel: 'new title', Mobil: '111' } });
    expect(byId.get(alone)!.status).toBe('pending');

    // The same for one stranded claim put back by its own dispatcher.
    const reclaimed = await claimCommands(db, next!, 10, 'next');
    expect(reclaimed.map((c) => c.id).sort()).toEqual([alone, newer].sort());
    const again = reclaimed.find((c) => c.id === newer);
    const newest = await upsertPendingUpdate(db, at201, { Mobil: '222' });
    await requeueCommand(db, again!);
    const after = await db
      .selectFrom('outbound_commands')
      .select(['id', 'status', 'payload'])
      .where('id', 'in', [newer, newest])
      .execute();
    const afterById = new Map(after.map((r) => [r.id, r]));
    expect(afterById.get(newer)!.status).toBe('superseded');
    expect(afterById.get(newest)!.payload).toEqual({
      fields: { Tittel: 'new title', Mobil: '222' },
    });

    // And for a send told to wait (a change to read first, a 429) while a newer one is queued.
    const [third] = await claimCommands(db, next!, 10, 'next');
    expect(third!.id).toBe(newest);
    const last = await upsertPendingUpdate(db, at201, { Tittel: 'last title' });
    await markCommandRetry(db, third!, { message: 'wait' }, { afterMs: 1000, uncounted: true });
    const folded = await db
      .selectFrom('outbound_commands')
      .select(['id', 'status', 'payload'])
      .where('id', 'in', [newest, last])
      .execute();
    expect(folded.find((r) => r.id === newest)!.status).toBe('superseded');
    expect(folded.find((r) => r.id === last)!.payload).toEqual({
      fields: { Tittel: 'last title', Mobil: '222' },
    });
  });
});
