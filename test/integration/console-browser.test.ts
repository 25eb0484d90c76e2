import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  pendingCommandFields,
  sendSignedWebhook,
  startSyncHarness,
  type SyncHarness,
} from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// The console in a real browser (Debian's chromium, driven by playwright-core) against the
// real app, a real database, the whole running service and both fake APIs. Also an axe-core
// accessibility check of every page. CONSOLE_SCREENSHOTS=<dir> saves the screenshots kept in
// docs/.

const TOKEN = 'browser-token-0123456789abcdef';
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOTS = process.env.CONSOLE_SCREENSHOTS;

let h: SyncHarness;
let server: Server;
let base: string;
let profile: string;
let context: BrowserContext;
let page: Page;
let axeSource: string;
const cspViolations: string[] = [];
let customerId: string;
let employee5: number;
let employee6: number;
let nullpunktId: number;
const PO_SECRET = 'whsec_YnJvd3Nlci13ZWJob29rLXNlY3JldC0wMTIzNDU2Nzg=';

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `No chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH.`,
    );
  }
  axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  h = await startSyncHarness({
    env: { ADMIN_TOKEN: TOKEN, POWEROFFICE_WEBHOOK_SECRET: PO_SECRET },
    seed(tb, po) {
      tb.seedKunde({ Id: 'K1', Navn: 'Fjord AS', Epost: 'post@fjord.no', Telefon: '22 00 00 01' });
      tb.seedKunde({ Id: 'K2', Navn: 'Fjord Holding AS', Epost: 'post@fjord.no' });
      tb.seedKunde({ Id: 'K9', Navn: 'Null\u0000punkt AS', Epost: 'post@nullpunkt.no' });
      nullpunktId = po.seedCustomer({ Name: 'Nullpunkt AS', EmailAddress: 'post@nullpunkt.no' })
        .Id as number;
      customerId = String(po.seedCustomer({ Name: 'Fjord AS', EmailAddress: 'post@fjord.no' }).Id);
      tb.seedAnsatt({ Id: 5, Fornavn: 'Kari', Etternavn: 'Nordmann', Epost: 'kari@firma.no' });
      employee5 = po.seedEmployee({ Number: 5, FirstName: 'Kari', LastName: 'Nordmann' })
        .Id as number;
      tb.seedAnsatt({ Id: 6, Fornavn: 'Per', Etternavn: 'Hansen', Epost: 'per@firma.no' });
      employee6 = po.seedEmployee({ Number: 6, FirstName: 'Per', LastName: 'Hansen' }).Id as number;
    },
  });
  await h.settle();
  server = h.app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve) => server.once('listening', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  profile = await mkdtemp(join(tmpdir(), 'tbpo-chromium-'));
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
  });
  page = context.pages()[0] ?? (await context.newPage());
  page.on('console', (message) => {
    if (/Content.Security.Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  // The only dialogs are the console's own "are you sure?" confirmations.
  page.on('dialog', (dialog) => void dialog.accept());
});

afterAll(async () => {
  await context?.close();
  if (profile !== undefined) await rm(profile, { recursive: true, force: true });
  await new Promise((resolve) => (server ? server.close(resolve) : resolve(undefined)));
  await h?.close();
});

async function shot(name: string): Promise<void> {
  if (SCREENSHOTS !== undefined) {
    await page.screenshot({ path: join(SCREENSHOTS, `console-${name}.png`), fullPage: true });
  }
}

/** axe-core on the current page: no serious or critical violation. */
async function expectAccessible(): Promise<void> {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await (
      globalThis as unknown as {
        axe: { run(): Promise<{ violations: { id: string; impact: string; nodes: unknown[] }[] }> };
      }
    ).axe.run();
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.length }));
  });
  expect(
    violations.filter((v) => v.impact === 'serious' || v.impact === 'critical'),
    `${page.url()}`,
  ).toEqual([]);
}

