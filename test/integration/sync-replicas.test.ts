import { randomBytes, randomUUID } from 'node:crypto';
import request from 'supertest';
import { afterEach, describe, expect, it } from 'vitest';
import type { Express } from 'express';
import { secretsOf } from '../../src/config.js';
import { openPostgres } from '../../src/db/database.js';
import { signWebhook } from '../../src/http/webhook-signature.js';
import { createLogger } from '../../src/lib/logger.js';
import { createRuntime, type Runtime } from '../../src/runtime.js';
import type { Service } from '../../src/service.js';
import { maxPerSlidingSecond, type RecordedRequest } from '../fakes/fake-server.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { LogCapture } from '../helpers/app.js';
import { pgbouncerBinary, startPgBouncer, type PgBouncer } from '../helpers/pgbouncer.js';
import { seedEmployeePairs, startSyncHarness, type SyncHarness } from '../helpers/sync-harness.js';
import { waitFor } from '../helpers/wait.js';

// Two replicas of the service on one PostgreSQL database, against the same two fakes.
//
// PostgreSQL only: leadership is a PostgreSQL advisory lock, and on embedded PGlite (one
// process, one database) Leadership makes every instance the holder at once, so two instances
// on one PGlite handle would both run dispatchers and pollers with two pacers: neither
// "one leader per system" nor the shared rate limit is a property there. CI runs the suite
// with DATABASE_URL as well, where this file runs.

const PAIRS = 20;
/** The lease length both replicas run with (the default): a lease left to expire takes this long. */
const LEASE_TTL_MS = 15_000;
const TB_SECRET = `whsec_${randomBytes(32).toString('base64')}`;
const PO_SECRET = `whsec_${randomBytes(32).toString('base64')}`;

interface Replica {
  name: string;
  service: Service;
  app: Express;
  logs: LogCapture;
}

let h: SyncHarness | undefined;
let second: Runtime | undefined;
let fakes: { tb: FakeTidsbanken; po: FakePowerOffice } | undefined;
let bouncer: PgBouncer | undefined;
afterEach(async () => {
  await second?.close();
  await h?.close();
  await fakes?.tb.close();
  await fakes?.po.close();
  await bouncer?.close();
  bouncer = undefined;
  h = undefined;
  second = undefined;
  fakes = undefined;
});

interface LogLine {
  time: string;
  msg: string;
  lock?: string;
  system?: string;
  decision?: string;
}

function parsed(logs: LogCapture): LogLine[] {
  return logs.lines.map((l) => JSON.parse(l) as LogLine);
}

function leadershipTimes(logs: LogCapture, system: string, msg: string): number[] {
  return parsed(logs)
    .filter((l) => l.msg === msg && l.lock === `tbpo-dispatcher-${system}`)
    .map((l) => Date.parse(l.time));
}

function sentTimes(logs: LogCapture, system: string): number[] {
  return parsed(logs)
    .filter((l) => l.msg === 'command sent' && l.system === system)
    .map((l) => Date.parse(l.time));
}

function webhook(app: Express, system: 'tidsbanken' | 'poweroffice', body: unknown) {
  const raw = JSON.stringify(body);
  const id = `msg_${randomUUID()}`;
  const timestamp = Math.floor(Date.now() / 1000);
  return request(app)
    .post(`/webhooks/${system}`)
    .set('content-type', 'application/json')
    .set('webhook-id', id)
    .set('webhook-timestamp', String(timestamp))
    .set(
      'webhook-signature',
      signWebhook(system === 'tidsbanken' ? TB_SECRET : PO_SECRET, id, timestamp, raw),
    )
    .send(raw);
}

interface Outcome {
  poMax: number;
  tbMax: number;
  po429: RecordedRequest[];
  tb429: RecordedRequest[];
  takeoverMs: number | undefined;
  disagreements: string[];
  excessWrites: string[];
}

