import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { RequestHandler, Response } from 'express';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';

// The request id, the HTTP metrics, and one JSON line per answered request (method, path,
// status, time; never headers, which carry credentials and signatures). Health probes are
// counted but not logged: one every few seconds would drown the log. An accepted webhook is
// logged at debug: at thousands a second one info line each was a tenth of the app's CPU
// (bench/ingest), and the metrics and its inbox row already count every one. Refusals,
// errors and any request slower than SLOW_MS stay at info/warn/error.
//
// Hand-written rather than pino-http: that middleware builds a child logger per request
// (serializing the request into its bindings, then redacting them), which bench/ingest
// measured at about a fifth of the app's CPU per webhook. This is one plain log call at the
// end, the line carries `requestId` (the one request-id field of every log line), `req`, `res`,
// `responseTime`, "request completed".

declare module 'node:http' {
  interface IncomingMessage {
    /** This request's id: the caller's sane X-Request-Id, or a new UUID. */
    id?: string;
  }
}

const REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;
const QUIET = new Set(['/healthz', '/readyz']);
const WEBHOOKS = '/webhooks/';
const SLOW_MS = 1000;

// Per-request state for the shared 'close' handler (one handler per app, not a closure per
// request: this runs on every webhook).
const STATE = Symbol('requestLog');
interface RequestState {
  id: string;
  start: number;
  quiet: boolean;
  /** The route label when no Express route matched (the webhook fast path names its own). */
  route: string | undefined;
}
type LoggedResponse = Response & { [STATE]?: RequestState };

/**
 * Starts tracking one request: its id (the caller's sane X-Request-Id, or a new UUID) on
 * `req.id` and the X-Request-Id header, and its metrics and log line when it closes. `route`
 * labels the metrics of a request no Express route will match (the webhook fast path).
 */
export type TrackRequest = (req: IncomingMessage, res: ServerResponse, route?: string) => void;

export interface RequestLog {
  track: TrackRequest;
  /** `track` as the app's middleware; a request tracked before Express saw it is left alone. */
  middleware: RequestHandler;
}

export function requestLog(parent: Logger, metrics: Metrics): RequestLog {
  // The line holds no field a redaction path could match: skip redaction for it. (Configured
  // secrets are still scrubbed from every line by the logger's stream hook.)
  const logger = parent.child({ module: 'http' }, { redact: [] });
  // 'close' follows 'finish' on every response, and comes alone when the connection drops
  // first: one listener sees both.
  function onClose(this: LoggedResponse): void {
    const state = this[STATE];
    if (state === undefined) return;
    const { req } = this;
    const status = this.statusCode;
    const seconds = (performance.now() - state.start) / 1000;
    if (this.writableFinished) {
      // The matched route pattern keeps label cardinality bounded; unmatched → "unmatched".
      const matched = req.route as { path?: unknown } | undefined;
      const route =
        state.route ??
        (typeof matched?.path === 'string' ? `${req.baseUrl}${matched.path}` : 'unmatched');
      const labels = { method: req.method, route, code: String(status) };
      metrics.httpRequests.inc(labels);
      metrics.httpDuration.observe(labels, seconds);
    }
    if (state.quiet) return;
    const ms = Math.round(seconds * 1000);
    const routine =
      this.writableFinished && status < 300 && ms < SLOW_MS && req.url.startsWith(WEBHOOKS);
    // Nothing to build when the line would be dropped.
    if (routine && !logger.isLevelEnabled('debug')) return;
    const line = {
      requestId: state.id,
      // originalUrl is Express's; a request answered before Express saw it has only url.
      req: { method: req.method, url: req.originalUrl ?? req.url },
      res: { statusCode: status },
      responseTime: ms,
    };
    // A connection closed before the answer was sent: the caller got nothing.
    if (!this.writableFinished) logger.warn(line, 'request aborted');
    else if (status >= 500) logger.error(line, 'request failed');
    else if (status >= 400) logger.warn(line, 'request completed');
    else if (routine) logger.debug(line, 'request completed');
    else logger.info(line, 'request completed');
  }
  const track: TrackRequest = (req, res, route) => {
    const given = req.headers['x-request-id'];
    const id = typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    req.id = id;
    res.setHeader('X-Request-Id', id);
    (res as LoggedResponse)[STATE] = {
      id,
      start: performance.now(),
      quiet: QUIET.has(req.url ?? ''),
      route,
    };
    res.on('close', onClose);
  };
  return {
    track,
    middleware: (req, res, next) => {
      if ((res as LoggedResponse)[STATE] === undefined) track(req, res);
      next();
    },
  };
}
