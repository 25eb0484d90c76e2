import { describe, expect, it, vi } from 'vitest';
import { z } from 'zod';
import { CredentialsError, UpstreamError } from '../../src/errors.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import { LogCapture } from '../helpers/app.js';
import {
  backoffMs,
  createUpstreamContext,
  MAX_RETRY_AFTER_MS,
  parseRetryAfter,
  queryString,
  upstreamRequest,
} from '../../src/lib/upstream.js';

// The request function at the edge of its unit: `fetch` is the stub, everything else real.

function scripted(answers: (Response | Error)[]) {
  const calls: { url: string; init: RequestInit | undefined }[] = [];
  const fetchStub: typeof fetch = (input, init) => {
    calls.push({ url: input instanceof Request ? input.url : input.toString(), init });
    const next = answers.shift();
    if (next === undefined) throw new Error('no more scripted answers');
    return next instanceof Error ? Promise.reject(next) : Promise.resolve(next);
  };
  return { calls, fetch: fetchStub };
}

function context(fetchStub: typeof fetch, sleeps: number[] = [], pacer = new Pacer('test', 1000)) {
  const ctx = createUpstreamContext({
    system: 'poweroffice',
    pacer,
    logger: createLogger({ level: 'silent' }),
    metrics: createMetrics(),
    fetch: fetchStub,
    maxAttempts: 3,
    random: () => 0.5,
  });
  ctx.sleep = (ms: number) => {
    sleeps.push(ms);
    return Promise.resolve();
  };
  return ctx;
}

const json = (status: number, body: unknown, headers: Record<string, string> = {}) =>
  new Response(JSON.stringify(body), {
    status,
    headers: { 'content-type': 'application/json', ...headers },
  });

const Item = z.object({ Id: z.number() });

