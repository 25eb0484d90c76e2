// Soak (bench/README.md, "soak"): faults, crashes, and what is left at the end.
//
//   npx tsx bench/soak/run.ts                  # ~3 min of edits, one replica on PostgreSQL
//   npx tsx bench/soak/run.ts --quick          # ~45 s (BENCH_QUICK=1)
//   npx tsx bench/soak/run.ts --replicas 2     # two replicas on one PostgreSQL database; leaders
//                                              # are frozen (SIGSTOP) and woken (SIGCONT) too
//   npx tsx bench/soak/run.ts --pglite         # embedded PGlite (DATA_DIR), one replica
//   env: DATABASE_URL (server; default postgres://postgres@127.0.0.1:5432/postgres),
//        SOAK_SECONDS, SOAK_PAIRS (40), SOAK_PROJECTS (10), SOAK_FAULT_PROBABILITY (0.1),
//        SOAK_SEED, SOAK_PAGE_CAP (7), SOAK_LEASE_TTL_MS (5000), SOAK_LAUNCH (dist | tsx)
//
// The service runs as CHILD PROCESSES (`node dist/src/main.js`, built first if stale; each in
// its own process group) against the two fakes in this process. Both fakes inject random
// 429s, 500s, slow answers and dropped connections; each system's credentials are refused
// for 10–20 s once (a revoked key: the service pauses that system); Tidsbanken serves lists
// in pages of at most SOAK_PAGE_CAP rows with @odata.nextLink. Edits land on both sides of
// Ansatt ↔ Employee pairs (half announced by a signed webhook, half left to the pollers) and
// of Prosjekt ↔ Project pairs (pollers only); while our update of an Ansatt waits (a 429, a
// backoff), a Tidsbanken user edits another field of it. A replica is SIGKILLed at random
// moments and started again; with two replicas the leader of a system is also frozen for 2–4
// lease periods and woken. At the end faults stop, the service converges, and the run checks:
// every linked pair identical on its mapped fields, each pair holding its last edit, every
// other-field edit kept, no write applied twice (beyond one re-send of each update on the
// wire at a kill or freeze, docs/ARCHITECTURE.md "Crash safety"), no create, and no dead
// letter; with two replicas also no 429 from either fake's limiter, at most the limit in any
// sliding second, and each frozen leader replaced within 30 s.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql, type Kysely } from 'kysely';
import { openPostgres } from '../../src/db/database.js';
import type { Database } from '../../src/db/schema.js';
import { FLOWS } from '../../src/sync/flows.js';
import { getPath, normalizeValue } from '../../src/sync/normalize.js';
import { maxPerSlidingSecond, type RecordedRequest } from '../../test/fakes/fake-server.js';
import { startFakePowerOffice } from '../../test/fakes/poweroffice.js';
import { startFakeTidsbanken } from '../../test/fakes/tidsbanken.js';
import {
  createScratchDatabase,
  machine,
  newWebhookSecret,
  postWebhook,
  sleep,
  table,
} from '../lib/common.js';

const args = process.argv.slice(2);
const optionValue = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const QUICK = args.includes('--quick') || process.env.BENCH_QUICK === '1';
const PGLITE = args.includes('--pglite') || process.env.SOAK_DATABASE === 'pglite';
const REPLICAS = Number(optionValue('--replicas') ?? process.env.SOAK_REPLICAS ?? 1);
const SECONDS = Number(process.env.SOAK_SECONDS ?? (QUICK ? 45 : 180));
const PAIRS = Number(process.env.SOAK_PAIRS ?? 40);
const PROJECTS = Number(process.env.SOAK_PROJECTS ?? 10);
const FAULT_P = Number(process.env.SOAK_FAULT_PROBABILITY ?? 0.1);
const SEED = Number(process.env.SOAK_SEED ?? Date.now() % 100_000);
const PAGE_CAP = Number(process.env.SOAK_PAGE_CAP ?? 7);
const LEASE_TTL_MS = Number(process.env.SOAK_LEASE_TTL_MS ?? 5000);
const LAUNCH = process.env.SOAK_LAUNCH ?? 'dist';
const RATE = 20;
const POLL_MS = 1000;
// A pair is not edited again sooner than this: keeps Tidsbanken's read-then-PUT window (no
// ETag in its API) from turning a user's edit during our write into a "lost" change.
const COOLDOWN_MS = 3000;
// A frozen leader must be replaced within this long (issue: ~30 s).
const TAKEOVER_LIMIT_MS = 30_000;

if (PGLITE && REPLICAS > 1)
  throw new Error('two replicas need PostgreSQL (one PGlite DATA_DIR per process)');
if (REPLICAS > 1 && LAUNCH !== 'dist')
  throw new Error('--replicas needs SOAK_LAUNCH=dist (the lease holder names the node pid)');

