import { isUtf8 } from 'node:buffer';
import type { IncomingMessage, ServerResponse } from 'node:http';
import express, { type Express, type Request, type RequestHandler, type Response } from 'express';
import type { z } from 'zod';
import type { Config } from '../config.js';
import type { Db } from '../db/database.js';
import { createInboxWriter, InboxUnavailableError, type InboxWriter } from '../db/inbox-writer.js';
import type { SystemName } from '../db/schema.js';
import {
  AppError,
  NotConfiguredError,
  StorageUnavailableError,
  UnauthorizedError,
  ValidationError,
} from '../errors.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { TrackRequest } from './request-log.js';
import {
  createWebhookVerifier,
  type VerifierResult,
  type WebhookVerifier,
} from './webhook-signature.js';
import {
  MAX_ID_LENGTH,
  WEBHOOK_ENVELOPE_SCHEMAS,
  parseWebhookData,
  toTimestamp,
  type ParsedWebhookData,
  type WebhookEventType,
} from './webhook-schemas.js';

// POST /webhooks/{tidsbanken,poweroffice} (README "Endpoints", openapi.yaml). The request path is: configured?
// → JSON content type → size → signature over the raw bytes → JSON → schema → ONE durable
// insert → 202. Nothing else runs here: the sync worker picks the row up later.
//
// Checks run in that order so a caller learns the cheapest fact first and nothing unsigned
// is ever parsed. Every refusal is problem+json, counted by reason, and stores nothing.

export const MAX_WEBHOOK_BYTES = 1024 * 1024;
// JSON nesting deeper than any real record: deeper input would only cost stack.
const MAX_DEPTH = 32;

type RejectReason = 'not_configured' | 'media_type' | 'size' | 'signature' | 'json' | 'schema';

class PayloadTooLargeError extends AppError {
  constructor() {
    super('payload_too_large', 413, `The request body is larger than ${MAX_WEBHOOK_BYTES} bytes.`);
  }
}

class UnsupportedMediaTypeError extends AppError {
  constructor() {
    super(
      'unsupported_media_type',
      415,
      'The request body must be JSON (Content-Type: application/json; charset=utf-8).',
    );
  }
}

class InvalidJsonError extends AppError {
  constructor(message: string) {
    super('invalid_json', 400, message);
  }
}

interface WebhookDeps {
  config: Readonly<Config>;
  db: Db;
  logger: Logger;
  metrics: Metrics;
  /** Defaults to a group-committing writer on `db`. */
  inbox?: InboxWriter;
}

/** The two webhook endpoints by path, sharing one inbox writer. */
export type WebhookRoutes = ReadonlyMap<string, RequestHandler>;

export function webhookRoutes(deps: WebhookDeps): WebhookRoutes {
  const inbox = deps.inbox ?? createInboxWriter(deps.db);
  const logger = deps.logger.child({ module: 'webhooks' });
  return new Map(
    (['tidsbanken', 'poweroffice'] as const).map((system) => [
      `/webhooks/${system}`,
      webhookHandler(system, deps, inbox, logger),
    ]),
  );
}

/**
 * Adds the routes to `app`. Registered on the app itself rather than as a nested Router:
 * each router level costs every request a path match. With the fast path (below) these
 * routes serve only what it leaves to Express: another spelling of the path (case, a
 * trailing slash, a query string).
 */
export function registerWebhookRoutes(app: Express, routes: WebhookRoutes): void {
  for (const [path, handler] of routes) app.post(path, handler);
}

/** What the fast path does itself that the app's middleware would otherwise do. */
export interface FastPathFront {
  /** The API security headers (the values helmet sets). */
  setSecurityHeaders: (res: ServerResponse) => void;
  /** The request id, the metrics and the log line (the request log's middleware). */
  track: TrackRequest;
}

const FAST_PATH_ERROR = Symbol('webhookFastPathError');
type FastPathRequest = IncomingMessage & { [FAST_PATH_ERROR]?: unknown };
type Handle = (req: IncomingMessage, res: ServerResponse, callback?: unknown) => void;

/**
 * The hot path without Express: `POST /webhooks/{system}`, spelled exactly so, is answered
 * before Express's request set-up and router (prototype swaps, a dozen middleware and route
 * layers per request: a quarter of the app's time per webhook in bench/ingest). The answer is
 * the same as through Express: the security headers, the request id and log line, the metrics
 * labelled with the route. A refusal goes on into Express with its error, so the error
 * handler answers it as it answers every other error.
 *
 * It hooks `app.handle`, the one method through which Express's app function serves every
 * request (in `app.listen`, `http.createServer(app)` and supertest alike), so every caller
 * gets the same path. test/integration/webhooks*.test.ts cover both paths.
 */
