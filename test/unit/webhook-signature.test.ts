import { createHmac, randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { Webhook } from 'standardwebhooks';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  NativeHmacWebhook,
  createWebhookVerifier,
  signWebhook,
  type WebhookVerifier,
} from '../../src/http/webhook-signature.js';

const KEY = randomBytes(32);
const SECRET = `whsec_${KEY.toString('base64')}`;
const NOW = Date.UTC(2026, 0, 5, 10, 0, 0);
const nowSeconds = NOW / 1000;
const body = Buffer.from('{"type":"ansatt.updated","data":{"Id":1}}');

function verifier(secret = SECRET): WebhookVerifier {
  const created = createWebhookVerifier(secret);
  if (!created.ok) throw new Error('secret refused');
  return created.verifier;
}

function headers(over: Record<string, string | undefined> = {}, ts = nowSeconds) {
  return {
    'webhook-id': 'msg_1',
    'webhook-timestamp': String(ts),
    'webhook-signature': signWebhook(SECRET, 'msg_1', ts, body),
    ...over,
  };
}

beforeEach(() => {
  vi.useFakeTimers();
  vi.setSystemTime(NOW);
});
afterEach(() => {
  vi.useRealTimers();
});

describe('verifyWebhook (standardwebhooks)', () => {
  it('accepts a signature that an independent HMAC-SHA256 over "<id>.<ts>.<body>" produces', () => {
    const sig = createHmac('sha256', KEY)
      .update(`msg_1.${nowSeconds}.${body.toString()}`)
      .digest('base64');
    expect(verifier().verify(body, headers({ 'webhook-signature': `v1,${sig}` }))).toEqual({
      ok: true,
      id: 'msg_1',
      timestamp: nowSeconds,
    });
  });

  it('accepts any one of several space-separated signatures (secret rotation)', () => {
    const old = signWebhook(
      `whsec_${randomBytes(32).toString('base64')}`,
      'msg_1',
      nowSeconds,
      body,
    );
    const current = signWebhook(SECRET, 'msg_1', nowSeconds, body);
    expect(verifier().verify(body, headers({ 'webhook-signature': `${old} ${current}` })).ok).toBe(
      true,
    );
    expect(verifier().verify(body, headers({ 'webhook-signature': `v2,xyz ${current}` })).ok).toBe(
      true,
    );
    expect(verifier().verify(body, headers({ 'webhook-signature': old }))).toEqual({
      ok: false,
      reason: 'no_matching_signature',
    });
  });

  it('refuses a changed body, id or timestamp', () => {
    const h = headers();
    expect(verifier().verify(Buffer.from(`${body.toString()} `), h).ok).toBe(false);
    expect(verifier().verify(body, { ...h, 'webhook-id': 'msg_2' }).ok).toBe(false);
    expect(verifier().verify(body, { ...h, 'webhook-timestamp': String(nowSeconds + 1) }).ok).toBe(
      false,
    );
  });

  it('accepts timestamps up to 5 minutes off either way, and refuses beyond', () => {
    expect(verifier().verify(body, headers({}, nowSeconds - 300)).ok).toBe(true);
    expect(verifier().verify(body, headers({}, nowSeconds + 300)).ok).toBe(true);
    expect(verifier().verify(body, headers({}, nowSeconds - 301))).toEqual({
      ok: false,
      reason: 'stale_timestamp',
    });
    expect(verifier().verify(body, headers({}, nowSeconds + 301))).toEqual({
      ok: false,
      reason: 'future_timestamp',
    });
  });

  it.each([
    ['webhook-id', 'missing_headers'],
    ['webhook-timestamp', 'missing_headers'],
    ['webhook-signature', 'missing_headers'],
  ])('refuses when %s is missing (%s)', (name, reason) => {
    expect(verifier().verify(body, headers({ [name]: undefined }))).toEqual({ ok: false, reason });
  });

  it.each(['123abc', '-5', '1.5', ' ', '99999999999999'])('refuses the timestamp %j', (ts) => {
    expect(verifier().verify(body, headers({ 'webhook-timestamp': ts })).ok).toBe(false);
  });

  it('uses a secret without whsec_ as its UTF-8 bytes', () => {
    const plain = 'a plain passphrase ✓';
    const sig = createHmac('sha256', Buffer.from(plain, 'utf8'))
      .update(`msg_1.${nowSeconds}.${body.toString()}`)
      .digest('base64');
    expect(verifier(plain).verify(body, headers({ 'webhook-signature': `v1,${sig}` })).ok).toBe(
      true,
    );
  });

  it('reports a whsec_ secret that is not base64 instead of throwing', () => {
    expect(createWebhookVerifier('whsec_abc')).toEqual({ ok: false, reason: 'invalid_secret' });
    expect(createWebhookVerifier('whsec_')).toEqual({ ok: false, reason: 'invalid_secret' });
  });
});

describe('NativeHmacWebhook (the library with node:crypto HMAC)', () => {
  it('signs exactly as the library does, for any id, time, body and secret', () => {
    const secret = fc.oneof(
      fc
        .uint8Array({ minLength: 1, maxLength: 64 })
        .map((k) => `whsec_${Buffer.from(k).toString('base64')}`),
      fc.string({ unit: 'grapheme', minLength: 1, maxLength: 40 }),
    );
    const payload = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 300 }),
      // Any bytes, invalid UTF-8 included: both sides sign the Buffer's UTF-8 text.
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
    );
    fc.assert(
      fc.property(
        secret,
        fc.string({ maxLength: 60 }),
        fc.integer({ min: 0, max: 4_102_444_800 }),
        payload,
        (key, id, seconds, body) => {
          const make = (Kind: typeof Webhook) =>
            key.startsWith('whsec_')
              ? new Kind(key)
              : new Kind(new Uint8Array(Buffer.from(key, 'utf8')), { format: 'raw' });
          const at = new Date(seconds * 1000);
          expect(make(NativeHmacWebhook).sign(id, at, body)).toBe(make(Webhook).sign(id, at, body));
        },
      ),
      { numRuns: 300 },
    );
    // 300 runs of the library's pure-JS HMAC: seconds on a busy 2-core machine.
  }, 30_000);

  it('verifies what the library signs and refuses one changed byte', () => {
    const signed = new Webhook(SECRET).sign('msg_9', new Date(NOW), body);
    const h = {
      'webhook-id': 'msg_9',
      'webhook-timestamp': String(nowSeconds),
      'webhook-signature': signed,
    };
    expect(verifier().verify(body, h).ok).toBe(true);
    const changed = Buffer.from(body);
    changed.writeUInt8(changed.readUInt8(changed.length - 2) ^ 1, changed.length - 2);
    expect(verifier().verify(changed, h)).toEqual({ ok: false, reason: 'no_matching_signature' });
  });
});
