import type { z } from 'zod';
import { CredentialsError, FencedError, UpstreamError } from '../errors.js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';
import type { Pacer, Priority } from './pacer.js';

// The one request function both API clients use (docs/ARCHITECTURE.md "Pacing"). Every attempt —
// first try, retry after a 429, retry after a 5xx, retry after a token renewal — takes its own turn
// in the system's pacer, so the vendor's per-second limit holds whatever fails.

export type UpstreamSystem = 'tidsbanken' | 'poweroffice';
export type HttpMethod = 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';

/** Per-call options every client operation takes. */
export interface RequestOptions {
  /** Pacer priority; reads default to 'read', writes to 'write'. Pollers pass 'poll'. */
  priority?: Priority;
  /** Cancels waiting and in-flight attempts (shutdown). */
  signal?: AbortSignal;
  /**
   * One attempt: a 429, 5xx, timeout or network error goes straight to the caller, which
   * waits elsewhere — the dispatcher waits in the outbox, where the command stays absorbable
   * (a 429 still pauses the system's pacer). A refused token is still renewed once.
   */
  once?: boolean;
  /**
   * Asked right before each attempt leaves (after its wait in the pacer): false → the request
   * is not sent and FencedError is thrown. A lease holder's work passes the lease's check, so
   * a holder that wakes up from a freeze past its safe window sends nothing.
   */
  fence?: () => boolean;
}

/** The per-call options a client hands on to `upstreamRequest`. */
export function passOn(
  options: RequestOptions,
): Pick<UpstreamRequest<z.ZodType>, 'signal' | 'once' | 'fence'> {
  return {
    ...(options.signal !== undefined ? { signal: options.signal } : {}),
    ...(options.once === true ? { once: true } : {}),
    ...(options.fence !== undefined ? { fence: options.fence } : {}),
  };
}

/** Bearer-style authentication that can be renewed once when the API answers 401. */
export interface UpstreamAuth {
  headers(): Promise<Record<string, string>>;
  /** The API refused the credentials from `headers()`: drop them so the next call renews. */
  invalidate(rejected: Record<string, string>): void;
}

export interface UpstreamContext {
  system: UpstreamSystem;
  pacer: Pacer;
  logger: Logger;
  metrics: Metrics;
  fetch: typeof fetch;
  /** Per attempt, from leaving the pacer to the last byte of the body. */
  timeoutMs: number;
  /** Attempts in all (first try included) before an error is handed to the caller. */
  maxAttempts: number;
  /** Base and cap of the exponential backoff after a 5xx, network error or timeout. */
  backoffBaseMs: number;
  backoffCapMs: number;
  /** Extra random wait added to a 429 pause, so paused callers don't stampede at once. */
  jitterMs: number;
  random: () => number;
  sleep: (ms: number, signal?: AbortSignal) => Promise<void>;
}

export interface UpstreamContextOptions {
  system: UpstreamSystem;
  pacer: Pacer;
  logger: Logger;
  metrics: Metrics;
  fetch?: typeof fetch;
  timeoutMs?: number;
  maxAttempts?: number;
  backoffBaseMs?: number;
  backoffCapMs?: number;
  jitterMs?: number;
  random?: () => number;
}

export const DEFAULT_TIMEOUT_MS = 30_000;
/**
 * The longest Retry-After honoured. A gateway asking for hours (a misconfigured policy, a
 * date far ahead) would otherwise stall a whole system; after this wait the request is
 * simply refused again if the limit still holds.
 */
export const MAX_RETRY_AFTER_MS = 5 * 60_000;
export const DEFAULT_MAX_ATTEMPTS = 5;

export function createUpstreamContext(options: UpstreamContextOptions): UpstreamContext {
  return {
    system: options.system,
    pacer: options.pacer,
    logger: options.logger,
    metrics: options.metrics,
    fetch: options.fetch ?? globalThis.fetch,
    timeoutMs: options.timeoutMs ?? DEFAULT_TIMEOUT_MS,
    maxAttempts: Math.max(1, options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS),
    backoffBaseMs: options.backoffBaseMs ?? 250,
    backoffCapMs: options.backoffCapMs ?? 30_000,
    jitterMs: options.jitterMs ?? 250,
    random: options.random ?? Math.random,
    sleep,
  };
}