let rngState = SEED;
function random(): number {
  // mulberry32
  rngState = (rngState + 0x6d2b79f5) | 0;
  let t = rngState;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const between = (min: number, max: number) => min + random() * (max - min);

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Where the service's own state is read: SQL on PostgreSQL, the admin API on PGlite. */
interface ServiceState {
  linked(flow: string): Promise<number>;
  /** Unprocessed inbox events or unsent commands. */
  busy(): Promise<boolean>;
  /** Our update of this Tidsbanken record: none, waiting in the outbox, or about to go. */
  tidsbankenWrite(type: string, id: string): Promise<'none' | 'waiting' | 'due'>;
  dead(): Promise<{ commands: string[]; events: string[] }>;
  /** Per system, the pid in the live lease's holder (PostgreSQL only). */
  leaderPid(system: 'tidsbanken' | 'poweroffice'): Promise<number | undefined>;
  /**
   * Commands on the wire ('sending') of the systems whose lease `pid` holds (or held last):
   * right after that process is killed or frozen, the sends whose outcome it never recorded.
   * Undefined where the state cannot be read (PGlite: the admin API shows them as pending).
   */
  sendingOf(pid: number): Promise<number | undefined>;
}

function sqlState(db: Kysely<Database>): ServiceState {
  const count = async (query: ReturnType<typeof sql<{ n: string }>>) =>
    Number((await query.execute(db)).rows[0]?.n ?? 0);
  return {
    linked: (flow) =>
      count(
        sql<{
          n: string;
        }>`select count(*) as n from links where flow = ${flow} and unlinked_at is null`,
      ),
    busy: async () =>
      (await count(
        sql<{ n: string }>`select count(*) as n from inbound_events where status = 'pending'`,
      )) +
        (await count(
          sql<{
            n: string;
          }>`select count(*) as n from outbound_commands where status in ('pending','sending')`,
        )) >
      0,
    async tidsbankenWrite(type, id) {
      const rows = await db
        .selectFrom('outbound_commands')
        .select(['status', 'run_at'])
        .where('system', '=', 'tidsbanken')
        .where('record_type', '=', type)
        .where('record_id', '=', id)
        .where('status', 'in', ['pending', 'sending'])
        .execute();
      if (rows.length === 0) return 'none';
      const waiting = rows.every(
        (r) => r.status === 'pending' && r.run_at.getTime() > Date.now() + 500,
      );
      return waiting ? 'waiting' : 'due';
    },
    async dead() {
      const commands = await sql<{
        id: string;
        record_id: string | null;
        system: string;
        last_error: unknown;
      }>`select id, system, record_id, last_error from outbound_commands where status = 'dead'`.execute(
        db,
      );
      const events = await sql<{
        id: string;
        record_id: string;
        last_error: unknown;
      }>`select id, record_id, last_error from inbound_events where status = 'dead'`.execute(db);
      return {
        commands: commands.rows.map(
          (d) => `dead command ${d.id} ${d.system} ${d.record_id}: ${JSON.stringify(d.last_error)}`,
        ),
        events: events.rows.map(
          (d) => `dead event ${d.id} ${d.record_id}: ${JSON.stringify(d.last_error)}`,
        ),
      };
    },
    async leaderPid(system) {
      const row = await db
        .selectFrom('leases')
        .select('holder')
        .where('system', '=', system)
        .where('expires_at', '>', sql<Date>`now()`)
        .executeTakeFirst();
      const pid = Number(row?.holder?.split('/')[1]);
      return Number.isFinite(pid) && pid > 0 ? pid : undefined;
    },
    sendingOf: (pid) =>
      count(sql<{ n: string }>`
        select count(*) as n from outbound_commands c join leases l on l.system = c.system
         where c.status = 'sending' and split_part(l.holder, '/', 2) = ${String(pid)}`),
  };
}

function adminState(url: () => string, token: string): ServiceState {
  const get = async <T>(path: string): Promise<T[]> => {
    const res = await fetch(`${url()}/admin/${path}`, {
      headers: { authorization: `Bearer ${token}` },
      signal: AbortSignal.timeout(5000),
    });
    if (!res.ok) throw new Error(`GET /admin/${path}: ${res.status}`);
    return ((await res.json()) as { items: T[] }).items;
  };
  interface Command {
    id: string;
    recordType: string;
    recordId: string | null;
    system: string;
    runAt: string;
    lastError: unknown;
  }
  return {
    linked: async (flow) => (await get(`links?flow=${flow}&limit=1000`)).length,
    busy: async () =>
      (await get('events?status=pending&limit=1')).length > 0 ||
      (await get('commands?status=pending&limit=1')).length > 0,
    async tidsbankenWrite(type, id) {
      const rows = (
        await get<Command>('commands?status=pending&system=tidsbanken&limit=1000')
      ).filter((c) => c.recordType === type && c.recordId === id);
      if (rows.length === 0) return 'none';
      return rows.every((c) => Date.parse(c.runAt) > Date.now() + 500) ? 'waiting' : 'due';
    },
    async dead() {
      const commands = await get<Command>('commands?status=dead&limit=1000');
      const events = await get<{ id: string; recordId: string; lastError: unknown }>(
        'events?status=dead&limit=1000',
      );
      return {
        commands: commands.map(
          (d) => `dead command ${d.id} ${d.system} ${d.recordId}: ${JSON.stringify(d.lastError)}`,
        ),
        events: events.map(
          (d) => `dead event ${d.id} ${d.recordId}: ${JSON.stringify(d.lastError)}`,
        ),
      };
    },
    leaderPid: () => Promise.resolve(undefined),
    sendingOf: () => Promise.resolve(undefined),
  };
}

/** One replica: a child process of the service on its own port, started again after a kill. */
class Replica {
  child: ChildProcess | undefined;
  frozen = false;
  starts = 0;

  constructor(
    readonly name: string,
    readonly port: number,
    private readonly env: Record<string, string>,
    private readonly log: NodeJS.WritableStream,
  ) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return (
      this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  start(): void {
    this.log.write(`\n--- ${this.name} start ${new Date().toISOString()}\n`);
    const [command, argv] =
      LAUNCH === 'tsx'
        ? ['node_modules/.bin/tsx', ['src/main.ts']]
        : ['node', ['dist/src/main.js']];
    // Its own process group, so SIGKILL reaches every process of the launch.
    const child = spawn(command, argv, {
      env: { ...this.env, PORT: String(this.port) },
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.pipe(this.log, { end: false });
    child.stderr.pipe(this.log, { end: false });
    this.child = child;
    this.frozen = false;
    this.starts += 1;
  }

  async kill(): Promise<void> {
    const c = this.child;
    if (c?.pid === undefined || !this.running) return;
    const exited = new Promise((resolve) => c.once('exit', resolve));
    process.kill(-c.pid, 'SIGKILL');
    await exited;
    this.frozen = false;
    this.log.write(`\n--- ${this.name} SIGKILL ${new Date().toISOString()}\n`);
  }

  signal(sig: 'SIGSTOP' | 'SIGCONT'): void {
    const c = this.child;
    if (c?.pid === undefined || !this.running) return;
    process.kill(-c.pid, sig);
    this.frozen = sig === 'SIGSTOP';
    this.log.write(`\n--- ${this.name} ${sig} ${new Date().toISOString()}\n`);
  }

  async ready(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${this.url}/readyz`, { signal: AbortSignal.timeout(2000) })).ok) return;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`${this.name} did not become ready`);
  }
}

type Side = 'tb' | 'po';
interface PairKind {
  flow: string;
  tidsbankenType: string;
  /** The edited field on each side. */
  tbField: string;
  poField: string;
  /** Webhook event types, when the systems send any for this record type. */
  webhooks: { tb: string; po: string } | undefined;
}
const KINDS: Record<'ansatt' | 'prosjekt', PairKind> = {
  ansatt: {
    flow: 'ansatt-employee',
    tidsbankenType: 'ansatt',
    tbField: 'Tittel',
    poField: 'JobTitle',
    webhooks: { tb: 'ansatt.updated', po: 'employee.updated' },
  },
  prosjekt: {
    flow: 'prosjekt-project',
    tidsbankenType: 'prosjekt',
    tbField: 'Navn',
    poField: 'Name',
    webhooks: undefined,
  },
};
interface Pair {
  name: string;
  kind: PairKind;
  tbId: string;
  poId: number;
}

async function main(): Promise<void> {
  if (LAUNCH === 'dist') execFileSync('node', ['scripts/ensure-build.js'], { stdio: 'inherit' });
  const tb = await startFakeTidsbanken({ rateLimitPerSecond: RATE, pageCap: PAGE_CAP });
  const po = await startFakePowerOffice({ rateLimitPerSecond: RATE });
  const pairs: Pair[] = [];
  for (let i = 1; i <= PAIRS; i++) {
    tb.seedAnsatt({ Id: i, Fornavn: `Soak${i}`, Etternavn: 'Test', Epost: `soak${i}@bench.no` });
    const e = po.seedEmployee({
      Number: i,
      FirstName: `Soak${i}`,
      LastName: 'Test',
      EmailAddress: `soak${i}@bench.no`,
    });
    pairs.push({ name: `ansatt ${i}`, kind: KINDS.ansatt, tbId: String(i), poId: e.Id as number });
  }
  for (let i = 1; i <= PROJECTS; i++) {
    const code = `S-${i}`;
    tb.seedProsjekt({ Id: code, Navn: `Prosjekt ${i}` });
    const p = po.seedProject({ Code: code, Name: `Prosjekt ${i}` });
    pairs.push({
      name: `prosjekt ${code}`,
      kind: KINDS.prosjekt,
      tbId: code,
      poId: p.Id as number,
    });
  }
  const tbEdit = (pair: Pair, patch: Record<string, unknown>) =>
    pair.kind === KINDS.ansatt
      ? tb.editAnsatt(Number(pair.tbId), patch)
      : tb.editProsjekt(pair.tbId, patch);
  const tbGet = (pair: Pair) =>
    pair.kind === KINDS.ansatt ? tb.getAnsatt(Number(pair.tbId))! : tb.getProsjekt(pair.tbId)!;
  const poEdit = (pair: Pair, patch: Record<string, unknown>) =>
    pair.kind === KINDS.ansatt
      ? po.editEmployee(pair.poId, patch)
      : po.editProject(pair.poId, patch);
  const poGet = (pair: Pair) =>
    po.toDto(pair.kind === KINDS.ansatt ? po.getEmployee(pair.poId)! : po.getProject(pair.poId)!);

  const secret = newWebhookSecret();
  const adminToken = randomBytes(24).toString('hex');
  let scratch: { name: string; url: string; drop(): Promise<void> } | undefined;
  let dataDir: string | undefined;
  let handle: ReturnType<typeof openPostgres> | undefined;
  if (PGLITE) dataDir = await mkdtemp(join(tmpdir(), 'tbpo_bench_soak_pglite_'));
  else {
    scratch = await createScratchDatabase('tbpo_bench_soak');
    handle = openPostgres(scratch.url, 2);
  }
  const runName = scratch?.name ?? dataDir!.split('/').at(-1)!;
  const logPath = `/tmp/${runName}.log`;
  const log = createWriteStream(logPath, { flags: 'a' });
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '',
    ...(scratch !== undefined ? { DATABASE_URL: scratch.url } : { DATA_DIR: dataDir! }),
    LOG_LEVEL: 'info',
    ADMIN_TOKEN: adminToken,
    LEASE_TTL_MS: String(LEASE_TTL_MS),
    TIDSBANKEN_BASE_URL: tb.url,
    TIDSBANKEN_API_KEY: tb.apiKey,
    TIDSBANKEN_SUBSCRIPTION_KEY: tb.subscriptionKey,
    TIDSBANKEN_WEBHOOK_SECRET: secret,
    TIDSBANKEN_RATE_LIMIT_PER_SECOND: String(RATE),
    POWEROFFICE_BASE_URL: po.baseUrl,
    POWEROFFICE_TOKEN_URL: po.tokenUrl,
    POWEROFFICE_APPLICATION_KEY: po.applicationKey,
    POWEROFFICE_CLIENT_KEY: po.clientKey,
    POWEROFFICE_SUBSCRIPTION_KEY: po.subscriptionKey,
    POWEROFFICE_WEBHOOK_SECRET: secret,
    POWEROFFICE_RATE_LIMIT_PER_SECOND: String(RATE),
    POLL_INTERVAL_MS: String(POLL_MS),
  };
  const replicas: Replica[] = [];
  for (let i = 0; i < REPLICAS; i++)
    replicas.push(
      new Replica(REPLICAS > 1 ? `replica ${'AB'[i] ?? i}` : 'service', await freePort(), env, log),
    );
  const live = () => replicas.filter((r) => r.running && !r.frozen);
  const state =
    handle !== undefined
      ? sqlState(handle.db)
      : adminState(() => (live()[0] ?? replicas[0]!).url, adminToken);
  const readyAny = async (timeoutMs: number) => {
    await Promise.any(live().map((r) => r.ready(timeoutMs)));
  };

  const counts = {
    changes: 0,
    webhookEdits: 0,
    pollerEdits: 0,
    projectEdits: 0,
    otherFieldEdits: 0,
    /** Ticks where neither side could be edited without entering a vendor API's window. */
    editsHeldBack: 0,
    webhooksRefused: 0,
    restarts: 0,
    freezes: 0,
    credentialOutages: 0,
    /** Systems whose refused credentials a replica reported (tbpo_credentials_refused 1). */
    pausedSeen: [] as string[],
    refused401: 0,
    faults: 0,
    writes: 0,
    creates: 0,
    duplicates: 0,
    /**
     * Re-sends allowed: the commands on the wire at each kill or freeze (PostgreSQL), else one
     * per kill or freeze.
     */
    resendAllowance: 0,
    duplicatesBeyondOneResend: 0,
    mismatched: 0,
    lost: 0,
    otherFieldLost: 0,
    deadCommands: 0,
    deadEvents: 0,
    rateLimited429: null as number | null,
    maxPerSecond: { tidsbanken: 0, poweroffice: 0 },
    takeoverMs: [] as number[],
    tidsbankenPages: 0,
  };
  const lastEdit = new Map<Pair, { value: string; side: Side; at: number }>();
  const lastOtherField = new Map<Pair, string>();
  const history = new Map<Pair, string[]>();
  const note = (pair: Pair, entry: string) =>
    history.set(pair, [
      ...(history.get(pair) ?? []),
      `${entry}@${new Date().toISOString().slice(11, 23)}`,
    ]);
  // Lost and mismatched pairs and dead letters first: the duplicates can be many.
  const details: string[] = [];
  const duplicateDetails: string[] = [];
  let converged = false;
  // With two replicas the fakes inject no 429: every 429 left in their logs is the limiter's.
  const kinds =
    REPLICAS > 1 ? (['500', 'slow', 'drop'] as const) : (['429', '500', 'slow', 'drop'] as const);

  try {
    for (const r of replicas) r.start();
    await Promise.all(replicas.map((r) => r.ready(120_000)));
    const linkDeadline = Date.now() + 180_000;
    while (
      (await state.linked('ansatt-employee')) < PAIRS ||
      (await state.linked('prosjekt-project')) < PROJECTS
    ) {
      if (Date.now() > linkDeadline) throw new Error('the pairs did not link');
      await sleep(500);
    }
    process.stderr.write(
      `soak: ${PAIRS} + ${PROJECTS} pairs linked; ${REPLICAS} replica(s) on ${PGLITE ? 'PGlite' : 'PostgreSQL'}; ${SECONDS} s of edits, faults p=${FAULT_P}, seed ${SEED}\n`,
    );
    tb.faults.random({ probability: FAULT_P, kinds: [...kinds], seed: SEED, delayMs: 800 });
    po.faults.random({ probability: FAULT_P, kinds: [...kinds], seed: SEED + 1, delayMs: 800 });
    const faultStart = { tb: tb.requests.length, po: po.requests.length };

    const begin = Date.now();
    const end = begin + SECONDS * 1000;
    // One credentials outage per system, 10–20 s each, at seeded moments of the edit phase.
    const outages = [
      { system: 'tidsbanken', at: begin + between(0.1, 0.4) * SECONDS * 1000 },
      { system: 'poweroffice', at: begin + between(0.45, 0.7) * SECONDS * 1000 },
    ].map((o) => ({ ...o, until: o.at + between(10_000, 20_000), on: false, done: false }));
    const setRefused = (system: string, refused: boolean) => {
      if (system === 'tidsbanken') tb.refuseCredentials = refused;
      else {
        po.refuseCredentials = refused;
        if (refused) po.expireTokens();
      }
    };
    const background = new Set<Promise<void>>();
    const inBackground = (p: Promise<void>) => {
      const tracked = p.finally(() => background.delete(tracked));
      background.add(tracked);
    };
    /** Freezes the replica leading `system` for 2–4 lease periods, timing the takeover. */
    const freezeLeader = async (system: 'tidsbanken' | 'poweroffice', forMs: number) => {
      const pid = await state.leaderPid(system);
      const leader = replicas.find((r) => r.running && !r.frozen && r.child?.pid === pid);
      if (leader === undefined) return;
      leader.signal('SIGSTOP');
      counts.freezes += 1;
      counts.resendAllowance += (await state.sendingOf(pid!).catch(() => undefined)) ?? 1;
      const frozenAt = Date.now();
      let takenOver = false;
      while (Date.now() - frozenAt < forMs) {
        if (!takenOver) {
          const now = await state.leaderPid(system).catch(() => undefined);
          if (now !== undefined && now !== pid) {
            takenOver = true;
            counts.takeoverMs.push(Date.now() - frozenAt);
          }
        }
        await sleep(200);
      }
      if (!takenOver) counts.takeoverMs.push(Number.POSITIVE_INFINITY);
      leader.signal('SIGCONT');
    };

    let metricsLookAt = 0;
    let nextChaos = Date.now() + 5000 + random() * 10_000;
    let seq = 0;
    const inflightWebhooks = new Set<Promise<void>>();
    while (Date.now() < end) {
      for (const o of outages) {
        if (!o.on && !o.done && Date.now() >= o.at) {
          o.on = true;
          counts.credentialOutages += 1;
          setRefused(o.system, true);
          log.write(`\n--- ${o.system} credentials refused ${new Date().toISOString()}\n`);
        } else if (o.on && Date.now() >= o.until) {
          o.on = false;
          o.done = true;
          setRefused(o.system, false);
          log.write(`\n--- ${o.system} credentials accepted ${new Date().toISOString()}\n`);
        }
        // The service pauses the system and says so (tbpo_credentials_refused), no dead letters.
        if (o.on && !counts.pausedSeen.includes(o.system) && Date.now() >= metricsLookAt) {
          metricsLookAt = Date.now() + 1000;
          for (const r of live()) {
            const text = await fetch(`${r.url}/metrics`, { signal: AbortSignal.timeout(1000) })
              .then((res) => res.text())
              .catch(() => '');
            if (text.includes(`tbpo_credentials_refused{system="${o.system}"} 1`))
              counts.pausedSeen.push(o.system);
          }
        }
      }
      if (Date.now() >= nextChaos) {
        const freeze = REPLICAS > 1 && random() < 0.5 && !replicas.some((r) => r.frozen);
        if (freeze) {
          const system = random() < 0.5 ? 'tidsbanken' : 'poweroffice';
          inBackground(freezeLeader(system, between(2, 4) * LEASE_TTL_MS));
        } else {
          const candidates = replicas.filter((r) => !r.frozen);
          const victim = candidates[Math.floor(random() * candidates.length)];
          if (victim !== undefined) {
            const pid = victim.child?.pid;
            await victim.kill();
            counts.resendAllowance +=
              (pid === undefined ? undefined : await state.sendingOf(pid).catch(() => undefined)) ??
              1;
            const pause = 200 + random() * 1500;
            inBackground(sleep(pause).then(() => victim.start()));
            counts.restarts += 1;
          }
        }
        nextChaos = Date.now() + 5000 + random() * 12_000;
      }
      const candidates = pairs.filter((p) => (lastEdit.get(p)?.at ?? 0) < Date.now() - COOLDOWN_MS);
      if (candidates.length > 0) {
        const pair = candidates[Math.floor(random() * candidates.length)]!;
        let side: Side | undefined = random() < 0.5 ? 'tb' : 'po';
        const last = lastEdit.get(pair);
        // The two windows where the vendors' APIs, not the service, lose a user's edit (README
        // "Known limits"); a user there edits the other side instead, or waits. Tidsbanken has
        // no PATCH: our update reads the record and PUTs it back, and an edit between the two
        // is overwritten: no edit there while an update of the record is outstanding.
        // PowerOffice's PATCH has no precondition: an edit made there after the last poll and
        // before our PATCH is overwritten: no edit there while the running service has yet to
        // carry the pair's last Tidsbanken edit over. (While no replica runs, both sides are
        // edited freely: a restart must catch up with both before it writes.)
        const write = await state
          .tidsbankenWrite(pair.kind.tidsbankenType, pair.tbId)
          .catch(() => 'unknown' as const);
        const tbBlocked = write !== 'none';
        const poBlocked =
          last?.side === 'tb' && live().length > 0 && poGet(pair)[pair.kind.poField] !== last.value;
        if (side === 'tb' && tbBlocked) side = poBlocked ? undefined : 'po';
        else if (side === 'po' && poBlocked) side = tbBlocked ? undefined : 'tb';
        // While our update waits in the outbox (a 429, a backoff, paused credentials), a
        // Tidsbanken user edits ANOTHER field of the Ansatt, which our PUT must keep.
        if (write === 'waiting' && pair.kind === KINDS.ansatt) {
          const notat = `note-${seq + 1}`;
          tb.editAnsatt(Number(pair.tbId), { Notat: notat });
          lastOtherField.set(pair, notat);
          note(pair, `Notat=${notat}`);
          counts.otherFieldEdits += 1;
        }
        if (side === undefined) {
          counts.editsHeldBack += 1;
          await sleep(100 + random() * 150);
          continue;
        }
        const viaWebhook = pair.kind.webhooks !== undefined && random() < 0.5;
        seq += 1;
        const value = `${side}-${seq}`;
        lastEdit.set(pair, { value, side, at: Date.now() });
        note(pair, `${value}${viaWebhook ? '(webhook)' : ''}`);
        counts.changes += 1;
        if (pair.kind === KINDS.prosjekt) counts.projectEdits += 1;
        if (side === 'tb') tbEdit(pair, { [pair.kind.tbField]: value });
        else poEdit(pair, { [pair.kind.poField]: value });
        const target = live()[Math.floor(random() * Math.max(live().length, 1))];
        if (viaWebhook && pair.kind.webhooks !== undefined && target !== undefined) {
          counts.webhookEdits += 1;
          const send =
            side === 'tb'
              ? postWebhook(
                  `${target.url}/webhooks/tidsbanken`,
                  secret,
                  pair.kind.webhooks.tb,
                  tbGet(pair),
                )
              : postWebhook(
                  `${target.url}/webhooks/poweroffice`,
                  secret,
                  pair.kind.webhooks.po,
                  poGet(pair),
                );
          const p: Promise<void> = send
            .then((status) => {
              if (status !== 202) counts.webhooksRefused += 1;
            })
            // The replica is down (killed): the poller still sees the edit.
            .catch(() => {
              counts.webhooksRefused += 1;
            })
            .finally(() => inflightWebhooks.delete(p));
          inflightWebhooks.add(p);
        } else counts.pollerEdits += 1;
      }
      await sleep(100 + random() * 150);
    }
    await Promise.all(inflightWebhooks);
    await Promise.all(background);

    // Faults off, credentials back; let it converge (quiet for several poll periods).
    tb.faults.clear();
    po.faults.clear();
    for (const o of outages) if (o.on) setRefused(o.system, false);
    for (const r of replicas) {
      if (r.frozen) r.signal('SIGCONT');
      if (!r.running) r.start();
    }
    await readyAny(120_000);
    process.stderr.write('soak: edits stopped, faults off; converging…\n');
    const deadline = Date.now() + 240_000;
    let quietSince: number | undefined;
    while (Date.now() < deadline) {
      const busy = await state.busy().catch(() => true);
      if (busy) quietSince = undefined;
      else quietSince ??= Date.now();
      if (quietSince !== undefined && Date.now() - quietSince > 4 * POLL_MS + 2000) {
        converged = true;
        break;
      }
      await sleep(200);
    }

    const isFault = (s: number) => s === 429 || s >= 500 || s === 0;
    counts.faults =
      tb.requests.slice(faultStart.tb).filter((r) => isFault(r.status)).length +
      po.requests.slice(faultStart.po).filter((r) => isFault(r.status)).length;
    counts.refused401 = [...tb.requests, ...po.requests].filter((r) => r.status === 401).length;
    counts.tidsbankenPages = tb.requests.filter(
      (r) => r.method === 'GET' && r.query.$skip !== undefined && Number(r.query.$skip) > 0,
    ).length;
    if (REPLICAS > 1)
      counts.rateLimited429 = [...tb.requests, ...po.requests].filter(
        (r) => r.status === 429,
      ).length;
    // What each fake's limiter let through: answered, and not refused before it (401) or by it.
    const passed = (r: RecordedRequest) =>
      r.status >= 200 && r.status < 500 && r.status !== 401 && r.status !== 429;
    counts.maxPerSecond = {
      tidsbanken: maxPerSlidingSecond(tb.requests.filter(passed)),
      poweroffice: maxPerSlidingSecond(
        po.requests.filter((r) => passed(r) && !/token/i.test(r.path)),
      ),
    };

    // Writes applied, per record and written value, from the fakes' logs (2xx only).
    const ok = (s: number) => s >= 200 && s < 300;
    const applied = new Map<string, number>();
    // When each write arrived (wall clock) and whose pair it was: a duplicate's details show
    // them next to the pair's edits, to tell a re-send at a kill from anything else.
    const arrivals = new Map<string, string[]>();
    const pairOf = new Map<string, Pair>();
    const apply = (key: string, r: RecordedRequest, pair: Pair | undefined) => {
      applied.set(key, (applied.get(key) ?? 0) + 1);
      const at = new Date(performance.timeOrigin + r.at).toISOString().slice(11, 23);
      arrivals.set(key, [...(arrivals.get(key) ?? []), at]);
      if (pair !== undefined) pairOf.set(key, pair);
    };
    for (const r of po.requests) {
      if (!ok(r.status) || /token/i.test(r.path)) continue;
      if (r.method === 'POST') counts.creates += 1;
      if (r.method !== 'PATCH' || !Array.isArray(r.body)) continue;
      counts.writes += 1;
      for (const op of r.body as { path?: string; value?: unknown }[]) {
        const field = op.path?.toLowerCase();
        if ((field === '/jobtitle' || field === '/name') && typeof op.value === 'string')
          apply(
            `po ${r.path} ${op.value}`,
            r,
            pairs.find(
              (p) =>
                r.path.endsWith(`/${p.poId}`) &&
                /employees/i.test(r.path) === (p.kind === KINDS.ansatt),
            ),
          );
      }
    }
    for (const r of tb.requests) {
      if (!ok(r.status)) continue;
      if (r.method === 'POST') counts.creates += 1;
      if (r.method !== 'PUT' || !Array.isArray(r.body)) continue;
      counts.writes += 1;
      for (const item of r.body as { Id?: unknown; Tittel?: unknown; Navn?: unknown }[]) {
        // Tidsbanken takes whole objects: count only values that came from PowerOffice.
        for (const value of [item.Tittel, item.Navn])
          if (typeof value === 'string' && value.startsWith('po-'))
            apply(
              `tb ${r.path} ${String(item.Id)} ${value}`,
              r,
              pairs.find(
                (p) =>
                  p.tbId === String(item.Id) &&
                  /ansatt/i.test(r.path) === (p.kind === KINDS.ansatt),
              ),
            );
      }
    }
    for (const [key, n] of applied) {
      if (n > 1) {
        counts.duplicates += n - 1;
        const pair = pairOf.get(key);
        duplicateDetails.push(
          `written ${n}×: ${key} at ${(arrivals.get(key) ?? []).join(', ')}${pair === undefined ? '' : `; edits ${(history.get(pair) ?? []).join(' ')}`}`,
        );
      }
      if (n > 2) counts.duplicatesBeyondOneResend += n - 2;
    }

    // Every linked pair identical on its mapped fields, holding its last edit and the other
    // field's last edit.
    for (const pair of pairs) {
      const a = tbGet(pair);
      const e = poGet(pair);
      const flow = FLOWS.find((f) => f.id === pair.kind.flow)!;
      for (const field of flow.fields) {
        if (field.direction !== 'both') continue;
        const left = normalizeValue(field.kind, a[field.tidsbanken]);
        let right = normalizeValue(field.kind, getPath(e, field.poweroffice));
        if (field.invert && typeof right === 'boolean') right = !right;
        if (left !== right) {
          counts.mismatched += 1;
          details.push(
            `${pair.name} ${field.key}: tidsbanken ${String(left)} ≠ poweroffice ${String(right)}`,
          );
        }
      }
      const last = lastEdit.get(pair);
      const tbValue = a[pair.kind.tbField];
      const poValue = e[pair.kind.poField];
      if (last !== undefined && (tbValue !== last.value || poValue !== last.value)) {
        counts.lost += 1;
        details.push(
          `${pair.name}: last edit ${last.value}; ${pair.kind.tbField}=${String(tbValue)} ${pair.kind.poField}=${String(poValue)}; edits ${(history.get(pair) ?? []).join(' ')}`,
        );
      }
      const notat = lastOtherField.get(pair);
      if (notat !== undefined && a.Notat !== notat) {
        counts.otherFieldLost += 1;
        details.push(
          `${pair.name}: Notat ${String(a.Notat)}, the user's last was ${notat}; edits ${(history.get(pair) ?? []).join(' ')}`,
        );
      }
    }
    const dead = await state.dead();
    counts.deadCommands = dead.commands.length;
    counts.deadEvents = dead.events.length;
    details.push(...dead.commands.slice(0, 5), ...dead.events.slice(0, 5));
  } finally {
    for (const r of replicas) {
      if (r.frozen) r.signal('SIGCONT');
      await r.kill();
    }
    log.end();
    await handle?.close();
    await scratch?.drop();
    if (dataDir !== undefined) await rm(dataDir, { recursive: true, force: true });
    await tb.close();
    await po.close();
  }

  const maxTakeover = Math.max(0, ...counts.takeoverMs);
  const pass =
    converged &&
    counts.mismatched === 0 &&
    counts.lost === 0 &&
    counts.otherFieldLost === 0 &&
    counts.duplicatesBeyondOneResend === 0 &&
    counts.duplicates <= counts.resendAllowance &&
    counts.creates === 0 &&
    counts.deadCommands === 0 &&
    counts.deadEvents === 0 &&
    (REPLICAS === 1 ||
      (counts.rateLimited429 === 0 &&
        counts.maxPerSecond.tidsbanken <= RATE &&
        counts.maxPerSecond.poweroffice <= RATE &&
        maxTakeover <= TAKEOVER_LIMIT_MS));
  const result = {
    at: new Date().toISOString(),
    quick: QUICK,
    replicas: REPLICAS,
    database: PGLITE ? 'pglite' : 'postgresql',
    launch: LAUNCH,
    seconds: SECONDS,
    pairs: PAIRS,
    projects: PROJECTS,
    faultProbability: FAULT_P,
    pageCap: PAGE_CAP,
    leaseTtlMs: LEASE_TTL_MS,
    seed: SEED,
    converged,
    pass,
    counts: {
      ...counts,
      takeoverMs: counts.takeoverMs.map((ms) => (Number.isFinite(ms) ? ms : null)),
    },
    details: [...details, ...duplicateDetails].slice(0, 100),
    serviceLog: logPath,
    machine: machine(),
  };
  const suffix = `${QUICK ? '-quick' : ''}${REPLICAS > 1 ? '-replicas' : ''}${PGLITE ? '-pglite' : ''}`;
  await writeFile(
    new URL(`./last-result${suffix}.json`, import.meta.url),
    `${JSON.stringify(result, null, 2)}\n`,
  );
  process.stdout.write(
    `${table([
      [
        'changes',
        'webhook / poller / project',
        'other field',
        'faults',
        '401s',
        'restarts',
        'freezes',
        'writes',
        'duplicates / allowed',
        'lost',
        'mismatched',
        'creates',
        'dead cmds / events',
      ],
      [
        counts.changes,
        `${counts.webhookEdits} / ${counts.pollerEdits} / ${counts.projectEdits}`,
        `${counts.otherFieldEdits} (${counts.otherFieldLost} lost)`,
        counts.faults,
        counts.refused401,
        counts.restarts,
        counts.freezes,
        counts.writes,
        `${counts.duplicates} / ${counts.resendAllowance}`,
        counts.lost,
        counts.mismatched,
        counts.creates,
        `${counts.deadCommands} / ${counts.deadEvents}`,
      ],
    ])}\n`,
  );
  process.stdout.write(
    `credentials outages ${counts.credentialOutages}, reported paused (tbpo_credentials_refused): ${counts.pausedSeen.join(', ') || 'none'} · Tidsbanken pages past the first ${counts.tidsbankenPages}\n`,
  );
  if (REPLICAS > 1)
    process.stdout.write(
      `limiter 429s ${String(counts.rateLimited429)} · most per sliding second tidsbanken ${counts.maxPerSecond.tidsbanken}, poweroffice ${counts.maxPerSecond.poweroffice} (limit ${RATE}) · takeovers ${counts.takeoverMs.map((ms) => `${(ms / 1000).toFixed(1)} s`).join(', ') || 'none'}\n`,
    );
  process.stdout.write(
    `converged: ${converged} · ${pass ? 'PASS' : 'FAIL'} · seed ${SEED} · service log ${logPath}\n`,
  );
  for (const d of [...details, ...duplicateDetails].slice(0, 30)) process.stdout.write(`  ${d}\n`);
  process.exitCode = pass ? 0 : 1;
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    process.stderr.write(
      `soak failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