describe('upstreamRequest', () => {
  it('parses a 2xx body with the schema', async () => {
    const { fetch } = scripted([json(200, { Id: 1, extra: true })]);
    const res = await upstreamRequest(context(fetch), {
      method: 'GET',
      url: 'http://x.test/a',
      priority: 'read',
      schema: Item,
    });
    expect(res).toEqual({ status: 200, data: { Id: 1 } });
  });

  it('a 2xx body that does not match the schema is a non-retryable error', async () => {
    const { fetch } = scripted([json(200, { Id: 'one' })]);
    const error = await upstreamRequest(context(fetch), {
      method: 'GET',
      url: 'http://x.test/a',
      priority: 'read',
      schema: Item,
    }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UpstreamError);
    expect((error as UpstreamError).retryable).toBe(false);
  });

  it('on 429 pauses the pacer for max(Retry-After, 1 s) plus jitter, then retries', async () => {
    // The real pacer on a virtual clock: the retry may start only once the pause has passed.
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    try {
      const pacer = new Pacer('test', 1000);
      const { fetch, calls } = scripted([
        json(429, { message: 'slow down' }, { 'retry-after': '3' }),
        json(429, { message: 'slow down' }, { 'retry-after': '0' }),
        json(200, { Id: 2 }),
      ]);
      const callTimes: number[] = [];
      const timed: typeof fetch = (input, init) => {
        callTimes.push(Date.now());
        return fetch(input, init);
      };
      const t0 = Date.now();
      const pending = upstreamRequest(context(timed, [], pacer), {
        method: 'POST',
        url: 'http://x.test/a',
        priority: 'write',
        schema: Item,
      });
      await vi.advanceTimersByTimeAsync(0);
      expect(calls).toHaveLength(1);
      expect(pacer.isPaused).toBe(true);
      await vi.advanceTimersByTimeAsync(3000 + 124);
      expect(calls).toHaveLength(1);
      await vi.advanceTimersByTimeAsync(1);
      expect(calls).toHaveLength(2);
      await vi.advanceTimersByTimeAsync(1000 + 125);
      const res = await pending;
      expect(res.data).toEqual({ Id: 2 });
      expect(calls).toHaveLength(3);
      expect(callTimes.map((t) => t - t0)).toEqual([0, 3000 + 125, 3000 + 125 + 1000 + 125]);
    } finally {
      vi.useRealTimers();
    }
  });

  it('caps a Retry-After at 5 minutes and logs both the asked and the capped wait', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout', 'Date', 'performance'] });
    try {
      const pacer = new Pacer('test', 1000);
      const logs = new LogCapture();
      const { fetch, calls } = scripted([
        json(429, { message: 'slow down' }, { 'retry-after': '86400' }),
        json(200, { Id: 3 }),
      ]);
      const ctx = context(fetch, [], pacer);
      ctx.logger = createLogger({ level: 'info', destination: logs });
      const pending = upstreamRequest(ctx, {
        method: 'GET',
        url: 'http://x.test/a',
        priority: 'read',
        schema: Item,
      });
      await vi.advanceTimersByTimeAsync(0);
      expect(calls).toHaveLength(1);
      // A day asked: five minutes (plus jitter) waited, not a day.
      await vi.advanceTimersByTimeAsync(MAX_RETRY_AFTER_MS + 125);
      expect((await pending).data).toEqual({ Id: 3 });
      expect(calls).toHaveLength(2);
      const line = logs.lines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .find((l) => l.retryAfterMs !== undefined);
      expect(line).toMatchObject({ retryAfterMs: 86_400_000, waitMs: MAX_RETRY_AFTER_MS + 125 });
      expect(String(line!.msg)).toMatch(/capped/);
    } finally {
      vi.useRealTimers();
    }
  });

  it('retries a GET after 5xx and network errors with growing backoff', async () => {
    const sleeps: number[] = [];
    const { fetch, calls } = scripted([
      json(503, {}),
      new TypeError('fetch failed'),
      json(200, { Id: 3 }),
    ]);
    const res = await upstreamRequest(context(fetch, sleeps), {
      method: 'GET',
      url: 'http://x.test/a',
      priority: 'read',
      schema: Item,
    });
    expect(res.data).toEqual({ Id: 3 });
    expect(calls).toHaveLength(3);
    expect(sleeps).toEqual([187, 375]);
  });

  it('never retries a POST after a 5xx: the error goes to the caller as retryable', async () => {
    const { fetch, calls } = scripted([json(500, { title: 'boom' }), json(200, { Id: 1 })]);
    const error = await upstreamRequest(context(fetch), {
      method: 'POST',
      url: 'http://x.test/a',
      priority: 'write',
      json: { a: 1 },
      schema: Item,
    }).catch((e: unknown) => e);
    expect(calls).toHaveLength(1);
    expect(error).toMatchObject({ retryable: true, upstreamStatus: 500 });
  });

  it('a 4xx is non-retryable and carries the problem details; 404 can be accepted', async () => {
    const problem = { title: 'Customer validation error(s)', detail: 'Name is required' };
    const { fetch } = scripted([json(400, problem), json(404, { title: 'not found' })]);
    const ctx = context(fetch);
    const error = await upstreamRequest(ctx, {
      method: 'PATCH',
      url: 'http://x.test/a?secret=1',
      priority: 'write',
      schema: Item,
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ retryable: false, upstreamStatus: 400, body: problem });
    expect((error as Error).message).toContain('Name is required');
    expect((error as Error).message).not.toContain('secret');
    const missing = await upstreamRequest(ctx, {
      method: 'GET',
      url: 'http://x.test/a',
      priority: 'read',
      schema: Item,
      acceptStatus: [404],
    });
    expect(missing).toEqual({ status: 404, data: undefined });
  });

  it('parses an empty 204 as the given empty value', async () => {
    const { fetch } = scripted([new Response(null, { status: 204 })]);
    const res = await upstreamRequest(context(fetch), {
      method: 'GET',
      url: 'http://x.test/a',
      priority: 'poll',
      schema: z.array(Item),
      empty: [],
    });
    expect(res).toEqual({ status: 204, data: [] });
  });

  it('renews auth once on 401, and gives up on a second 401', async () => {
    const invalidated: string[] = [];
    let token = 0;
    const auth = {
      headers: () => Promise.resolve({ authorization: `Bearer t${++token}` }),
      invalidate: (h: Record<string, string>) => {
        invalidated.push(h.authorization!);
      },
    };
    const { fetch, calls } = scripted([json(401, {}), json(401, {})]);
    const error = await upstreamRequest(context(fetch), {
      method: 'POST',
      url: 'http://x.test/a',
      priority: 'write',
      schema: Item,
      auth,
    }).catch((e: unknown) => e);
    expect(calls.map((c) => (c.init?.headers as Record<string, string>).authorization)).toEqual([
      'Bearer t1',
      'Bearer t2',
    ]);
    expect(invalidated).toEqual(['Bearer t1']);
    // Refused credentials: retryable, the system's pacer pauses until they are tried again.
    expect(error).toMatchObject({ upstreamStatus: 401, retryable: true });
    expect(error).toBeInstanceOf(CredentialsError);
  });

  it('stops after maxAttempts with a retryable error', async () => {
    const { fetch, calls } = scripted([json(502, {}), json(502, {}), json(502, {})]);
    const error = await upstreamRequest(context(fetch), {
      method: 'GET',
      url: 'http://x.test/a',
      priority: 'read',
      schema: Item,
    }).catch((e: unknown) => e);
    expect(calls).toHaveLength(3);
    expect(error).toMatchObject({ upstreamStatus: 502, retryable: true });
  });
});

describe('helpers', () => {
  it('parseRetryAfter reads seconds, an HTTP date, or the token endpoint body', () => {
    expect(parseRetryAfter('2', undefined)).toBe(2000);
    expect(parseRetryAfter(null, '{"message":"Try again in 3 seconds."}')).toBe(3000);
    const inFive = new Date(Date.now() + 5000).toUTCString();
    expect(parseRetryAfter(inFive)).toBeGreaterThan(3000);
    expect(parseRetryAfter(null)).toBeUndefined();
  });

  it('backoffMs grows exponentially, stays within [exp/2, exp] and is capped', () => {
    const low = { backoffBaseMs: 100, backoffCapMs: 1000, random: () => 0 };
    const high = { ...low, random: () => 0.999999 };
    expect([1, 2, 3, 4, 5].map((n) => backoffMs(low, n))).toEqual([50, 100, 200, 400, 500]);
    expect(backoffMs(high, 10)).toBeLessThanOrEqual(1000);
  });

  it('queryString percent-encodes a + in a timestamp and skips undefined', () => {
    expect(
      queryString({ a: '2021-09-25 08:03:00.123+00:00', b: undefined, $filter: "Id eq 'x'" }),
    ).toBe("a=2021-09-25%2008%3A03%3A00.123%2B00%3A00&$filter=Id%20eq%20'x'");
  });
});
