import express, { Router, type Request } from 'express';
import { z } from 'zod';
import { FLOW_IDS, type Config } from '../config.js';
import { listRecordAudit } from '../db/audit.js';
import { listCommands, listRecordCommands, type ApiCommandStatus } from '../db/commands.js';
import { listConflicts } from '../db/conflicts.js';
import type { Db } from '../db/database.js';
import type { HistoryPosition } from '../db/history-position.js';
import { listFlowControls, type FlowControlRow } from '../db/flow-controls.js';
import { listInboundEvents, listRecordEvents } from '../db/inbound-events.js';
import { listLinks, listUnlinkedRecords } from '../db/links.js';
import { getMirrorRecord, type RecordKey } from '../db/records.js';
import { getCurrentReconcileRun } from '../db/reconcile-runs.js';
import type {
  AuditEntryRow,
  ConflictRow,
  InboundEventRow,
  LinkRow,
  OutboundCommandRow,
  RecordRow,
} from '../db/schema.js';
import { NotConfiguredError, NotFoundError, ValidationError } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import { recordTypesOf } from '../record-types.js';
import { FLOWS, flowById } from '../sync/flows.js';
import {
  dismissConflictByHand,
  dropCommand,
  linkByHand,
  pauseFlow,
  replayCommand,
  replayDeadCommands,
  retryDeadEvents,
  retryEvent,
  unlinkByHand,
} from '../sync/operator.js';
import { toReconcileRunDto, type Reconciler } from '../sync/reconcile.js';
import type { SystemStatus } from '../service.js';
import { requireAdminToken } from './admin-token.js';
import { cursorSchema, keyCursorSchema, pageOf } from './paging.js';

// The admin API (README "The admin API", openapi.yaml tag "admin"): what an operator
// needs to see links, conflicts and commands, act on them, follow one record and run a
// reconcile. Thin routes: parse → query or operator action → map to the documented shape.

export interface AdminDeps {
  config: Readonly<Config>;
  db: Db;
  logger: Logger;
  /** Without it POST /admin/reconcile answers 503; GET still shows stored runs. */
  reconciler?: Reconciler | undefined;
  /** Each system's state on this replica (GET /admin/systems). */
  systemStatus?: (() => SystemStatus[]) | undefined;
}

const limit = z.coerce
  .number({ error: 'must be a whole number from 1 to 1000' })
  .int({ error: 'must be a whole number from 1 to 1000' })
  .min(1, { error: 'must be a whole number from 1 to 1000' })
  .max(1000, { error: 'must be a whole number from 1 to 1000' })
  .default(100);
const id = z.string().min(1).max(128);
const system = z.enum(['tidsbanken', 'poweroffice']);
const digits = z.string().regex(/^[0-9]{1,18}$/, { error: 'must be an id (digits)' });

const LinksQuerySchema = z
  .object({
    flow: z.enum(FLOW_IDS).optional(),
    tidsbankenId: id.optional(),
    powerofficeId: id.optional(),
    includeUnlinked: z.enum(['true', 'false']).optional(),
    search: z.string().trim().min(1).max(200).optional(),
    unlinked: system.optional(),
    limit,
    cursor: keyCursorSchema,
  })
  .strict()
  .refine((q) => q.unlinked === undefined || q.flow !== undefined, {
    error: 'unlinked needs flow (the records of one side of that flow without a link in it)',
    path: ['unlinked'],
  });

const ConflictsQuerySchema = z
  .object({
    flow: z.enum(FLOW_IDS).optional(),
    kind: z.enum(['ambiguous_match', 'field_conflict']).optional(),
    status: z.enum(['open', 'resolved']).optional(),
    system: system.optional(),
    recordId: id.optional(),
    limit,
    cursor: cursorSchema,
  })
  .strict();

const CommandsQuerySchema = z
  .object({
    status: z.enum(['pending', 'sent', 'dead', 'dry_run', 'superseded', 'dropped']).optional(),
    system: system.optional(),
    flow: z.enum(FLOW_IDS).optional(),
    limit,
    cursor: cursorSchema,
  })
  .strict();

