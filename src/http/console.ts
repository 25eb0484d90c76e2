import { randomBytes } from 'node:crypto';
import express, { Router, type ErrorRequestHandler, type Request, type Response } from 'express';
import { z } from 'zod';
import { FLOW_IDS, type Config } from '../config.js';
import {
  actionButton,
  errorPage,
  filterForm,
  FLOW_CHOICES,
  hrefWith,
  json,
  loginPage,
  overviewBody,
  page,
  pager,
  recordLink,
  recordSummary,
  selectField,
  SYSTEM_CHOICES,
  table,
  when,
  type Layout,
  type ReconcileView,
  type SystemView,
} from '../console/pages.js';
import { CONSOLE_CSS, CONSOLE_JS } from '../console/assets.js';
import { html, type Html } from '../console/html.js';
import { listCommands } from '../db/commands.js';
import { listConflicts } from '../db/conflicts.js';
import { listLinks, listUnlinkedRecords } from '../db/links.js';
import { listLeases, type LeaseStatus } from '../db/leases.js';
import { readOpsSnapshot } from '../db/ops-snapshot.js';
import { getCurrentReconcileRun } from '../db/reconcile-runs.js';
import {
  deleteConsoleSession,
  findConsoleSession,
  insertConsoleSession,
} from '../db/console-sessions.js';
import type { Db } from '../db/database.js';
import { listInboundEvents } from '../db/inbound-events.js';
import { getMirrorRecord } from '../db/records.js';
import type { ReconcileRunRow, SystemName } from '../db/schema.js';
import { AppError, NotConfiguredError, UnauthorizedError, ValidationError } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import { recordTypesOf } from '../record-types.js';
import { flowById, type FlowDefinition } from '../sync/flows.js';
import * as operator from '../sync/operator.js';
import type { Reconciler } from '../sync/reconcile.js';
import {
  listFlows,
  parse,
  readRecordHistory,
  toCommandDto,
  toConflictDto,
  toEventDto,
  toLinkDto,
  toRecordDto,
} from './admin.js';
import { adminToken, sameSecret, sha256 } from './admin-token.js';
import { cursorSchema, encodeCursor, keyCursorSchema, pageOf } from './paging.js';

// The operator's console (docs/console.md): server-rendered pages over the same
// queries and operator actions as the admin API. docs/console.md explains the choices.
//
// Log-in: ADMIN_TOKEN, posted once, opens a session whose random id lives only in an
// HttpOnly, SameSite=Strict cookie scoped to /console (never in a URL or in script-readable
// storage); the database keeps a hash of it, so log-out ends it on every replica. Every state
// change is a POST carrying the session's CSRF token, and a cross-site Origin is refused.

export interface SystemStatus {
  system: SystemName;
  configured: boolean;
  /** Whether this replica holds the system's dispatcher and pollers. */
  leader: boolean | undefined;
  /** Since when and why the system refuses our credentials (its writes and polls wait). */
  credentials?: { since: Date; message: string } | undefined;
}

export interface ConsoleDeps {
  config: Readonly<Config>;
  db: Db;
  logger: Logger;
  reconciler?: Reconciler | undefined;
  /** This replica's view of each system; without it the overview says only what config says. */
  systemStatus?: (() => SystemStatus[]) | undefined;
}

const SYSTEMS = ['tidsbanken', 'poweroffice'] as const;

/** A filter field: its empty choice ("all flows", "both") means not given. */
function choice<const T extends readonly [string, ...string[]]>(values: T) {
  return z
    .enum(values)
    .or(z.literal(''))
    .optional()
    .transform((v) => (v === '' ? undefined : v));
}

const idParam = z.string().regex(/^[0-9]{1,18}$/, { error: 'must be an id' });
const backForm = z.object({ csrf: z.string(), back: z.string().optional() });

const COOKIE = 'tbpo_console';
const SESSION_SECONDS = 12 * 60 * 60;

interface Session {
  idHash: string;
  csrf: string;
}

declare module 'express-serve-static-core' {
  interface Locals {
    consoleSession?: Session;
  }
}

const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

function cookieOf(req: Request, name: string): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function sessionCookie(req: Request, value: string, maxAge: number): string {
  return [
    `${COOKIE}=${value}`,
    'Path=/console',
    'HttpOnly',
    'SameSite=Strict',
    `Max-Age=${maxAge}`,
    ...(req.secure ? ['Secure'] : []),
  ].join('; ');
}

function fieldOf(req: Request, name: string): string {
  const body: unknown = req.body;
  if (body === null || typeof body !== 'object') return '';
  const value = (body as Record<string, unknown>)[name];
  return typeof value === 'string' ? value : '';
}

/** Only paths inside the console are followed after an action (no open redirect). */
function backTo(value: unknown, fallback: string): string {
  return typeof value === 'string' &&
    /^\/console(\/[^\s\\]*)?(\?[^\s\\]*)?$/.test(value) &&
    !value.startsWith('//')
    ? value
    : fallback;
}

function withNotice(path: string, notice: string): string {
  const url = new URL(path, 'http://console.invalid');
  url.searchParams.set('notice', notice);
  return `${url.pathname}${url.search}`;
}

const NOTICES: Record<string, string> = {
  linked: 'Linked. The two records are in sync from now on.',
  unlinked: 'Unlinked. The two records are held apart until someone links them by hand.',
  dismissed: 'Conflict dismissed.',
  replayed: 'The command is queued again.',
  dropped: 'The command was dropped; it will not be sent.',
  retried: 'The event is queued again.',
  paused: 'Flow paused: its writes wait until it is resumed.',
  resumed: 'Flow resumed: its waiting writes are being sent.',
  reconcile: 'Reconcile started.',
};

