// First start (bench/README.md, "first-start"): how long after the service starts on an
// empty database its first links are made, and how much memory its process tree takes.
//
//   npx tsx bench/first-start/run.ts
//   env: BENCH_RECORDS (Kunder and Customers each, default 20000), BENCH_AMBIGUOUS (250),
//        BENCH_RATE (requests/s of the fakes and the service's pacers, default 50),
//        BENCH_LAUNCH (dist: `node dist/src/main.js`, as `npm start`; tsx: `node --import tsx
//        src/main.ts`; tsx-cli: `tsx src/main.ts`), BENCH_SERVICE_DIR (the checkout whose service runs; default this one),
//        BENCH_RESULT (default last-result.json), BENCH_TIMEOUT_MS (default 10 min),
//        DATABASE_URL (server),
//        BENCH_MEMORY_LIMIT_MIB (the service in a memory cgroup with that limit, as in a
//        container: bench/lib/memory-cgroup.ts), BENCH_SERVICE_NODE_OPTIONS (the service's
//        NODE_OPTIONS alone, e.g. deploy/'s --max-old-space-size=192), BENCH_PROFILE=cpu,heap (profiles of the
//        service, summarized to profiles/<result name>-cpu.md / -heap.md:
//        bench/lib/service-profile.ts)
//
// The fakes run in a process of their own (bench/lib/fakes-process.ts): N Kunder and N
// Customers, 80 % sharing an e-mail pair-wise, BENCH_AMBIGUOUS of those Kunder matching a
// second Customer too. The service is started as a child process on a fresh database, as a
// user starts it; the clock runs from the spawn until the link sweep has opened the link gate
// (every link made). Memory: the service's process tree, sampled from /proc every 250 ms.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import pg from 'pg';
import { createScratchDatabase, machine, runBench, sleep } from '../lib/common.js';
import { startFakesProcess } from '../lib/fakes-process.js';
import { createMemoryCgroup, type MemoryCgroup } from '../lib/memory-cgroup.js';
import { sampleDatabaseCpu, sampleTreeMemory } from '../lib/process-stats.js';
import { serviceNodeOptions, serviceProfile } from '../lib/service-profile.js';

const N = Number(process.env.BENCH_RECORDS ?? 20_000);
const AMBIGUOUS = Number(process.env.BENCH_AMBIGUOUS ?? 250);
const RATE = Number(process.env.BENCH_RATE ?? 50);
const LAUNCH = process.env.BENCH_LAUNCH ?? 'dist';
const SERVICE_DIR = resolve(process.env.BENCH_SERVICE_DIR ?? '.');
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 10 * 60_000);
const MEMORY_LIMIT_MIB =
  process.env.BENCH_MEMORY_LIMIT_MIB === undefined || process.env.BENCH_MEMORY_LIMIT_MIB === ''
    ? undefined
    : Number(process.env.BENCH_MEMORY_LIMIT_MIB);
const RESULT = process.env.BENCH_RESULT ?? 'last-result.json';
const LAUNCHES: Record<string, [string, string[]]> = {
  dist: ['node', ['dist/src/main.js']],
  tsx: ['node', ['--import', 'tsx', 'src/main.ts']],
  // The tsx CLI: a parent process that runs the service in a child node with its loader.
  'tsx-cli': ['node', ['node_modules/tsx/dist/cli.mjs', 'src/main.ts']],
};

