import { createHmac } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

// Standard Webhooks verification (https://www.standardwebhooks.com/) through the
// `standardwebhooks` library: HMAC-SHA256 over "<id>.<timestamp>.<raw body>", ±5 minutes,
// any one of several space-separated `v1,<sig>` entries (secret rotation). This module
// returns a result instead of throwing so the route decides what a failure means.
//
// The library does the verification (headers, tolerance, the list of signatures, the
// constant-time comparison); only its HMAC primitive is swapped for node:crypto's. The
// library computes HMAC-SHA256 with a pure-JavaScript SHA-256 (fast-sha256): bench/ingest
// measured it at ~40 µs per webhook, against ~9 µs with OpenSSL's HMAC through node:crypto,
// and it was the largest single cost on the ingest path. `NativeHmacWebhook.sign` returns
// exactly what the library's `sign` returns (same input string, same key, same encoding:
// test/unit/webhook-signature.test.ts compares both over random ids, times and bodies).

export type SignatureFailure =
  | 'missing_headers'
  | 'bad_timestamp'
  | 'stale_timestamp'
  | 'future_timestamp'
  | 'no_matching_signature';

export type SignatureResult =
  { ok: true; id: string; timestamp: number } | { ok: false; reason: SignatureFailure };

export interface WebhookVerifier {
  /** `rawBody` as bytes, or as its UTF-8 text (what the library signs either way). */
  verify(
    rawBody: Buffer | string,
    headers: Record<string, string | string[] | undefined>,
  ): SignatureResult;
}

export type VerifierResult =
  { ok: true; verifier: WebhookVerifier } | { ok: false; reason: 'invalid_secret' };

const TOLERANCE_SECONDS = 5 * 60;
const WHSEC_PREFIX = 'whsec_';

/**
 * A verifier for the configured secrets: any one verifies (rotation: the old and the new
 * secret are both configured while senders move over). `whsec_<base64>` is decoded as
 * base64 (the Standard Webhooks convention); any other secret is used as its UTF-8 bytes,
 * because the library would otherwise try to base64-decode a plain passphrase and throw.
 */
export function createWebhookVerifier(secrets: string | readonly string[]): VerifierResult {
  const webhooks: Webhook[] = [];
  for (const secret of typeof secrets === 'string' ? [secrets] : secrets) {
    try {
      webhooks.push(webhookFor(secret, NativeHmacWebhook));
    } catch {
      // Bad base64 after whsec_ or an empty key. Never echo the secret.
      return { ok: false, reason: 'invalid_secret' };
    }
  }
  if (webhooks.length === 0) return { ok: false, reason: 'invalid_secret' };
  const [only] = webhooks;
  if (webhooks.length === 1 && only !== undefined) {
    return { ok: true, verifier: { verify: (body, headers) => verifyWith(only, body, headers) } };
  }
  return {
    ok: true,
    verifier: {
      verify(body, headers) {
        let result: SignatureResult = { ok: false, reason: 'no_matching_signature' };
        for (const webhook of webhooks) {
          result = verifyWith(webhook, body, headers);
          // A header or timestamp problem is the same whatever the secret: stop there.
          if (result.ok || result.reason !== 'no_matching_signature') return result;
        }
        return result;
      },
    },
  };
}

/** The library's Webhook with node:crypto's HMAC-SHA256 (see the top of this file). */
export class NativeHmacWebhook extends Webhook {
  readonly #key: Buffer;

  constructor(...args: ConstructorParameters<typeof Webhook>) {
    super(...args);
    // The constructor has decoded the secret (whsec_ base64, or raw bytes) into `key`.
    this.#key = Buffer.from((this as unknown as { key: Uint8Array }).key);
  }

  override sign(msgId: string, timestamp: Date, payload: string | Buffer): string {
    // As the library: a Buffer body is signed as its UTF-8 text (`payload.toString()`).
    const text = typeof payload === 'string' ? payload : payload.toString();
    const seconds = Math.floor(timestamp.getTime() / 1000);
    const digest = createHmac('sha256', this.#key)
      .update(`${msgId}.${seconds}.${text}`)
      .digest('base64');
    return `v1,${digest}`;
  }
}

/** `whsec_<base64>` decoded as base64; any other secret used as its UTF-8 bytes. */
function webhookFor(secret: string, Kind: typeof Webhook = Webhook): Webhook {
  return secret.startsWith(WHSEC_PREFIX)
    ? new Kind(secret)
    : new Kind(new Uint8Array(Buffer.from(secret, 'utf8')), { format: 'raw' });
}

function headerValue(value: string | string[] | undefined): string | undefined {
  if (Array.isArray(value)) return value.join(' ');
  return value === undefined || value === '' ? undefined : value;
}

function verifyWith(
  webhook: Webhook,
  rawBody: Buffer | string,
  headers: Record<string, string | string[] | undefined>,
): SignatureResult {
  const id = headerValue(headers['webhook-id']);
  const timestampHeader = headerValue(headers['webhook-timestamp']);
  const signature = headerValue(headers['webhook-signature']);
  if (id === undefined || timestampHeader === undefined || signature === undefined) {
    return { ok: false, reason: 'missing_headers' };
  }
  // The library's parseInt would take "123abc" as 123; the spec says unix seconds.
  if (!/^\d{1,12}$/.test(timestampHeader.trim())) return { ok: false, reason: 'bad_timestamp' };
  const timestamp = Number(timestampHeader.trim());
  // Checked here as well as in the library, so the log can say which way it is off.
  const now = Math.floor(Date.now() / 1000);
  if (now - timestamp > TOLERANCE_SECONDS) return { ok: false, reason: 'stale_timestamp' };
  if (timestamp - now > TOLERANCE_SECONDS) return { ok: false, reason: 'future_timestamp' };
  try {
    // jsonParse: false — we parse (and report bad JSON as 400) only after verification.
    // As text (the library would decode a Buffer twice): the same `toString()` the library
    // applies, so what is signed is unchanged.
    webhook.verify(
      typeof rawBody === 'string' ? rawBody : rawBody.toString(),
      {
        'webhook-id': id,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signature,
      },
      { jsonParse: false },
    );
  } catch {
    return { ok: false, reason: 'no_matching_signature' };
  }
  return { ok: true, id, timestamp };
}

/** Signs like a Standard Webhooks sender (tests, bench, operator scripts). */
export function signWebhook(
  secret: string,
  id: string,
  timestampSeconds: number,
  rawBody: string | Buffer,
): string {
  return webhookFor(secret).sign(id, new Date(timestampSeconds * 1000), rawBody);
}
