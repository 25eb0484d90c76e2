import { FLOW_IDS } from '../config.js';
import type { OpsSnapshot } from '../db/ops-snapshot.js';
import type { RecordRow } from '../db/schema.js';
import type { FlowDefinition } from '../sync/flows.js';
import { getPath } from '../sync/normalize.js';
import { html, type Html } from './html.js';

// The console's pages, rendered on the server from the admin API's own shapes. Every page is
// plain HTML with labelled forms; the one script only adds confirmations and a live progress
// bar, so each page works (and is tested) the same without it.

export interface Layout {
  title: string;
  /** Which navigation entry is the current page. */
  nav: 'overview' | 'links' | 'conflicts' | 'dead' | 'flows' | 'record' | 'none';
  csrf?: string | undefined;
  notice?: string | undefined;
  error?: string | undefined;
}

const NAV: { key: Layout['nav']; href: string; label: string }[] = [
  { key: 'overview', href: '/console', label: 'Overview' },
  { key: 'links', href: '/console/links', label: 'Links' },
  { key: 'conflicts', href: '/console/conflicts', label: 'Conflicts' },
  { key: 'dead', href: '/console/dead', label: 'Dead letters' },
  { key: 'flows', href: '/console/flows', label: 'Flows' },
];

export function page(layout: Layout, body: Html): string {
  return html`<!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>${layout.title} · Tidsbanken ⇄ PowerOffice sync</title>
        <link rel="stylesheet" href="/console/assets/console.css" />
        <script src="/console/assets/console.js" defer></script>
      </head>
      <body>
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
          <a class="brand" href="/console">Tidsbanken ⇄ PowerOffice sync</a>
          ${
            layout.csrf !== undefined
              ? html`<nav aria-label="Console">
                    <ul>
                      ${NAV.map(
                        (n) =>
                          html`<li>
                            <a
                              href="${n.href}"
                              ${n.key === layout.nav ? html` aria-current="page"` : ''}
                              >${n.label}</a
                            >
                          </li>`,
                      )}
                    </ul>
                  </nav>
                  <form method="post" action="/console/logout">
                    ${csrfField(layout.csrf)}<button type="submit" class="secondary">
                      Log out
                    </button>
                  </form>`
              : ''
          }
        </header>
        <main id="main">
          <h1>${layout.title}</h1>
          ${layout.notice !== undefined ? html`<p class="notice" role="status">${layout.notice}</p>` : ''}
          ${layout.error !== undefined ? html`<p class="error" role="alert">${layout.error}</p>` : ''}
          ${body}
        </main>
      </body>
    </html>`.text;
}

export function csrfField(token: string): Html {
  return html`<input type="hidden" name="csrf" value="${token}" />`;
}

/** A POST form of one button, returning to `back` afterwards. */
export function actionButton(
  csrf: string,
  action: string,
  label: string,
  options: {
    back?: string;
    confirm?: string;
    style?: 'secondary' | 'danger';
    fields?: Record<string, string>;
    accessibleName?: string;
    /** A form of its own row (a bulk action above a list), not one inline in a table cell. */
    block?: boolean;
  } = {},
): Html {
  return html`<form
    class="${options.block === true ? 'actions' : 'inline'}"
    method="post"
    action="${action}"
    ${options.confirm !== undefined ? html` data-confirm="${options.confirm}"` : ''}
  >
    ${csrfField(csrf)}${options.back !== undefined ? html`<input type="hidden" name="back" value="${options.back}" />` : ''}${Object.entries(
      options.fields ?? {},
    ).map(([name, value]) => html`<input type="hidden" name="${name}" value="${value}" />`)}<button
      type="submit"
      ${
        options.style !== undefined ? html` class="${options.style}"` : ''
      }${options.accessibleName !== undefined ? html` aria-label="${options.accessibleName}"` : ''}
    >
      ${label}
    </button>
  </form>`;
}

export function loginPage(error?: string, configured = true): string {
  return page(
    { title: 'Log in', nav: 'none', error },
    configured
      ? html`<form class="login" method="post" action="/console/login">
          <label for="token">Admin token</label>
          <input
            id="token"
            name="token"
            type="password"
            autocomplete="current-password"
            required
            autofocus
          />
          <button type="submit">Log in</button>
        </form>`
      : html`<p>
          The console is not configured: set <code>ADMIN_TOKEN</code> and restart the service.
        </p>`,
  );
}

export function errorPage(status: number, message: string, csrf: string | undefined): string {
  return page(
    {
      title: status === 404 ? 'Not found' : 'That did not work',
      nav: 'none',
      csrf,
      error: message,
    },
    html`<p><a href="/console">Back to the overview</a></p>`,
  );
}

