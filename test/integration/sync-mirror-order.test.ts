import { afterEach, describe, expect, it } from 'vitest';
import { insertInboundEvent, writeFeedbackEventId } from '../../src/db/inbound-events.js';
import { startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';

// Which of two states of one record is the newer one, when the source's millisecond
// timestamps tie. Seen in the two-replica test under load: our PUT of an Ansatt landed at
// 12:00:00.123, a user set its Poststed in the same millisecond, the poller (or a webhook)
// delivered the user's state before the dispatcher fed its PUT result back, and the PUT
// result — same SistEndretDato, old Poststed — replaced it in the mirror and was synced as a
// Tidsbanken edit: PATCH MailAddress/City null. The user's edit was lost on both sides.

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('mirror order on equal source timestamps', () => {
  it('our write read back never hides a state with the same timestamp; a read does replace it', async () => {
    h = await startSyncHarness({
      seed: (tb, po) => {
        tb.seedAnsatt({ Id: 5, Fornavn: 'Kari', Etternavn: 'Nordmann', Epost: 'kari@firma.no' });
        po.seedEmployee({
          Number: 5,
          FirstName: 'Kari',
          LastName: 'Nordmann',
          EmailAddress: 'kari@firma.no',
        });
      },
      env: { POLL_INTERVAL_MS: '0' },
    });
    const { tb, po, database } = h;
    await h.settle();
    const link = await database.db
      .selectFrom('links')
      .selectAll()
      .where('flow', '=', 'ansatt-employee')
      .executeTakeFirstOrThrow();
    const employeeId = Number(link.poweroffice_id);
    po.clearRequests();
    const stamp = '2030-01-01T12:00:00.123Z';
    // A Tidsbanken state of Ansatt 5 arriving in the inbox (a poll, or our write read back).
    const arrives = (eventId: string, payload: Record<string, unknown>) =>
      insertInboundEvent(database.db, {
        source: 'tidsbanken',
        origin: 'poller',
        eventId,
        eventType: 'ansatt.updated',
        recordType: 'ansatt',
        recordId: '5',
        payload,
        isThin: false,
        occurredAt: stamp,
      });

    // The user's edit, stamped with the very millisecond of our PUT result (below).
    const before = tb.getAnsatt(5)!;
    const edited = tb.editAnsatt(5, { Poststed: 'Bergen', SistEndretDato: stamp });
    // It arrives first (a poll or a webhook); our PUT's result, fed back by the dispatcher,
    // arrives after it.
    await arrives(`test-read-${stamp}`, edited);
    await arrives(writeFeedbackEventId('999', '5', stamp), {
      ...before,
      Poststed: '',
      SistEndretDato: stamp,
    });
    await h.settle();

    const mirrored = await database.db
      .selectFrom('records')
      .select('data')
      .where('system', '=', 'tidsbanken')
      .where('record_id', '=', '5')
      .executeTakeFirstOrThrow();
    expect((mirrored.data as { Poststed: string }).Poststed).toBe('Bergen');
    expect(po.getEmployee(employeeId)!.MailAddress).toMatchObject({ City: 'Bergen' });
    expect(h.writes(po)).toEqual([
      {
        method: 'PATCH',
        path: `/v2/Employees/${employeeId}`,
        body: [{ op: 'replace', path: '/MailAddress/City', value: 'Bergen' }],
      },
    ]);

    // A plain read with the same timestamp does replace the held state (of two reads, the
    // later one is the newer): here the user's next edit in that millisecond.
    po.clearRequests();
    const again = tb.editAnsatt(5, { Poststed: 'Oslo', SistEndretDato: stamp });
    await arrives(`test-read-2-${stamp}`, again);
    await h.settle();
    expect(po.getEmployee(employeeId)!.MailAddress).toMatchObject({ City: 'Oslo' });
  });
});