const EventsQuerySchema = z
  .object({
    status: z.enum(['pending', 'done', 'dead']).default('dead'),
    system: system.optional(),
    limit,
    cursor: cursorSchema,
  })
  .strict();

const NewLinkSchema = z
  .object({ flow: z.enum(FLOW_IDS), tidsbankenId: id, powerofficeId: id })
  .strict();
const BulkReplaySchema = z
  .object({
    status: z.literal('dead'),
    system: system.optional(),
    flow: z.enum(FLOW_IDS).optional(),
  })
  .strict();
const BulkRetrySchema = z.object({ status: z.literal('dead'), system: system.optional() }).strict();
const FlowParamSchema = z.enum(FLOW_IDS, { error: `must be one of ${FLOW_IDS.join(', ')}` });

/** Only `limit` and a key cursor: a record's history, and the short fixed lists (flows, systems). */
const KeyPageQuerySchema = z.object({ limit, cursor: keyCursorSchema }).strict();
const EmptyQuerySchema = z.object({}).strict();

const HistoryParamsSchema = z
  .discriminatedUnion('system', [
    z.object({ system: z.literal('tidsbanken'), type: z.enum(recordTypesOf('tidsbanken')) }),
    z.object({ system: z.literal('poweroffice'), type: z.enum(recordTypesOf('poweroffice')) }),
  ])
  .and(z.object({ id }));

export function adminRouter(deps: AdminDeps): Router {
  const router = Router();
  router.use(requireAdminToken(deps.config.adminToken));
  router.use(express.json({ limit: '16kb', strict: true }));
  linkRoutes(router, deps);
  conflictRoutes(router, deps);
  commandRoutes(router, deps);
  eventRoutes(router, deps);
  systemAndFlowRoutes(router, deps);
  historyRoutes(router, deps);
  reconcileRoutes(router, deps);
  return router;
}

/** The id of the one row an action names; the action takes no query parameters. */
function rowId(req: Request): string {
  parse(EmptyQuerySchema, req.query);
  return parse(digits, req.params.id, 'id');
}

/** Links (and the records without one), linking and unlinking by hand. */
function linkRoutes(router: Router, deps: AdminDeps): void {
  router.get('/links', async (req, res) => {
    const q = parse(LinksQuerySchema, req.query);
    if (q.unlinked !== undefined) {
      const flow = flowById(q.flow!)!;
      const rows = await listUnlinkedRecords(deps.db, {
        flow: flow.id,
        system: q.unlinked,
        recordType: q.unlinked === 'tidsbanken' ? flow.tidsbanken : flow.poweroffice,
        after: q.cursor,
        limit: q.limit,
      });
      res.json(pageOf(rows, q.limit, (r) => r.record_id, toRecordDto));
      return;
    }
    if (q.cursor !== undefined && !/^[0-9]{1,18}$/.test(q.cursor)) {
      throw new ValidationError('Invalid parameter cursor: is not a cursor this API returned.', {
        parameter: 'cursor',
      });
    }
    const rows = await listLinks(deps.db, {
      ...q,
      includeUnlinked: q.includeUnlinked === 'true',
      before: q.cursor,
    });
    res.json(pageOf(rows, q.limit, (r) => r.id, toLinkDto));
  });

  router.post('/links', async (req, res) => {
    parse(EmptyQuerySchema, req.query);
    const body = parse(NewLinkSchema, req.body ?? {});
    const link = await linkByHand(deps, body);
    res
      .status(201)
      .location(
        `/admin/links?flow=${link.flow}&tidsbankenId=${encodeURIComponent(link.tidsbanken_id)}`,
      )
      .json(toLinkDto(link));
  });

  router.delete('/links/:id', async (req, res) => {
    await unlinkByHand(deps, rowId(req));
    res.status(204).end();
  });
}

