// First-reconcile benchmark (bench/README.md, "reconcile").
//
//   npx tsx bench/reconcile/run.ts
//   env: BENCH_RECORDS (per record type and side, default 20000, at most 100000),
//        DATABASE_URL (server; default postgres://postgres@127.0.0.1:5432/postgres),
//        BENCH_RATE (requests/s for the fakes and our pacers, default 1000),
//        BENCH_TIMEOUT_MS (default 20 min), BENCH_LOG_LEVEL (default warn; to stderr),
//        BENCH_RESULT (file name of the result next to this script, default last-result.json),
//        BENCH_KEEP_DB=1 (keep the database afterwards, to look at its plans; drop it yourself),
//        BENCH_MEMORY_LIMIT_MIB (the service process in a memory cgroup with that limit, as in a
//        container: bench/lib/memory-cgroup.ts), BENCH_SERVICE_NODE_OPTIONS (the service
//        process's NODE_OPTIONS alone, e.g. deploy/'s --max-old-space-size=192),
//        BENCH_PROFILE=cpu,heap (profiles of the service process, summarized to profiles/<result name>-cpu.md / -heap.md:
//        bench/lib/service-profile.ts)
//
// Three processes: this one orchestrates; it seeds the fake APIs in a process of their own
// (bench/lib/fakes-process.ts) and runs the service as a child (this script again, with
// BENCH_RECONCILE_ROLE=service, in the memory cgroup if there is one), so the child's memory
// is the service's alone. The fakes hold N Ansatte, N Kunder, N Employees, N Customers and
// N/10 contact persons (half of each matching a counterpart by its merge rule), then runs one
// reconcile exactly as the service does — Reconciler + the engine's link gate, worker and
// sweep — against a fresh PostgreSQL database this script creates and drops. The fakes and our
// pacers run at BENCH_RATE so the numbers measure our code; the time spent waiting for the
// fakes' answers is measured (the client's request-duration histogram) and taken out of the
// engine time; what the real limits would cost (requests × pace) is computed from the
// requests the fakes received.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { cpus, loadavg, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { loadConfig } from '../../src/config.js';
import { migrateToLatest, openPostgres } from '../../src/db/database.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { Pacer } from '../../src/lib/pacer.js';
import type { Poller } from '../../src/lib/pollers.js';
import { PowerOfficeClient } from '../../src/poweroffice/client.js';
import { createPowerOfficePollers } from '../../src/poweroffice/poller.js';
import { Reconciler, type ReconcileProgress } from '../../src/sync/reconcile.js';
import { linkGateEngine } from '../../src/sync/sweep.js';
import { startSyncWorker } from '../../src/sync/worker.js';
import { TidsbankenClient } from '../../src/tidsbanken/client.js';
import { createTidsbankenPollers } from '../../src/tidsbanken/poller.js';
import { runBench } from '../lib/common.js';
import { startFakesProcess, type FakesStats } from '../lib/fakes-process.js';
import { createMemoryCgroup, type MemoryCgroup } from '../lib/memory-cgroup.js';
import { sampleDatabaseCpu } from '../lib/process-stats.js';
import { serviceNodeOptions, serviceProfile } from '../lib/service-profile.js';

const N = Math.min(100_000, Math.max(1, Number(process.env.BENCH_RECORDS ?? 20_000)));
const RATE = Math.max(1, Number(process.env.BENCH_RATE ?? 1000));
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 20 * 60_000);
const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const MEMORY_LIMIT_MIB =
  process.env.BENCH_MEMORY_LIMIT_MIB === undefined || process.env.BENCH_MEMORY_LIMIT_MIB === ''
    ? undefined
    : Number(process.env.BENCH_MEMORY_LIMIT_MIB);
const RESULT = process.env.BENCH_RESULT ?? 'last-result.json';
const RESULT_URL = new URL(`./${RESULT}`, import.meta.url);
// The README's configuration defaults: what a real first reconcile is paced at.
const REAL_RATE = { tidsbanken: 5, poweroffice: 10 };

function databaseUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** The orchestrator: fakes, the memory cgroup, the service child, the result file. */
async function orchestrate(): Promise<void> {
  const seedStart = performance.now();
  const fakes = await startFakesProcess({ scenario: 'reconcile', records: N, rate: RATE });
  const seedSeconds = +((performance.now() - seedStart) / 1000).toFixed(1);
  const name = `tbpo_bench_reconcile_${randomBytes(4).toString('hex')}`;
  let cgroup: MemoryCgroup | undefined;
  try {
    const profile = serviceProfile();
    if (MEMORY_LIMIT_MIB !== undefined) {
      cgroup = await createMemoryCgroup(MEMORY_LIMIT_MIB, 'tbpo_bench_reconcile');
    }
    // The same node, loader (tsx's, when run through it) and script, as the service.
    const args = [...process.execArgv, ...profile.nodeArgs, fileURLToPath(import.meta.url)];
    const [command, spawnArgs] = cgroup?.wrap(process.execPath, args) ?? [process.execPath, args];
    const child = spawn(command, spawnArgs, {
      env: {
        ...process.env,
        ...profile.env,
        ...serviceNodeOptions(),
        BENCH_RECONCILE_ROLE: 'service',
        BENCH_DATABASE_NAME: name,
        BENCH_FAKES_ENV: JSON.stringify(fakes.env),
      },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    // The service asks for the fakes' request counts at its end.
    child.on('message', (message) => {
      if (message === 'stats') void fakes.stats().then((stats) => child.send(stats));
    });
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) =>
      child.once('exit', (c, s) => resolve([c, s])),
    );
    const memoryLimit = (await cgroup?.stats()) ?? null;
    if (code !== 0) {
      throw new Error(
        `the service process ended (${code ?? signal})` +
          (memoryLimit !== null ? `; memory cgroup: ${JSON.stringify(memoryLimit)}` : ''),
      );
    }
    const result = JSON.parse(await readFile(RESULT_URL, 'utf8')) as Record<string, unknown>;
    const merged = {
      ...result,
      seedSeconds,
      memoryLimit,
      profiles: await profile.summarize({
        profilesDir: new URL('./profiles/', import.meta.url),
        name: RESULT.replace(/\.json$/, ''),
        root: fileURLToPath(new URL('../../', import.meta.url)),
        title: `reconcile ${N} per side${MEMORY_LIMIT_MIB !== undefined ? `, ${MEMORY_LIMIT_MIB} MiB limit` : ''}: the service`,
      }),
    };
    process.stdout.write(`${JSON.stringify(merged, null, 2)}\n`);
    await writeFile(RESULT_URL, `${JSON.stringify(merged, null, 2)}\n`);
  } finally {
    // The service drops its database; this is for a service that did not get that far.
    if (process.env.BENCH_KEEP_DB !== '1')
      await admin(`drop database if exists ${name} with (force)`);
    await fakes.close();
    await cgroup?.remove();
  }
}

