import type { ErrorRequestHandler, RequestHandler } from 'express';
import { STATUS_CODES } from 'node:http';
import { AppError, type ErrorCode } from '../errors.js';
import type { Logger } from '../lib/logger.js';
import { sendProblem } from './problem.js';

export function notFoundHandler(): RequestHandler {
  return (req, res) => {
    sendProblem(res, 404, 'not_found', 'Not Found', `No route for ${req.method} ${req.path}.`);
  };
}

// The one place errors become HTTP. Known errors keep their message; anything else is
// logged with the request id and answered with a generic 500 that never echoes internals.
export function errorHandler(logger: Logger): ErrorRequestHandler {
  return (err: unknown, req, res, _next) => {
    const requestId =
      typeof req.id === 'string' || typeof req.id === 'number' ? String(req.id) : '';
    if (res.headersSent) {
      logger.error({ err, requestId }, 'error after the response started');
      res.end();
      return;
    }
    if (err instanceof AppError) {
      if (err.status >= 500) logger.error({ err, requestId }, err.message);
      sendProblem(res, err.status, err.code, STATUS_CODES[err.status] ?? 'Error', err.message, {
        requestId,
        ...(err.details ?? {}),
      });
      return;
    }
    // Errors raised by Express's own body parsers (and http-errors) carry status + type.
    const status = httpStatusOf(err);
    if (status !== undefined && status >= 400 && status < 500) {
      const type = (err as { type?: unknown }).type;
      const [code, detail]: [ErrorCode, string] =
        status === 413
          ? ['payload_too_large', 'The request body is larger than the limit.']
          : status === 415
            ? ['unsupported_media_type', 'The request body has an unsupported content type.']
            : type === 'entity.parse.failed'
              ? ['invalid_json', 'The request body is not valid JSON.']
              : ['bad_request', (err as Error).message];
      sendProblem(res, status, code, STATUS_CODES[status] ?? 'Error', detail, { requestId });
      return;
    }
    logger.error({ err, requestId }, 'unhandled error');
    sendProblem(res, 500, 'internal', 'Internal Server Error', 'Something went wrong.', {
      requestId,
    });
  };
}

function httpStatusOf(err: unknown): number | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const candidate =
    (err as { status?: unknown; statusCode?: unknown }).status ??
    (err as { statusCode?: unknown }).statusCode;
  return typeof candidate === 'number' ? candidate : undefined;
}
