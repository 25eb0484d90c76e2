import { request, type IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { signWebhook } from '../../src/http/webhook-signature.js';
import {
  childServiceStore,
  cleanupAfterEach,
  freePort,
  runService,
  waitReady,
} from '../helpers/child-service.js';
import { waitFor } from '../helpers/wait.js';

// SIGTERM as Kubernetes sends it: /readyz turns 503 first (the load balancer takes the replica
// out during SHUTDOWN_DELAY_MS), then the server stops accepting and lets requests in flight
// finish, the workers stop, and the process exits 0. The real entry point in a child process.

const SECRET = 'whsec_Z3JhY2VmdWwtc3RvcC10ZXN0LXNlY3JldC0wMTIzNDU2Nzg=';

const cleanup = cleanupAfterEach();

describe('SIGTERM', () => {
  it('turns /readyz 503 first, then drains: a webhook in flight completes with 202 and is stored, and the process exits 0', async () => {
    const store = await childServiceStore(cleanup, 'tbpo-stop-');
    const port = await freePort();
    const run = runService({
      PORT: String(port),
      POLL_INTERVAL_MS: '0',
      TIDSBANKEN_WEBHOOK_SECRET: SECRET,
      SHUTDOWN_DELAY_MS: '8000',
      SHUTDOWN_TIMEOUT_MS: '40000',
      ...store.env,
    });
    cleanup.push(async () => {
      run.signal('SIGKILL');
      await run.exited;
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

    run.signal('SIGTERM');
    await waitFor(
      '/readyz 503',
      async () => {
        const res = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
        return res?.status === 503;
      },
      30_000,
    );
    // After the readiness delay the server stops accepting; the request in flight goes on.
    await waitFor('the drain', () => run.output().includes('"msg":"draining"'), 30_000);
    inFlight.end(raw.slice(20));
    const answer = await answered;
    expect(answer.status).toBe(202);
    expect(JSON.parse(answer.body)).toMatchObject({ id: 'msg_in_flight', duplicate: false });

    expect(await run.exited).toBe(0);
    expect(run.output()).toContain('"msg":"stopped"');

    const handle = await store.open();
    const stored = await handle.db
      .selectFrom('inbound_events')
      .select('event_id')
      .where('event_id', '=', 'msg_in_flight')
      .execute();
    expect(stored).toHaveLength(1);
  }, 240_000);
});
