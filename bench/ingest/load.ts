// What the ingest benches share (bench/README.md, "ingest"): the load generator, CPU
// accounting and a listener on a free port; used by run.ts and compare.ts. autocannon runs
// in a CHILD process (this file, BENCH_ROLE=load) so it never shares the measured event loop.
import { fork } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { readFile, readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import type { Express } from 'express';

export interface LoadJob {
  url: string;
  secret: string;
  duration: number;
  connections: number;
  overallRate: number | undefined;
}

export interface LoadResult {
  requests: number;
  non2xx: number;
  errors: number;
  timeouts: number;
  rps: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** CPU seconds the generator process spent during the run. */
  cpuSeconds: number;
}

// --- load generator (child process) ---------------------------------------------------

async function runLoad(job: LoadJob): Promise<LoadResult> {
  // Record ids unique across phases too, so the content dedupe never hits.
  let seq = randomBytes(4).readUInt32BE() * 1000;
  const prefix = randomBytes(4).toString('hex');
  const key = Buffer.from(job.secret.slice('whsec_'.length), 'base64');
  const cpuBefore = process.cpuUsage();
  const result = await autocannon({
    url: job.url,
    connections: job.connections,
    duration: job.duration,
    // autocannon's coordinated-omission correction uses an expected interval of
    // ceil(1/rate) = 1 ms whatever the rate, which invents samples; report what was measured.
    ...(job.overallRate !== undefined
      ? { overallRate: job.overallRate, ignoreCoordinatedOmission: true }
      : {}),
    requests: [
      {
        method: 'POST',
        // Every request a new webhook-id and a new record, so each one is a real insert
        // (neither the id nor the content dedupe may turn it into a no-op).
        setupRequest: (req) => {
          seq += 1;
          const id = `msg_${prefix}_${seq}`;
          const body = JSON.stringify({
            type: 'ansatt.updated',
            timestamp: new Date().toISOString(),
            data: {
              Id: seq,
              Fornavn: 'Kari',
              Etternavn: 'Nordmann',
              Epost: `kari.${seq}@example.no`,
              Mobil: '+4791234567',
              Aktiv: true,
              SistEndretDato: '2026-01-05T10:00:00Z',
            },
          });
          const headers: Record<string, string> = { 'content-type': 'application/json' };
          {
            const ts = Math.floor(Date.now() / 1000);
            headers['webhook-id'] = id;
            headers['webhook-timestamp'] = String(ts);
            // The sender's side: node:crypto, not the verifier library (pure-JS SHA-256), so
            // the generator spends its CPU on load, not on hashing. Same scheme.
            headers['webhook-signature'] =
              `v1,${createHmac('sha256', key).update(`${id}.${ts}.${body}`).digest('base64')}`;
          }
          return { ...req, headers, body };
        },
      },
    ],
  });
  return {
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors,
    timeouts: result.timeouts,
    rps: result.requests.average,
    p50: result.latency.p50,
    p90: result.latency.p90,
    p99: result.latency.p99,
    max: result.latency.max,
    cpuSeconds: (() => {
      const used = process.cpuUsage(cpuBefore);
      return (used.user + used.system) / 1e6;
    })(),
  };
}

function loadInChild(job: LoadJob): Promise<LoadResult> {
  return new Promise((resolve, reject) => {
    const child = fork(fileURLToPath(import.meta.url), [], {
      env: { ...process.env, BENCH_ROLE: 'load', BENCH_JOB: JSON.stringify(job) },
      execArgv: ['--import', 'tsx'],
    });
    let result: LoadResult | undefined;
    child.on('message', (m) => {
      result = m as LoadResult;
    });
    child.on('error', reject);
    child.on('exit', (code) => {
      if (result !== undefined) resolve(result);
      else reject(new Error(`load generator exited with ${code}`));
    });
  });
}

// --- CPU accounting (Linux /proc; elsewhere the CPU columns stay empty) -----------------

/** CPU seconds (user + system) used so far by every process whose command name is `name`. */
async function cpuSecondsOf(name: string): Promise<number | undefined> {
  try {
    const tick = 100; // USER_HZ: 100 on every Linux this runs on
    let total = 0;
    for (const pid of await readdir('/proc')) {
      if (!/^\d+$/.test(pid)) continue;
      const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
      const open = stat.indexOf('(');
      const close = stat.lastIndexOf(')');
      if (open < 0 || stat.slice(open + 1, close) !== name) continue;
      const fields = stat.slice(close + 2).split(' ');
      // after "(comm) ": state ppid … utime is field 14, stime 15 (1-based over the whole line)
      total += (Number(fields[11]) + Number(fields[12])) / tick;
    }
    return total;
  } catch {
    return undefined;
  }
}

interface CpuSample {
  app: number;
  postgres: number | undefined;
}

async function cpuNow(): Promise<CpuSample> {
  const own = process.cpuUsage();
  return { app: (own.user + own.system) / 1e6, postgres: await cpuSecondsOf('postgres') };
}

/** CPU ms per 1 000 answered requests, per party, over one phase. */
function cpuPer1000(
  before: CpuSample,
  after: CpuSample,
  generatorSeconds: number,
  requests: number,
): { generator: number; app: number; postgres: number | undefined } {
  const per = (seconds: number) => Math.round((seconds * 1e7) / Math.max(1, requests)) / 10;
  return {
    generator: per(generatorSeconds),
    app: per(after.app - before.app),
    postgres:
      before.postgres === undefined || after.postgres === undefined
        ? undefined
        : per(after.postgres - before.postgres),
  };
}

export interface PhaseResult extends LoadResult {
  cpuMsPer1000: { generator: number; app: number; postgres: number | undefined };
}

/** One load run in the child, with the CPU each party spent on it per 1 000 answers ("app" is
 * this process, "postgres" every postgres process). */
export async function measuredLoad(job: LoadJob): Promise<PhaseResult> {
  const cpuBefore = await cpuNow();
  const result = await loadInChild(job);
  const cpu = cpuPer1000(cpuBefore, await cpuNow(), result.cpuSeconds, result.requests);
  return { ...result, cpuMsPer1000: cpu };
}

export async function listen(app: Express): Promise<{ url: string; close(): Promise<void> }> {
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    server.once('listening', resolve);
    server.once('error', reject);
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A positive number from `--name <n>`, else from the environment variable, else `fallback`. */
export function arg(name: string, envName: string | undefined, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw =
    i >= 0 ? process.argv[i + 1] : envName !== undefined ? process.env[envName] : undefined;
  const n = Number(raw);
  return raw !== undefined && Number.isFinite(n) && n > 0 ? n : fallback;
}

/** Medians over one side's slices, per answered request. */
export interface SliceMedians {
  mainThreadUs: number;
  processCpuUs: number;
  postgresCpuUs: number;
  rps: number;
}

/**
 * Two servers loaded in alternating slices (`run` is one slice against a URL), `count`
 * slices in all, the first pair a warm-up. Per slice: main-thread busy time (event-loop
 * utilization), this process's and PostgreSQL's CPU per answered request, and req/s; the
 * medians per side. Alternating short slices cancel most of this VM's drift.
 */
export async function alternatingSlices(
  count: number,
  run: (url: string) => Promise<PhaseResult>,
  urls: readonly [string, string],
): Promise<[SliceMedians, SliceMedians]> {
  const samples = () => ({
    main: [] as number[],
    cpu: [] as number[],
    pg: [] as number[],
    rps: [] as number[],
  });
  const sides = [samples(), samples()] as const;
  for (let i = 0; i < count; i++) {
    const side = sides[i % 2]!;
    const before = performance.eventLoopUtilization();
    const result = await run(urls[i % 2]!);
    const busyMs = performance.eventLoopUtilization(before).active;
    if (i < 2) continue; // the warm-up pair
    side.main.push((busyMs * 1000) / Math.max(1, result.requests));
    side.cpu.push(result.cpuMsPer1000.app);
    side.pg.push(result.cpuMsPer1000.postgres ?? Number.NaN);
    side.rps.push(result.rps);
  }
  const median = (values: number[]) => {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[sorted.length >> 1] ?? Number.NaN;
  };
  const medians = (side: (typeof sides)[number]): SliceMedians => ({
    mainThreadUs: median(side.main),
    processCpuUs: median(side.cpu),
    postgresCpuUs: median(side.pg),
    rps: median(side.rps),
  });
  return [medians(sides[0]), medians(sides[1])];
}

if (process.env.BENCH_ROLE === 'load') {
  const job = JSON.parse(process.env.BENCH_JOB ?? '{}') as LoadJob;
  void runLoad(job).then((result) => {
    process.send?.(result);
    process.disconnect?.();
  });
}
