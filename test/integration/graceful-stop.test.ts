import { spawn } from 'node:child_process';
import { request, type IncomingMessage } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { openPglite } from '../../src/db/database.js';
import { signWebhook } from '../../src/http/webhook-signature.js';
import { freePort, TSX, waitReady } from '../helpers/child-service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';

// SIGTERM as Kubernetes sends it: /readyz turns 503 first (the load balancer takes the replica
// out during SHUTDOWN_DELAY_MS), then the server stops accepting and lets requests in flight
// finish, the workers stop, and the process exits 0. The real entry point in a child process.

const SECRET = 'whsec_Z3JhY2VmdWwtc3RvcC10ZXN0LXNlY3JldC0wMTIzNDU2Nzg=';

let cleanup: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const fn of cleanup.reverse()) await fn().catch(() => undefined);
  cleanup = [];
});

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 30_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('SIGTERM', () => {
  it('turns /readyz 503 first, then drains: a webhook in flight completes with 202 and is stored, and the process exits 0', async () => {
    let database: TestDatabase | undefined;
    let dataDir: string | undefined;
    if (process.env.DATABASE_URL) {
      database = await createTestDatabase(inject('templateDatabase'));
      const db = database;
      cleanup.push(() => db.close());
    } else {
      dataDir = await mkdtemp(join(tmpdir(), 'tbpo-stop-'));
      const dir = dataDir;
      cleanup.push(() => rm(dir, { recursive: true, force: true }));
    }
    const port = await freePort();
    const child = spawn(TSX, ['src/main.ts'], {
      env: {
        PATH: process.env.PATH ?? '',
        LOG_LEVEL: 'info',
        PORT: String(port),
        POLL_INTERVAL_MS: '0',
        TIDSBANKEN_WEBHOOK_SECRET: SECRET,
        SHUTDOWN_DELAY_MS: '8000',
        SHUTDOWN_TIMEOUT_MS: '40000',
        ...(database !== undefined ? { DATABASE_URL: database.url! } : { DATA_DIR: dataDir! }),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) =>
      child.on('exit', (code) => resolve(code)),
    );
    cleanup.push(async () => {
      child.kill('SIGKILL');
      await exited;
    });
    await waitReady(port, 120_000);

    // A webhook whose body is still arriving when SIGTERM comes.
    const raw = JSON.stringify({
      type: 'ansatt.updated',
      timestamp: new Date().toISOString(),
      data: { Id: 77, Fornavn: 'Under', Etternavn: 'Veis', Epost: 'under.veis@firma.no' },
    });
    const ts = Math.floor(Date.now() / 1000);
    const inFlight = request({
      host: '127.0.0.1',
      port,
      method: 'POST',
      path: '/webhooks/tidsbanken',
      headers: {
        'content-type': 'application/json',
        'content-length': Buffer.byteLength(raw),
        'webhook-id': 'msg_in_flight',
        'webhook-timestamp': String(ts),
        'webhook-signature': signWebhook(SECRET, 'msg_in_flight', ts, raw),
      },
    });
    const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
      inFlight.on('response', (res: IncomingMessage) => {
        let body = '';
        res.on('data', (d: Buffer) => (body += d.toString()));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      inFlight.on('error', reject);
    });
    answered.catch(() => undefined);
    inFlight.write(raw.slice(0, 20));
    inFlight.flushHeaders();

    child.kill('SIGTERM');
    await waitFor('/readyz 503', async () => {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
      return res?.status === 503;
    });
    // After the readiness delay the server stops accepting; the request in flight goes on.
    await waitFor('the drain', () => output.includes('"msg":"draining"'));
    inFlight.end(raw.slice(20));
    const answer = await answered;
    expect(answer.status).toBe(202);
    expect(JSON.parse(answer.body)).toMatchObject({ id: 'msg_in_flight', duplicate: false });

    expect(await exited).toBe(0);
    expect(output).toContain('"msg":"stopped"');

    const handle = database ?? (await openPglite(dataDir));
    try {
      const stored = await handle.db
        .selectFrom('inbound_events')
        .select('event_id')
        .where('event_id', '=', 'msg_in_flight')
        .execute();
      expect(stored).toHaveLength(1);
    } finally {
      if (database === undefined) await handle.close();
    }
  }, 240_000);
});