export function answerWebhooksFirst(
  app: Express,
  routes: WebhookRoutes,
  front: FastPathFront,
): void {
  // The app's first layer: a request the fast path refused carries its error into Express.
  app.use((req, _res, next) => {
    next((req as FastPathRequest)[FAST_PATH_ERROR]);
  });
  const target = app as unknown as { handle: Handle };
  const expressHandle = target.handle.bind(app);
  target.handle = (req, res, callback) => {
    const handler = req.method === 'POST' ? routes.get(req.url ?? '') : undefined;
    if (handler === undefined) {
      expressHandle(req, res, callback);
      return;
    }
    front.setSecurityHeaders(res);
    front.track(req, res, req.url);
    handler(req as Request, res as Response, (err?: unknown) => {
      (req as FastPathRequest)[FAST_PATH_ERROR] = err ?? new Error('webhook handler passed on');
      expressHandle(req, res, callback);
    });
  };
}

/** What every step of one endpoint needs. */
interface Endpoint {
  system: SystemName;
  inbox: InboxWriter;
  logger: Logger;
  metrics: Metrics;
  /** Undefined: the endpoint answers 503 (no secret, or one that is not usable). */
  signatures: WebhookVerifier | undefined;
}

/** A step either hands on its value or refuses with the error to answer. */
type Step<T> = { ok: true; value: T } | { ok: false; error: AppError };

const refuse = (error: AppError): { ok: false; error: AppError } => ({ ok: false, error });

/** A parsed, schema-checked event, ready to store. */
interface WebhookEvent {
  eventId: string;
  eventType: WebhookEventType;
  timestamp: string | undefined;
  /** `data` as stored (see parseWebhookData). */
  data: Record<string, unknown>;
  record: Extract<ParsedWebhookData, { ok: true }>;
  /** Size of the request body: what a waiting request holds counts against the inbox bound. */
  bytes: number;
}

function webhookHandler(
  system: SystemName,
  deps: WebhookDeps,
  inbox: InboxWriter,
  logger: Logger,
): RequestHandler {
  const endpoint: Endpoint = {
    system,
    inbox,
    logger,
    metrics: deps.metrics,
    signatures: signaturesFor(system, deps.config, logger),
  };
  const rawBody = express.raw({ type: () => true, limit: MAX_WEBHOOK_BYTES, inflate: false });

  return (req, res, next) => {
    const acceptTimer = endpoint.metrics.webhookAcceptDuration.startTimer({ system });
    const { signatures } = endpoint;
    if (signatures === undefined) {
      const message = `The ${system} webhook endpoint is not configured.`;
      next(rejected(endpoint, 'not_configured', new NotConfiguredError(message)));
      return;
    }
    if (!isJsonContentType(req.headers['content-type'])) {
      next(rejected(endpoint, 'media_type', new UnsupportedMediaTypeError()));
      return;
    }
    rawBody(req, res, (err?: unknown) => {
      if (err !== undefined && err !== null) {
        next(bodyReadError(endpoint, err));
        return;
      }
      // Straight on, not through the router: one handler per route is one dispatch less.
      // A throw inside goes to the error handler, as Express would route it.
      acceptWebhook(endpoint, signatures, req, res, acceptTimer).then((error) => {
        if (error !== undefined) next(error);
      }, next);
    });
  };
}

/** The verifier for the system's configured secrets, or undefined when there is none usable. */
function signaturesFor(
  system: SystemName,
  config: Readonly<Config>,
  logger: Logger,
): WebhookVerifier | undefined {
  const secrets = config[system].webhookSecrets;
  if (secrets === undefined) return undefined;
  const verifier: VerifierResult = createWebhookVerifier(secrets);
  if (!verifier.ok) {
    logger.error({ system }, 'the configured webhook secret is not usable (whsec_ needs base64)');
    return undefined;
  }
  return verifier.verifier;
}

/** Counts a refusal by reason and hands the error on. */
function rejected(endpoint: Endpoint, reason: RejectReason, error: AppError): AppError {
  endpoint.metrics.webhooksRejected.inc({ system: endpoint.system, reason });
  return error;
}