export function consoleRouter(deps: ConsoleDeps): Router {
  const router = Router();
  guardRequests(router);
  sessionRoutes(router, deps);
  overviewPages(router, deps);
  linksPages(router, deps);
  conflictsPages(router, deps);
  deadLetterPages(router, deps);
  flowsPages(router, deps);
  recordPages(router, deps);
  router.use(consoleErrors(deps.logger));
  return router;
}

/** Security headers, the static assets, the form parser and the cross-site check. */
function guardRequests(router: Router): void {
  router.use((_req, res, next) => {
    res.setHeader('Content-Security-Policy', CSP);
    res.setHeader('Cache-Control', 'no-store');
    res.setHeader('X-Frame-Options', 'DENY');
    // The API's no-referrer makes a browser send `Origin: null` with a form post, which the
    // CSRF check below refuses; same-origin keeps the origin and still sends nothing away.
    res.setHeader('Referrer-Policy', 'same-origin');
    next();
  });

  router.get('/assets/console.css', (_req, res) => {
    res.type('text/css').setHeader('Cache-Control', 'no-cache');
    res.send(CONSOLE_CSS);
  });
  router.get('/assets/console.js', (_req, res) => {
    res.type('text/javascript').setHeader('Cache-Control', 'no-cache');
    res.send(CONSOLE_JS);
  });

  router.use(express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 50 }));

  // A state change from another site is refused even before the token is checked.
  router.use((req, _res, next) => {
    if (req.method !== 'POST') return next();
    const origin = req.headers.origin;
    if (origin !== undefined && origin !== 'null') {
      let host: string | undefined;
      try {
        host = new URL(origin).host;
      } catch {
        host = undefined;
      }
      if (host !== req.headers.host) {
        return next(new UnauthorizedError('A console action must come from the console itself.'));
      }
    } else if (origin === 'null') {
      return next(new UnauthorizedError('A console action must come from the console itself.'));
    }
    next();
  });
}

/** Log-in and log-out, and the session (and its CSRF token) every other page needs. */
function sessionRoutes(router: Router, deps: ConsoleDeps): void {
  const admin = adminToken(deps.config.adminToken);

  router.get('/login', (_req, res) => {
    res
      .status(admin.configured ? 200 : 503)
      .type('html')
      .send(loginPage(undefined, admin.configured));
  });

  router.post('/login', async (req, res) => {
    if (!admin.configured) {
      res.status(503).type('html').send(loginPage(undefined, false));
      return;
    }
    if (!admin.matches(fieldOf(req, 'token'))) {
      deps.logger.child({ module: 'console' }).warn('console log-in refused');
      res.status(401).type('html').send(loginPage('That is not the admin token.'));
      return;
    }
    const id = randomBytes(32).toString('base64url');
    const csrf = randomBytes(24).toString('base64url');
    await insertConsoleSession(deps.db, {
      idHash: sha256(id).toString('hex'),
      csrfToken: csrf,
      ttlSeconds: SESSION_SECONDS,
    });
    deps.logger.child({ module: 'console' }).info('console log-in');
    res.setHeader('Set-Cookie', sessionCookie(req, id, SESSION_SECONDS));
    res.redirect(303, '/console');
  });

  // Everything below needs a session.
  router.use(async (req, res, next) => {
    if (!admin.configured) {
      return next(new NotConfiguredError('The console is not configured (set ADMIN_TOKEN).'));
    }
    const id = cookieOf(req, COOKIE);
    const idHash = id !== undefined && id.length <= 100 ? sha256(id).toString('hex') : undefined;
    const session = idHash !== undefined ? await findConsoleSession(deps.db, idHash) : undefined;
    if (idHash === undefined || session === undefined) {
      if (req.method === 'GET' && !req.path.endsWith('.json')) {
        res.redirect(303, '/console/login');
        return;
      }
      return next(new UnauthorizedError('Log in to the console first.'));
    }
    res.locals.consoleSession = { idHash, csrf: session.csrfToken };
    if (req.method === 'POST') {
      const sent = fieldOf(req, 'csrf');
      if (!sameSecret(sent, session.csrfToken)) {
        return next(new UnauthorizedError('The form has expired: reload the page and try again.'));
      }
    }
    next();
  });

  router.post('/logout', async (req, res) => {
    await deleteConsoleSession(deps.db, res.locals.consoleSession!.idHash);
    res.setHeader('Set-Cookie', sessionCookie(req, '', 0));
    res.redirect(303, '/console/login');
  });
}

function render(res: Response, layout: Omit<Layout, 'csrf'>, body: Html, status = 200): void {
  res
    .status(status)
    .type('html')
    .send(page({ ...layout, csrf: res.locals.consoleSession!.csrf }, body));
}

function noticeOf(req: Request): string | undefined {
  const key = typeof req.query.notice === 'string' ? req.query.notice : undefined;
  return key !== undefined ? NOTICES[key] : undefined;
}

function csrf(res: Response): string {
  return res.locals.consoleSession!.csrf;
}

/** An action on one row (`:id`): back to the page it came from, with a notice. */
function idAction(
  router: Router,
  path: string,
  fallback: string,
  notice: keyof typeof NOTICES,
  act: (id: string) => Promise<unknown>,
): void {
  router.post(path, async (req, res) => {
    const form = parse(backForm, req.body);
    await act(parse(idParam, req.params.id, 'id'));
    res.redirect(303, withNotice(backTo(form.back, fallback), notice));
  });
}

