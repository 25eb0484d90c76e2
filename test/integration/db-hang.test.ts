import type { Server } from 'node:http';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import { LogCapture } from '../helpers/app.js';
import { createTestDatabase } from '../helpers/database.js';
import { getReadyz, postAnsattWebhook } from '../helpers/webhook-client.js';

// A hung database: the service talks to PostgreSQL through a TCP proxy in this test that can
// stop forwarding without closing anything (a stalled network path, a frozen server). The
// service must answer webhooks 503 within 5 s and /readyz 503 within 2 s while it hangs, and
// recover fully once bytes flow again: nothing accepted is lost, everything refused is
// accepted when resent. PostgreSQL only (PGlite has no network path).

const SECRET = 'whsec_aHVuZy1kYXRhYmFzZS10ZXN0LXNlY3JldC0wMTIzNDU2Nzg=';

interface HangingProxy {
  port: number;
  hang(): void;
  forward(): void;
  close(): Promise<void>;
}

/** Forwards TCP to `target`; `hang()` stops moving bytes either way (connections stay open). */
async function startProxy(host: string, port: number): Promise<HangingProxy> {
  let hung = false;
  const sockets = new Set<Socket>();
  const track = (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    if (hung) socket.pause();
  };
  const server = createServer((client) => {
    const upstream = connect(port, host);
    track(client);
    track(upstream);
    client.on('data', (chunk) => upstream.write(chunk));
    upstream.on('data', (chunk) => client.write(chunk));
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    hang() {
      hung = true;
      for (const s of sockets) s.pause();
    },
    forward() {
      hung = false;
      for (const s of sockets) s.resume();
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  cleanup = [];
});

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe.skipIf(!process.env.DATABASE_URL)(
  'a hung database (TCP proxy that stops forwarding)',
  () => {
    it('webhooks answer 503 within 5 s and /readyz 503 within 2 s while it hangs; afterwards every accepted event is processed and every refused one is accepted when resent', async () => {
      const database = await createTestDatabase(inject('templateDatabase'));
      cleanup.push(() => database.close());
      const direct = new URL(database.url!);
      const proxy = await startProxy(direct.hostname, Number(direct.port || 5432));
      cleanup.push(() => proxy.close());
      const proxied = new URL(direct);
      proxied.hostname = '127.0.0.1';
      proxied.port = String(proxy.port);

      const config = loadConfig({
        DATABASE_URL: proxied.toString(),
        POLL_INTERVAL_MS: '0',
        TIDSBANKEN_WEBHOOK_SECRET: SECRET,
      });
      const logger = createLogger({ level: 'info', destination: new LogCapture() });
      const runtime: Runtime = await createRuntime({ config, logger, workerIdleMs: 30 });
      runtime.service.start();
      cleanup.push(() => runtime.close());
      const server: Server = runtime.app.listen(0, '127.0.0.1');
      await new Promise((r) => server.once('listening', r));
      cleanup.push(
        () =>
          new Promise<void>((resolve) => {
            server.close(() => resolve());
            server.closeAllConnections();
          }),
      );
      const baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      // Whatever happens, the service is stopped with bytes flowing again.
      cleanup.push(() => Promise.resolve(proxy.forward()));

      // Accepted before the hang.
      const before = ['msg_before_1', 'msg_before_2', 'msg_before_3'];
      for (const [i, id] of before.entries()) {
        const answer = await postAnsattWebhook(baseUrl, SECRET, id, 100 + i, { timeoutMs: 5000 });
        expect(answer.status).toBe(202);
      }

      proxy.hang();
      const during = ['msg_during_1', 'msg_during_2', 'msg_during_3', 'msg_during_4'];
      const refused = await Promise.all(
        during.map((id, i) => postAnsattWebhook(baseUrl, SECRET, id, 200 + i, { timeoutMs: 5000 })),
      );
      for (const answer of refused) {
        expect(answer.status).toBe(503);
        expect(answer.contentType).toMatch(/^application\/problem\+json/);
        expect(Number(answer.retryAfter)).toBeGreaterThan(0);
      }
      const ready = await getReadyz(baseUrl, 2000);
      expect(ready.status).toBe(503);
      expect(ready.contentType).toMatch(/^application\/problem\+json/);

      proxy.forward();
      // The sender retries what was refused until it is accepted.
      for (const [i, id] of during.entries()) {
        await waitFor(`${id} accepted`, async () => {
          const answer = await postAnsattWebhook(baseUrl, SECRET, id, 200 + i, {
            timeoutMs: 5000,
          }).catch(() => undefined);
          return answer?.status === 202;
        });
      }
      await waitFor('/readyz 200', async () => (await getReadyz(baseUrl, 2000)).status === 200);
      // Nothing lost: every event accepted before and after the hang is processed, once.
      await waitFor('every event processed', async () => {
        const rows = await database.db
          .selectFrom('inbound_events')
          .select(['event_id', 'status'])
          .where('source', '=', 'tidsbanken')
          .execute();
        return [...before, ...during].every(
          (id) => rows.filter((r) => r.event_id === id && r.status === 'done').length === 1,
        );
      });
      const stored = await database.db
        .selectFrom('inbound_events')
        .select('event_id')
        .where('source', '=', 'tidsbanken')
        .execute();
      expect(stored.map((r) => r.event_id).sort()).toEqual([...before, ...during].sort());
    });
  },
);
