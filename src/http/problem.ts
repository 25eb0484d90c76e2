import type { Response } from 'express';
import type { ErrorCode } from '../errors.js';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** RFC 9457 problem details: `code` to branch on, and `type`, the same as a stable URN. */
export function sendProblem(
  res: Response,
  status: number,
  code: ErrorCode,
  title: string,
  detail: string,
  extra: Record<string, unknown> = {},
): void {
  res
    .status(status)
    .type(PROBLEM_CONTENT_TYPE)
    .send(
      JSON.stringify({
        type: `urn:tidsbanken-poweroffice-sync:problem:${code}`,
        code,
        title,
        status,
        detail,
        ...extra,
      }),
    );
}