// ---- small pieces --------------------------------------------------------------------

export function when(iso: string | null | undefined): Html {
  if (iso === null || iso === undefined) return html`<span class="muted">—</span>`;
  return html`<time datetime="${iso}">${iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z')}</time>`;
}

export function json(value: unknown): Html {
  if (value === null || value === undefined) return html`<span class="muted">—</span>`;
  return html`<pre tabindex="0">${JSON.stringify(value, null, 2)}</pre>`;
}

function recordHref(system: string, type: string, id: string): string {
  return `/console/records/${encodeURIComponent(system)}/${encodeURIComponent(type)}/${encodeURIComponent(id)}`;
}

export function recordLink(system: string, type: string, id: string): Html {
  return html`<a href="${recordHref(system, type, id)}"
    >${system === 'tidsbanken' ? 'TB' : 'PO'} ${type} ${id}</a
  >`;
}

export interface Choice {
  value: string;
  label: string;
}

/** A labelled drop-down of a filter form; `selected` undefined selects the first choice. */
export function selectField(
  name: string,
  label: string,
  choices: Choice[],
  selected: string | undefined,
): Html {
  return html`<div>
    <label for="${name}">${label}</label
    ><select id="${name}" name="${name}">
      ${choices.map(
        (c) =>
          html`<option value="${c.value}" ${c.value === (selected ?? '') ? html` selected` : ''}>
            ${c.label}
          </option>`,
      )}
    </select>
  </div>`;
}

export const FLOW_CHOICES: Choice[] = [
  { value: '', label: 'All flows' },
  ...FLOW_IDS.map((f) => ({ value: f, label: f })),
];

export const SYSTEM_CHOICES: Choice[] = [
  { value: '', label: 'Both' },
  { value: 'tidsbanken', label: 'Tidsbanken' },
  { value: 'poweroffice', label: 'PowerOffice' },
];

/** A GET form of filters above a list. */
export function filterForm(action: string, fields: Html[], submit: string, role?: 'search'): Html {
  return html`<form
    class="filters"
    method="get"
    action="${action}"
    ${role !== undefined ? html` role="${role}"` : ''}
  >
    ${fields}
    <div><button type="submit">${submit}</button></div>
  </form>`;
}

/** `path` with `params` (those with a value) as its query string. */
export function hrefWith(path: string, params: Record<string, string | undefined>): string {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== '') query.set(key, value);
  }
  const text = query.toString();
  return text === '' ? path : `${path}?${text}`;
}

export function pager(nextHref: string | null, label = 'Next page'): Html {
  return nextHref === null
    ? html``
    : html`<p class="pager"><a href="${nextHref}" rel="next">${label}</a></p>`;
}

export function table(caption: string, head: string[], rows: Html[], empty: string): Html {
  if (rows.length === 0) return html`<p class="muted">${empty}</p>`;
  return html`<div class="table-wrap" role="region" aria-label="${caption}" tabindex="0">
    <table>
      <caption>
        ${caption}
      </caption>
      <thead>
        <tr>
          ${head.map((h) => html`<th scope="col">${h}</th>`)}
        </tr>
      </thead>
      <tbody>
        ${rows}
      </tbody>
    </table>
  </div>`;
}

function display(value: unknown): string {
  if (value === null || value === undefined || value === '') return '—';
  return typeof value === 'string' ? value : JSON.stringify(value);
}

/** A record's mapped fields in a flow, labelled with that side's field names. */
export function recordSummary(
  flow: FlowDefinition,
  system: 'tidsbanken' | 'poweroffice',
  recordId: string,
  record: RecordRow | undefined,
): Html {
  const type = system === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice;
  if (record === undefined) {
    return html`<p>
      ${recordLink(system, type, recordId)}: <span class="muted">not in the mirror</span>
    </p>`;
  }
  const fields = flow.fields.map((f) => ({
    label: system === 'tidsbanken' ? f.tidsbanken : f.poweroffice,
    value:
      system === 'tidsbanken' ? record.data[f.tidsbanken] : getPath(record.data, f.poweroffice),
  }));
  return html`<p>
      ${recordLink(system, type, recordId)}${record.deleted_at !== null ? html` <span class="status bad">deleted</span>` : ''}
    </p>
    <dl class="kv">
      ${fields.map(
        (f) =>
          html`<dt>${f.label}</dt>
            <dd>${display(f.value)}</dd>`,
      )}
    </dl>`;
}

// ---- overview ------------------------------------------------------------------------