export interface UpstreamRequest<S extends z.ZodType> {
  method: HttpMethod;
  url: string;
  /** Label for metrics and logs ('read', 'write', 'poll', 'token'); defaults to the priority. */
  kind?: string;
  priority: Priority;
  headers?: Record<string, string>;
  auth?: UpstreamAuth;
  /** A JSON value (serialized here) or a ready string / form body. */
  json?: unknown;
  body?: string | URLSearchParams;
  contentType?: string;
  /** Parses the JSON body of a 2xx answer. */
  schema: S;
  /** The value parsed in place of an empty body (204, or 200 with no content). */
  empty?: unknown;
  /** Non-2xx statuses answered `{ status, data: undefined }`, not an error (404 on a get). */
  acceptStatus?: readonly number[];
  /**
   * Whether a 5xx, network error or timeout may be retried here. Defaults to false for POST:
   * the request may have landed, so the caller must look the record up before re-sending.
   * A 429 or 401 is always retried: the request was refused, nothing was applied.
   */
  idempotent?: boolean;
  signal?: AbortSignal;
  /** One attempt only (RequestOptions.once). */
  once?: boolean;
  /** See RequestOptions.fence. */
  fence?: (() => boolean) | undefined;
}

export interface UpstreamResponse<T> {
  status: number;
  data: T;
}

const MAX_BODY_CHARS = 2000;

/** What stays the same across the attempts of one request. */
interface Call {
  /** Whether a 5xx, network error or timeout may be retried (UpstreamRequest.idempotent). */
  idempotent: boolean;
  kind: string;
  /** The URL's path, for logs and errors. */
  path: string;
  log: Logger;
  /** The token was renewed once already after a 401. */
  authRenewed: boolean;
}

/** What an answer leads to: the response, or another attempt (counted, or not for a token). */
type Next<T> = { response: UpstreamResponse<T> } | { retry: 'attempt' | 'token' };

/**
 * Sends one logical request, with the retries the system tolerates, and returns the
 * parsed body. Throws UpstreamError for everything that did not end in a 2xx (or an
 * accepted status); `retryable` tells the caller whether trying later may help.
 */
export async function upstreamRequest<S extends z.ZodType>(
  ctx: UpstreamContext,
  req: UpstreamRequest<S>,
): Promise<UpstreamResponse<z.infer<S> | undefined>> {
  const path = safePath(req.url);
  const kind = req.kind ?? req.priority;
  const call: Call = {
    idempotent: req.idempotent ?? req.method !== 'POST',
    kind,
    path,
    log: ctx.logger.child({ system: ctx.system, method: req.method, path, kind }),
    authRenewed: false,
  };

  for (let attempt = 1; ; attempt++) {
    if (req.fence?.() === false) throw notSent(req, path);
    const authHeaders = req.auth !== undefined ? await req.auth.headers() : {};
    const outcome = await sendPaced(ctx, req, authHeaders);
    recordAttempt(ctx, call, attempt, outcome);
    if (outcome.type === 'fenced') throw notSent(req, path);
    if (outcome.type === 'aborted') {
      throw new UpstreamError(ctx.system, undefined, true, `${req.method} ${path} aborted`);
    }
    const lastAttempt = req.once === true || attempt >= ctx.maxAttempts;

    if (outcome.type === 'timeout' || outcome.type === 'network') {
      const error = new UpstreamError(
        ctx.system,
        undefined,
        true,
        `${ctx.system} ${req.method} ${path}: ${outcome.type === 'timeout' ? `no answer within ${ctx.timeoutMs} ms` : 'network error'}`,
        undefined,
        undefined,
        { cause: outcome.error },
      );
      await backOffOrThrow(ctx, req, call, attempt, lastAttempt, outcome.type, error);
      continue;
    }
    if (outcome.type !== 'response') continue;
    const next = await answerOf(ctx, req, call, attempt, lastAttempt, outcome, authHeaders);
    if ('response' in next) return next.response;
    if (next.retry === 'token') attempt--; // a refused token is not a failed attempt of the request
  }
}

function notSent(req: UpstreamRequest<z.ZodType>, path: string): FencedError {
  return new FencedError(`${req.method} ${path} not sent: lease lapsed`);
}

