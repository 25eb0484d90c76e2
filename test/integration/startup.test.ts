import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { inject } from 'vitest';
import { afterAll, describe, expect, it } from 'vitest';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { migrateToLatest, openPostgres } from '../../src/db/database.js';
import { migrations } from '../../migrations/index.js';
import { freePort, TSX, waitReady } from '../helpers/child-service.js';

// The real entry point as an operator runs it: `tsx src/main.ts` in a child process.

// Creating the embedded database runs PostgreSQL's initdb in WebAssembly: seconds on a quiet
// machine, over a minute on a loaded 2-core one.
const EMBEDDED_START_MS = 120_000;

function runService(env: Record<string, string>) {
  const child = spawn(TSX, ['src/main.ts'], {
    env: { PATH: process.env.PATH ?? '', LOG_LEVEL: 'info', POLL_INTERVAL_MS: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
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
      const port = await freePort();
      const run = runService({ PORT: String(port), DATA_DIR: dataDir });
      try {
        const res = await waitReady(port, EMBEDDED_START_MS);
        expect(await res.json()).toMatchObject({ status: 'ready' });
        expect(run.output()).toContain('"database":"pglite"');
      } finally {
        run.child.kill('SIGTERM');
      }
      expect(await run.exited).toBe(0);
      expect(run.output()).toContain('"msg":"stopped"');

      // The data survives a restart: migrations are not re-applied.
      const again = runService({ PORT: String(port), DATA_DIR: dataDir });
      try {
        await waitReady(port, EMBEDDED_START_MS);
        expect(again.output()).toContain('"applied":[]');
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