/** The morning's to-do list: only what is not as it should be, each with where to act. */
function attentionItems(input: {
  ops: OpsSnapshot;
  systems: SystemView[];
  flows: FlowView[];
  reconcile: ReconcileView | undefined;
}): { text: string; href: string }[] {
  const { ops } = input;
  const items: { text: string; href: string }[] = [];
  const plural = (n: number, one: string, many: string) => `${n} ${n === 1 ? one : many}`;
  const deadCommands = ops.outbox
    .filter((o) => o.status === 'dead')
    .reduce((n, o) => n + o.count, 0);
  if (deadCommands > 0) {
    items.push({
      text: `${plural(deadCommands, 'write', 'writes')} refused or given up: replay or drop`,
      href: '/console/dead',
    });
  }
  const deadEvents = ops.inbox.dead.reduce((n, d) => n + d.count, 0);
  if (deadEvents > 0) {
    items.push({
      text: `${plural(deadEvents, 'change', 'changes')} not synced (dead inbox events): retry`,
      href: '/console/dead#events-h',
    });
  }
  const ambiguous = ops.conflicts
    .filter((c) => c.kind === 'ambiguous_match')
    .reduce((n, c) => n + c.count, 0);
  if (ambiguous > 0) {
    items.push({
      text: `${plural(ambiguous, 'record', 'records')} not linked because several match: link by hand`,
      href: '/console/conflicts?kind=ambiguous_match',
    });
  }
  const fieldConflicts = ops.conflicts
    .filter((c) => c.kind === 'field_conflict')
    .reduce((n, c) => n + c.count, 0);
  if (fieldConflicts > 0) {
    items.push({
      text: `${plural(fieldConflicts, 'field', 'fields')} edited on both sides: check the value that won`,
      href: '/console/conflicts?kind=field_conflict',
    });
  }
  for (const flow of input.flows.filter((f) => f.paused)) {
    items.push({ text: `Flow ${flow.flow} is paused: its writes wait`, href: '/console/flows' });
  }
  for (const system of input.systems.filter((s) => s.paused !== undefined)) {
    items.push({ text: `${SYSTEM_LABEL[system.system]}: ${system.paused!}`, href: '/console' });
  }
  if (ops.pollers.some((p) => p.failing)) {
    items.push({ text: 'A change poller is failing: see poll lag below', href: '#health-h' });
  }
  if (input.reconcile?.status === 'failed') {
    items.push({ text: 'The last reconcile failed', href: '#reconcile-h' });
  }
  return items;
}

export interface SystemView {
  system: 'tidsbanken' | 'poweroffice';
  configured: boolean;
  /** Who sends this system's writes and runs its pollers, in words. */
  leader: string;
  credentials: string;
  /** Why the system's writes and polls wait, when they do. */
  paused?: string | undefined;
}

export interface FlowView {
  flow: string;
  tidsbankenType: string;
  powerofficeType: string;
  onUnmatched: string;
  paused: boolean;
  pausedAt: string | null;
}

export interface ReconcileView {
  id: string;
  status: string;
  percent: number;
  label: string;
  startedAt: string;
  finishedAt: string | null;
  error: string | null;
}

const SYSTEM_LABEL = { tidsbanken: 'Tidsbanken', poweroffice: 'PowerOffice Go' } as const;

export function overviewBody(input: {
  csrf: string;
  ops: OpsSnapshot;
  systems: SystemView[];
  flows: FlowView[];
  reconcile: ReconcileView | undefined;
  reconcileAvailable: boolean;
}): Html {
  return html`${attentionSection(attentionItems(input))} ${healthSection(input.ops, input.systems)}
  ${flowsSection(input.ops, input.flows)}
  ${reconcileSection(input.reconcile, input.reconcileAvailable, input.csrf)}`;
}

function attentionSection(attention: { href: string; text: string }[]): Html {
  return html`<section aria-labelledby="attention-h">
    <h2 id="attention-h">Needs attention</h2>
    ${
      attention.length === 0
        ? html`<p><span class="status ok">Nothing needs attention.</span></p>`
        : html`<ul class="attention">
            ${attention.map((a) => html`<li><a href="${a.href}">${a.text}</a></li>`)}
          </ul>`
    }
  </section>`;
}