/** Conflicts, and dismissing one. */
function conflictRoutes(router: Router, deps: AdminDeps): void {
  router.get('/conflicts', async (req, res) => {
    const q = parse(ConflictsQuerySchema, req.query);
    const rows = await listConflicts(deps.db, { ...q, before: q.cursor });
    res.json(pageOf(rows, q.limit, (r) => r.id, toConflictDto));
  });

  router.post('/conflicts/:id/dismiss', async (req, res) => {
    const conflict = await dismissConflictByHand(deps, rowId(req));
    res.json(toConflictDto(conflict));
  });
}

/** Outbound commands, and replaying or dropping dead ones. */
function commandRoutes(router: Router, deps: AdminDeps): void {
  router.get('/commands', async (req, res) => {
    const q = parse(CommandsQuerySchema, req.query);
    const rows = await listCommands(deps.db, { ...q, before: q.cursor });
    res.json(pageOf(rows, q.limit, (r) => r.id, toCommandDto));
  });

  router.post('/commands/replay', async (req, res) => {
    parse(EmptyQuerySchema, req.query);
    const body = parse(BulkReplaySchema, req.body ?? {});
    const result = await replayDeadCommands(deps, { system: body.system, flow: body.flow });
    res.status(202).json(result);
  });

  router.post('/commands/:id/replay', async (req, res) => {
    const replayed = await replayCommand(deps, rowId(req));
    res.status(202).json(toCommandDto(replayed));
  });

  router.post('/commands/:id/drop', async (req, res) => {
    const dropped = await dropCommand(deps, rowId(req));
    res.json(toCommandDto(dropped));
  });
}

/** Inbox events, and retrying dead ones. */
function eventRoutes(router: Router, deps: AdminDeps): void {
  router.get('/events', async (req, res) => {
    const q = parse(EventsQuerySchema, req.query);
    const rows = await listInboundEvents(deps.db, {
      status: q.status,
      source: q.system,
      before: q.cursor,
      limit: q.limit,
    });
    res.json(pageOf(rows, q.limit, (r) => r.id, toEventDto));
  });

  router.post('/events/retry', async (req, res) => {
    parse(EmptyQuerySchema, req.query);
    const body = parse(BulkRetrySchema, req.body ?? {});
    res.status(202).json(await retryDeadEvents(deps, { system: body.system }));
  });

  router.post('/events/:id/retry', async (req, res) => {
    const retried = await retryEvent(deps, rowId(req));
    res.status(202).json(toEventDto(retried));
  });
}

/** Each system's state on this replica; the flows, and pausing or resuming one. */
function systemAndFlowRoutes(router: Router, deps: AdminDeps): void {
  router.get('/systems', (req, res) => {
    const q = parse(KeyPageQuerySchema, req.query);
    const items = (deps.systemStatus?.() ?? []).map((status) => ({
      system: status.system,
      configured: status.configured,
      leader: status.leader ?? false,
      // Refused credentials pause the system's writes and polls until they work again.
      credentialsRefused: status.credentials !== undefined,
      credentialsRefusedSince: status.credentials?.since.toISOString() ?? null,
      credentialsError: status.credentials?.message ?? null,
    }));
    res.json(fixedPage(items, (i) => i.system, q));
  });

  router.get('/flows', async (req, res) => {
    const q = parse(KeyPageQuerySchema, req.query);
    res.json(fixedPage(await listFlows(deps), (f) => f.flow, q));
  });

  for (const action of ['pause', 'resume'] as const) {
    router.post(`/flows/:flow/${action}`, async (req, res) => {
      parse(EmptyQuerySchema, req.query);
      const flow = parse(FlowParamSchema, req.params.flow, 'flow');
      const row = await pauseFlow(deps, flow, action === 'pause');
      res.json(toFlowDto(deps.config, flow, row));
    });
  }
}

/** One record's history. */
function historyRoutes(router: Router, deps: AdminDeps): void {
  router.get('/records/:system/:type/:id/history', async (req, res) => {
    const q = parse(KeyPageQuerySchema, req.query);
    const params = parse(HistoryParamsSchema, req.params);
    const key: RecordKey = { system: params.system, recordType: params.type, recordId: params.id };
    res.json(await readRecordHistory(deps.db, key, q));
  });
}

