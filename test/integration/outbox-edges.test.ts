import { afterEach, describe, expect, it } from 'vitest';
import { seedEmployeePairs, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// The outbox at its edges: commands that have to wait, retried writes, and the bookkeeping of a
// command's status. Each case once sent a stale value, undid an edit or sent a write twice;
// each test failed before its fix.

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

const isPatch = (r: { method: string }) => r.method === 'PATCH';

async function linkedEmployeeId(s: SyncHarness): Promise<number> {
  const { poweroffice_id } = await s.database.db
    .selectFrom('links')
    .select('poweroffice_id')
    .where('flow', '=', 'ansatt-employee')
    .executeTakeFirstOrThrow();
  return Number(poweroffice_id);
}

describe('command status changes', () => {
  it('a write whose answer cannot be stored is sent once: the sent command does not go back to pending', async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, 1) });
    const s = h;
    await s.settle();
    const employeeId = await linkedEmployeeId(s);
    // An unmapped field of the employee holds a NUL character: every answer about it (the
    // PATCH's too) carries a value PostgreSQL cannot store. Its change time stays, so the
    // poller does not read it again.
    const current = s.po.getEmployee(employeeId)!;
    s.po.editEmployee(employeeId, {
      Initials: 'A\u0000B',
      LastChangedDateTimeOffset: current.LastChangedDateTimeOffset,
    });
    s.po.clearRequests();
    s.tb.editAnsatt(1, { Tittel: 'Sjef' });
    await waitFor(
      'the title to reach PowerOffice',
      () => s.po.getEmployee(employeeId)?.JobTitle === 'Sjef',
    );
    await s.settle();
    expect(s.writes(s.po).filter(isPatch)).toHaveLength(1);
    const statuses = await s.database.db.selectFrom('outbound_commands').select('status').execute();
    expect(statuses.map((c) => c.status)).toEqual(['sent']);
  });
});