/** The body could not be read: too large, an odd encoding, or a broken upload. */
function bodyReadError(endpoint: Endpoint, err: unknown): AppError {
  const status = (err as { status?: unknown }).status;
  if (status === 413) return rejected(endpoint, 'size', new PayloadTooLargeError());
  if (status === 415) return rejected(endpoint, 'media_type', new UnsupportedMediaTypeError());
  // An aborted or broken upload: a 400, never a 5xx.
  return rejected(endpoint, 'json', new InvalidJsonError('The request body could not be read.'));
}

/** Signature → parse → store → 202. Resolves to the error to answer, if any. */
async function acceptWebhook(
  endpoint: Endpoint,
  signatures: WebhookVerifier,
  req: Request,
  res: Response,
  acceptTimer: () => void,
): Promise<AppError | undefined> {
  const body: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
  // Decoded once: the signature is over this text (as the library does it), and the JSON
  // is parsed from it once the bytes are known to be valid UTF-8.
  const text = body.toString();
  const signed = verifySignature(endpoint, signatures, req, text);
  if (!signed.ok) return signed.error;
  const event = parseEvent(endpoint, signed.value, body, text);
  if (!event.ok) return event.error;
  const stored = await storeEvent(endpoint, req, res, event.value);
  if (!stored.ok) return stored.error;
  acceptTimer();
  answerAccepted(endpoint, req, res, event.value, stored.value);
  return undefined;
}

/** The webhook id when the signature verifies with one of the secrets. */
function verifySignature(
  endpoint: Endpoint,
  signatures: WebhookVerifier,
  req: Request,
  text: string,
): Step<string> {
  const { system, logger } = endpoint;
  const signed = signatures.verify(text, req.headers);
  if (!signed.ok) {
    // The reason goes to the log only: a caller probing signatures learns nothing.
    logger.warn({ system, requestId: requestIdOf(req), reason: signed.reason }, 'webhook refused');
    return refuse(
      rejected(
        endpoint,
        'signature',
        new UnauthorizedError('The webhook signature is missing or invalid.'),
      ),
    );
  }
  if (signed.id.length > MAX_ID_LENGTH) {
    return refuse(
      rejected(
        endpoint,
        'schema',
        new ValidationError(`webhook-id is longer than ${MAX_ID_LENGTH} characters.`, {
          field: 'webhook-id',
        }),
      ),
    );
  }
  return { ok: true, value: signed.id };
}

/** JSON, then the envelope schema, then the record schema of its event type. */
function parseEvent(
  endpoint: Endpoint,
  eventId: string,
  body: Buffer,
  text: string,
): Step<WebhookEvent> {
  const json = parseJson(body, text);
  if (!json.ok) return refuse(rejected(endpoint, 'json', new InvalidJsonError(json.message)));
  const envelope = WEBHOOK_ENVELOPE_SCHEMAS[endpoint.system].safeParse(json.value);
  if (!envelope.success) {
    return refuse(rejected(endpoint, 'schema', schemaError(envelope.error.issues, [])));
  }
  // Store `data` as sent (key case, unknown fields, a Kunde's number or string id); the
  // schemas vouch for it and pull out the keys (see parseWebhookData for the one exception).
  const data = (json.value as { data: Record<string, unknown> }).data;
  const record = parseWebhookData(envelope.data.type, data);
  if (!record.ok) {
    return refuse(rejected(endpoint, 'schema', schemaError(record.issues, ['data'])));
  }
  return {
    ok: true,
    value: {
      eventId,
      eventType: envelope.data.type,
      timestamp: envelope.data.timestamp,
      data: record.payload,
      record,
      bytes: body.length,
    },
  };
}

/** The one durable insert; `duplicate` when the webhook id was stored before. */
async function storeEvent(
  endpoint: Endpoint,
  req: Request,
  res: Response,
  event: WebhookEvent,
): Promise<Step<boolean>> {
  const { system, logger, inbox } = endpoint;
  const { record } = event;
  try {
    const { duplicate } = await inbox.write(
      {
        source: system,
        origin: 'webhook',
        eventId: event.eventId,
        eventType: event.eventType,
        recordType: record.recordType,
        recordId: record.recordId,
        parentId: record.parentId,
        payload: event.data,
        isThin: record.isThin,
        occurredAt: toTimestamp(event.timestamp) ?? record.changedAt,
      },
      event.bytes,
    );
    return { ok: true, value: duplicate };
  } catch (err) {
    // Not stored, so not accepted: the sender keeps the event and retries (Standard
    // Webhooks senders retry on any non-2xx). A 503 says "later", not "your fault".
    if (err instanceof InboxUnavailableError) {
      logger.warn(
        { system, requestId: requestIdOf(req), reason: err.reason },
        'webhook not stored: the database is not taking rows',
      );
    } else {
      logger.error({ err, system, requestId: requestIdOf(req) }, 'webhook could not be stored');
    }
    res.setHeader('Retry-After', '5');
    return refuse(
      new StorageUnavailableError(
        'The event could not be stored; it was not accepted. Retry later.',
      ),
    );
  }
}