/** Starting a reconcile, and its progress. */
function reconcileRoutes(router: Router, deps: AdminDeps): void {
  router.post('/reconcile', async (req, res) => {
    parse(EmptyQuerySchema, req.query);
    if (deps.reconciler === undefined) {
      throw new NotConfiguredError('Reconcile is not available in this process.');
    }
    const { run, started } = await deps.reconciler.start();
    deps.logger
      .child({ module: 'admin' })
      .info(
        { runId: run.id, started },
        started ? 'reconcile started' : 'reconcile already running',
      );
    res.status(202).json(toReconcileRunDto(run));
  });

  router.get('/reconcile', async (req, res) => {
    parse(EmptyQuerySchema, req.query);
    const run = await getCurrentReconcileRun(deps.db);
    if (run === undefined) throw new NotFoundError('No reconcile has run yet.');
    res.json(toReconcileRunDto(run));
  });
}

/**
 * One page of a short list in a fixed order: the items after the one the cursor names. A
 * cursor naming no item is refused (400).
 */
function fixedPage<Item>(
  items: Item[],
  keyOf: (item: Item) => string,
  page: { limit: number; cursor: string | undefined },
): { items: Item[]; nextCursor: string | null } {
  let start = 0;
  if (page.cursor !== undefined) {
    const at = items.findIndex((item) => keyOf(item) === page.cursor);
    if (at < 0) {
      throw new ValidationError('Invalid parameter cursor: is not a cursor this API returned.', {
        parameter: 'cursor',
      });
    }
    start = at + 1;
  }
  return pageOf(items.slice(start, start + page.limit + 1), page.limit, keyOf, (item) => item);
}

/** Every flow with its pause state (a flow never paused has no stored row). */
export async function listFlows(deps: { config: Readonly<Config>; db: Db }) {
  const controls = await listFlowControls(deps.db);
  return FLOWS.map((flow) =>
    toFlowDto(
      deps.config,
      flow.id,
      controls.find((c) => c.flow === flow.id),
    ),
  );
}

// ---- parsing ------------------------------------------------------------------------

export function parse<S extends z.ZodType>(
  schema: S,
  input: unknown,
  prefix?: string,
): z.output<S> {
  const result = schema.safeParse(input);
  if (result.success) return result.data;
  const issues = result.error.issues;
  const name = (issue: z.core.$ZodIssue): string => {
    // .strict() reports unknown keys on the object itself, with their names in `keys`.
    if (issue.code === 'unrecognized_keys') return issue.keys.join(', ');
    return [prefix, ...issue.path.map(String)].filter(Boolean).join('.') || '(input)';
  };
  const message = (issue: z.core.$ZodIssue): string =>
    issue.code === 'unrecognized_keys' ? 'is not a known parameter' : issue.message;
  const first = issues[0]!;
  throw new ValidationError(`Invalid parameter ${name(first)}: ${message(first)}.`, {
    parameter: name(first),
    errors: issues
      .slice(0, 10)
      .map((issue) => ({ parameter: name(issue), message: message(issue) })),
  });
}

// ---- use cases ----------------------------------------------------------------------

export interface HistoryEntry {
  id: string;
  kind: string;
  at: string;
  flow: string | null;
  linkId: string | null;
  eventId: string | null;
  commandId: string | null;
  detail: Record<string, unknown>;
}

/**
 * The audit trail of one record, newest first: inbox events, the engine's audit entries and
 * the commands that write to it, merged by (time, source, id). One page: each source gives
 * its next `limit + 1` rows after the cursor, and the merge keeps `limit + 1` (the extra one
 * only says there is more). The cursor is the position of the last entry shown.
 */
