import { createHash, timingSafeEqual } from 'node:crypto';
import type { Request, RequestHandler } from 'express';
import { NotConfiguredError, UnauthorizedError } from '../errors.js';

// ADMIN_TOKEN guards the admin API (a bearer header on every request) and the console (its
// log-in form, which opens a session). Both compare it here, the same way.

export function sha256(value: string): Buffer {
  return createHash('sha256').update(value, 'utf8').digest();
}

/**
 * Constant-time equality of two secrets of any length. Both sides are hashed first, so the
 * comparison is of equal length whatever the caller sends (timingSafeEqual throws on unequal
 * lengths, and comparing lengths first would leak the secret's length).
 */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

export interface AdminToken {
  /** Whether ADMIN_TOKEN is set: without it the admin API and the console answer 503. */
  configured: boolean;
  matches(given: string | undefined): boolean;
}

export function adminToken(token: string | undefined): AdminToken {
  return {
    configured: token !== undefined,
    matches: (given) =>
      token !== undefined && given !== undefined && given !== '' && sameSecret(given, token),
  };
}

/** The admin API's guard: bearer ADMIN_TOKEN on every request. */
export function requireAdminToken(token: string | undefined): RequestHandler {
  const admin = adminToken(token);
  return (req, _res, next) => {
    if (!admin.configured) {
      next(new NotConfiguredError('The admin API is not configured (set ADMIN_TOKEN).'));
      return;
    }
    if (!admin.matches(bearerOf(req))) {
      next(new UnauthorizedError('A valid admin bearer token is required.'));
      return;
    }
    next();
  };
}

function bearerOf(req: Request): string | undefined {
  const header = req.headers.authorization;
  if (header === undefined) return undefined;
  const match = /^Bearer +(\S+) *$/i.exec(header);
  return match?.[1];
}