/** One attempt, sent when its turn in the system's pacer comes (the wait is measured). */
function sendPaced<S extends z.ZodType>(
  ctx: UpstreamContext,
  req: UpstreamRequest<S>,
  authHeaders: Record<string, string>,
): Promise<Outcome> {
  const queuedAt = performance.now();
  return ctx.pacer.schedule(() => {
    ctx.metrics.pacerWait.observe(
      { system: ctx.system, priority: req.priority },
      (performance.now() - queuedAt) / 1000,
    );
    return sendOnce(ctx, req, authHeaders);
  }, req.priority);
}

/** The attempt's metrics and debug line (a fenced attempt, never sent, is only counted). */
function recordAttempt(ctx: UpstreamContext, call: Call, attempt: number, outcome: Outcome): void {
  const statusLabel = outcome.type === 'response' ? String(outcome.status) : outcome.type;
  ctx.metrics.upstreamRequests.inc({ system: ctx.system, kind: call.kind, code: statusLabel });
  if (outcome.type === 'fenced') return;
  if (outcome.type !== 'aborted') {
    ctx.metrics.upstreamDuration.observe({ system: ctx.system }, outcome.seconds);
  }
  call.log.debug(
    { attempt, status: statusLabel, ms: Math.round(outcome.seconds * 1000) },
    'upstream request',
  );
}

/** Waits out the backoff before the next attempt, or throws `error` when none may follow. */
async function backOffOrThrow(
  ctx: UpstreamContext,
  req: UpstreamRequest<z.ZodType>,
  call: Call,
  attempt: number,
  lastAttempt: boolean,
  reason: 'timeout' | 'network' | '5xx',
  error: UpstreamError,
): Promise<void> {
  if (!call.idempotent || lastAttempt) throw error;
  ctx.metrics.upstreamRetries.inc({ system: ctx.system, reason });
  await ctx.sleep(backoffMs(ctx, attempt), req.signal);
}

/** What an HTTP answer leads to; throws the error it ends in. */
async function answerOf<S extends z.ZodType>(
  ctx: UpstreamContext,
  req: UpstreamRequest<S>,
  call: Call,
  attempt: number,
  lastAttempt: boolean,
  outcome: Extract<Outcome, { type: 'response' }>,
  authHeaders: Record<string, string>,
): Promise<Next<z.infer<S> | undefined>> {
  const { status, text, retryAfterMs } = outcome;
  if (status >= 200 && status < 300) {
    ctx.pacer.credentialsAccepted();
    return { response: { status, data: parseBody(ctx, req, call.path, status, text) } };
  }
  if (req.acceptStatus?.includes(status) === true) {
    return { response: { status, data: undefined } };
  }

  const body = problemBody(text);
  if (status === 401 && req.auth !== undefined && !call.authRenewed) {
    // PowerOffice: a token can expire or be revoked early; renew once, then give up
    // (docs/vendor-apis.md).
    call.authRenewed = true;
    req.auth.invalidate(authHeaders);
    ctx.metrics.upstreamRetries.inc({ system: ctx.system, reason: 'token' });
    call.log.info({ attempt }, 'upstream answered 401; renewing the token once');
    return { retry: 'token' };
  }
  if (refusesCredentials(req, status))
    throw credentialsRefused(ctx, req, call, attempt, status, body);
  if (status === 429) {
    pauseForRateLimit(ctx, req, call, attempt, lastAttempt, retryAfterMs, body);
    return { retry: 'attempt' };
  }
  const error = new UpstreamError(
    ctx.system,
    status,
    status >= 500,
    `${ctx.system} ${req.method} ${call.path} answered ${status}${describeProblem(body)}`,
    body,
  );
  if (status < 500) throw error;
  await backOffOrThrow(ctx, req, call, attempt, lastAttempt, '5xx', error);
  return { retry: 'attempt' };
}

/**
 * Credentials, not this request: pauses the whole system to try them again later (DESIGN:
 * writes and polls wait, nothing goes dead for it) and returns the error to throw.
 */
function credentialsRefused(
  ctx: UpstreamContext,
  req: UpstreamRequest<z.ZodType>,
  call: Call,
  attempt: number,
  status: number,
  body: unknown,
): CredentialsError {
  const message = `${ctx.system} refused the credentials (${req.method} ${call.path} answered ${status}${describeProblem(body)})`;
  ctx.pacer.credentialsRefused(message);
  ctx.metrics.upstreamRetries.inc({ system: ctx.system, reason: 'credentials' });
  call.log.warn(
    { attempt, status, retryInMs: ctx.pacer.credentialsRetryMs },
    'credentials refused; the system is paused until they work again',
  );
  return new CredentialsError(ctx.system, status, message, body, ctx.pacer.credentialsRetryMs);
}

