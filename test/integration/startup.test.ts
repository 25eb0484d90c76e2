import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { inject } from 'vitest';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { migrateToLatest, openPostgres } from '../../src/db/database.js';
import { migrations } from '../../migrations/index.js';
import { freePort, spawnCollecting, TSX, waitReady } from '../helpers/child-service.js';

// The real entry point as an operator runs it: `tsx src/main.ts` in a child process.

// Creating the embedded database runs PostgreSQL's initdb in WebAssembly: seconds on a quiet
// machine, over a minute on a loaded 2-core one.
const EMBEDDED_START_MS = 120_000;

function runService(env: Record<string, string>) {
  return spawnCollecting(TSX, ['src/main.ts'], {
    LOG_LEVEL: 'info',
    POLL_INTERVAL_MS: '0',
    ...env,
  });
}

/** A CLI (`src/<file>`) run to its end with only `env`: its exit code and output. */
async function runCli(file: string, env: Record<string, string>) {
  const child = spawn(TSX, [`src/${file}`], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  return { code, stdout, stderr };
}

/** The pid of a process that has ended (a lock left by a process killed with -9). */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '']);
  await new Promise((resolve) => child.on('exit', resolve));
  return child.pid!;
}

const lockOf = (dataDir: string) => join(dataDir, 'tbpo.lock');

async function writeStaleLock(dataDir: string): Promise<number> {
  const pid = await deadPid();
  await writeFile(
    lockOf(dataDir),
    JSON.stringify({
      pid,
      hostname: hostname(),
      since: '2026-01-05T10:00:00.000Z',
      command: 'main',
    }),
  );
  return pid;
}

const dirs: string[] = [];
afterAll(async () => {
  for (const dir of dirs) await rm(dir, { recursive: true, force: true });
});

