import { sql } from 'kysely';
import pg from 'pg';
import { afterEach, describe, expect, it } from 'vitest';
import { startSyncHarness, seedEmployeePairs, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// Faults inside our own bookkeeping, with the real service on a real database: a database
// error while a failed send is recorded, and an unrelated advisory lock whose key collides
// with a record's.

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('dispatcher faults', () => {
  it('when recording a failed send fails in the database, nothing is left unhandled and the command is sent once the database takes writes again', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1) });
      await h.settle();
      const db = h.database.db;
      const { poweroffice_id } = await db
        .selectFrom('links')
        .select('poweroffice_id')
        .executeTakeFirstOrThrow();
      const employeeId = Number(poweroffice_id);
      // Any attempt to record an error on a command fails (a failover of PostgreSQL would
      // look the same to the dispatcher).
      await sql`create function refuse_command_errors() returns trigger language plpgsql as $$
        begin
          if new.last_error is distinct from old.last_error then
            raise exception 'injected: the database refuses this write';
          end if;
          return new;
        end $$`.execute(db);
      await sql`create trigger refuse_command_errors before update on outbound_commands
        for each row execute function refuse_command_errors()`.execute(db);
      const isPatch = (r: { method: string }) => r.method === 'PATCH';
      h.po.faults.inject(5, '500', { match: isPatch });
      h.tb.editAnsatt(1, { Tittel: 'Sjef' });
      // Settles either way: the rejection escapes (the bug), or the dispatcher logs it.
      await waitFor(
        'the failed bookkeeping',
        () =>
          unhandled.length > 0 ||
          h!.logs.lines.some((l) => l.includes('could not record the outcome of a send')),
      );
      // At least one send failed and its bookkeeping was refused. A failed send waits in the
      // outbox for its next attempt, so the faults still queued are no longer needed.
      expect(h.po.faults.remaining).toBeLessThan(5);
      h.po.faults.clear();
      await sql`drop trigger refuse_command_errors on outbound_commands`.execute(db);
      await waitFor(
        'the title to reach PowerOffice',
        () => h!.po.getEmployee(employeeId)?.JobTitle === 'Sjef',
      );
      await h.settle();
      const commands = await db.selectFrom('outbound_commands').select(['status']).execute();
      expect(commands.map((c) => c.status).sort()).toEqual(['sent']);
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  // PostgreSQL only: PGlite is one session, and advisory locks never block their own session.
  it.runIf(process.env.DATABASE_URL)(
    "a record's lock does not wait on an unrelated advisory lock with the same hash",
    async () => {
      h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1) });
      await h.settle();
      const other = new pg.Client({ connectionString: h.database.url });
      await other.connect();
      try {
        const { poweroffice_id } = await h.database.db
          .selectFrom('links')
          .select('poweroffice_id')
          .executeTakeFirstOrThrow();
        const employeeId = Number(poweroffice_id);
        await other.query('select pg_advisory_lock(hashtext($1))', ['tidsbanken/ansatt/1']);
        h.tb.editAnsatt(1, { Tittel: 'Sjef' });
        await waitFor(
          'the title to reach PowerOffice',
          () => h!.po.getEmployee(employeeId)?.JobTitle === 'Sjef',
        );
      } finally {
        await other.end();
      }
    },
  );
});
