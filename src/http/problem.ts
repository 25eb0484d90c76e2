import type { Response } from 'express';

export const PROBLEM_CONTENT_TYPE = 'application/problem+json';

/** RFC 9457 problem details. `type` is a stable URN per error code. */
export function sendProblem(
  res: Response,
  status: number,
  code: string,
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
        title,
        status,
        detail,
        ...extra,
      }),
    );
}