/** The service's card, and one card per system. */
function healthSection(ops: OpsSnapshot, systems: SystemView[]): Html {
  const openConflicts = ops.conflicts.reduce((n, c) => n + c.count, 0);
  const links = ops.links.reduce((n, l) => n + l.count, 0);
  return html`<section aria-labelledby="health-h">
    <h2 id="health-h">Health</h2>
    <div class="cards">
      <div class="card">
        <h3>Service</h3>
        <dl class="kv">
          <dt>Database</dt>
          <dd><span class="status ok">reachable</span></dd>
          <dt>Inbox waiting</dt>
          <dd>
            ${ops.inbox.pending}${ops.inbox.oldestPendingAgeSeconds !== null ? ` (oldest ${Math.round(ops.inbox.oldestPendingAgeSeconds)} s)` : ''}
          </dd>
          <dt>Active links</dt>
          <dd>${links}</dd>
          <dt>Open conflicts</dt>
          <dd><a href="/console/conflicts">${openConflicts}</a></dd>
        </dl>
      </div>
      ${systems.map((s) => systemCard(ops, s))}
    </div>
  </section>`;
}

/** A system's state, queues and poll lag. */
function systemCard(ops: OpsSnapshot, s: SystemView): Html {
  const outbox = (status: string) =>
    ops.outbox
      .filter((o) => o.system === s.system && o.status === status)
      .reduce((n, o) => n + o.count, 0);
  const deadEvents = ops.inbox.dead
    .filter((d) => d.system === s.system)
    .reduce((n, d) => n + d.count, 0);
  return html`<div class="card" data-system="${s.system}">
    <h3>${SYSTEM_LABEL[s.system]}</h3>
    <dl class="kv">
      <dt>State</dt>
      <dd>
        ${s.configured ? html`<span class="status ok">on</span>` : html`<span class="status warn">off (no credentials)</span>`}
      </dd>
      <dt>Leader</dt>
      <dd>${s.leader}</dd>
      <dt>Credentials</dt>
      <dd>${s.credentials}</dd>
      <dt>Queued writes</dt>
      <dd>${outbox('pending') + outbox('sending')}</dd>
      <dt>Dead commands</dt>
      <dd><a href="/console/dead?system=${s.system}">${outbox('dead')}</a></dd>
      <dt>Dead events</dt>
      <dd><a href="/console/dead?system=${s.system}">${deadEvents}</a></dd>
      <dt>Poll lag</dt>
      <dd>${pollLag(ops, s.system)}</dd>
    </dl>
  </div>`;
}

/** The worst poll lag of the system's pollers, and whether the last poll failed. */
function pollLag(ops: OpsSnapshot, system: string): string {
  const pollers = ops.pollers.filter((p) => p.system === system);
  if (pollers.length === 0) return 'not polling';
  const worst = Math.max(...pollers.map((p) => p.lagSeconds ?? Infinity));
  const failing = pollers.some((p) => p.failing);
  return `${Number.isFinite(worst) ? `${Math.round(worst)} s` : 'no successful poll yet'}${failing ? ' (last poll failed)' : ''}`;
}

function flowsSection(ops: OpsSnapshot, flows: FlowView[]): Html {
  return html`<section aria-labelledby="flows-h">
    <h2 id="flows-h">Flows</h2>
    ${table(
      'Flows and their state',
      ['Flow', 'State', 'Links'],
      flows.map(
        (f) =>
          html`<tr>
            <td>${f.flow}</td>
            <td>
              ${f.paused ? html`<span class="status warn">paused</span>` : html`<span class="status ok">running</span>`}
            </td>
            <td class="num">${ops.links.find((l) => l.flow === f.flow)?.count ?? 0}</td>
          </tr>`,
      ),
      'No flows.',
    )}
  </section>`;
}

/** The current (or last) reconcile's progress, and the button that starts one. */
function reconcileSection(run: ReconcileView | undefined, available: boolean, csrf: string): Html {
  return html`<section
    aria-labelledby="reconcile-h"
    id="reconcile"
    data-status="${run?.status ?? 'none'}"
  >
    <h2 id="reconcile-h">Reconcile</h2>
    ${
      run === undefined
        ? html`<p class="muted" data-reconcile-label>No reconcile has run yet.</p>
            <progress max="100" value="0" aria-labelledby="reconcile-h" hidden>0%</progress>`
        : html`<p>
              <span data-reconcile-label>${run.label}</span> · run ${run.id}, started
              ${when(run.startedAt)}${run.finishedAt !== null ? html`, finished ${when(run.finishedAt)}` : ''}
            </p>
            <progress max="100" value="${run.percent}" aria-labelledby="reconcile-h">
              ${run.percent}%
            </progress>
            ${run.error !== null ? html`<p class="error">${run.error}</p>` : ''}`
    }
    ${
      available
        ? html`<div class="actions">
            ${actionButton(csrf, '/console/reconcile', 'Start a reconcile', {
              confirm: 'Read both systems in full and match again?',
            })}
          </div>`
        : ''
    }
  </section>`;
}