async function scenario(options: {
  stopLeaderMidBurst: boolean;
  /** Both replicas connect through this rewrite of the database URL (a pooler). */
  via?: (url: string) => string;
}): Promise<Outcome> {
  const tb = await startFakeTidsbanken({ rateLimitPerSecond: 5 });
  const po = await startFakePowerOffice({ rateLimitPerSecond: 10 });
  fakes = { tb, po };
  seedEmployeePairs(tb, po, PAIRS);
  const env = {
    TIDSBANKEN_RATE_LIMIT_PER_SECOND: '5',
    POWEROFFICE_RATE_LIMIT_PER_SECOND: '10',
    POLL_INTERVAL_MS: '1000',
    TIDSBANKEN_WEBHOOK_SECRET: TB_SECRET,
    POWEROFFICE_WEBHOOK_SECRET: PO_SECRET,
    LEASE_TTL_MS: String(LEASE_TTL_MS),
  };
  h = await startSyncHarness({ fakes: { tb, po }, env, via: options.via });
  // The second replica: its own pool on the same database, its own clients and pacers.
  const handle =
    options.via !== undefined
      ? openPostgres(options.via(h.database.url!), 5, { preparedStatements: false })
      : openPostgres(h.database.url!, 5);
  const logsB = new LogCapture();
  const loggerB = createLogger({
    level: 'info',
    secrets: secretsOf(h.config),
    destination: logsB,
  });
  second = await createRuntime({
    config: h.config,
    logger: loggerB,
    database: handle,
    databaseUrl: options.via?.(h.database.url!) ?? h.database.url,
    clientOptions: { timeoutMs: 2000, backoffBaseMs: 20 },
    workerIdleMs: 30,
  });
  const { service: serviceB, app: appB } = second;
  serviceB.start();
  const a: Replica = { name: 'A', service: h.service, app: h.app, logs: h.logs };
  const b: Replica = { name: 'B', service: serviceB, app: appB, logs: logsB };

  await h.settle({ timeoutMs: 30_000, quietMs: 1500 });
  const links = await h.database.db
    .selectFrom('links')
    .select(['tidsbanken_id', 'poweroffice_id'])
    .where('flow', '=', 'ansatt-employee')
    .where('unlinked_at', 'is', null)
    .execute();
  expect(links).toHaveLength(PAIRS);
  const employeeOf = new Map(links.map((l) => [Number(l.tidsbanken_id), Number(l.poweroffice_id)]));
  for (const [ansatt, employee] of employeeOf)
    expect(po.getEmployee(employee)!.Number).toBe(ansatt);

  const leaderOf = (system: string): Replica => {
    const taken = (r: Replica) => leadershipTimes(r.logs, system, 'leadership taken').length > 0;
    expect(taken(a) !== taken(b)).toBe(true);
    return taken(a) ? a : b;
  };
  const poLeader = leaderOf('poweroffice');
  const follower = poLeader === a ? b : a;

  // Burst 1: every Ansatt gets a new title in Tidsbanken and every Employee a new phone
  // number in PowerOffice. Pollers see them; a third also arrives as a full webhook, at
  // either replica.
  const tbMark = tb.requests.at(-1)?.seq ?? 0;
  const poMark = po.requests.at(-1)?.seq ?? 0;
  const title = (i: number) => `Tittel ${i}`;
  const phone = (i: number) => `+4790000${String(i).padStart(3, '0')}`;
  for (let i = 1; i <= PAIRS; i++) {
    const ansatt = tb.editAnsatt(i, { Tittel: title(i) });
    const employee = po.editEmployee(employeeOf.get(i)!, { PhoneNumber: phone(i) });
    if (i % 3 === 0) {
      const via = i % 2 === 0 ? a : b;
      expect(
        (
          await webhook(via.app, 'tidsbanken', {
            type: 'ansatt.updated',
            timestamp: new Date().toISOString(),
            data: ansatt,
          })
        ).status,
      ).toBe(202);
      expect(
        (
          await webhook(via.app, 'poweroffice', {
            type: 'employee.updated',
            timestamp: new Date().toISOString(),
            data: po.toDto(employee),
          })
        ).status,
      ).toBe(202);
    }
  }

  // Mid-burst, once PowerOffice has taken a few of the writes, the PowerOffice leader may
  // stop (its lock connection closes); the other replica must take over the dispatcher.
  const poWrites = () =>
    po.requests.filter((r) => r.seq > poMark && r.method === 'PATCH' && r.status === 200);
  await waitFor('some PowerOffice writes', () => poWrites().length >= 3);
  expect(poWrites().length).toBeLessThan(PAIRS);
  let stoppedAt: number | undefined;
  if (options.stopLeaderMidBurst) {
    await poLeader.service.stop();
    stoppedAt = Date.now();
  }
  const live = options.stopLeaderMidBurst ? [follower] : [a, b];

  // Burst 2: more edits, webhooks only to live replicas. A Tidsbanken edit waits until our
  // PUT of that Ansatt has landed: the PUT replaces the whole record from a read made just
  // before it, so an edit between that read and the PUT would be lost (no ETag in that API;
  // a race of its own, not the subject here).
  const city = (i: number) => `By ${i}`;
  const lastName = (i: number) => `Etternavn${i}-po`;
  const putLanded = (i: number) =>
    tb.requests.some(
      (r) =>
        r.seq > tbMark &&
        r.method === 'PUT' &&
        r.status === 200 &&
        (r.body as { Id: number }[]).some((x) => x.Id === i),
    );
  for (let i = 1; i <= PAIRS; i++) {
    if (i % 2 === 0) po.editEmployee(employeeOf.get(i)!, { LastName: lastName(i) });
  }
  for (let i = 1; i <= PAIRS; i += 2) {
    await waitFor(`our PUT of Ansatt ${i}`, () => putLanded(i), 30_000);
    const ansatt = tb.editAnsatt(i, { Poststed: city(i) });
    if (i % 5 === 0) {
      const response = await webhook(live[i % live.length]!.app, 'tidsbanken', {
        type: 'ansatt.updated',
        timestamp: new Date().toISOString(),
        data: ansatt,
      });
      expect(response.status).toBe(202);
    }
  }
  let takeoverMs: number | undefined;
  if (stoppedAt !== undefined) {
    await waitFor(
      'the survivor to take PowerOffice leadership',
      () => leadershipTimes(follower.logs, 'poweroffice', 'leadership taken').length > 0,
    );
    takeoverMs =
      leadershipTimes(follower.logs, 'poweroffice', 'leadership taken')[0]! -
      leadershipTimes(poLeader.logs, 'poweroffice', 'leadership lost')[0]!;
  }

  await h.settle({ timeoutMs: 40_000, quietMs: 2500 });

  // Every edit landed, and both sides agree (collected; asserted by expectEveryPromise).
  const disagreements: string[] = [];
  const check = (i: number, field: string, ansatt: unknown, employee: unknown, want: unknown) => {
    if (ansatt !== want || employee !== want)
      disagreements.push(
        `${i} ${field}: tidsbanken ${JSON.stringify(ansatt)}, poweroffice ${JSON.stringify(employee)}, want ${JSON.stringify(want)}`,
      );
  };
  for (let i = 1; i <= PAIRS; i++) {
    const ansatt = tb.getAnsatt(i)!;
    const employee = po.getEmployee(employeeOf.get(i)!)!;
    check(i, 'title', ansatt.Tittel, employee.JobTitle, title(i));
    check(i, 'phone', ansatt.Mobil, employee.PhoneNumber, phone(i));
    const employeeCity = (employee.MailAddress as { City?: string } | null)?.City ?? '';
    check(i, 'city', ansatt.Poststed ?? '', employeeCity, i % 2 === 1 ? city(i) : '');
    check(
      i,
      'last name',
      ansatt.Etternavn,
      employee.LastName,
      i % 2 === 0 ? lastName(i) : `Etternavn${i}`,
    );
  }

  // Exactly once: per record, at most one write per edit made on the other side (fewer when
  // coalesced), and never the same field value written twice.
  const patchesTo = new Map<number, RecordedRequest[]>();
  const applied = (r: RecordedRequest) => r.status >= 200 && r.status < 300;
  for (const r of po.requests.filter((r) => r.seq > poMark && r.method === 'PATCH' && applied(r))) {
    const id = Number(r.path.split('/').at(-1));
    patchesTo.set(id, [...(patchesTo.get(id) ?? []), r]);
  }
  const putsTo = new Map<number, RecordedRequest[]>();
  for (const r of tb.requests.filter((r) => r.seq > tbMark && r.method === 'PUT' && applied(r))) {
    for (const item of r.body as { Id: number }[])
      putsTo.set(item.Id, [...(putsTo.get(item.Id) ?? []), r]);
  }
  expect(
    po.requests.filter((r) => r.seq > poMark && r.method === 'POST' && !/token/i.test(r.path)),
  ).toEqual([]);
  expect(tb.requests.filter((r) => r.seq > tbMark && r.method === 'POST')).toEqual([]);
  const writesPerRecord: Record<string, { po: number; tb: number }> = {};
  const excessWrites: string[] = [];
  for (let i = 1; i <= PAIRS; i++) {
    const patches = patchesTo.get(employeeOf.get(i)!) ?? [];
    const puts = putsTo.get(i) ?? [];
    writesPerRecord[i] = { po: patches.length, tb: puts.length };
    const tbEdits = i % 2 === 1 ? 2 : 1; // title, and city on odd ones
    const poEdits = i % 2 === 0 ? 2 : 1; // phone, and last name on even ones
    if (patches.length < 1 || patches.length > tbEdits)
      excessWrites.push(`${i}: ${patches.length} PATCHes for ${tbEdits} Tidsbanken edits`);
    if (puts.length < 1 || puts.length > poEdits)
      excessWrites.push(`${i}: ${puts.length} PUTs for ${poEdits} PowerOffice edits`);
    const ops = patches.flatMap((p) =>
      (p.body as { path: string; value: unknown }[]).map(
        (op) => `${op.path}=${JSON.stringify(op.value)}`,
      ),
    );
    expect(new Set(ops).size).toBe(ops.length);
  }

  if (disagreements.length > 0 && process.env.REPLICA_DEBUG_DIR) {
    const { writeFileSync } = await import('node:fs');
    writeFileSync(
      `${process.env.REPLICA_DEBUG_DIR}/fail-${Date.now()}.json`,
      JSON.stringify({
        disagreements,
        employeeOf: [...employeeOf],
        po: po.requests,
        tb: tb.requests,
        a: h.logs.lines,
        b: logsB.lines,
      }),
    );
  }
  const poMax = maxPerSlidingSecond(po.requests);
  const tbMax = maxPerSlidingSecond(tb.requests);

  // One leader per system at a time: the stopped one stepped down before the survivor took
  // over, and no command was sent by a replica while the other one held the lock.
  if (options.stopLeaderMidBurst) {
    expect(sentTimes(follower.logs, 'poweroffice').length).toBeGreaterThan(0);
  } else {
    expect(sentTimes(follower.logs, 'poweroffice')).toEqual([]);
    expect(leadershipTimes(follower.logs, 'poweroffice', 'leadership taken')).toEqual([]);
  }
  for (const system of ['tidsbanken', 'poweroffice'] as const) {
    const holders = [a, b].filter(
      (r) => leadershipTimes(r.logs, system, 'leadership taken').length > 0,
    );
    if (holders.length === 2) {
      const [first, next] = holders.sort(
        (x, y) =>
          leadershipTimes(x.logs, system, 'leadership taken')[0]! -
          leadershipTimes(y.logs, system, 'leadership taken')[0]!,
      );
      const handover = leadershipTimes(next!.logs, system, 'leadership taken')[0]!;
      expect(leadershipTimes(first!.logs, system, 'leadership lost')[0]!).toBeLessThanOrEqual(
        handover,
      );
      expect(sentTimes(first!.logs, system).filter((t) => t > handover)).toEqual([]);
    }
  }
  console.info(
    JSON.stringify({
      stopLeaderMidBurst: options.stopLeaderMidBurst,
      poMaxPerSlidingSecond: poMax,
      tbMaxPerSlidingSecond: tbMax,
      takeoverMs,
      writesPerRecord,
    }),
  );
  return {
    poMax,
    tbMax,
    po429: po.requests.filter((r) => r.status === 429),
    tb429: tb.requests.filter((r) => r.status === 429),
    takeoverMs,
    disagreements,
    excessWrites,
  };
}

