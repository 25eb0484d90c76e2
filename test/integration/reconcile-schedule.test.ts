import { afterEach, describe, it } from 'vitest';
import { startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// The scheduled full reconcile (RECONCILE_INTERVAL_HOURS) catches edits the change filters
// never show. This test failed before the schedule existed.

let h: SyncHarness | undefined;
afterEach(async () => {
  await h?.close();
  h = undefined;
});

describe('scheduled full reconcile', () => {
  it('a PowerOffice address-only edit, which the change filter never shows, reaches Tidsbanken without any operator action', async () => {
    h = await startSyncHarness({
      // 3.6 s between runs.
      env: { RECONCILE_INTERVAL_HOURS: '0.001' },
      seed: (tb, po) => {
        tb.seedKunde({ Id: '72001', Navn: 'Adresse AS', Epost: 'adresse@as.no' });
        // Last changed two days ago, well before the poller's overlap window.
        const old = new Date(Date.now() - 2 * 86_400_000).toISOString().replace('Z', '0000+00:00');
        po.seedCustomer({
          Name: 'Adresse AS',
          EmailAddress: 'adresse@as.no',
          LastChangedDateTimeOffset: old,
        });
        // A newer record moves the poller's cursor past it.
        tb.seedKunde({ Id: '72002', Navn: 'Ny AS', Epost: 'ny@as.no' });
        po.seedCustomer({ Name: 'Ny AS', EmailAddress: 'ny@as.no' });
      },
    });
    const s = h;
    await s.settle();
    const { poweroffice_id } = await s.database.db
      .selectFrom('links')
      .select('poweroffice_id')
      .where('tidsbanken_id', '=', '72001')
      .executeTakeFirstOrThrow();
    // Only the address changes: LastChangedDateTimeOffset stays, so no poll sees it.
    s.po.editCustomer(Number(poweroffice_id), { MailAddress: { AddressLine1: 'Nygata 1' } });
    await waitFor(
      'the address to reach Tidsbanken',
      () => s.tb.getKunde('72001')?.Gateadresse === 'Nygata 1',
      45_000,
    );
  });
});