export async function readRecordHistory(
  db: Db,
  key: RecordKey,
  page: { cursor?: string | undefined; limit: number },
): Promise<{
  record: Record<string, unknown> | null;
  items: HistoryEntry[];
  nextCursor: string | null;
}> {
  const before = page.cursor !== undefined ? parseHistoryPosition(page.cursor) : undefined;
  const fetch = { before, limit: page.limit + 1 };
  // One after another: on embedded PGlite queries run one at a time anyway.
  const record = await getMirrorRecord(db, key.system, key.recordType, key.recordId);
  const events = await listRecordEvents(db, key, fetch);
  const audit = await listRecordAudit(db, key, fetch);
  const commands = await listRecordCommands(db, key, fetch);
  const merged = [
    ...events.map((row) => ({ pos: position(row, 0), entry: eventEntry(row) })),
    ...audit.map((row) => ({ pos: position(row, 1), entry: auditEntry(row) })),
    ...commands.map((row) => ({ pos: position(row, 2), entry: commandEntry(row) })),
  ]
    .sort((a, b) => comparePositions(b.pos, a.pos))
    .slice(0, page.limit + 1);
  return {
    record: record !== undefined ? toRecordDto(record) : null,
    ...pageOf(
      merged,
      page.limit,
      (m) => `${m.pos.at}|${m.pos.rank}|${m.pos.id}`,
      (m) => m.entry,
    ),
  };
}

function position(row: { at_key: string; id: string }, rank: number): HistoryPosition {
  return { at: row.at_key, rank, id: String(row.id) };
}

function comparePositions(a: HistoryPosition, b: HistoryPosition): number {
  // `at` is fixed-width text, so text order is time order.
  if (a.at !== b.at) return a.at < b.at ? -1 : 1;
  if (a.rank !== b.rank) return a.rank - b.rank;
  return Number(BigInt(a.id) - BigInt(b.id));
}

const HISTORY_POSITION = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z)\|([012])\|([0-9]{1,18})$/;

/** The decoded `cursor` of a history page (keyCursorSchema decodes the outer encoding). */
function parseHistoryPosition(key: string): HistoryPosition {
  const match = HISTORY_POSITION.exec(key);
  if (match === null) {
    throw new ValidationError('Invalid parameter cursor: is not a cursor this API returned.', {
      parameter: 'cursor',
    });
  }
  return { at: match[1]!, rank: Number(match[2]), id: match[3]! };
}

function eventEntry(row: InboundEventRow): HistoryEntry {
  return {
    id: `event:${row.id}`,
    kind: 'event',
    at: iso(row.created_at),
    flow: null,
    linkId: null,
    eventId: String(row.id),
    commandId: null,
    detail: {
      eventType: row.event_type,
      origin: row.origin,
      sourceEventId: row.event_id,
      status: row.status,
      attempts: row.attempts,
      lastError: row.last_error,
      isThin: row.is_thin,
      occurredAt: isoOrNull(row.occurred_at),
      processedAt: isoOrNull(row.processed_at),
    },
  };
}

function auditEntry(row: AuditEntryRow): HistoryEntry {
  return {
    id: `audit:${row.id}`,
    kind: row.kind,
    at: iso(row.created_at),
    flow: row.flow,
    linkId: row.link_id !== null ? String(row.link_id) : null,
    eventId: row.event_id !== null ? String(row.event_id) : null,
    commandId: row.command_id !== null ? String(row.command_id) : null,
    detail: row.detail,
  };
}

function commandEntry(row: OutboundCommandRow): HistoryEntry {
  return {
    id: `command:${row.id}`,
    kind: 'command',
    at: iso(row.created_at),
    flow: row.flow,
    linkId: row.link_id !== null ? String(row.link_id) : null,
    eventId: null,
    commandId: String(row.id),
    detail: {
      operation: row.operation,
      status: apiStatus(row.status),
      attempts: row.attempts,
      payload: row.payload,
      lastError: row.last_error,
      sentAt: isoOrNull(row.sent_at),
    },
  };
}

// ---- response shapes (openapi.yaml components/schemas) --------------------------------

function apiStatus(status: OutboundCommandRow['status']): ApiCommandStatus {
  // 'sending' (claimed, request in flight) is still "not sent" to an operator.
  return status === 'sending' ? 'pending' : status;
}