/**
 * A 429: both vendors sit behind Azure APIM, so this waits Retry-After (at least 1 s, plus
 * jitter) and pauses the whole system, since the limit is per subscription key
 * (docs/vendor-apis.md). Throws on the last attempt.
 */
function pauseForRateLimit(
  ctx: UpstreamContext,
  req: UpstreamRequest<z.ZodType>,
  call: Call,
  attempt: number,
  lastAttempt: boolean,
  retryAfterMs: number | undefined,
  body: unknown,
): void {
  const waitMs =
    Math.min(Math.max(retryAfterMs ?? 0, 1000), MAX_RETRY_AFTER_MS) +
    Math.floor(ctx.random() * ctx.jitterMs);
  if (retryAfterMs !== undefined && retryAfterMs > MAX_RETRY_AFTER_MS) {
    call.log.warn(
      { attempt, retryAfterMs, waitMs },
      `upstream asked for a Retry-After above ${MAX_RETRY_AFTER_MS / 1000} s; capped`,
    );
  }
  ctx.pacer.pauseFor(waitMs);
  if (lastAttempt) {
    throw new UpstreamError(
      ctx.system,
      429,
      true,
      `${ctx.system} ${req.method} ${call.path} answered 429 ${attempt} times`,
      body,
      waitMs,
    );
  }
  ctx.metrics.upstreamRetries.inc({ system: ctx.system, reason: '429' });
  call.log.warn({ attempt, waitMs }, 'upstream rate limit hit; pausing');
  // The pacer is paused for everyone; this request re-queues and waits its turn after it.
}

/**
 * A token endpoint answering 400/401 (invalid_client), or an API answering 401 after the one
 * token renewal (or with no token to renew: Tidsbanken's keys).
 */
function refusesCredentials(req: UpstreamRequest<z.ZodType>, status: number): boolean {
  if (req.kind === 'token') return status === 400 || status === 401;
  return status === 401;
}

type Outcome =
  | { type: 'response'; status: number; text: string; retryAfterMs?: number; seconds: number }
  | { type: 'timeout' | 'network'; error: unknown; seconds: number }
  | { type: 'aborted' | 'fenced'; seconds: number };

async function sendOnce<S extends z.ZodType>(
  ctx: UpstreamContext,
  req: UpstreamRequest<S>,
  authHeaders: Record<string, string>,
): Promise<Outcome> {
  const started = performance.now();
  const seconds = () => (performance.now() - started) / 1000;
  if (isAborted(req.signal)) return { type: 'aborted', seconds: 0 };
  // Checked synchronously here, just before the request leaves: after a freeze the pacer's
  // timers may fire before any timer that would have stopped this holder.
  if (req.fence?.() === false) return { type: 'fenced', seconds: 0 };
  const timeout = AbortSignal.timeout(ctx.timeoutMs);
  const signal = req.signal !== undefined ? AbortSignal.any([timeout, req.signal]) : timeout;
  const headers: Record<string, string> = {
    accept: 'application/json',
    ...req.headers,
    ...authHeaders,
  };
  let body: string | URLSearchParams | undefined = req.body;
  if (req.json !== undefined) {
    body = JSON.stringify(req.json);
    headers['content-type'] = req.contentType ?? 'application/json';
  } else if (body !== undefined && req.contentType !== undefined) {
    headers['content-type'] = req.contentType;
  }
  try {
    const res = await ctx.fetch(req.url, { method: req.method, headers, body, signal });
    // The body is read under the same timeout: a server that stalls mid-body is a timeout.
    const text = await res.text();
    const retryAfterMs = parseRetryAfter(res.headers.get('retry-after'), text);
    return {
      type: 'response',
      status: res.status,
      text,
      seconds: seconds(),
      ...(retryAfterMs !== undefined ? { retryAfterMs } : {}),
    };
  } catch (error) {
    if (isAborted(req.signal)) return { type: 'aborted', seconds: seconds() };
    if (timeout.aborted) return { type: 'timeout', error, seconds: seconds() };
    return { type: 'network', error, seconds: seconds() };
  }
}