describe('npm start (src/main.ts)', () => {
  it('with an invalid variable, exits 78 with one JSON log line naming it and every other bad one', async () => {
    const run = runService({ PORT: 'abc', CONFLICT_POLICY: 'coin-flip' });
    const code = await run.exited;
    expect(code).toBe(78);
    const lines = run
      .output()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 60, msg: 'invalid configuration' });
    expect(lines[0]).toHaveProperty('pid');
    expect(lines[0]).toHaveProperty('hostname');
    const problems = lines[0]!.problems as string[];
    expect(problems).toContainEqual(expect.stringMatching(/^PORT: must be a port number/));
    expect(problems).toContainEqual(expect.stringMatching(/^CONFLICT_POLICY: /));
  });

  it('with TIDSBANKEN_API_KEY but no TIDSBANKEN_SUBSCRIPTION_KEY, exits 78 naming the missing variable', async () => {
    const run = runService({ TIDSBANKEN_API_KEY: 'tb-key-startup-check' });
    expect(await run.exited).toBe(78);
    expect(run.output()).toMatch(
      /TIDSBANKEN_SUBSCRIPTION_KEY: is required when TIDSBANKEN_API_KEY is set/,
    );
    expect(run.output()).not.toContain('tb-key-startup-check');
  });

  it(
    'with no DATABASE_URL, starts on embedded PostgreSQL in DATA_DIR, answers /readyz, and stops cleanly on SIGTERM',
    async () => {
      const dataDir = await mkdtemp(join(tmpdir(), 'tbpo-start-'));
      dirs.push(dataDir);
      const env = { DATA_DIR: dataDir };

      // Before the first start: nothing to open, and the check does not create it.
      const before = await runCli('check-cli.ts', env);
      expect(before.stdout).toMatch(/database\s+OK\s+embedded PostgreSQL in .*: not created yet/);
      expect(before.code).toBe(0);
      expect(existsSync(join(dataDir, 'PG_VERSION'))).toBe(false);

      const port = await freePort();
      const run = runService({ PORT: String(port), ...env });
      try {
        const res = await waitReady(port, EMBEDDED_START_MS);
        expect(await res.json()).toMatchObject({ status: 'ready' });
        expect(run.output()).toContain('"database":"pglite"');

        // One process at a time in DATA_DIR: the service holds it.
        const pid = run.child.pid!;
        expect(JSON.parse(await readFile(lockOf(dataDir), 'utf8'))).toMatchObject({
          pid,
          command: 'main',
        });
        // A migrate (or a second service, or a reconcile) is refused with one JSON line.
        const migrate = await runCli('migrate-cli.ts', env);
        expect(migrate.code).toBe(1);
        const lines = migrate.stdout
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as Record<string, unknown>);
        expect(lines.at(-1)).toMatchObject({ level: 60, dataDir, holderPid: pid });
        expect(lines.at(-1)!.msg).toContain(`DATA_DIR ${dataDir} is in use by another process`);
        const reconcile = await runCli('reconcile-cli.ts', env);
        expect(reconcile.code).toBe(1);
        expect(JSON.parse(reconcile.stdout.trim().split('\n').at(-1)!)).toMatchObject({
          level: 60,
          dataDir,
          holderPid: pid,
        });
        // The check reports it without opening it.
        const check = await runCli('check-cli.ts', env);
        expect(check.stdout).toMatch(
          new RegExp(`database\\s+OK\\s+.*in use by the running service \\(pid ${pid}\\)`),
        );
        expect(check.code).toBe(0);
      } finally {
        run.child.kill('SIGTERM');
      }
      expect(await run.exited).toBe(0);
      expect(run.output()).toContain('"msg":"stopped"');
      expect(existsSync(lockOf(dataDir))).toBe(false);

      // A lock whose process died (kill -9) is taken over: by the check, which opens the
      // database for a moment and leaves no lock behind...
      await writeStaleLock(dataDir);
      const check = await runCli('check-cli.ts', env);
      expect(check.stdout).toMatch(/database\s+OK\s+embedded PostgreSQL in .*: migrations done/);
      expect(check.code).toBe(0);
      expect(existsSync(lockOf(dataDir))).toBe(false);

      // ...and by the service. The data survives a restart: migrations are not re-applied.
      await writeStaleLock(dataDir);
      const again = runService({ PORT: String(port), ...env });
      try {
        await waitReady(port, EMBEDDED_START_MS);
        expect(again.output()).toContain('"applied":[]');
        expect(JSON.parse(await readFile(lockOf(dataDir), 'utf8'))).toMatchObject({
          pid: again.child.pid,
        });
      } finally {
        again.child.kill('SIGTERM');
      }
      expect(await again.exited).toBe(0);
    },
    3 * EMBEDDED_START_MS,
  );
});

describe.runIf(process.env.DATABASE_URL)('on PostgreSQL', () => {
  let database: TestDatabase;
  afterAll(async () => {
    await database?.close();
  });

  it('two replicas migrating one fresh database at once both succeed, each migration applied once', async () => {
    database = await createTestDatabase(inject('templateDatabase'));
    // A fresh, unmigrated database beside this file's own one.
    const fresh = `tbpo_fresh_${process.pid}_${Date.now()}`;
    await sql.raw(`create database ${fresh}`).execute(database.db);
    const url = new URL(database.url!);
    url.pathname = `/${fresh}`;
    const a = openPostgres(url.toString(), 2);
    const b = openPostgres(url.toString(), 2);
    try {
      const [ra, rb] = await Promise.all([migrateToLatest(a.db), migrateToLatest(b.db)]);
      // Every migration once between the two replicas, none twice.
      expect([...ra, ...rb].sort()).toEqual(Object.keys(migrations).sort());
    } finally {
      await a.close();
      await b.close();
      await sql.raw(`drop database ${fresh} with (force)`).execute(database.db);
    }
  });

  it('with DATABASE_URL, starts on it and answers /readyz', async () => {
    const port = await freePort();
    const run = runService({ PORT: String(port), DATABASE_URL: database.url! });
    try {
      await waitReady(port);
      expect(run.output()).toContain('"database":"postgres"');
    } finally {
      run.child.kill('SIGTERM');
    }
    expect(await run.exited).toBe(0);
  });
});
