import { sql } from 'kysely';
import request from 'supertest';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { claimCommands, markCommandDone, requeueSendingCommands } from '../../src/db/commands.js';
import {
  acquireLease,
  listLeases,
  releaseLease,
  renewLease,
  type LeaseTerm,
} from '../../src/db/leases.js';
import { getPollerCursor, recordPollSuccess } from '../../src/db/poller-cursors.js';
import { FencedError } from '../../src/errors.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { seedEmployeePairs, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// Leadership leases (src/db/leases.ts) and the fencing they give: statements made under a
// term that is no longer the system's current one change nothing, on both databases.

let database: TestDatabase | undefined;
let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  await database?.close();
  h = undefined;
  database = undefined;
});

describe('leadership leases', () => {
  it('one holder at a time; a take-over raises the epoch, and the old term can no longer claim, complete, requeue or move a cursor', async () => {
    database = await createTestDatabase(inject('templateDatabase'));
    const db = database.db;
    const a = await acquireLease(db, { system: 'poweroffice', holder: 'a', ttlMs: 60_000 });
    expect(a).toBeDefined();
    expect(await acquireLease(db, { system: 'poweroffice', holder: 'b', ttlMs: 60_000 })).toBe(
      undefined,
    );
    // Another system's lease is its own.
    expect(await acquireLease(db, { system: 'tidsbanken', holder: 'b', ttlMs: 60_000 })).toEqual(
      expect.objectContaining({ system: 'tidsbanken' }),
    );
    expect(await renewLease(db, a!, 60_000)).toBe(true);

    await db
      .insertInto('outbound_commands')
      .values({
        system: 'poweroffice',
        operation: 'update',
        record_type: 'employee',
        record_id: '1',
        payload: JSON.stringify({ fields: { JobTitle: 'Sjef' } }),
      })
      .execute();
    const [claimed] = await claimCommands(db, a!, 10, 'dispatcher-a');
    expect(claimed).toBeDefined();
    await recordPollSuccess(
      db,
      {
        system: 'poweroffice',
        recordType: 'employee',
        cursor: '2026-01-01T00:00:00.000Z',
        fullRead: true,
      },
      a,
    );

    // A's lease runs out (it froze) and B takes over.
    await sql`update leases set expires_at = now() where system = 'poweroffice'`.execute(db);
    const b = await acquireLease(db, { system: 'poweroffice', holder: 'b', ttlMs: 60_000 });
    expect(BigInt(b!.epoch)).toBeGreaterThan(BigInt(a!.epoch));

    // A wakes up: nothing it does counts any more.
    expect(await renewLease(db, a!, 60_000)).toBe(false);
    expect(await markCommandDone(db, claimed!, 'sent', {})).toBe(false);
    expect(await requeueSendingCommands(db, a!)).toBe(0);
    await db
      .insertInto('outbound_commands')
      .values({
        system: 'poweroffice',
        operation: 'update',
        record_type: 'employee',
        record_id: '2',
        payload: JSON.stringify({ fields: { JobTitle: 'Sjef' } }),
      })
      .execute();
    expect(await claimCommands(db, a!, 10, 'dispatcher-a')).toEqual([]);
    await expect(
      recordPollSuccess(
        db,
        {
          system: 'poweroffice',
          recordType: 'employee',
          cursor: '2027-01-01T00:00:00.000Z',
          fullRead: false,
        },
        a,
      ),
    ).rejects.toBeInstanceOf(FencedError);
    expect((await getPollerCursor(db, 'poweroffice', 'employee'))?.cursor).toBe(
      '2026-01-01T00:00:00.000Z',
    );
    const statuses = await db
      .selectFrom('outbound_commands')
      .select(['record_id', 'status'])
      .orderBy('id')
      .execute();
    expect(statuses).toEqual([
      { record_id: '1', status: 'sending' },
      { record_id: '2', status: 'pending' },
    ]);

    // B, the current holder, requeues A's command and claims both.
    expect(await requeueSendingCommands(db, b!)).toBe(1);
    expect((await claimCommands(db, b!, 10, 'dispatcher-b')).map((c) => c.record_id)).toEqual([
      '1',
      '2',
    ]);

    const shown = (await listLeases(db)).find((l) => l.system === 'poweroffice');
    expect(shown).toMatchObject({ holder: 'b', epoch: b!.epoch, live: true });
    await releaseLease(db, b!);
    expect((await listLeases(db)).find((l) => l.system === 'poweroffice')?.live).toBe(false);
    // Released: anyone may take it at once.
    const c: LeaseTerm | undefined = await acquireLease(db, {
      system: 'poweroffice',
      holder: 'c',
      ttlMs: 60_000,
    });
    expect(c).toBeDefined();
  });

  it("a new leader's start-up that fails once is retried, shown by tbpo_leader_start_failures_total meanwhile, and the dispatcher then runs", async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1), start: false });
    const db = h.database.db;
    // The first UPDATE of outbound_commands fails: the dispatcher's start-up requeue, the
    // first step of a new holder (a sequence, so the count survives the rolled-back statement).
    await sql`create sequence start_up_updates`.execute(db);
    await sql`create function fail_first_update() returns trigger language plpgsql as $$
      begin
        if nextval('start_up_updates') = 1 then
          raise exception 'injected: the start-up step fails once';
        end if;
        return null;
      end $$`.execute(db);
    await sql`create trigger fail_first_update before update on outbound_commands
      for each statement execute function fail_first_update()`.execute(db);
    h.service.start();
    await waitFor('a failed start-up', () =>
      h!.logs.lines.some((l) => l.includes('leadership start-up failed; retrying')),
    );
    const metrics = await request(h.app).get('/metrics');
    expect(metrics.text).toMatch(/tbpo_leader_start_failures_total\{system="[a-z]+"\} 1/);
    await h.settle();
    const { poweroffice_id } = await db
      .selectFrom('links')
      .select('poweroffice_id')
      .executeTakeFirstOrThrow();
    h.tb.editAnsatt(1, { Tittel: 'Sjef' });
    await waitFor(
      'the title to reach PowerOffice',
      () => h!.po.getEmployee(Number(poweroffice_id))?.JobTitle === 'Sjef',
    );
    const after = await request(h.app).get('/metrics');
    expect(after.text).toContain('tbpo_leader_starting{system="poweroffice"} 0');
    expect(after.text).toContain('tbpo_leader{system="poweroffice"} 1');
  });
});