/** 202 with the webhook id, counted as accepted or duplicate. */
function answerAccepted(
  endpoint: Endpoint,
  req: Request,
  res: Response,
  event: WebhookEvent,
  duplicate: boolean,
): void {
  const { system, logger, metrics } = endpoint;
  (duplicate ? metrics.webhooksDuplicate : metrics.webhooksAccepted).inc({ system });
  // The request log has the request line (at debug when accepted); this adds the event and
  // record ids.
  logger.debug(
    {
      system,
      requestId: requestIdOf(req),
      eventId: event.eventId,
      eventType: event.eventType,
      recordId: event.record.recordId,
      duplicate,
    },
    duplicate ? 'webhook duplicate' : 'webhook stored',
  );
  const answer = JSON.stringify({ id: event.eventId, duplicate });
  res.writeHead(202, {
    'Content-Type': 'application/json; charset=utf-8',
    'Content-Length': Buffer.byteLength(answer),
  });
  res.end(answer);
}

/** `application/json`, any case, with or without `charset=utf-8`. Other charsets: no. */
function isJsonContentType(header: string | undefined): boolean {
  if (header === undefined) return false;
  if (header === 'application/json') return true; // what nearly every sender sends
  const [type, ...params] = header.split(';').map((p) => p.trim().toLowerCase());
  if (type !== 'application/json') return false;
  return params.every((p) => {
    if (!p.startsWith('charset=')) return true;
    const charset = p.slice('charset='.length).replace(/^"|"$/g, '');
    return charset === 'utf-8' || charset === 'utf8';
  });
}

type JsonResult = { ok: true; value: unknown } | { ok: false; message: string };

// PostgreSQL's jsonb refuses \u0000 and lone surrogates; refuse them here as 400 so no
// input can make the insert fail with a 5xx.
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
const hasUnstorable = (s: string) => s.includes('\u0000') || LONE_SURROGATE.test(s);

/** `text` is `body` decoded (lossily); the bytes must be strict UTF-8. A leading BOM is skipped. */
function parseJson(body: Buffer, text: string): JsonResult {
  const INVALID = { ok: false, message: 'The request body is not valid UTF-8 JSON.' } as const;
  if (!isUtf8(body)) return INVALID;
  let value: unknown;
  try {
    value = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch {
    return INVALID;
  }
  // A NUL or a lone surrogate can only come from a \u escape (JSON forbids a raw control
  // character in a string, and strict UTF-8 cannot encode a surrogate): without one, only
  // the depth needs checking.
  const problem = findUnstorable(value, 0, text.includes('\\u'));
  return problem === undefined ? { ok: true, value } : { ok: false, message: problem };
}

function findUnstorable(value: unknown, depth: number, strings: boolean): string | undefined {
  if (typeof value === 'string') {
    return strings && hasUnstorable(value)
      ? 'The request body holds a NUL character or an unpaired surrogate.'
      : undefined;
  }
  if (value === null || typeof value !== 'object') return undefined;
  if (depth >= MAX_DEPTH) return `The request body is nested deeper than ${MAX_DEPTH} levels.`;
  if (Array.isArray(value)) {
    for (const item of value) {
      const problem = findUnstorable(item, depth + 1, strings);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  for (const key in value) {
    const problem =
      findUnstorable(key, depth, strings) ??
      findUnstorable((value as Record<string, unknown>)[key], depth + 1, strings);
    if (problem !== undefined) return problem;
  }
  return undefined;
}

function schemaError(issues: z.core.$ZodIssue[], prefix: PropertyKey[]): ValidationError {
  const first = issues[0];
  const field = [...prefix, ...(first?.path ?? [])].map(String).join('.') || '(body)';
  const message = first?.message ?? 'is invalid';
  return new ValidationError(`Invalid webhook body: ${field} ${message}.`, {
    field,
    errors: issues.slice(0, 10).map((issue) => ({
      field: [...prefix, ...issue.path].map(String).join('.') || '(body)',
      message: issue.message,
    })),
  });
}

function requestIdOf(req: Request): string {
  return typeof req.id === 'string' || typeof req.id === 'number' ? String(req.id) : '';
}