/** The service: one reconcile against the fakes the orchestrator runs. */
async function main(): Promise<void> {
  const contacts = Math.max(2, Math.floor(N / 10));
  const fakes = {
    env: JSON.parse(process.env.BENCH_FAKES_ENV ?? '{}') as Record<string, string>,
    stats: () =>
      new Promise<FakesStats>((resolve) => {
        process.once('message', (stats) => resolve(stats as FakesStats));
        process.send!('stats');
      }),
  };
  const name = process.env.BENCH_DATABASE_NAME!;
  const loadAtStart = loadavg()[0]!;
  await admin(`create database ${name}`);
  const handle = openPostgres(databaseUrl(name), 10);
  const logger = createLogger({
    level: process.env.BENCH_LOG_LEVEL ?? 'warn',
    destination: process.stderr,
  });
  try {
    await migrateToLatest(handle.db);
    const config = loadConfig({
      DATABASE_URL: databaseUrl(name),
      POLL_INTERVAL_MS: '0',
      ...fakes.env,
      TIDSBANKEN_RATE_LIMIT_PER_SECOND: String(RATE),
      POWEROFFICE_RATE_LIMIT_PER_SECOND: String(RATE),
    });
    const metrics = createMetrics();
    const clients = {
      tidsbanken: new TidsbankenClient({
        config: config.tidsbanken.credentials!,
        pacer: new Pacer('tidsbanken', RATE),
        logger,
        metrics,
      }),
      poweroffice: new PowerOfficeClient({
        config: config.poweroffice.credentials!,
        pacer: new Pacer('poweroffice', RATE),
        logger,
        metrics,
      }),
    };
    const db = handle.db;
    const pollers: Poller[] = [
      ...createTidsbankenPollers({
        client: clients.tidsbanken,
        db,
        logger,
        metrics,
        intervalMs: 0,
      }),
      ...createPowerOfficePollers({
        client: clients.poweroffice,
        db,
        logger,
        metrics,
        intervalMs: 0,
      }),
    ];
    const worker = startSyncWorker({ db, config, logger, clients });
    const reconciler = new Reconciler({
      db,
      logger,
      config,
      pollers,
      engine: linkGateEngine,
      heartbeatMs: 5000,
      drainTimeoutMs: TIMEOUT_MS,
    });

    // Phase timings and peak RSS, sampled while the run goes.
    const phaseAt: Record<string, number> = {};
    // CPU seconds of the service and of PostgreSQL when each phase began.
    const phaseCpu: Record<string, Promise<{ service: number; postgres: number }>> = {};
    let peakRss = process.memoryUsage().rss;
    // What the RSS peak was made of (V8 heap, buffers and strings outside it), and the
    // largest V8 heap in use at any sample.
    let atPeak = process.memoryUsage();
    let peakHeapUsed = atPeak.heapUsed;
    const sampler = setInterval(() => {
      const now = process.memoryUsage();
      peakHeapUsed = Math.max(peakHeapUsed, now.heapUsed);
      if (now.rss > peakRss) {
        peakRss = now.rss;
        atPeak = now;
      }
    }, 100);
    const dbCpu = sampleDatabaseCpu(SERVER_URL, name);
    const cpuStart = process.cpuUsage();
    const start = performance.now();
    const cpuNow = async () => {
      const used = process.cpuUsage(cpuStart);
      return { service: (used.user + used.system) / 1e6, postgres: await dbCpu.now() };
    };
    let lastPhase = '';
    let printedAt = 0;
    reconciler.onProgress((p: ReconcileProgress) => {
      phaseAt[p.phase] ??= performance.now() - start;
      phaseCpu[p.phase] ??= cpuNow();
      // A line per phase change, else every 5 s (progress now moves page by page).
      if (p.phase === lastPhase && performance.now() - printedAt < 5000) return;
      lastPhase = p.phase;
      printedAt = performance.now();
      process.stderr.write(
        `  ${((performance.now() - start) / 1000).toFixed(1)}s ${p.phase} ${p.recordsRead} read` +
          (p.pending !== null ? ` · ${p.pending} pending` : '') +
          (p.linking !== null
            ? ` · ${p.linking.map((f) => `${f.flow} ${f.step} ${f.synced}/${f.linksMade}`).join(', ')}`
            : '') +
          '\n',
      );
    });
    const timeout = setTimeout(() => void reconciler.stop(), TIMEOUT_MS);
    const run = await reconciler.run();
    const wallMs = performance.now() - start;
    clearTimeout(timeout);
    clearInterval(sampler);
    const cpu = process.cpuUsage(cpuStart);
    await worker.stop();
    const cpuAt = Object.fromEntries(
      await Promise.all(Object.entries(phaseCpu).map(async ([k, v]) => [k, await v] as const)),
    );
    const postgresCpuSeconds = await dbCpu.stop();
    // Per phase: wall seconds, service CPU seconds, PostgreSQL CPU seconds.
    const phases = ['reading', 'draining', 'linking', 'done'];
    const phaseCost = Object.fromEntries(
      phases.slice(0, -1).flatMap((phase, i) => {
        const from = cpuAt[phase];
        const to = cpuAt[phases[i + 1]!];
        if (from === undefined || to === undefined) return [];
        return [
          [
            phase,
            {
              wallSeconds: +(
                ((phaseAt[phases[i + 1]!] ?? 0) - (phaseAt[phase] ?? 0)) /
                1000
              ).toFixed(1),
              serviceCpuSeconds: +(to.service - from.service).toFixed(1),
              postgresCpuSeconds: +(to.postgres - from.postgres).toFixed(1),
            },
          ],
        ];
      }),
    );
    const fakeStats = await fakes.stats();
    // Time spent waiting for the fakes' answers (reads run one at a time): not the engine's.
    const waits = await metrics.upstreamDuration.get();
    const upstreamWaitSeconds = waits.values
      .filter((v) => v.metricName?.endsWith('_sum') === true)
      .reduce((sum, v) => sum + v.value, 0);
    // The part of it the reads were blocked on: a page is read ahead while the previous one is
    // stored, so only the time a poller waited for its next page adds to the wall time.
    const pageWaits = await metrics.pollPageWait.get();
    const exposedWaitSeconds = pageWaits.values
      .filter((v) => v.metricName?.endsWith('_sum') === true)
      .reduce((sum, v) => sum + v.value, 0);

    const progress = run.progress as ReconcileProgress;
    const requests = fakeStats.requests;
    const pages = Object.fromEntries(
      progress.read.map((r) => [`${r.system}/${r.recordType}`, r.pages]),
    );
    const realReadSeconds = {
      tidsbanken: requests.tidsbanken / REAL_RATE.tidsbanken,
      poweroffice: requests.poweroffice / REAL_RATE.poweroffice,
    };
    const links = await db
      .selectFrom('links')
      .select(['flow', (eb) => eb.fn.countAll<string>().as('n')])
      .where('unlinked_at', 'is', null)
      .groupBy('flow')
      .execute();
    const result = {
      at: new Date().toISOString(),
      status: run.status,
      error: run.error,
      recordsPerSide: N,
      contactPersons: contacts,
      recordsRead: progress.recordsRead,
      wallSeconds: +(wallMs / 1000).toFixed(1),
      phaseStartSeconds: Object.fromEntries(
        Object.entries(phaseAt).map(([k, v]) => [k, +(v / 1000).toFixed(1)]),
      ),
      phaseCost,
      recordsPerSecond: Math.round(progress.recordsRead / (wallMs / 1000)),
      // Everything but waiting for the fakes' answers (the part not overlapped by our work).
      engineSeconds: +(wallMs / 1000 - exposedWaitSeconds).toFixed(1),
      upstreamWaitSeconds: +upstreamWaitSeconds.toFixed(1),
      exposedWaitSeconds: +exposedWaitSeconds.toFixed(1),
      serviceCpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(1),
      postgresCpuSeconds,
      // This process is the service (the fakes and the orchestrator run in their own).
      peakRssMiB: Math.round(Math.max(peakRss, process.resourceUsage().maxRSS * 1024) / 2 ** 20),
      memoryAtPeakMiB: {
        heapTotal: Math.round(atPeak.heapTotal / 2 ** 20),
        heapUsed: Math.round(atPeak.heapUsed / 2 ** 20),
        external: Math.round(atPeak.external / 2 ** 20),
        arrayBuffers: Math.round(atPeak.arrayBuffers / 2 ** 20),
      },
      peakHeapUsedMiB: Math.round(peakHeapUsed / 2 ** 20),
      fakesRssMiB: fakeStats.rssMiB,
      linksMade: progress.linksMade,
      linksByFlow: Object.fromEntries(links.map((l) => [l.flow, Number(l.n)])),
      conflicts: progress.conflicts,
      commandsQueued: progress.commandsQueued,
      pages,
      requests,
      benchRatePerSecond: RATE,
      realLimitReadSeconds: realReadSeconds,
      // Engine time plus the reads at the real limits (an upper bound: reads and the inbox
      // writes they cause would overlap).
      atRealLimitsSeconds: +(
        wallMs / 1000 -
        exposedWaitSeconds +
        realReadSeconds.tidsbanken +
        realReadSeconds.poweroffice
      ).toFixed(1),
      machine: {
        cpus: cpus().length,
        cpuModel: cpus()[0]?.model ?? 'unknown',
        memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
        node: process.version,
        // The 1-minute load average at the start and at the end (the machine is shared).
        loadAvg1m: [+loadAtStart.toFixed(1), +loadavg()[0]!.toFixed(1)],
      },
    };
    await writeFile(RESULT_URL, `${JSON.stringify(result, null, 2)}\n`);
  } finally {
    await handle.close();
    if (process.env.BENCH_KEEP_DB === '1') process.stderr.write(`kept database ${name}\n`);
    else await admin(`drop database if exists ${name} with (force)`);
  }
}

runBench(process.env.BENCH_RECONCILE_ROLE === 'service' ? main : orchestrate);
