// A small AppError hierarchy. The error handler (http/error-handler.ts) is the one place
// these become HTTP; codes are a closed union so clients can branch on them (openapi.yaml
// lists the same values as ErrorCode; a unit test holds them together).

export const ERROR_CODES = [
  'bad_request',
  'validation_failed',
  'invalid_json',
  'unauthorized',
  'not_found',
  'payload_too_large',
  'unsupported_media_type',
  'not_configured',
  'not_ready',
  'storage_unavailable',
  'conflict',
  'upstream_error',
  'internal',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export class AppError extends Error {
  constructor(
    readonly code: ErrorCode,
    readonly status: number,
    message: string,
    readonly details?: Record<string, unknown>,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class ValidationError extends AppError {
  constructor(message: string, details?: Record<string, unknown>) {
    super('validation_failed', 400, message, details);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'Missing or invalid credentials.') {
    super('unauthorized', 401, message);
  }
}

export class NotFoundError extends AppError {
  constructor(message = 'Not found.') {
    super('not_found', 404, message);
  }
}

export class ConflictError extends AppError {
  constructor(message: string) {
    super('conflict', 409, message);
  }
}

export class NotConfiguredError extends AppError {
  constructor(message: string) {
    super('not_configured', 503, message);
  }
}

/** The database could not take a write: nothing was accepted, the caller may retry. */
export class StorageUnavailableError extends AppError {
  constructor(message: string) {
    super('storage_unavailable', 503, message);
  }
}

/** A non-2xx answer (or no answer) from Tidsbanken or PowerOffice. */
export class UpstreamError extends AppError {
  constructor(
    readonly system: 'tidsbanken' | 'poweroffice',
    readonly upstreamStatus: number | undefined,
    readonly retryable: boolean,
    message: string,
    readonly body?: unknown,
    readonly retryAfterMs?: number,
    options?: ErrorOptions,
  ) {
    super('upstream_error', 502, message, { system, status: upstreamStatus, body }, options);
  }
}

/**
 * The system refused our credentials (its token endpoint answered 400/401, or an API answered
 * 401 after one token renewal). Not a fault of the request: the system is paused and every
 * request waits until the credentials work again; nothing goes dead for it.
 */
export class CredentialsError extends UpstreamError {
  constructor(
    system: 'tidsbanken' | 'poweroffice',
    status: number,
    message: string,
    body: unknown,
    retryAfterMs: number,
  ) {
    super(system, status, true, message, body, retryAfterMs);
  }
}

/**
 * Work done under a system's lease was refused: the lease term it carried is no longer the
 * current one (another replica took over, or it expired), or this process could not renew
 * it in time and stopped sending. Nothing was sent or recorded; the current holder does it.
 */
export class FencedError extends Error {
  constructor(message = 'not done: this replica no longer holds the lease') {
    super(message);
    this.name = 'FencedError';
  }
}