describe('the console in a browser', () => {
  it('logs in with the admin token and shows both systems on the overview', async () => {
    await page.goto(`${base}/console`);
    expect(new URL(page.url()).pathname).toBe('/console/login');
    await expectAccessible();
    await shot('login');
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.waitForURL(`${base}/console`);
    expect(page.url()).not.toContain(TOKEN);
    const cookies = await context.cookies();
    expect(cookies).toContainEqual(
      expect.objectContaining({ name: 'tbpo_console', httpOnly: true, sameSite: 'Strict' }),
    );
    expect(await page.evaluate('document.cookie')).toBe('');
    await expect(page.locator('[data-system="tidsbanken"] h3').textContent()).resolves.toBe(
      'Tidsbanken',
    );
    await expect(page.locator('[data-system="poweroffice"] h3').textContent()).resolves.toBe(
      'PowerOffice Go',
    );
    const leader = await page.locator('[data-system="poweroffice"]').textContent();
    expect(leader).toContain('this replica');
    // The morning's to-do list names what needs a person, each a link to where to act.
    const attention = page.getByRole('region', { name: 'Needs attention' });
    await expect(
      attention.getByRole('link', { name: /not linked because several match/ }).count(),
    ).resolves.toBe(1);
    await expect(
      attention.getByRole('link', { name: /changes? not synced/ }).count(),
    ).resolves.toBe(1);
    await expectAccessible();
  });

  it('resolves an ambiguous match with one click and shows the link', async () => {
    await page.goto(`${base}/console/conflicts?kind=ambiguous_match`);
    await expectAccessible();
    await shot('conflicts');
    await page
      .getByRole('button', {
        name: `Link these two: Tidsbanken kunde K1 and PowerOffice customer ${customerId}`,
      })
      .first()
      .click();
    await page.getByRole('status').filter({ hasText: 'Linked.' }).waitFor();
    await page.goto(`${base}/console/links?search=K1`);
    const row = page.getByRole('row').filter({ hasText: 'kunde-customer' });
    await expect(row.textContent()).resolves.toContain('manual');
    await expect(row.textContent()).resolves.toContain(`PO customer ${customerId}`);
    await expectAccessible();
    await shot('links');
    // The link syncs: the Customer gets the Kunde's phone number.
    await waitFor('the first sync of the manual link', () =>
      h.po.getCustomer(Number(customerId))?.PhoneNumber === '22 00 00 01' ? true : undefined,
    );
  });

  it('replays a command the vendor refused: it leaves the dead list and the fake API receives the write', async () => {
    const archives = () =>
      h.po.requests.filter(
        (r) =>
          r.method === 'PATCH' &&
          r.path.endsWith(`/Employees/${employee5}`) &&
          JSON.stringify(r.body).includes('/IsArchived'),
      );
    // An open balance on Kari's sub-ledger: PowerOffice refuses to archive her Employee (400),
    // and the real dispatcher puts the write on the dead list.
    h.po.setLedgerBalance(employee5, 1250);
    h.tb.editAnsatt(5, { Aktiv: false });
    const replay = page.getByRole('button', { name: /^Replay command / });
    await waitFor('the refused archive on the dead list', async () => {
      await page.goto(`${base}/console/dead`);
      return (await replay.count()) === 1;
    });
    expect(archives().map((r) => r.status)).toEqual([400]);
    const row = page.getByRole('row').filter({ has: replay });
    await expect(row.textContent()).resolves.toContain(`PO employee ${employee5}`);
    await expect(row.textContent()).resolves.toContain('ledger balances');
    const name = (await replay.getAttribute('aria-label'))!;
    await expectAccessible();
    await shot('dead');

    // The balance is settled in PowerOffice; the operator replays the command.
    h.po.setLedgerBalance(employee5, 0);
    await page.getByRole('button', { name }).click();
    await page.getByRole('status').filter({ hasText: 'queued again' }).waitFor();
    expect(await page.getByRole('button', { name }).count()).toBe(0);
    await waitFor('the replayed archive at the fake', () =>
      h.po.getEmployee(employee5)?.IsArchived === true ? true : undefined,
    );
    expect(archives().map((r) => r.status)).toEqual([400, 200]);
  });

  it('a record set aside leaves the dead list by itself once it is fixed at its source, and links', async () => {
    // K9 could not be stored (a NUL character in its name): set aside as a dead event.
    await waitFor('the unreadable Kunde on the dead list', async () => {
      await page.goto(`${base}/console/dead`);
      return (await page.getByRole('row').filter({ hasText: 'kunde K9' }).count()) === 1;
    });
    // Fixed in Tidsbanken: the next read of it resolves the rejection, no retry needed.
    h.tb.editKunde('K9', { Navn: 'Nullpunkt AS' });
    await waitFor('K9 off the dead list', async () => {
      await page.goto(`${base}/console/dead`);
      return (await page.getByRole('row').filter({ hasText: 'kunde K9' }).count()) === 0;
    });
    await waitFor('K9 read again and linked', async () => {
      await page.goto(`${base}/console/links?search=K9`);
      return (await page.getByRole('row').filter({ hasText: 'TB kunde K9' }).count()) === 1;
    });
  });

  it('retries a dead inbox event, then all the others at once: the worker completes them', async () => {
    // The integration loses its Customer privilege: the GET completing a thin webhook is
    // refused (403) and the event goes dead.
    const granted = h.po.privileges;
    h.po.privileges = granted.filter((p) => !p.startsWith('Customer_'));
    h.po.editCustomer(Number(customerId), { PhoneNumber: '22 00 00 02' });
    h.po.editCustomer(nullpunktId, { PhoneNumber: '33 00 00 03' });
    for (const id of [Number(customerId), nullpunktId]) {
      await sendSignedWebhook(h, 'poweroffice', PO_SECRET, {
        type: 'customer.updated',
        timestamp: new Date().toISOString(),
        data: { Id: id },
      });
    }
    const retryOne = page.getByRole('button', { name: /^Retry event / });
    await waitFor('both thin events on the dead list', async () => {
      await page.goto(`${base}/console/dead`);
      return (await retryOne.count()) === 2;
    });
    await expectAccessible();
    h.po.privileges = granted;

    const name = (await retryOne.first().getAttribute('aria-label'))!;
    await page.getByRole('button', { name }).click();
    await page.getByRole('status').filter({ hasText: 'The event is queued again.' }).waitFor();
    expect(await page.getByRole('button', { name }).count()).toBe(0);
    await page.getByRole('button', { name: 'Retry all' }).click();
    await page.getByRole('status').filter({ hasText: '1 event(s) queued again' }).waitFor();
    expect(await retryOne.count()).toBe(0);
    await waitFor('both changes in Tidsbanken', () =>
      h.tb.getKunde('K1')?.Telefon === '22 00 00 02' &&
      h.tb.getKunde('K9')?.Telefon === '33 00 00 03'
        ? true
        : undefined,
    );
    // The poller may carry a change over before the worker completes its retried event.
    const events = await waitFor('both retried events processed', async () => {
      const rows = await h.database.db
        .selectFrom('inbound_events')
        .select(['status', 'attempts'])
        .where('source', '=', 'poweroffice')
        .where('is_thin', '=', false)
        .where('last_error', 'like', '%403%')
        .execute();
      return rows.every((r) => r.status !== 'pending') ? rows : undefined;
    });
    expect(events).toEqual([
      { status: 'done', attempts: 1 },
      { status: 'done', attempts: 1 },
    ]);
  });

  it('drops one refused command and replays the others at once', async () => {
    // Employee writes refused (403: read-only privilege): two edits go dead.
    const granted = h.po.privileges;
    h.po.privileges = [...granted.filter((p) => !p.startsWith('Employee_')), 'Employee_Read'];
    h.tb.editAnsatt(5, { Tittel: 'Regnskap' });
    h.tb.editAnsatt(6, { Tittel: 'Lager' });
    const replayOne = page.getByRole('button', { name: /^Replay command / });
    await waitFor('both refused writes on the dead list', async () => {
      await page.goto(`${base}/console/dead`);
      return (await replayOne.count()) === 2;
    });
    h.po.privileges = granted;
    const patches = (id: number) =>
      h.po.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith(`/Employees/${id}`));
    const sent5 = patches(employee5).length;

    const drop = page
      .getByRole('row')
      .filter({ hasText: `PO employee ${employee5}` })
      .getByRole('button', { name: /^Drop command / });
    await drop.click();
    await page.getByRole('status').filter({ hasText: 'dropped' }).waitFor();
    expect(await replayOne.count()).toBe(1);
    await page.getByRole('button', { name: 'Replay all' }).click();
    await page.getByRole('status').filter({ hasText: '1 command(s) queued again' }).waitFor();
    expect(await replayOne.count()).toBe(0);
    await waitFor('the replayed write at the fake', () =>
      h.po.getEmployee(employee6)?.JobTitle === 'Lager' ? true : undefined,
    );
    // The dropped one was never sent again.
    await h.settle();
    expect(patches(employee5).length).toBe(sent5);
    expect(h.po.getEmployee(employee5)?.JobTitle).not.toBe('Regnskap');
  });

  it('pauses a flow: an edit is not sent until the flow is resumed', async () => {
    await page.goto(`${base}/console/flows`);
    await expectAccessible();
    // By keyboard: the Pause button of ansatt-employee, then Enter.
    await page.getByRole('button', { name: 'Pause ansatt-employee' }).focus();
    await page.keyboard.press('Enter');
    await page.getByRole('status').filter({ hasText: 'Flow paused' }).waitFor();
    await shot('flows');
    const sentBefore = h
      .writes(h.po)
      .filter((w) => w.path.endsWith(`/Employees/${employee6}`)).length;
    // Two edits while paused: they wait as one command.
    h.tb.editAnsatt(6, { Tittel: 'Innkjøper' });
    await waitFor('the edit queued as a waiting command', async () =>
      (await pendingCommandFields(h, employee6)).some((f) => f.JobTitle === 'Innkjøper'),
    );
    h.tb.editAnsatt(6, { Mobil: '90 00 00 06' });
    // Another flow's edit is delivered meanwhile: the dispatcher runs, and leaves this one.
    h.tb.editKunde('K1', { Telefon: '22 00 00 07' });
    await waitFor('the other flow delivered', () =>
      h.po.getCustomer(Number(customerId))?.PhoneNumber === '22 00 00 07' ? true : undefined,
    );
    await waitFor('both edits in one waiting command', async () => {
      const fields = await pendingCommandFields(h, employee6);
      return fields.length === 1 && fields[0]!.PhoneNumber === '90 00 00 06';
    });
    expect(h.writes(h.po).filter((w) => w.path.endsWith(`/Employees/${employee6}`)).length).toBe(
      sentBefore,
    );
    expect(h.po.getEmployee(employee6)?.JobTitle).not.toBe('Innkjøper');

    await page.getByRole('button', { name: 'Resume ansatt-employee' }).click();
    await page.getByRole('status').filter({ hasText: 'Flow resumed' }).waitFor();
    await waitFor('the waiting write delivered', () =>
      h.po.getEmployee(employee6)?.JobTitle === 'Innkjøper' ? true : undefined,
    );
    // One write carried both edits.
    const sent = h.writes(h.po).filter((w) => w.path.endsWith(`/Employees/${employee6}`));
    expect(sent.length).toBe(sentBefore + 1);
    expect(h.po.getEmployee(employee6)?.PhoneNumber).toBe('90 00 00 06');
  });

  it('starts a reconcile and the progress bar reaches done', async () => {
    await page.goto(`${base}/console`);
    await page.getByRole('button', { name: 'Start a reconcile' }).click();
    await page.getByRole('status').filter({ hasText: 'Reconcile started' }).waitFor();
    // The page's own script moves the bar; read what it shows.
    const box = page.locator('#reconcile');
    await waitFor(
      'the progress bar at done',
      async () =>
        (await box.getAttribute('data-status')) === 'done' &&
        (await box.locator('progress').getAttribute('value')) === '100',
      60_000,
    );
    await expect(page.locator('[data-reconcile-label]').textContent()).resolves.toMatch(/^Done/);
    await expectAccessible();
    await shot('overview');
  });

  it("shows a record's timeline", async () => {
    await page.goto(`${base}/console/records/poweroffice/employee/${employee6}`);
    const timeline = await page
      .getByRole('table', { name: /Events, decisions and commands/ })
      .textContent();
    expect(timeline).toContain('received');
    expect(timeline).toContain('update command');
    await expectAccessible();
    await shot('record');
  });

  it('unlinks a pair from the links page (held apart, shown in its timeline) and dismisses a conflict', async () => {
    await page.goto(`${base}/console/links?search=Kari`);
    const unlink = page.getByRole('button', { name: /^Unlink link / });
    expect(await unlink.count()).toBe(1);
    await unlink.click();
    await page.getByRole('status').filter({ hasText: 'Unlinked.' }).waitFor();
    // An edit and a poll later the merge rule has not linked them again.
    h.tb.editAnsatt(5, { Mobil: '90 00 00 05' });
    await h.pollCycle();
    await h.settle();
    const active = await h.database.db
      .selectFrom('links')
      .select('id')
      .where('flow', '=', 'ansatt-employee')
      .where('tidsbanken_id', '=', '5')
      .where('unlinked_at', 'is', null)
      .execute();
    expect(active).toEqual([]);
    await page.goto(`${base}/console/records/tidsbanken/ansatt/5`);
    await expect(
      page.getByRole('table', { name: /Events, decisions and commands/ }).textContent(),
    ).resolves.toMatch(/unlink/i);

    await page.goto(`${base}/console/conflicts`);
    const dismiss = page.getByRole('button', { name: /^Dismiss conflict / });
    const before = await dismiss.count();
    expect(before).toBeGreaterThan(0);
    await dismiss.first().click();
    await page.getByRole('status').filter({ hasText: 'Conflict dismissed.' }).waitFor();
    expect(await dismiss.count()).toBe(before - 1);
    await expectAccessible();
  });

  it('fits a phone screen without sideways scrolling', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    for (const path of [
      '/console',
      '/console/links',
      '/console/flows',
      '/console/conflicts?status=',
      '/console/dead',
      `/console/records/poweroffice/employee/${employee5}`,
    ]) {
      await page.goto(`${base}${path}`);
      const overflow = await page.evaluate<number>(
        'document.documentElement.scrollWidth - document.documentElement.clientWidth',
      );
      expect(overflow, path).toBeLessThanOrEqual(0);
    }
    await shot('phone');
    await page.setViewportSize({ width: 1280, height: 900 });
  });

  it('logs out, and no page broke the Content-Security-Policy', async () => {
    await page.goto(`${base}/console`);
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(`${base}/console/login`);
    await page.goto(`${base}/console/dead`);
    expect(new URL(page.url()).pathname).toBe('/console/login');
    expect(cspViolations).toEqual([]);
  });
});