/**
 * Every promise the scenario measures, asserted in every run: each vendor under its limit in
 * every sliding second (counted over every request the fake received: token, polls, reads,
 * writes of both replicas) and no 429; every edit landed on both sides; at most one write per
 * edit; and, when the leader stopped, the survivor took over because the lease was released,
 * not because it ran out. A lease left to run out ends 10–15 s after the stop (renewed every
 * third of its 15 s), so a take-over within two thirds of the TTL can only be a release; a
 * released one takes one acquire retry (≤ 2 s). How fast exactly is the soak bench's to
 * measure, not this test's to assert.
 */
function expectEveryPromise(outcome: Outcome, stopLeaderMidBurst: boolean): void {
  expect(outcome.poMax).toBeLessThanOrEqual(10);
  expect(outcome.po429).toEqual([]);
  expect(outcome.tbMax).toBeLessThanOrEqual(5);
  expect(outcome.tb429).toEqual([]);
  expect(outcome.disagreements).toEqual([]);
  expect(outcome.excessWrites).toEqual([]);
  if (stopLeaderMidBurst) {
    expect(outcome.takeoverMs).toBeGreaterThanOrEqual(0);
    expect(outcome.takeoverMs).toBeLessThan((LEASE_TTL_MS * 2) / 3);
  } else {
    expect(outcome.takeoverMs).toBeUndefined();
  }
}

