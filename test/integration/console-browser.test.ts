import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
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

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `No chromium at ${CHROMIUM}: install it (apt-get install -y chromium) or set CHROMIUM_PATH.`,
    );
  }
  axeSource = await readFile(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');
  h = await startSyncHarness({
    env: { ADMIN_TOKEN: TOKEN },
    seed(tb, po) {
      tb.seedKunde({ Id: 'K1', Navn: 'Fjord AS', Epost: 'post@fjord.no', Telefon: '22 00 00 01' });
      tb.seedKunde({ Id: 'K2', Navn: 'Fjord Holding AS', Epost: 'post@fjord.no' });
      tb.seedKunde({ Id: 'K9', Navn: 'Null\u0000punkt AS', Epost: 'post@nullpunkt.no' });
      po.seedCustomer({ Name: 'Nullpunkt AS', EmailAddress: 'post@nullpunkt.no' });
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

  it('retries every dead inbox event at once: a record fixed at its source is read again and linked', async () => {
    // K9 could not be stored (a NUL character in its name): set aside as a dead event.
    const retryAll = page.getByRole('button', { name: 'Retry all' });
    await waitFor('the unreadable Kunde on the dead list', async () => {
      await page.goto(`${base}/console/dead`);
      return (await page.getByRole('row').filter({ hasText: 'kunde K9' }).count()) === 1;
    });
    // Fixed in Tidsbanken; the operator retries every dead event.
    h.tb.kunder.get('K9')!.Navn = 'Nullpunkt AS';
    await retryAll.click();
    await page.getByRole('status').filter({ hasText: '1 event(s) queued again' }).waitFor();
    expect(await page.getByRole('row').filter({ hasText: 'kunde K9' }).count()).toBe(0);
    await waitFor('K9 read again and linked', async () => {
      await page.goto(`${base}/console/links?search=K9`);
      return (await page.getByRole('row').filter({ hasText: 'TB kunde K9' }).count()) === 1;
    });
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
    h.tb.editAnsatt(6, { Tittel: 'Innkjøper' });
    await waitFor('the edit queued as a waiting command', async () => {
      const rows = await h.database.db
        .selectFrom('outbound_commands')
        .select('payload')
        .where('record_id', '=', String(employee6))
        .where('status', '=', 'pending')
        .execute();
      return rows.some(
        (r) => (r.payload.fields as Record<string, unknown>)?.JobTitle === 'Innkjøper',
      );
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