/** The overview and the reconcile it starts and reports on. */
function overviewPages(router: Router, deps: ConsoleDeps): void {
  router.get('/', async (req, res) => {
    const ops = await readOpsSnapshot(deps.db);
    const flows = await listFlows(deps);
    const run = await getCurrentReconcileRun(deps.db);
    const statuses = deps.systemStatus?.();
    const leases = await listLeases(deps.db);
    const systems = SYSTEMS.map((system) => systemView(deps, system, statuses, leases));
    render(
      res,
      { title: 'Overview', nav: 'overview', notice: noticeOf(req) },
      overviewBody({
        csrf: csrf(res),
        ops,
        systems,
        flows,
        reconcile: run !== undefined ? reconcileView(run) : undefined,
        reconcileAvailable: deps.reconciler !== undefined,
      }),
    );
  });

  router.get('/reconcile.json', async (_req, res) => {
    const run = await getCurrentReconcileRun(deps.db);
    res.json(run !== undefined ? reconcileView(run) : null);
  });

  router.post('/reconcile', async (_req, res) => {
    if (deps.reconciler === undefined) {
      throw new NotConfiguredError('Reconcile is not available in this process.');
    }
    await deps.reconciler.start();
    res.redirect(303, withNotice('/console', 'reconcile'));
  });
}