export function toLinkDto(row: LinkRow) {
  return {
    id: String(row.id),
    flow: row.flow,
    tidsbankenType: row.tidsbanken_type,
    tidsbankenId: String(row.tidsbanken_id),
    powerofficeType: row.poweroffice_type,
    powerofficeId: String(row.poweroffice_id),
    powerofficeParentId: row.poweroffice_parent_id,
    linkedBy: row.linked_by,
    lastSyncedAt: isoOrNull(row.last_synced_at),
    shadow: row.shadow,
    unlinkedAt: isoOrNull(row.unlinked_at),
    unlinkReason: row.unlink_reason,
    createdAt: iso(row.created_at),
  };
}

export function toConflictDto(row: ConflictRow) {
  return {
    id: String(row.id),
    flow: row.flow,
    kind: row.kind,
    system: row.system,
    recordType: row.record_type,
    recordId: String(row.record_id),
    linkId: row.link_id !== null ? String(row.link_id) : null,
    candidates: row.candidates ?? null,
    field: row.field,
    tidsbankenValue: row.tidsbanken_value ?? null,
    powerofficeValue: row.poweroffice_value ?? null,
    resolution: row.resolution,
    status: row.status,
    resolvedAt: isoOrNull(row.resolved_at),
    createdAt: iso(row.created_at),
  };
}

export function toCommandDto(row: OutboundCommandRow) {
  return {
    id: String(row.id),
    system: row.system,
    operation: row.operation,
    recordType: row.record_type,
    recordId: row.record_id,
    parentId: row.parent_id,
    flow: row.flow,
    linkId: row.link_id !== null ? String(row.link_id) : null,
    originSystem: row.origin_system,
    originId: row.origin_id,
    payload: row.payload,
    status: apiStatus(row.status),
    attempts: row.attempts,
    maxAttempts: row.max_attempts,
    lastError: row.last_error ?? null,
    runAt: iso(row.run_at),
    createdAt: iso(row.created_at),
    sentAt: isoOrNull(row.sent_at),
  };
}

export function toEventDto(row: InboundEventRow) {
  return {
    id: String(row.id),
    source: row.source,
    origin: row.origin,
    eventType: row.event_type,
    recordType: row.record_type,
    recordId: row.record_id === '' ? null : row.record_id,
    parentId: row.parent_id,
    status: row.status,
    attempts: row.attempts,
    lastError: row.last_error,
    /** A record set aside because it could not be stored or read as it is: its JSON text. */
    rawRecord: row.raw_record,
    isThin: row.is_thin,
    occurredAt: isoOrNull(row.occurred_at),
    createdAt: iso(row.created_at),
    processedAt: isoOrNull(row.processed_at),
  };
}

export function toFlowDto(
  config: Readonly<Config>,
  flowId: string,
  row: FlowControlRow | undefined,
) {
  const flow = flowById(flowId)!;
  return {
    flow: flow.id,
    tidsbankenType: flow.tidsbanken,
    powerofficeType: flow.poweroffice,
    onUnmatched: config.unmatched[flow.id],
    paused: row?.paused_at != null,
    pausedAt: isoOrNull(row?.paused_at ?? null),
  };
}

export function toRecordDto(row: RecordRow) {
  return {
    system: row.system,
    recordType: row.record_type,
    recordId: row.record_id,
    parentId: row.parent_id,
    data: row.data,
    sourceUpdatedAt: isoOrNull(row.source_updated_at),
    deletedAt: isoOrNull(row.deleted_at),
    updatedAt: iso(row.updated_at),
  };
}

// Timestamps arrive as Date from both drivers; the generated-column types do not say so.
function toDate(value: unknown): Date {
  return value instanceof Date ? value : new Date(String(value));
}

export function iso(value: unknown): string {
  return toDate(value).toISOString();
}

export function isoOrNull(value: unknown): string | null {
  return value === null || value === undefined ? null : iso(value);
}
