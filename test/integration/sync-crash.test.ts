import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { RecordedRequest } from '../fakes/fake-server.js';
import type { FakePowerOffice } from '../fakes/poweroffice.js';
import type { FakeTidsbanken } from '../fakes/tidsbanken.js';
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

// The real service (`tsx src/main.ts`) in a child process, killed with SIGKILL in the middle of
// a burst of changes and restarted on the same database (docs/ARCHITECTURE.md "Crash safety"). The fakes run in this
// process. On PGlite the child owns DATA_DIR (one process per data dir), so the test reads
// state through the fakes and opens DATA_DIR itself only after the child has stopped.

const PAIRS = 10;
const NEW_ANSATTE = [101, 102, 103, 104, 105, 106];

const isWrite = (r: RecordedRequest) =>
  ['POST', 'PUT', 'PATCH'].includes(r.method) && !/token/i.test(r.path);

/** Waits until no write reached either fake for `quietMs` (several poll cycles) and `agree()`. */
async function waitConverged(
  tb: FakeTidsbanken,
  po: FakePowerOffice,
  agree: () => boolean | Promise<boolean>,
  quietMs: number,
  timeoutMs: number,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const lastWrite = Math.max(
      0,
      ...[...tb.requests, ...po.requests].filter(isWrite).map((r) => r.at),
    );
    if ((await agree()) && performance.now() - lastWrite >= quietMs) return;
    if (Date.now() > deadline) throw new Error('the service did not converge');
    await new Promise((r) => setTimeout(r, 100));
  }
}

const ADMIN_TOKEN = 'sync-crash-admin-token-0123456789';

/**
 * The service as a child process on `env`'s store, started and settled (its first `firstGets`
 * Tidsbanken reads done, nothing written for 1.5 s); the marks are the fakes' last request then.
 */
async function startSettled(
  env: Record<string, string>,
  fakes: { tb: FakeTidsbanken; po: FakePowerOffice },
  firstGets: number,
  settleMs: number,
) {
  const { tb, po } = fakes;
  const port = Number(env.PORT);
  const service = { run: runService(env) };
  cleanup.push(async () => {
    service.run.signal('SIGKILL');
    await service.run.exited;
  });
  await waitReady(port, 90_000);
  await waitFor(
    'the first polls',
    () => tb.requests.filter((r) => r.method === 'GET').length >= firstGets,
    30_000,
  );
  await waitConverged(tb, po, () => true, 1500, settleMs);
  const marks = { tb: tb.requests.at(-1)?.seq ?? 0, po: po.requests.at(-1)?.seq ?? 0 };
  const writesSince = () =>
    tb.requests.filter((r) => r.seq > marks.tb && isWrite(r)).length +
    po.requests.filter((r) => r.seq > marks.po && isWrite(r)).length;
  return {
    get run() {
      return service.run;
    },
    marks,
    writesSince,
    /**
     * SIGKILL once some writes of the burst reached the fakes, not all. A request the dead
     * process had already written to its socket still reaches the fake after the kill (under
     * load, after the test's next edits could). A Tidsbanken PUT replaces the whole record, so
     * one landing after a user's edit would undo that edit — the read-then-replace race of the
     * vendor's API (README "Known limits"), not a crash effect. Let what was on the wire land
     * first, as it would at a real vendor: the dead process's connections close once the fakes
     * have read everything it sent on them. Returns the dead process's output.
     */
    async killMidBurst(): Promise<string> {
      await waitFor('the first writes of the burst', () => writesSince() >= 3, 20_000);
      service.run.signal('SIGKILL');
      expect(await service.run.exited).toBe(-1);
      const output = service.run.output();
      await waitFor(
        "the killed process's connections to close",
        () => tb.openConnections === 0 && po.openConnections === 0,
        20_000,
      );
      return output;
    },
    /** Starts it again on the same store. */
    async restart(): Promise<void> {
      service.run = runService(env);
      await waitReady(port, 90_000);
    },
  };
}

const cleanup = cleanupAfterEach();

