import { describe, expect, it } from 'vitest';
import {
  childServiceStore,
  cleanupAfterEach,
  freePort,
  runService,
  startFakes,
  waitReady,
} from '../helpers/child-service.js';
import { fakesEnv } from '../helpers/fakes-env.js';
import { seedEmployeePairs } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// The real service (`tsx src/main.ts`) killed with SIGKILL in the middle of a reconcile and
// restarted on the same database: the run is failed and linking resumes with nobody acting
// (no operator, no second reconcile). Both databases.

const TOKEN = 'reconcile-crash-admin-token-0123456789';
const auth = { authorization: `Bearer ${TOKEN}` };

const cleanup = cleanupAfterEach();

describe('a service killed mid-reconcile', () => {
  it('fails the run at the next start and links new matching records with nobody acting', async () => {
    const { tb, po } = await startFakes(cleanup);
    seedEmployeePairs(tb, po, 3);
    const store = await childServiceStore(cleanup, 'tbpo-reconcile-crash-');
    const port = await freePort();
    const env: Record<string, string> = {
      PORT: String(port),
      ...store.env,
      ADMIN_TOKEN: TOKEN,
      ...fakesEnv(tb, po),
      POLL_INTERVAL_MS: '300',
      LEASE_TTL_MS: '3000',
    };
    const base = `http://127.0.0.1:${port}`;
    const links = async () => {
      const res = await fetch(`${base}/admin/links?flow=ansatt-employee&limit=100`, {
        headers: auth,
      });
      return res.ok ? ((await res.json()) as { items: unknown[] }).items.length : -1;
    };

    let run = runService(env);
    cleanup.push(async () => {
      run.signal('SIGKILL');
      await run.exited;
    });
    await waitReady(port, 90_000);
    await waitFor('the pairs to link', async () => (await links()) === 3, 30_000);

    // A reconcile whose full read of the Ansatte is slow; killed while it reads.
    tb.faults.inject(2, 'slow', {
      delayMs: 10_000,
      match: (r) => r.method === 'GET' && /ansatt/i.test(r.path),
    });
    const started = await fetch(`${base}/admin/reconcile`, { method: 'POST', headers: auth });
    expect(started.status).toBe(202);
    await waitFor(
      'the reconcile to be reading',
      async () => {
        const res = await fetch(`${base}/admin/reconcile`, { headers: auth });
        const body = (await res.json()) as { status: string; progress: { phase: string } };
        return body.status === 'running' && body.progress.phase === 'reading';
      },
      20_000,
    );
    run.signal('SIGKILL');
    expect(await run.exited).toBe(-1);

    // A new matching pair appears while the service is down.
    tb.seedAnsatt({ Id: 50, Fornavn: 'Ny', Etternavn: 'Person', Epost: 'ny50@firma.no' });
    po.seedEmployee({
      Number: 50,
      FirstName: 'Ny',
      LastName: 'Person',
      EmailAddress: 'ny50@firma.no',
    });

    run = runService(env);
    await waitReady(port, 90_000);
    await waitFor('the new pair to link by itself', async () => (await links()) === 4, 40_000);
    const res = await fetch(`${base}/admin/reconcile`, { headers: auth });
    const last = (await res.json()) as { status: string; error: string | null };
    expect(last.status).toBe('failed');
    expect(last.error).toMatch(/abandoned/);
  }, 240_000);
});
