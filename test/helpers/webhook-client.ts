import { randomUUID } from 'node:crypto';
import type { RequestListener } from 'node:http';
import request from 'supertest';
import { signWebhook } from '../../src/http/webhook-signature.js';

// Signed webhooks: through supertest against an app, or over real HTTP (fetch) for tests that
// need a request timeout ("answered within N s" is a request that gives up after N s).

/**
 * `POST path` of the JSON text `raw` to `app` (supertest), signed with `secret` as a Standard
 * Webhooks sender signs it, with `headers` besides. Awaiting it sends it.
 */
export function signedWebhook(
  app: RequestListener,
  path: string,
  secret: string,
  raw: string,
  options: { id?: string; headers?: Record<string, string> } = {},
) {
  const id = options.id ?? `msg_${randomUUID()}`;
  const ts = Math.floor(Date.now() / 1000);
  let req = request(app)
    .post(path)
    .set('content-type', 'application/json')
    .set('webhook-id', id)
    .set('webhook-timestamp', String(ts))
    .set('webhook-signature', signWebhook(secret, id, ts, raw));
  for (const [name, value] of Object.entries(options.headers ?? {})) req = req.set(name, value);
  return req.send(raw);
}

export interface WebhookAnswer {
  status: number;
  contentType: string | null;
  retryAfter: string | null;
  body: unknown;
}

/** Posts a full Ansatt change signed with `secret`; rejects when no answer came in `timeoutMs`. */
export async function postAnsattWebhook(
  baseUrl: string,
  secret: string,
  eventId: string,
  ansattId: number,
  options: { timeoutMs?: number; title?: string } = {},
): Promise<WebhookAnswer> {
  const raw = JSON.stringify({
    type: 'ansatt.updated',
    timestamp: new Date().toISOString(),
    data: {
      Id: ansattId,
      Fornavn: `Fornavn${ansattId}`,
      Etternavn: `Etternavn${ansattId}`,
      Epost: `a${ansattId}@firma.no`,
      Tittel: options.title ?? 'Tittel',
    },
  });
  const ts = Math.floor(Date.now() / 1000);
  const res = await fetch(`${baseUrl}/webhooks/tidsbanken`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': eventId,
      'webhook-timestamp': String(ts),
      'webhook-signature': signWebhook(secret, eventId, ts, raw),
    },
    body: raw,
    signal: AbortSignal.timeout(options.timeoutMs ?? 10_000),
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text
  }
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    retryAfter: res.headers.get('retry-after'),
    body,
  };
}

/** GET /readyz; rejects when no answer came in `timeoutMs`. */
export async function getReadyz(
  baseUrl: string,
  timeoutMs: number,
): Promise<{ status: number; contentType: string | null }> {
  const res = await fetch(`${baseUrl}/readyz`, { signal: AbortSignal.timeout(timeoutMs) });
  await res.arrayBuffer();
  return { status: res.status, contentType: res.headers.get('content-type') };
}
