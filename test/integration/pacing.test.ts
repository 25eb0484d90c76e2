import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import type { RecordedRequest } from '../fakes/fake-server.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';

// The pacing property (docs/ARCHITECTURE.md "Pacing"): the limit holds in every sliding second, measured
// where the vendor measures it — at the server, from the arrival times in the fake's log.

const LIMIT = 5;
const logger = createLogger({ level: 'silent' });
const metrics = createMetrics();
let tidsbanken: FakeTidsbanken;
let poweroffice: FakePowerOffice;

beforeAll(async () => {
  tidsbanken = await startFakeTidsbanken({ rateLimitPerSecond: LIMIT });
  poweroffice = await startFakePowerOffice({ rateLimitPerSecond: LIMIT });
});
afterAll(async () => {
  await Promise.all([tidsbanken.close(), poweroffice.close()]);
});

/** The most arrivals in any window [t, t + 1000 ms) that starts at an arrival. */
function maxInAnySecond(requests: readonly RecordedRequest[]): number {
  const at = requests.map((r) => r.at).sort((a, b) => a - b);
  let max = 0;
  for (let i = 0, j = 0; i < at.length; i++) {
    while (at[j]! - at[i]! < 1000 && j < at.length) j++;
    max = Math.max(max, j - i);
    if (j === at.length) break;
  }
  return max;
}

describe('pacing against the fakes', () => {
  it('Tidsbanken: 30 queued reads never exceed the limit in any sliding second, and writes overtake queued polls', async () => {
    for (let id = 1; id <= 40; id++) tidsbanken.seedAnsatt({ Id: id });
    tidsbanken.clearRequests();
    const client = new TidsbankenClient({
      config: {
        baseUrl: tidsbanken.url,
        apiKey: tidsbanken.apiKey,
        subscriptionKey: tidsbanken.subscriptionKey,
      },
      pacer: new Pacer('tidsbanken', LIMIT),
      logger,
      metrics,
    });
    const polls = Array.from({ length: 30 }, (_, i) =>
      client.getAnsatt(i + 1, { priority: 'poll' }),
    );
    // Queued behind 30 poll reads, a write arrives (once the first polls have reached the
    // server): it goes at the next free slot.
    await vi.waitFor(() => expect(tidsbanken.requests.length).toBeGreaterThan(0), {
      timeout: 5_000,
      interval: 2,
    });
    const write = client.createAnsatt({ Id: 1000, Fornavn: 'Urgent' }, { priority: 'write' });
    await Promise.all([...polls, write]);

    const log = tidsbanken.requests;
    console.info(
      log.map((r) => `${r.method}${r.status}@${Math.round(r.at - log[0]!.at)}`).join(' '),
    );
    expect(log).toHaveLength(31); // 30 polls and the POST (its answer carries the record)
    expect(log.every((r) => r.status === 200 || r.status === 201)).toBe(true);
    expect(maxInAnySecond(log)).toBeLessThanOrEqual(LIMIT);
    const postIndex = log.findIndex((r) => r.method === 'POST');
    // Only the polls of the first window had started before the write was queued; it goes
    // in the second window, not after the 30 polls.
    expect(postIndex).toBeLessThanOrEqual(2 * LIMIT);
    const seconds = (log.at(-1)!.at - log[0]!.at) / 1000;
    console.info(
      `tidsbanken pacing: ${log.length} requests in ${seconds.toFixed(2)} s at limit ${LIMIT}/s, max ${maxInAnySecond(log)} in any second, POST at position ${postIndex + 1}`,
    );
  });

  it('PowerOffice: token, polls and writes share one pacer; no 429 and no window over the limit', async () => {
    const parent = poweroffice.seedCustomer({ Name: 'Parent AS', EmailAddress: 'p@p.no' });
    poweroffice.clearRequests();
    const client = new PowerOfficeClient({
      config: {
        baseUrl: poweroffice.baseUrl,
        tokenUrl: poweroffice.tokenUrl,
        applicationKey: poweroffice.applicationKey,
        clientKey: poweroffice.clientKey,
        subscriptionKey: poweroffice.subscriptionKey,
      },
      pacer: new Pacer('poweroffice', LIMIT),
      logger,
      metrics,
    });
    const polls = Array.from({ length: 30 }, () =>
      client.getCustomer(parent.Id as number, { priority: 'poll' }),
    );
    await vi.waitFor(() => expect(poweroffice.requests.length).toBeGreaterThan(0), {
      timeout: 5_000,
      interval: 2,
    });
    const writes = [1, 2, 3].map((n) =>
      client.patchCustomer(
        parent.Id as number,
        [{ op: 'replace', path: '/PhoneNumber', value: `+47${n}0000000` }],
        { priority: 'write' },
      ),
    );
    await Promise.all([...polls, ...writes]);

    const log = poweroffice.requests;
    expect(log).toHaveLength(34); // token + 30 GET + 3 PATCH
    expect(log.filter((r) => r.status === 429)).toEqual([]);
    expect(maxInAnySecond(log)).toBeLessThanOrEqual(LIMIT);
    const patchPositions = log.flatMap((r, i) => (r.method === 'PATCH' ? [i] : []));
    // The three writes take the first free slots after they were queued, not the last ones
    // after 30 polls. Measured in arrival order, where requests started in the same
    // millisecond may swap (a new connection is slower than a kept-alive one): so "within
    // the second window" rather than exact positions.
    expect(Math.max(...patchPositions)).toBeLessThanOrEqual(2 * LIMIT);
    const seconds = (log.at(-1)!.at - log[0]!.at) / 1000;
    console.info(
      `poweroffice pacing: ${log.length} requests in ${seconds.toFixed(2)} s at limit ${LIMIT}/s, max ${maxInAnySecond(log)} in any second, PATCHes at positions ${patchPositions.map((p) => p + 1).join(',')}`,
    );
  });

  it('a 429 pauses the whole system: two requests queued behind it both wait Retry-After, not only the one retried', async () => {
    tidsbanken.clearRequests();
    for (let id = 1; id <= 3; id++) tidsbanken.seedAnsatt({ Id: id });
    const pacer = new Pacer('tidsbanken', LIMIT);
    const client = new TidsbankenClient({
      config: {
        baseUrl: tidsbanken.url,
        apiKey: tidsbanken.apiKey,
        subscriptionKey: tidsbanken.subscriptionKey,
      },
      pacer,
      logger,
      metrics,
    });
    tidsbanken.faults.inject(1, '429', { retryAfterSeconds: 2 });
    const limitedRead = client.getAnsatt(1);
    // Free slots remain (LIMIT is 5): with a per-request retry these two would go at once.
    await vi.waitFor(() => expect(pacer.isPaused).toBe(true), { timeout: 5_000, interval: 5 });
    const queued = [client.getAnsatt(2), client.getAnsatt(3)];
    await Promise.all([limitedRead, ...queued]);
    const log = tidsbanken.requests;
    const limited = log.find((r) => r.status === 429)!;
    expect(log.map((r) => r.status)).toEqual([429, 200, 200, 200]);
    // Every request after the 429 arrived at the server at least Retry-After later.
    for (const r of log.filter((r) => r !== limited))
      expect(r.at - limited.at).toBeGreaterThanOrEqual(2_000);
  });
});