function isAborted(signal: AbortSignal | undefined): boolean {
  return signal?.aborted === true;
}

function parseBody<S extends z.ZodType>(
  ctx: UpstreamContext,
  req: UpstreamRequest<S>,
  path: string,
  status: number,
  text: string,
): z.infer<S> {
  let value: unknown = req.empty;
  if (text.trim() !== '') {
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new UpstreamError(
        ctx.system,
        status,
        false,
        `${ctx.system} ${req.method} ${path} answered ${status} with a body that is not JSON`,
        truncate(text),
        undefined,
        { cause: error },
      );
    }
  }
  const parsed = req.schema.safeParse(value);
  if (!parsed.success) {
    throw new UpstreamError(
      ctx.system,
      status,
      false,
      `${ctx.system} ${req.method} ${path} answered ${status} with an unexpected body`,
      { issues: parsed.error.issues.slice(0, 5), body: truncate(text) },
      undefined,
      { cause: parsed.error },
    );
  }
  return parsed.data;
}

/** Capped exponential backoff with "equal jitter": half fixed, half random. */
export function backoffMs(
  ctx: Pick<UpstreamContext, 'backoffBaseMs' | 'backoffCapMs' | 'random'>,
  failedAttempt: number,
): number {
  const exp = Math.min(ctx.backoffCapMs, ctx.backoffBaseMs * 2 ** (failedAttempt - 1));
  return Math.floor(exp / 2 + ctx.random() * (exp / 2));
}

/**
 * Retry-After in seconds or as an HTTP date; PowerOffice's token endpoint puts it only in
 * the body ("Try again in 1 seconds", docs/vendor-apis.md).
 */
export function parseRetryAfter(header: string | null, body?: string): number | undefined {
  if (header !== null && header.trim() !== '') {
    const seconds = Number(header);
    if (Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
    const date = Date.parse(header);
    if (Number.isFinite(date)) return Math.max(0, date - Date.now());
  }
  const match = body !== undefined ? /try again in (\d+(?:\.\d+)?) seconds?/i.exec(body) : null;
  return match?.[1] !== undefined ? Number(match[1]) * 1000 : undefined;
}

/** The error body as JSON (problem details, OData error) when it parses, else truncated text. */
function problemBody(text: string): unknown {
  if (text.trim() === '') return undefined;
  if (text.length <= MAX_BODY_CHARS) {
    try {
      return JSON.parse(text) as unknown;
    } catch {
      // not JSON: keep the text
    }
  }
  return truncate(text);
}

function describeProblem(body: unknown): string {
  if (typeof body === 'string') return `: ${body.slice(0, 200)}`;
  if (body === null || typeof body !== 'object') return '';
  const record = body as Record<string, unknown>;
  const pick = (...keys: string[]) => {
    for (const key of keys) {
      const v = record[key];
      if (typeof v === 'string' && v !== '') return v;
    }
    return undefined;
  };
  // RFC 7807 keys in either casing (docs/vendor-apis.md), an OData error, an APIM message.
  const odata = record.error;
  const odataMessage =
    odata !== null && typeof odata === 'object'
      ? (odata as Record<string, unknown>).message
      : undefined;
  const parts = [
    pick('title', 'Title'),
    pick('detail', 'Detail', 'message', 'Message', 'error_description'),
    typeof odataMessage === 'string' ? odataMessage : undefined,
  ].filter((p): p is string => p !== undefined);
  return parts.length > 0 ? `: ${parts.join(' — ').slice(0, 300)}` : '';
}

function truncate(text: string): string {
  return text.length > MAX_BODY_CHARS ? `${text.slice(0, MAX_BODY_CHARS)}…` : text;
}

/** Path only: never a query string in logs or error messages (a vendor could put a key there). */
function safePath(url: string): string {
  try {
    return new URL(url).pathname;
  } catch {
    return '(invalid url)';
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted === true) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** `a=1&b=2` with every value percent-encoded (a `+` in an offset must travel as %2B). */
export function queryString(params: Record<string, string | number | undefined>): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue;
    parts.push(`${key}=${encodeURIComponent(String(value))}`);
  }
  return parts.join('&');
}
