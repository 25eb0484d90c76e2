// Start-up memory per process (bench/README.md, "first-start"): starts the service the way a
// user would, on the embedded database (PGlite) in a fresh DATA_DIR and with no vendor
// configured, waits until /readyz answers, samples three more seconds and prints every
// process of the tree with its resident memory: which process holds what.
//
//   npx tsx bench/first-start/run-startup-memory.ts dist       # node dist/src/main.js
//   npx tsx bench/first-start/run-startup-memory.ts tsx-cli    # tsx src/main.ts (the tsx CLI)
//   npx tsx bench/first-start/run-startup-memory.ts npm-tsx    # npm exec -- tsx src/main.ts
//   env: DATABASE_URL set → that server instead of PGlite; BENCH_DATA_DIR → reuse that data
//        directory (a second start) instead of a fresh one, and keep it
import { spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { machine, runBench, sleep } from '../lib/common.js';
import { processTree } from '../lib/process-stats.js';

const LAUNCHES: Record<string, [string, string[]]> = {
  dist: ['node', ['dist/src/main.js']],
  'tsx-cli': ['node', ['node_modules/tsx/dist/cli.mjs', 'src/main.ts']],
  'npm-tsx': ['npm', ['exec', '--', 'tsx', 'src/main.ts']],
};

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const { port } = server.address() as { port: number };
  await new Promise((ok) => server.close(ok));
  return port;
}

async function describe(pid: number) {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const kib = (field: string) =>
    Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0);
  const cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''))
    .split('\0')
    .join(' ')
    .trim()
    .slice(0, 80);
  return { pid, cmdline, rssMiB: kib('VmRSS') / 1024, hwmMiB: kib('VmHWM') / 1024 };
}

async function main(): Promise<void> {
  const launch = process.argv[2] ?? 'dist';
  const [command, args] = LAUNCHES[launch] ?? [];
  if (command === undefined) throw new Error(`launch: one of ${Object.keys(LAUNCHES).join(', ')}`);
  const keep = process.env.BENCH_DATA_DIR;
  const dataDir = keep ?? (await mkdtemp(join(tmpdir(), 'tbpo-startup-memory-')));
  const port = await freePort();
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PORT: String(port),
    DATA_DIR: dataDir,
    LOG_LEVEL: 'warn',
  };
  for (const key of Object.keys(env)) {
    if (/^(TIDSBANKEN|POWEROFFICE)_|^ADMIN_PORT$/.test(key)) delete env[key];
  }
  const start = performance.now();
  const child = spawn(command, args!, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  let peakSum = 0;
  let peak: Awaited<ReturnType<typeof describe>>[] = [];
  const sample = async () => {
    const processes = await Promise.all((await processTree(child.pid!)).map(describe));
    const sum = processes.reduce((a, p) => a + p.rssMiB, 0);
    if (sum > peakSum) [peakSum, peak] = [sum, processes];
  };
  try {
    let readyAt: number | undefined;
    while (readyAt === undefined) {
      if (child.exitCode !== null) throw new Error(`the service exited (${child.exitCode})`);
      if (performance.now() - start > 120_000) throw new Error('not ready within 2 minutes');
      await sample();
      const ready = await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined);
      if (ready?.status === 200) readyAt = performance.now() - start;
      else await sleep(200);
    }
    for (let i = 0; i < 12; i++) {
      await sample();
      await sleep(250);
    }
    const result = {
      at: new Date().toISOString(),
      launch: `${command} ${args!.join(' ')}`,
      database: process.env.DATABASE_URL === undefined ? 'PGlite' : 'PostgreSQL server',
      dataDir: keep === undefined ? 'fresh' : 'reused',
      secondsUntilReady: +(readyAt / 1000).toFixed(1),
      peakTreeRssMiB: Math.round(peakSum),
      processesAtPeak: peak.map((p) => ({
        ...p,
        rssMiB: Math.round(p.rssMiB),
        hwmMiB: Math.round(p.hwmMiB),
      })),
      machine: machine(),
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    child.kill('SIGTERM');
    if (child.exitCode === null) await new Promise((ok) => child.once('exit', ok));
    if (keep === undefined) await rm(dataDir, { recursive: true, force: true });
  }
}

runBench(main);