describe('a service process killed mid-burst', () => {
  it('killed with SIGKILL in the middle of a burst of edits and creates and restarted on the same database, lands every change, creates each Employee exactly once and repeats at most the update in flight', async () => {
    const { tb, po } = await startFakes(cleanup);
    seedEmployeePairs(tb, po, PAIRS);
    const employeeOf = (i: number) =>
      [...po.employees.values()].find((e) => e.Number === i)!.Id as number;

    const store = await childServiceStore(cleanup, 'tbpo-crash-');
    const port = await freePort();
    const env: Record<string, string> = {
      PORT: String(port),
      ...store.env,
      ...fakesEnv(tb, po),
      TIDSBANKEN_RATE_LIMIT_PER_SECOND: '40',
      POWEROFFICE_RATE_LIMIT_PER_SECOND: '40',
      POLL_INTERVAL_MS: '300',
      FLOW_ANSATT_EMPLOYEE_ON_UNMATCHED: 'create-in-poweroffice',
      ADMIN_TOKEN,
    };

    // Start-up: first full reads, then the pairs link (nothing differs, so nothing is written).
    const service = await startSettled(env, { tb, po }, 4, 20_000);
    const { tb: tbMark, po: poMark } = service.marks;

    // The burst: titles edited in Tidsbanken, phone numbers in PowerOffice, new Ansatte that
    // get an Employee each. One create POST lands but its answer is lost.
    po.faults.inject(1, 'drop', {
      process: true,
      match: (req) => req.method === 'POST' && /employees$/i.test(req.path),
    });
    const title = (i: number, round: number) => `Tittel ${i}.${round}`;
    const phone = (i: number, round: number) => `+47900${round}${String(i).padStart(4, '0')}`;
    for (let i = 1; i <= PAIRS; i++) {
      tb.editAnsatt(i, { Tittel: title(i, 1) });
      po.editEmployee(employeeOf(i), { PhoneNumber: phone(i, 1) });
    }
    for (const id of NEW_ANSATTE)
      tb.seedAnsatt({
        Id: id,
        Fornavn: `Ny${id}`,
        Etternavn: `Ansatt${id}`,
        Epost: `n${id}@firma.no`,
      });

    const firstOutput = await service.killMidBurst();
    const writesBeforeKill = service.writesSince();

    // Edits keep coming while the service is down: a second round on half of the pairs.
    for (let i = 1; i <= PAIRS; i += 2) {
      tb.editAnsatt(i, { Tittel: title(i, 2) });
      po.editEmployee(employeeOf(i + 1), { PhoneNumber: phone(i + 1, 2) });
    }

    await service.restart();
    const lastTitle = (i: number) => title(i, i % 2 === 1 ? 2 : 1);
    const lastPhone = (i: number) => phone(i, i % 2 === 0 ? 2 : 1);
    const agree = () => {
      for (let i = 1; i <= PAIRS; i++) {
        const ansatt = tb.getAnsatt(i)!;
        const employee = po.getEmployee(employeeOf(i))!;
        if (ansatt.Tittel !== lastTitle(i) || employee.JobTitle !== lastTitle(i)) return false;
        if (ansatt.Mobil !== lastPhone(i) || employee.PhoneNumber !== lastPhone(i)) return false;
      }
      return NEW_ANSATTE.every((id) =>
        [...po.employees.values()].some((e) => e.ExternalImportReference === `tb-ansatt-${id}`),
      );
    };
    // The fakes agreeing is not enough: a create whose answer was lost waits in the outbox
    // (backing off) until it finds its record and links it. Ask the service, not the database
    // (the embedded one is open in the service's process).
    const outboxEmpty = async () => {
      const res = await fetch(`http://127.0.0.1:${port}/admin/commands?status=pending`, {
        headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      });
      return res.ok && ((await res.json()) as { items: unknown[] }).items.length === 0;
    };
    // Converged: both sides agree and no write for ten poll cycles.
    await waitConverged(tb, po, async () => agree() && (await outboxEmpty()), 3000, 90_000).catch(
      (err: unknown) => {
        const pairs = Array.from({ length: PAIRS }, (_, k) => k + 1).map((i) => ({
          i,
          tb: [tb.getAnsatt(i)!.Tittel, tb.getAnsatt(i)!.Mobil],
          po: [po.getEmployee(employeeOf(i))!.JobTitle, po.getEmployee(employeeOf(i))!.PhoneNumber],
          want: [lastTitle(i), lastPhone(i)],
        }));
        writeFileSync(
          join(tmpdir(), 'tbpo-crash-test-output.log'),
          firstOutput + service.run.output(),
        );
        throw new Error(
          `${(err as Error).message}\n${JSON.stringify(pairs)}\n${service.run.output().slice(-3000)}`,
        );
      },
    );
    service.run.signal('SIGTERM');
    expect(await service.run.exited).toBe(0);

    // Every pair holds the last edit on both sides.
    for (let i = 1; i <= PAIRS; i++) {
      expect({ i, title: tb.getAnsatt(i)!.Tittel, phone: tb.getAnsatt(i)!.Mobil }).toEqual({
        i,
        title: lastTitle(i),
        phone: lastPhone(i),
      });
      const employee = po.getEmployee(employeeOf(i))!;
      expect({ i, title: employee.JobTitle, phone: employee.PhoneNumber }).toEqual({
        i,
        title: lastTitle(i),
        phone: lastPhone(i),
      });
    }

    // Creates: exactly one Employee per new Ansatt (Number = Ansatt Id), and exactly one POST
    // for it, the one whose answer was lost included: a create is never sent again.
    const posts = po.requests.filter((r) => r.method === 'POST' && /employees$/i.test(r.path));
    for (const id of NEW_ANSATTE) {
      const ref = `tb-ansatt-${id}`;
      const created = [...po.employees.values()].filter((e) => e.ExternalImportReference === ref);
      expect(created.map((e) => e.Number)).toEqual([id]);
      expect({
        ref,
        posts: posts.filter(
          (p) => (p.body as { ExternalImportReference?: string }).ExternalImportReference === ref,
        ).length,
      }).toEqual({ ref, posts: 1 });
    }
    expect(posts.filter((p) => p.status === 0)).toHaveLength(1); // the lost answer
    expect(po.faults.remaining).toBe(0);

    // Field writes: an update in flight at the kill may be sent once more (docs/ARCHITECTURE.md "Crash safety");
    // nothing else is repeated: at most one repeat per record.
    const repeats: Record<string, number> = {};
    const patches = po.requests.filter((r) => r.seq > poMark && r.method === 'PATCH');
    for (let i = 1; i <= PAIRS; i++) {
      const ops = patches
        .filter((p) => p.path.toLowerCase().endsWith(`/employees/${employeeOf(i)}`))
        .flatMap((p) =>
          (p.body as { path: string; value: unknown }[]).map(
            (o) => `${o.path}=${JSON.stringify(o.value)}`,
          ),
        );
      repeats[`employee ${i}`] = ops.length - new Set(ops).size;
      const puts = tb.requests.filter(
        (r) =>
          r.seq > tbMark &&
          r.method === 'PUT' &&
          (r.body as { Id: number }[]).some((x) => x.Id === i),
      );
      const poEdits = i % 2 === 0 ? 2 : 1;
      repeats[`ansatt ${i}`] = Math.max(0, puts.length - poEdits);
    }
    for (const [record, n] of Object.entries(repeats))
      expect({ record, n }).toMatchObject({ record, n: expect.toSatisfy((x: number) => x <= 1) });
    expect(writesBeforeKill).toBeGreaterThanOrEqual(3);

    // The database: nothing left to send, nothing dead, every pair and every create linked.
    const handle = await store.open();
    const open = await handle.db
      .selectFrom('outbound_commands')
      .selectAll()
      .where('status', 'in', ['pending', 'sending', 'dead'])
      .execute();
    expect(open).toEqual([]);
    const links = await handle.db
      .selectFrom('links')
      .select(['tidsbanken_id', 'linked_by'])
      .where('flow', '=', 'ansatt-employee')
      .where('unlinked_at', 'is', null)
      .execute();
    expect(links.map((l) => Number(l.tidsbanken_id)).sort((a, b) => a - b)).toEqual([
      ...Array.from({ length: PAIRS }, (_, k) => k + 1),
      ...NEW_ANSATTE,
    ]);
    console.info(JSON.stringify({ writesBeforeKill, repeats }));
  }, 180_000);

  it('prosjekt-project: killed with SIGKILL mid-burst and restarted, lands every edit with its references translated and creates each Project exactly once', async () => {
    const { tb, po } = await startFakes(cleanup);
    // The records the references name, linked in their own flows.
    seedEmployeePairs(tb, po, 3);
    const customerOf = new Map<string, number>();
    for (const k of ['K1', 'K2', 'K3']) {
      tb.seedKunde({ Id: k, Navn: `Kunde ${k}`, Epost: `${k.toLowerCase()}@kunde.no` });
      customerOf.set(
        k,
        po.seedCustomer({ Name: `Kunde ${k}`, EmailAddress: `${k.toLowerCase()}@kunde.no` })
          .Id as number,
      );
    }
    const employeeOf = (n: number) =>
      [...po.employees.values()].find((e) => e.Number === n)!.Id as number;
    const codes = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6'];
    const projectOf = new Map<string, number>();
    for (const code of codes) {
      tb.seedProsjekt({ Id: code, Navn: `Prosjekt ${code}` });
      projectOf.set(code, po.seedProject({ Code: code, Name: `Prosjekt ${code}` }).Id as number);
    }
    const NEW = ['N1', 'N2', 'N3', 'N4'];

    const store = await childServiceStore(cleanup, 'tbpo-crash-');
    const port = await freePort();
    const env: Record<string, string> = {
      PORT: String(port),
      ...store.env,
      ...fakesEnv(tb, po),
      TIDSBANKEN_RATE_LIMIT_PER_SECOND: '40',
      POWEROFFICE_RATE_LIMIT_PER_SECOND: '40',
      POLL_INTERVAL_MS: '300',
      FLOW_PROSJEKT_PROJECT_ON_UNMATCHED: 'create-in-poweroffice',
    };

    const service = await startSettled(env, { tb, po }, 6, 30_000);

    // The burst: names and customers edited in Tidsbanken, end dates in PowerOffice, new
    // Prosjekter that get a Project each. One create POST lands but its answer is lost.
    po.faults.inject(1, 'drop', {
      process: true,
      match: (req) => req.method === 'POST' && /projects$/i.test(req.path),
    });
    const kundeFor = (i: number) => `K${(i % 3) + 1}`;
    const name = (code: string, round: number) => `Prosjekt ${code} v${round}`;
    const end = (i: number, round: number) => `2027-0${round}-${String(10 + i)}`;
    codes.forEach((code, i) => {
      tb.editProsjekt(code, { Navn: name(code, 1), KundeId: kundeFor(i) });
      po.editProject(projectOf.get(code)!, { EndDate: end(i, 1) });
    });
    for (const id of NEW)
      tb.seedProsjekt({ Id: id, Navn: `Ny ${id}`, KundeId: 'K1', AnsvarligId: 2 });

    await service.killMidBurst();

    // Edits while the service is down: a second round on half of the projects.
    codes.forEach((code, i) => {
      if (i % 2 === 0) tb.editProsjekt(code, { Navn: name(code, 2) });
      else po.editProject(projectOf.get(code)!, { EndDate: end(i, 2) });
    });

    await service.restart();
    const lastName = (code: string, i: number) => name(code, i % 2 === 0 ? 2 : 1);
    const lastEnd = (i: number) => end(i, i % 2 === 1 ? 2 : 1);
    const agree = () =>
      codes.every((code, i) => {
        const p = tb.getProsjekt(code)!;
        const q = po.getProject(projectOf.get(code)!)!;
        return (
          p.Navn === lastName(code, i) &&
          q.Name === lastName(code, i) &&
          p.AvsluttetDato === lastEnd(i) &&
          q.EndDate === lastEnd(i) &&
          q.CustomerId === customerOf.get(kundeFor(i))
        );
      }) &&
      NEW.every((id) =>
        [...po.projects.values()].some(
          (q) =>
            q.Code === id &&
            q.CustomerId === customerOf.get('K1') &&
            q.ProjectManagerEmployeeId === employeeOf(2),
        ),
      );
    await waitConverged(tb, po, agree, 3000, 60_000).catch((err: unknown) => {
      const state = codes.map((code) => ({
        tb: tb.getProsjekt(code),
        po: po.getProject(projectOf.get(code)!),
      }));
      throw new Error(
        `${(err as Error).message}\n${JSON.stringify(state)}\n${service.run.output().slice(-3000)}`,
      );
    });
    service.run.signal('SIGTERM');
    expect(await service.run.exited).toBe(0);

    // Creates: exactly one Project per new Prosjekt (Code = Id) and one POST for it, the one
    // whose answer was lost included (the code is looked up before every POST).
    const posts = po.requests.filter((r) => r.method === 'POST' && /projects$/i.test(r.path));
    for (const id of NEW) {
      expect([...po.projects.values()].filter((q) => q.Code === id)).toHaveLength(1);
      expect(posts.filter((p) => (p.body as { Code?: string }).Code === id)).toHaveLength(1);
    }
    expect(posts.filter((p) => p.status === 0)).toHaveLength(1);
    expect(po.faults.remaining).toBe(0);

    const handle = await store.open();
    const open = await handle.db
      .selectFrom('outbound_commands')
      .select(['id', 'status', 'operation', 'record_id'])
      .where('status', 'in', ['pending', 'sending', 'dead'])
      .execute();
    expect(open).toEqual([]);
    expect(await handle.db.selectFrom('reference_waits').selectAll().execute()).toEqual([]);
    const links = await handle.db
      .selectFrom('links')
      .select('tidsbanken_id')
      .where('flow', '=', 'prosjekt-project')
      .where('unlinked_at', 'is', null)
      .execute();
    expect(links.map((l) => l.tidsbanken_id).sort()).toEqual([...NEW, ...codes].sort());
  }, 180_000);
});
