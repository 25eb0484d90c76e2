import { afterEach, describe, expect, it } from 'vitest';
import { secretsOf } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { LogCapture } from '../helpers/app.js';
import { seedEmployeePairs, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// A restart after both sides of a pair were edited while no service ran (docs/ARCHITECTURE.md
// "Outbox and dispatcher"). The Tidsbanken edit is older, the PowerOffice one newer, and the
// restarted service reads Tidsbanken first (PowerOffice's first poll is slow). The Tidsbanken
// edit queues an update to PowerOffice; it must wait until PowerOffice has been read and its
// newer edit processed, so the conflict policy (newest wins) decides, and the older value is
// never written over the newer one.

const PAIRS = 3;

let h: SyncHarness | undefined;
let second: Runtime | undefined;
afterEach(async () => {
  await second?.close();
  second = undefined;
  await h?.close();
  h = undefined;
});

describe('a restart after edits on both sides of a pair', () => {
  it('does not write the side read first over the newer edit of the side read later', async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, PAIRS) });
    const { tb, po, database } = h;
    await h.settle();
    const employeeId = [...po.employees.values()].find((e) => e.Number === 2)!.Id as number;

    // The service goes away; meanwhile a Tidsbanken user edits the title, then a PowerOffice
    // user edits it too (a newer edit).
    await h.service.stop();
    tb.editAnsatt(2, { Tittel: 'old from Tidsbanken' });
    await new Promise((r) => setTimeout(r, 50));
    po.editEmployee(employeeId, { JobTitle: 'newer from PowerOffice' });

    // PowerOffice's employee list answers slowly: Tidsbanken is read and processed first.
    po.faults.inject(1, 'slow', {
      delayMs: 1500,
      match: (r) => r.method === 'GET' && /employees/i.test(r.path),
    });
    const mark = po.requests.length;
    const logs = new LogCapture();
    second = await createRuntime({
      config: h.config,
      logger: createLogger({ level: 'info', secrets: secretsOf(h.config), destination: logs }),
      // The harness closes the database at the end.
      database: { ...database, close: () => Promise.resolve() },
      databaseUrl: database.url,
      clientOptions: { timeoutMs: 5000, backoffBaseMs: 20, credentialsRetryMs: 500 },
      workerIdleMs: 30,
    });
    second.service.start();

    await waitFor(
      'both sides to hold the newer edit',
      () =>
        tb.getAnsatt(2)?.Tittel === 'newer from PowerOffice' &&
        po.getEmployee(employeeId)?.JobTitle === 'newer from PowerOffice',
      30_000,
    );
    const patches = po.requests
      .slice(mark)
      .filter((r) => r.method === 'PATCH' && JSON.stringify(r.body).includes('old from'));
    expect(patches).toEqual([]);
    // And it stays so: after a poll cycle of every poller of the restarted service, begun
    // now, nothing is queued or in flight that could write the old value later.
    const running = second.service.pollers.filter((p) => p.isRunning);
    expect(running.length).toBeGreaterThan(0);
    const marks = running.map((p) => p.readsStarted);
    await waitFor(
      'a poll cycle and an empty outbox',
      async () =>
        running.every((p, i) => p.readsCompleted > marks[i]!) &&
        (await database.db
          .selectFrom('outbound_commands')
          .select('id')
          .where('status', 'in', ['pending', 'sending'])
          .executeTakeFirst()) === undefined,
      30_000,
    );
    const oldValueWrites = po.requests
      .slice(mark)
      .filter((r) => r.method === 'PATCH' && JSON.stringify(r.body).includes('old from'));
    expect(oldValueWrites).toEqual([]);
    expect(po.getEmployee(employeeId)?.JobTitle).toBe('newer from PowerOffice');
    expect(tb.getAnsatt(2)?.Tittel).toBe('newer from PowerOffice');
  }, 60_000);

  it('does not send an update again when the target, read since, already shows its values', async () => {
    h = await startSyncHarness({ seed: (tb, po) => seedEmployeePairs(tb, po, PAIRS) });
    const { tb, po, database } = h;
    await h.settle();
    const employeeId = [...po.employees.values()].find((e) => e.Number === 1)!.Id as number;
    // The PATCH lands but its answer never comes: the outcome is unknown to the dispatcher,
    // which tries again after its backoff; meanwhile the poller reads the Employee.
    po.faults.inject(1, 'timeout', {
      process: true,
      match: (r) => r.method === 'PATCH' && r.path.endsWith(`/${employeeId}`),
    });
    tb.editAnsatt(1, { Tittel: 'landed once' });
    await waitFor(
      'the command to be recorded',
      async () =>
        (await database.db
          .selectFrom('outbound_commands')
          .select('status')
          .where('system', '=', 'poweroffice')
          .where('record_id', '=', String(employeeId))
          .where('status', '=', 'sent')
          .executeTakeFirst()) !== undefined,
      30_000,
    );
    await h.settle();
    const patches = po.requests.filter(
      (r) => r.method === 'PATCH' && JSON.stringify(r.body).includes('landed once'),
    );
    expect(patches).toHaveLength(1);
    expect(po.getEmployee(employeeId)?.JobTitle).toBe('landed once');
    expect(h.logs.lines.some((l) => l.includes('"decision":"already_in_place"'))).toBe(true);
  }, 60_000);
});
