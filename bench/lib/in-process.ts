// The whole service in this process — createRuntime, as src/main.ts builds it —
// on a scratch PostgreSQL database, talking to the two fakes over loopback HTTP. Unlike
// test/helpers/sync-harness.ts it uses no vitest and keeps main.ts's defaults (worker and
// dispatcher idle times, client timeouts), so the numbers are the production path's.
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { loadConfig, secretsOf, type Config } from '../../src/config.js';
import { openPostgres, type DatabaseHandle } from '../../src/db/database.js';
import { createLogger } from '../../src/lib/logger.js';
import { createRuntime } from '../../src/runtime.js';
import type { Service } from '../../src/service.js';
import { isLinkGateOpen } from '../../src/sync/sweep.js';
import type { FakePowerOffice } from '../../test/fakes/poweroffice.js';
import type { FakeTidsbanken } from '../../test/fakes/tidsbanken.js';
import { createScratchDatabase, newWebhookSecret, sleep } from './common.js';

export interface InProcessService {
  url: string;
  secret: string;
  config: Readonly<Config>;
  database: DatabaseHandle;
  service: Service;
  /** Inbox and outbox empty (and the link gate open) for `quietMs`. */
  settle(timeoutMs: number, quietMs?: number): Promise<void>;
  close(): Promise<void>;
}

export async function startInProcessService(options: {
  tb: FakeTidsbanken;
  po: FakePowerOffice;
  env?: Record<string, string>;
  prefix: string;
}): Promise<InProcessService> {
  const { tb, po } = options;
  const scratch = await createScratchDatabase(options.prefix);
  const database = openPostgres(scratch.url, 10);
  const secret = newWebhookSecret();
  const config = loadConfig({
    DATABASE_URL: scratch.url,
    TIDSBANKEN_BASE_URL: tb.url,
    TIDSBANKEN_API_KEY: tb.apiKey,
    TIDSBANKEN_SUBSCRIPTION_KEY: tb.subscriptionKey,
    TIDSBANKEN_WEBHOOK_SECRET: secret,
    POWEROFFICE_BASE_URL: po.baseUrl,
    POWEROFFICE_TOKEN_URL: po.tokenUrl,
    POWEROFFICE_APPLICATION_KEY: po.applicationKey,
    POWEROFFICE_CLIENT_KEY: po.clientKey,
    POWEROFFICE_SUBSCRIPTION_KEY: po.subscriptionKey,
    POWEROFFICE_WEBHOOK_SECRET: secret,
    POLL_INTERVAL_MS: '0',
    ...options.env,
  });
  // Info level as in production, but to /dev/null: serialization cost counts, a TTY does not.
  const logger = createLogger({
    level: process.env.BENCH_LOG_LEVEL ?? 'info',
    secrets: secretsOf(config),
    destination:
      process.env.BENCH_LOG_LEVEL !== undefined
        ? process.stderr
        : pino.destination({ dest: '/dev/null', sync: false }),
  });
  const runtime = await createRuntime({ config, logger, database, databaseUrl: scratch.url });
  const { service, app } = runtime;
  const server: Server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  service.start();
  const db = database.db;
  const busy = async () => {
    if (!(await isLinkGateOpen(db))) return true;
    const event = await db
      .selectFrom('inbound_events')
      .select('id')
      .where('status', '=', 'pending')
      .limit(1)
      .executeTakeFirst();
    if (event !== undefined) return true;
    const command = await db
      .selectFrom('outbound_commands')
      .select('id')
      .where('status', 'in', ['pending', 'sending'])
      .limit(1)
      .executeTakeFirst();
    return command !== undefined;
  };
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    secret,
    config,
    database,
    service,
    async settle(timeoutMs, quietMs = 700) {
      const deadline = Date.now() + timeoutMs;
      let quietSince: number | undefined;
      for (;;) {
        if (await busy()) quietSince = undefined;
        else quietSince ??= Date.now();
        if (quietSince !== undefined && Date.now() - quietSince >= quietMs) return;
        if (Date.now() > deadline) throw new Error('the service did not settle');
        await sleep(50);
      }
    },
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await runtime.close();
      await scratch.drop();
    },
  };
}