/** A time in UTC to the second: `2026-12-04 03:14:34Z`. */
function utcTime(date: Date): string {
  return date
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/** A system's row on the overview: configured, who leads it, whether its credentials work. */
function systemView(
  deps: ConsoleDeps,
  system: SystemName,
  statuses: SystemStatus[] | undefined,
  leases: LeaseStatus[],
): SystemView {
  const configured =
    system === 'tidsbanken'
      ? deps.config.tidsbanken.credentials !== undefined
      : deps.config.poweroffice.credentials !== undefined;
  const status = statuses?.find((s) => s.system === system);
  const lease = leases.find((l) => l.system === system);
  const who =
    status?.leader === true
      ? 'this replica'
      : status?.leader === false
        ? 'another replica'
        : 'not known to this process';
  const refused = status?.credentials;
  return {
    system,
    configured,
    // The lease row says who holds the system and until when (it is renewed while held).
    leader: !configured
      ? '—'
      : lease !== undefined && lease.holder !== null
        ? `${who} (${lease.holder}, term ${lease.epoch}, ${lease.live ? 'lease until' : 'lease expired'} ${utcTime(lease.expiresAt)})`
        : who,
    credentials: !configured
      ? 'not set'
      : refused !== undefined
        ? `refused since ${utcTime(refused.since)}: ${refused.message}`
        : 'configured, accepted',
    paused:
      refused !== undefined
        ? `credentials refused (${refused.message}); writes and polls wait and are retried`
        : undefined,
  };
}

/** Links, the records without one, and linking or unlinking by hand. */
function linksPages(router: Router, deps: ConsoleDeps): void {
  router.get('/links', async (req, res) => {
    const q = parse(LinksQuery, req.query);
    if (q.unlinked !== undefined) await unlinkedRecordsPage(deps, req, res, q, q.unlinked);
    else await linkListPage(deps, req, res, q);
  });

  router.post('/links', async (req, res) => {
    const form = parse(NewLinkForm, req.body);
    await operator.linkByHand(deps, form);
    res.redirect(303, withNotice(backTo(form.back, '/console/conflicts'), 'linked'));
  });

  idAction(router, '/links/:id/unlink', '/console/links', 'unlinked', (id) =>
    operator.unlinkByHand(deps, id),
  );
}

const LinksQuery = z
  .object({
    search: z
      .string()
      .trim()
      .max(200)
      .optional()
      .transform((v) => (v === '' ? undefined : v)),
    flow: choice(FLOW_IDS),
    unlinked: choice(SYSTEMS),
    cursor: keyCursorSchema,
    notice: z.string().optional(),
  })
  .strict();
type LinksFilter = z.infer<typeof LinksQuery>;

const NewLinkForm = z.object({
  csrf: z.string(),
  back: z.string().optional(),
  flow: z.enum(FLOW_IDS),
  tidsbankenId: z.string().min(1).max(128),
  powerofficeId: z.string().min(1).max(128),
});

const LINKS_PER_PAGE = 50;

/** The links page with this filter, from `cursor` on. */
function linksHref({ search, flow, unlinked }: LinksFilter, cursor: string): string {
  return hrefWith('/console/links', { search, flow, unlinked, cursor });
}

const UNLINKED_CHOICES = [
  { value: '', label: 'Links' },
  { value: 'tidsbanken', label: 'Tidsbanken records without a link (needs a flow)' },
  { value: 'poweroffice', label: 'PowerOffice records without a link (needs a flow)' },
];

function linksFilters({ search, flow, unlinked }: LinksFilter): Html {
  return filterForm(
    '/console/links',
    [
      html`<div>
        <label for="search">Id, e-mail or name</label
        ><input id="search" name="search" type="search" value="${search ?? ''}" />
      </div>`,
      selectField('flow', 'Flow', FLOW_CHOICES, flow),
      selectField('unlinked', 'Show', UNLINKED_CHOICES, unlinked),
    ],
    'Search',
    'search',
  );
}

/** The records of one side of a flow that have no link in it. */
async function unlinkedRecordsPage(
  deps: ConsoleDeps,
  req: Request,
  res: Response,
  q: LinksFilter,
  unlinked: SystemName,
): Promise<void> {
  const { flow } = q;
  if (flow === undefined)
    throw new ValidationError('Choose a flow to list the records without a link in it.');
  const def = flowById(flow)!;
  const type = unlinked === 'tidsbanken' ? def.tidsbanken : def.poweroffice;
  const rows = await listUnlinkedRecords(deps.db, {
    flow,
    system: unlinked,
    recordType: type,
    after: q.cursor,
    limit: LINKS_PER_PAGE,
  });
  const shown = rows.slice(0, LINKS_PER_PAGE).map(toRecordDto);
  const next = rows.length > LINKS_PER_PAGE ? shown[shown.length - 1]!.recordId : undefined;
  render(
    res,
    { title: 'Records without a link', nav: 'links', notice: noticeOf(req) },
    html`${linksFilters(q)}${table(
      `${unlinked === 'tidsbanken' ? 'Tidsbanken' : 'PowerOffice'} ${type} records without a link in ${flow}`,
      ['Record', 'Data'],
      shown.map(
        (r) =>
          html`<tr>
            <td>${recordLink(r.system, r.recordType, r.recordId)}</td>
            <td>${json(r.data)}</td>
          </tr>`,
      ),
      'Every record of this side has a link.',
    )}${pager(next !== undefined ? linksHref(q, encodeCursor(next)) : null)}`,
  );
}

/** Links, newest first, or those matching the search. */
async function linkListPage(
  deps: ConsoleDeps,
  req: Request,
  res: Response,
  q: LinksFilter,
): Promise<void> {
  const { flow, search } = q;
  if (q.cursor !== undefined && !/^[0-9]{1,18}$/.test(q.cursor)) {
    throw new ValidationError('That page link is not valid.');
  }
  const rows = await listLinks(deps.db, { flow, search, before: q.cursor, limit: LINKS_PER_PAGE });
  const shown = rows.slice(0, LINKS_PER_PAGE).map(toLinkDto);
  render(
    res,
    { title: 'Links', nav: 'links', notice: noticeOf(req) },
    html`${linksFilters(q)}${table(
      search !== undefined ? `Links matching “${search}”` : 'Links, newest first',
      ['Link', 'Flow', 'Tidsbanken', 'PowerOffice', 'Linked by', 'Last synced', 'Action'],
      shown.map(
        (l) =>
          html`<tr>
            <td>${l.id}</td>
            <td>${l.flow}</td>
            <td>${recordLink('tidsbanken', l.tidsbankenType, l.tidsbankenId)}</td>
            <td>${recordLink('poweroffice', l.powerofficeType, l.powerofficeId)}</td>
            <td>${l.linkedBy}</td>
            <td>${when(l.lastSyncedAt)}</td>
            <td>${unlinkButton(csrf(res), l.id, req.originalUrl)}</td>
          </tr>`,
      ),
      'No links match.',
    )}${pager(rows.length > LINKS_PER_PAGE ? linksHref(q, shown[shown.length - 1]!.id) : null)}`,
  );
}

/** Conflicts, each with its records side by side, and dismissing them. */
function conflictsPages(router: Router, deps: ConsoleDeps): void {
  router.get('/conflicts', async (req, res) => {
    const q = parse(ConflictsQuery, req.query);
    const kind = q.kind;
    // Open conflicts by default; field conflicts are resolved by the conflict policy when they
    // are recorded, so asking for that kind shows them whatever their status.
    const byDefault = kind === 'field_conflict' ? undefined : 'open';
    const status = q.status === '' ? undefined : (q.status ?? byDefault);
    const limit = 25;
    const rows = await listConflicts(deps.db, { kind, status, before: q.cursor, limit });
    const shown = rows.slice(0, limit).map(toConflictDto);
    const cards: Html[] = [];
    for (const c of shown) {
      const flow = flowById(c.flow);
      if (flow === undefined) continue;
      const dismiss =
        c.status === 'open'
          ? actionButton(csrf(res), `/console/conflicts/${c.id}/dismiss`, 'Dismiss', {
              back: req.originalUrl,
              style: 'secondary',
              accessibleName: `Dismiss conflict ${c.id}`,
            })
          : html``;
      cards.push(
        c.kind === 'ambiguous_match'
          ? await ambiguousMatchCard(deps, csrf(res), req.originalUrl, flow, c, dismiss)
          : fieldConflictCard(c, dismiss),
      );
    }
    const params = new URLSearchParams();
    if (kind !== undefined) params.set('kind', kind);
    params.set('status', status ?? '');
    render(
      res,
      { title: 'Conflicts', nav: 'conflicts', notice: noticeOf(req) },
      html`${conflictFilters(kind, status)}
      ${
        kind === undefined
          ? html`<p>
              Fields changed on both sides are resolved by the conflict policy and kept for review:
              <a href="/console/conflicts?kind=field_conflict">field conflicts</a>.
            </p>`
          : ''
      }
      ${cards.length === 0 ? html`<p class="muted">No conflicts here.</p>` : cards}
      ${pager(rows.length > limit ? `/console/conflicts?${params.toString()}&cursor=${encodeCursor(shown[shown.length - 1]!.id)}` : null)}`,
    );
  });

  idAction(router, '/conflicts/:id/dismiss', '/console/conflicts', 'dismissed', (id) =>
    operator.dismissConflictByHand(deps, id),
  );
}

const ConflictsQuery = z
  .object({
    kind: choice(['ambiguous_match', 'field_conflict']),
    // Open by default; the empty choice is "any".
    status: z.enum(['open', 'resolved']).or(z.literal('')).optional(),
    cursor: cursorSchema,
    notice: z.string().optional(),
  })
  .strict();

type ConflictView = ReturnType<typeof toConflictDto>;

const CONFLICT_KIND_CHOICES = [
  { value: '', label: 'All kinds' },
  { value: 'ambiguous_match', label: 'Ambiguous match' },
  { value: 'field_conflict', label: 'Field conflict' },
];
const CONFLICT_STATUS_CHOICES = [
  { value: 'open', label: 'Open' },
  { value: 'resolved', label: 'Resolved' },
  { value: '', label: 'Any' },
];

function conflictFilters(kind: string | undefined, status: string | undefined): Html {
  return filterForm(
    '/console/conflicts',
    [
      selectField('kind', 'Kind', CONFLICT_KIND_CHOICES, kind),
      selectField('status', 'Status', CONFLICT_STATUS_CHOICES, status ?? ''),
    ],
    'Show',
  );
}

/** An ambiguous match: the record, and each candidate with a button to link the two. */
async function ambiguousMatchCard(
  deps: ConsoleDeps,
  csrfToken: string,
  back: string,
  flow: FlowDefinition,
  c: ConflictView,
  dismiss: Html,
): Promise<Html> {
  const self = await getMirrorRecord(deps.db, c.system, c.recordType ?? '', c.recordId);
  const candidates = Array.isArray(c.candidates)
    ? (c.candidates as { system?: string; recordId?: string }[])
    : [];
  const columns: Html[] = [];
  for (const candidate of candidates) {
    if (candidate.system !== 'tidsbanken' && candidate.system !== 'poweroffice') continue;
    const recordId = String(candidate.recordId ?? '');
    const type = candidate.system === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice;
    const row = await getMirrorRecord(deps.db, candidate.system, type, recordId);
    const pair =
      candidate.system !== c.system
        ? c.system === 'tidsbanken'
          ? { tidsbankenId: c.recordId, powerofficeId: recordId }
          : { tidsbankenId: recordId, powerofficeId: c.recordId }
        : undefined;
    columns.push(
      html`<div class="card">
        <h3>Candidate</h3>
        ${recordSummary(flow, candidate.system, recordId, row)}
        ${
          pair !== undefined && c.status === 'open'
            ? html`<div class="actions">
                ${actionButton(csrfToken, '/console/links', 'Link these two', {
                  back,
                  fields: { flow: flow.id, ...pair },
                  accessibleName: `Link these two: Tidsbanken ${flow.tidsbanken} ${pair.tidsbankenId} and PowerOffice ${flow.poweroffice} ${pair.powerofficeId}`,
                })}
              </div>`
            : ''
        }
      </div>`,
    );
  }
  return html`<article class="card" aria-labelledby="conflict-${c.id}">
    <h2 id="conflict-${c.id}">Ambiguous match ${c.id} · ${c.flow}</h2>
    <p>${c.resolution ?? ''} · ${c.status} · found ${when(c.createdAt)}</p>
    <div class="side-by-side">
      <div class="card">
        <h3>Record</h3>
        ${recordSummary(flow, c.system, c.recordId, self)}
      </div>
      ${columns}
    </div>
    <div class="actions">${dismiss}</div>
  </article>`;
}

/** A field conflict: both values and the resolution, side by side. */
function fieldConflictCard(c: ConflictView, dismiss: Html): Html {
  return html`<article class="card" aria-labelledby="conflict-${c.id}">
    <h2 id="conflict-${c.id}">Field conflict ${c.id} · ${c.flow} · ${c.field ?? ''}</h2>
    <div class="side-by-side">
      <div>
        <h3>Tidsbanken value</h3>
        ${json(c.tidsbankenValue)}
      </div>
      <div>
        <h3>PowerOffice value</h3>
        ${json(c.powerofficeValue)}
      </div>
      <div>
        <h3>Resolution</h3>
        <p>${c.resolution ?? '—'}</p>
      </div>
    </div>
    <p>
      ${recordLink(c.system, c.recordType ?? '', c.recordId)} · ${c.status} · ${when(c.createdAt)}
    </p>
    <div class="actions">${dismiss}</div>
  </article>`;
}

/** Dead commands and inbox events, and replaying, dropping or retrying them. */
function deadLetterPages(router: Router, deps: ConsoleDeps): void {
  router.get('/dead', async (req, res) => {
    const q = parse(DeadQuery, req.query);
    const { system, flow } = q;
    const limit = 50;
    const commandRows = await listCommands(deps.db, {
      status: 'dead',
      system,
      flow,
      before: q.commandsCursor,
      limit,
    });
    const eventRows = await listInboundEvents(deps.db, {
      status: 'dead',
      source: system,
      before: q.eventsCursor,
      limit,
    });
    const view: DeadView = { csrf: csrf(res), back: req.originalUrl, filter: { system, flow } };
    render(
      res,
      { title: 'Dead letters', nav: 'dead', notice: deadNotice(req, q) },
      html`${filterForm(
        '/console/dead',
        [
          selectField('system', 'System', SYSTEM_CHOICES, system),
          selectField('flow', 'Flow (commands)', FLOW_CHOICES, flow),
        ],
        'Show',
      )}
      ${deadCommands(
        view,
        pageOf(commandRows, limit, (r) => r.id, toCommandDto),
      )}
      ${deadEvents(
        view,
        pageOf(eventRows, limit, (r) => r.id, toEventDto),
      )}`,
    );
  });

  bulkAction(router, '/commands/replay', async (filter) => {
    const { replayed, skipped } = await operator.replayDeadCommands(deps, filter);
    return { replayed, skipped };
  });
  bulkAction(router, '/events/retry', async (filter) => {
    const { retried, skipped } = await operator.retryDeadEvents(deps, { system: filter.system });
    return { retried, skipped };
  });
  idAction(router, '/commands/:id/replay', '/console/dead', 'replayed', (id) =>
    operator.replayCommand(deps, id),
  );
  idAction(router, '/commands/:id/drop', '/console/dead', 'dropped', (id) =>
    operator.dropCommand(deps, id),
  );
  idAction(router, '/events/:id/retry', '/console/dead', 'retried', (id) =>
    operator.retryEvent(deps, id),
  );
}

const count = z
  .string()
  .regex(/^[0-9]{1,9}$/)
  .optional();
const DeadQuery = z
  .object({
    system: choice(SYSTEMS),
    flow: choice(FLOW_IDS),
    commandsCursor: cursorSchema,
    eventsCursor: cursorSchema,
    notice: z.string().optional(),
    replayed: count,
    retried: count,
    skipped: count,
  })
  .strict();

/** What the dead-letters page's sections share: the form token, the page, its filter. */
interface DeadView {
  csrf: string;
  back: string;
  filter: { system: SystemName | undefined; flow: string | undefined };
}

/** The counts a bulk action reports back, or the notice of a row's action. */
function deadNotice(req: Request, q: z.infer<typeof DeadQuery>): string | undefined {
  const skipped = (why: string) =>
    q.skipped !== undefined && q.skipped !== '0' ? `; ${q.skipped} left dead ${why}` : '';
  return q.replayed !== undefined
    ? `${q.replayed} command(s) queued again${skipped('because a newer command for the same record is queued (drop those)')}.`
    : q.retried !== undefined
      ? `${q.retried} event(s) queued again${skipped('(the same event is queued again, or a record without a readable id: fix it at its source)')}.`
      : noticeOf(req);
}

function deadCommands(
  { csrf, back, filter }: DeadView,
  commands: { items: ReturnType<typeof toCommandDto>[]; nextCursor: string | null },
): Html {
  const { system, flow } = filter;
  const filtered = system !== undefined || flow !== undefined;
  return html`<h2 id="commands-h">Dead commands</h2>
    ${
      commands.items.length > 0
        ? actionButton(csrf, '/console/commands/replay', `Replay all${filtered ? ' shown' : ''}`, {
            back,
            fields: { system: system ?? '', flow: flow ?? '' },
            confirm: 'Replay every dead command of this filter?',
            block: true,
          })
        : ''
    }
    ${table(
      'Dead commands, newest first',
      ['Command', 'Target', 'Flow', 'Operation', 'Attempts', 'Last error', 'Actions'],
      commands.items.map(
        (c) =>
          html`<tr>
            <td>${c.id}</td>
            <td>
              ${c.recordId !== null ? recordLink(c.system, c.recordType, c.recordId) : html`${c.system} ${c.recordType} (new)`}
            </td>
            <td>${c.flow ?? '—'}</td>
            <td>${c.operation}</td>
            <td class="num">${c.attempts}</td>
            <td>
              <p class="reason">${errorSummary(c.lastError)}</p>
              <details>
                <summary>The full answer</summary>
                ${json(c.lastError)}
              </details>
              <details>
                <summary>The write</summary>
                ${json(c.payload)}
              </details>
            </td>
            <td>
              <div class="actions">
                ${actionButton(csrf, `/console/commands/${c.id}/replay`, 'Replay', { back, accessibleName: `Replay command ${c.id}` })}
                ${actionButton(csrf, `/console/commands/${c.id}/drop`, 'Drop', { back, style: 'danger', confirm: 'Drop this command? It will never be sent.', accessibleName: `Drop command ${c.id}` })}
              </div>
            </td>
          </tr>`,
      ),
      'No dead commands.',
    )}${pager(
      commands.nextCursor !== null
        ? hrefWith('/console/dead', { ...filter, commandsCursor: commands.nextCursor })
        : null,
      'More dead commands',
    )}`;
}

function deadEvents(
  { csrf, back, filter }: DeadView,
  events: { items: ReturnType<typeof toEventDto>[]; nextCursor: string | null },
): Html {
  const { system } = filter;
  return html`<h2 id="events-h">Dead inbox events</h2>
    ${
      events.items.length > 0
        ? actionButton(
            csrf,
            '/console/events/retry',
            `Retry all${system !== undefined ? ' shown' : ''}`,
            {
              back,
              fields: { system: system ?? '' },
              confirm: 'Retry every dead inbox event of this system?',
              block: true,
            },
          )
        : ''
    }
    ${table(
      'Dead inbox events, newest first',
      ['Event', 'Record', 'Type', 'Attempts', 'Last error', 'Action'],
      events.items.map(
        (e) =>
          html`<tr>
            <td>${e.id}</td>
            <td>
              ${e.recordId !== null ? recordLink(e.source, e.recordType, e.recordId) : html`${e.source} ${e.recordType} (no readable id)`}
            </td>
            <td>${e.eventType}</td>
            <td class="num">${e.attempts}</td>
            <td>
              ${e.lastError ?? '—'}${
                e.rawRecord !== null
                  ? html`<details>
                      <summary>The record as received</summary>
                      ${json(e.rawRecord)}
                    </details>`
                  : ''
              }
            </td>
            <td>
              ${actionButton(csrf, `/console/events/${e.id}/retry`, 'Retry', { back, accessibleName: `Retry event ${e.id}` })}
            </td>
          </tr>`,
      ),
      'No dead inbox events.',
    )}${pager(
      events.nextCursor !== null
        ? hrefWith('/console/dead', { ...filter, eventsCursor: events.nextCursor })
        : null,
      'More dead inbox events',
    )}`;
}

/** A bulk action of the dead-letters page: back to the page with the counts it reports. */
function bulkAction(
  router: Router,
  path: string,
  act: (filter: { system?: SystemName; flow?: string }) => Promise<Record<string, number>>,
): void {
  router.post(path, async (req, res) => {
    const form = parse(
      backForm.extend({ system: choice(SYSTEMS), flow: choice(FLOW_IDS) }),
      req.body,
    );
    const counts = await act({
      ...(form.system !== undefined ? { system: form.system } : {}),
      ...(form.flow !== undefined ? { flow: form.flow } : {}),
    });
    const url = new URL(backTo(form.back, '/console/dead'), 'http://console.invalid');
    for (const key of ['notice', 'replayed', 'retried', 'skipped']) url.searchParams.delete(key);
    for (const [key, value] of Object.entries(counts)) url.searchParams.set(key, String(value));
    res.redirect(303, `${url.pathname}${url.search}`);
  });
}

/** The flows, and pausing or resuming them. */
function flowsPages(router: Router, deps: ConsoleDeps): void {
  router.get('/flows', async (req, res) => {
    const flows = await listFlows(deps);
    render(
      res,
      { title: 'Flows', nav: 'flows', notice: noticeOf(req) },
      html`<p>
          A paused flow still receives and compares changes; its writes wait (and absorb newer
          edits) until it is resumed.
        </p>
        ${table(
          'Flows',
          ['Flow', 'Tidsbanken', 'PowerOffice', 'Unmatched records', 'State', 'Action'],
          flows.map(
            (f) =>
              html`<tr>
                <td>${f.flow}</td>
                <td>${f.tidsbankenType}</td>
                <td>${f.powerofficeType}</td>
                <td>${f.onUnmatched}</td>
                <td>
                  ${f.paused ? html`<span class="status warn">paused</span> since ${when(f.pausedAt)}` : html`<span class="status ok">running</span>`}
                </td>
                <td>
                  ${
                    f.paused
                      ? actionButton(csrf(res), `/console/flows/${f.flow}/resume`, 'Resume', {
                          back: '/console/flows',
                          accessibleName: `Resume ${f.flow}`,
                        })
                      : actionButton(csrf(res), `/console/flows/${f.flow}/pause`, 'Pause', {
                          back: '/console/flows',
                          style: 'secondary',
                          accessibleName: `Pause ${f.flow}`,
                        })
                  }
                </td>
              </tr>`,
          ),
          'No flows.',
        )}`,
    );
  });

  for (const action of ['pause', 'resume'] as const) {
    router.post(`/flows/:flow/${action}`, async (req, res) => {
      const form = parse(backForm, req.body);
      const flow = parse(z.enum(FLOW_IDS), req.params.flow, 'flow');
      await operator.pauseFlow(deps, flow, action === 'pause');
      res.redirect(
        303,
        withNotice(backTo(form.back, '/console/flows'), action === 'pause' ? 'paused' : 'resumed'),
      );
    });
  }
}

/** One record's links, mirrored state and timeline. */
function recordPages(router: Router, deps: ConsoleDeps): void {
  const RecordParams = z
    .discriminatedUnion('system', [
      z.object({ system: z.literal('tidsbanken'), type: z.enum(recordTypesOf('tidsbanken')) }),
      z.object({ system: z.literal('poweroffice'), type: z.enum(recordTypesOf('poweroffice')) }),
    ])
    .and(z.object({ id: z.string().min(1).max(128) }));

  const RecordQuery = z.object({ cursor: keyCursorSchema, notice: z.string().optional() }).strict();

  router.get('/records/:system/:type/:id', async (req, res) => {
    const p = parse(RecordParams, req.params);
    const q = parse(RecordQuery, req.query);
    const history = await readRecordHistory(
      deps.db,
      { system: p.system, recordType: p.type, recordId: p.id },
      { cursor: q.cursor, limit: 50 },
    );
    const links = await listLinks(deps.db, {
      ...(p.system === 'tidsbanken' ? { tidsbankenId: p.id } : { powerofficeId: p.id }),
      includeUnlinked: true,
      limit: 20,
    });
    const mine = links
      .filter(
        (l) => (p.system === 'tidsbanken' ? l.tidsbanken_type : l.poweroffice_type) === p.type,
      )
      .map(toLinkDto);
    const here = req.path;
    render(
      res,
      {
        title: `${p.system === 'tidsbanken' ? 'Tidsbanken' : 'PowerOffice'} ${p.type} ${p.id}`,
        nav: 'record',
        notice: noticeOf(req),
      },
      html`<h2>Links</h2>
        ${recordLinks(p.system, mine, csrf(res), req.originalUrl)}
        <h2>Mirrored state</h2>
        ${history.record !== null ? json(history.record.data) : html`<p class="muted">Not in the mirror.</p>`}
        <h2>Timeline</h2>
        ${timeline(history.items, q.cursor !== undefined)}${pager(
          history.nextCursor !== null ? `/console${here}?cursor=${history.nextCursor}` : null,
          'Older entries',
        )}`,
    );
  });
}

/** The record's links (unlinked ones too), each with its counterpart on the other side. */
function recordLinks(
  system: SystemName,
  links: ReturnType<typeof toLinkDto>[],
  csrfToken: string,
  back: string,
): Html {
  return table(
    'Links of this record',
    ['Link', 'Flow', 'Counterpart', 'Linked by', 'State', 'Action'],
    links.map(
      (l) =>
        html`<tr>
          <td>${l.id}</td>
          <td>${l.flow}</td>
          <td>
            ${system === 'tidsbanken' ? recordLink('poweroffice', l.powerofficeType, l.powerofficeId) : recordLink('tidsbanken', l.tidsbankenType, l.tidsbankenId)}
          </td>
          <td>${l.linkedBy}</td>
          <td>
            ${l.unlinkedAt === null ? 'active' : html`unlinked ${when(l.unlinkedAt)} (${l.unlinkReason ?? ''})`}
          </td>
          <td>${l.unlinkedAt === null ? unlinkButton(csrfToken, l.id, back) : ''}</td>
        </tr>`,
    ),
    'This record has no link.',
  );
}

/** A page of the record's timeline: events, decisions and commands. */
function timeline(entries: RecordHistoryEntry[], older: boolean): Html {
  return table(
    'Events, decisions and commands, newest first',
    ['When', 'What', 'Details'],
    entries.map(
      (e) =>
        html`<tr>
          <td>${when(e.at)}</td>
          <td>${timelineLabel(e.kind, e.detail)}</td>
          <td>
            <details>
              <summary>Details</summary>
              ${json(e.detail)}
            </details>
          </td>
        </tr>`,
    ),
    older ? 'No older entries.' : 'Nothing recorded for this record.',
  );
}

type RecordHistoryEntry = Awaited<ReturnType<typeof readRecordHistory>>['items'][number];

/** A dead command's error in one sentence: the vendor's own message when it sent one. */
function errorSummary(error: unknown): string {
  if (error === null || error === undefined) return '—';
  if (typeof error === 'string') return error;
  if (typeof error !== 'object') return JSON.stringify(error);
  const e = error as { status?: unknown; message?: unknown; body?: unknown };
  const body = (typeof e.body === 'object' && e.body !== null ? e.body : {}) as Record<
    string,
    unknown
  >;
  const text = [
    body.detail,
    body.title,
    body.message,
    e.message,
    typeof e.body === 'string' ? e.body : undefined,
  ].find((v): v is string => typeof v === 'string' && v !== '');
  const status = typeof e.status === 'number' ? `${e.status}` : undefined;
  return [status, text].filter(Boolean).join(': ') || 'See the full answer.';
}

function unlinkButton(csrf: string, linkId: string, back: string): Html {
  return actionButton(csrf, `/console/links/${linkId}/unlink`, 'Unlink', {
    back,
    style: 'danger',
    confirm: 'Unlink these two records? They will not be linked again by a merge rule.',
    accessibleName: `Unlink link ${linkId}`,
  });
}

function timelineLabel(kind: string, detail: Record<string, unknown>): string {
  const d = (key: string) => (typeof detail[key] === 'string' ? detail[key] : '');
  switch (kind) {
    case 'event':
      return `received ${d('eventType')} (${d('origin')}, ${d('status')})`;
    case 'command':
      return `${d('operation')} command, ${d('status')}`;
    case 'link':
      return `linked (${d('linkedBy')})`;
    case 'unlink':
      return `unlinked: ${d('reason')}`;
    case 'operator':
      return `operator: ${d('action')}`;
    default:
      return kind;
  }
}

export function reconcileView(run: ReconcileRunRow): ReconcileView {
  const progress = run.progress as {
    phase?: string;
    read?: { status?: string; records?: number }[];
    recordsRead?: number;
    linksMade?: number | null;
  };
  const reads = progress.read ?? [];
  const readsDone = reads.filter((r) => r.status === 'done').length;
  const phase = progress.phase ?? run.status;
  const percent =
    run.status !== 'running'
      ? 100
      : phase === 'reading'
        ? Math.round(5 + (60 * readsDone) / Math.max(reads.length, 1))
        : phase === 'draining'
          ? 70
          : phase === 'linking'
            ? 85
            : phase === 'done'
              ? 100
              : 2;
  const records = progress.recordsRead ?? 0;
  const label =
    run.status === 'done'
      ? `Done: ${records} records read${progress.linksMade != null ? `, ${progress.linksMade} links made` : ''}`
      : run.status === 'failed'
        ? 'Failed'
        : `Running: ${phase}, ${records} records read`;
  return {
    id: String(run.id),
    status: run.status,
    percent,
    label,
    startedAt: new Date(run.started_at).toISOString(),
    finishedAt: run.finished_at === null ? null : new Date(run.finished_at).toISOString(),
    error: run.error,
  };
}

/** Errors on a console page become a page (or a JSON problem for the progress endpoint). */
function consoleErrors(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, next) => {
    if (res.headersSent || req.path.endsWith('.json')) return next(err);
    const csrf = res.locals.consoleSession?.csrf;
    if (err instanceof AppError) {
      if (err.status === 401 && csrf === undefined) {
        res.status(401).type('html').send(loginPage(err.message));
        return;
      }
      res
        .status(err.status)
        .type('html')
        .send(errorPage(err.status, err.message, csrf));
      return;
    }
    const status = (err as { status?: unknown }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      res
        .status(status)
        .type('html')
        .send(errorPage(status, 'The request could not be read.', csrf));
      return;
    }
    logger.error({ err }, 'console page failed');
    res
      .status(500)
      .type('html')
      .send(errorPage(500, 'Something went wrong; the log has the details.', csrf));
  };
}