async function main(): Promise<void> {
  const fakes = await startFakesProcess({
    scenario: 'first-start',
    records: N,
    rate: RATE,
    ambiguous: AMBIGUOUS,
  });
  const scratch = await createScratchDatabase('tbpo_bench_first_start');
  const client = new pg.Client({ connectionString: scratch.url });
  let cgroup: MemoryCgroup | undefined;
  let child: ChildProcess | undefined;
  let exited: number | string | null | undefined;
  try {
    if (LAUNCH === 'dist') {
      await run('node', ['scripts/ensure-build.js']);
    }
    const [command, launchArgs] = LAUNCHES[LAUNCH] ?? LAUNCHES.tsx!;
    const profile = serviceProfile();
    if (LAUNCH === 'tsx-cli' && profile.nodeArgs.length > 0)
      throw new Error('BENCH_PROFILE profiles the service process: use BENCH_LAUNCH=dist or tsx');
    // Node options go before the script.
    const args = [...profile.nodeArgs, ...launchArgs];
    if (MEMORY_LIMIT_MIB !== undefined) {
      cgroup = await createMemoryCgroup(MEMORY_LIMIT_MIB, 'tbpo_bench_first_start');
    }
    const [spawnCommand, spawnArgs] = cgroup?.wrap(command, args) ?? [command, args];
    const dbCpu = sampleDatabaseCpu(scratch.url, scratch.name);
    const start = performance.now();
    const spawnedAt = Date.now();
    child = spawn(spawnCommand, spawnArgs, {
      cwd: SERVICE_DIR,
      env: {
        ...process.env,
        ...profile.env,
        ...serviceNodeOptions(),
        ...fakes.env,
        DATABASE_URL: scratch.url,
        PORT: '0',
        LOG_LEVEL: 'warn',
        TIDSBANKEN_RATE_LIMIT_PER_SECOND: String(RATE),
        POWEROFFICE_RATE_LIMIT_PER_SECOND: String(RATE),
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    });
    const memory = sampleTreeMemory(child.pid!);
    child.once('exit', (code, signal) => {
      exited = code ?? signal;
    });

    await client.connect();
    let linkedAt: number | undefined;
    let lastSweep: unknown;
    while (linkedAt === undefined) {
      if (exited !== undefined)
        throw new Error(
          `the service exited (${exited})` +
            (cgroup !== undefined
              ? `; memory cgroup: ${JSON.stringify(await cgroup.stats())}`
              : ''),
        );
      if (performance.now() - start > TIMEOUT_MS) throw new Error('timed out');
      const gate = await client
        .query<{ value: { open?: boolean; lastSweep?: unknown } }>(
          "select value from sync_state where key = 'link-gate'",
        )
        .catch(() => ({ rows: [] }));
      const value = gate.rows[0]?.value;
      if (value?.open === true && value.lastSweep !== undefined) {
        linkedAt = performance.now() - start;
        lastSweep = value.lastSweep;
      } else {
        await sleep(250);
      }
    }
    const mem = await memory.stop();
    child.kill('SIGTERM');
    await new Promise((r) => (exited !== undefined ? r(undefined) : child!.once('exit', r)));
    const cgroupStats = await cgroup?.stats();
    const postgresCpuSeconds = await dbCpu.stop();
    const counts = await client.query<{ links: string; ambiguous: string }>(
      `select (select count(*) from links where unlinked_at is null) as links,
              (select count(*) from conflicts where kind = 'ambiguous_match' and status = 'open') as ambiguous`,
    );
    // Milestones from the database (same host, same clock), seconds after the spawn: the
    // first inbox row (service up, migrated, reading), the last row the first reads stored
    // (before the first link: a later timed poll does not count), and the sweep's first link.
    const marks = await client.query<Record<string, number | null>>(
      `with first_link as (select min(created_at) as at from links)
       select extract(epoch from (select min(created_at) from inbound_events)) as "firstRow",
              extract(epoch from (select max(created_at) from inbound_events
                                   where created_at <= (select at from first_link))) as "readsDone",
              extract(epoch from (select at from first_link)) as "firstLink"`,
    );
    const milestones = Object.fromEntries(
      Object.entries(marks.rows[0] ?? {}).map(([k, v]) => [
        k,
        v === null ? null : +(Number(v) - spawnedAt / 1000).toFixed(1),
      ]),
    );
    const fakeStats = await fakes.stats();
    const result = {
      at: new Date().toISOString(),
      launch: [command, ...args].join(' '),
      serviceDir: SERVICE_DIR,
      kunder: N,
      customers: N,
      sharedEmails: Math.floor(N * 0.8),
      ambiguousKunder: AMBIGUOUS,
      ratePerSecond: RATE,
      secondsUntilLinked: +(linkedAt / 1000).toFixed(1),
      milestones,
      links: Number(counts.rows[0]?.links),
      openAmbiguousConflicts: Number(counts.rows[0]?.ambiguous),
      lastSweep,
      serviceTreePeakRssMiB: mem.peakTreeRssMiB,
      serviceLargestProcessHwmMiB: mem.peakProcessHwmMiB,
      memoryLimit: cgroupStats ?? null,
      serviceCpuSeconds: mem.cpuSeconds,
      postgresCpuSeconds,
      requests: fakeStats.requests,
      fakesRssMiB: fakeStats.rssMiB,
      machine: machine(),
      profiles: await profile.summarize({
        profilesDir: new URL('./profiles/', import.meta.url),
        name: RESULT.replace(/\.json$/, ''),
        root: SERVICE_DIR,
        title: `first-start ${N} × ${N}${MEMORY_LIMIT_MIB !== undefined ? `, ${MEMORY_LIMIT_MIB} MiB limit` : ''}: the service`,
      }),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
    await writeFile(
      new URL(`./${RESULT}`, import.meta.url),
      `${JSON.stringify(result, null, 2)}\n`,
    );
  } finally {
    await client.end().catch(() => undefined);
    await scratch.drop();
    await fakes.close();
    if (child !== undefined && exited === undefined) {
      const ended = new Promise((r) => child!.once('exit', r));
      child.kill('SIGKILL');
      await ended;
    }
    await cgroup?.remove();
  }
}

function run(command: string, args: string[]): Promise<void> {
  return new Promise((ok, fail) => {
    const child = spawn(command, args, { cwd: SERVICE_DIR, stdio: 'inherit' });
    child.once('exit', (code) =>
      code === 0 ? ok() : fail(new Error(`${command} exited ${code}`)),
    );
  });
}

runBench(main);