describe.runIf(process.env.DATABASE_URL)('two service instances on one database', () => {
  // Regressions this caught: two update commands for one Ansatt in flight at once (the later
  // full-record PUT carried a phone number read before the earlier PUT landed); and our PUT's
  // result, fed back with the same millisecond SistEndretDato as a user's edit right after it,
  // replacing that edit in the mirror (see sync-mirror-order.test.ts). Set REPLICA_DEBUG_DIR
  // to keep both fakes' request logs and both replicas' logs of a run that disagrees.
  it('never write one edit twice, keep one leader per system, land every edit, and keep each vendor under its limit in every sliding second', async () => {
    expectEveryPromise(await scenario({ stopLeaderMidBurst: false }), false);
  }, 180_000);

  // Regressions this caught: on a handover the new holder's start-up failed on every retry
  // (requeuing an in-flight update of a record that had a newer pending one broke the
  // one-pending-update rule), so nothing more reached Tidsbanken; and the new holder's pacer
  // started with an empty window while the old holder's last requests were still inside the
  // sliding second.
  it('when the PowerOffice leader stops mid-burst, the other replica takes the dispatcher over: no edit lost or written twice, every limit held', async () => {
    expectEveryPromise(await scenario({ stopLeaderMidBurst: true }), true);
  }, 180_000);

  // Leases, claims, fencing and the worker's record locks keep no session state: through
  // PgBouncer in transaction pooling mode, with fewer server sessions than the two replicas'
  // pools (so consecutive transactions of one client land on different sessions), the
  // handover holds the same promises.
  describe.runIf(pgbouncerBinary)('through PgBouncer in transaction pooling mode', () => {
    it('a leader that stops mid-burst is replaced: no edit lost or written twice, every limit held', async () => {
      bouncer = await startPgBouncer(process.env.DATABASE_URL!, 4);
      expectEveryPromise(await scenario({ stopLeaderMidBurst: true, via: bouncer.via }), true);
    }, 180_000);
  });
});
