import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { WRITE_PRIVILEGES, formatCheckTable, runChecks, type CheckLine } from '../../src/check.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/lib/logger.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { RECORD_ADAPTERS, recordTypesOf } from '../../src/record-types.js';
import { LogCapture } from '../helpers/app.js';
import { TSX } from '../helpers/child-service.js';
import { createTestDatabase, type TestDatabase } from '../helpers/database.js';
import { fakesEnv } from '../helpers/fakes-env.js';

// `npm run check` against the two fake APIs: what it reports and that it exits non-zero on
// any problem (the CLI exits 1 exactly when a line is FAIL).

let tb: FakeTidsbanken;
let po: FakePowerOffice;
let database: TestDatabase;
beforeAll(async () => {
  // On PostgreSQL: this file's own migrated database (url undefined on the embedded one).
  database = await createTestDatabase(inject('templateDatabase'));
  tb = await startFakeTidsbanken({ rateLimitPerSecond: 1000 });
  po = await startFakePowerOffice({ rateLimitPerSecond: 1000 });
  tb.seedAnsatt({ Id: 41, Fornavn: 'Kari', Etternavn: 'Nordmann' });
  tb.seedAnsatt({ Id: 42, Fornavn: 'Ola', Etternavn: 'Nordmann' });
  po.seedCustomer({ Name: 'Firma AS' });
});
afterAll(async () => {
  await tb.close();
  await po.close();
  await database.close();
});

function env(overrides: Record<string, string | undefined> = {}): Record<string, string> {
  const all: Record<string, string | undefined> = {
    ...fakesEnv(tb, po),
    TIDSBANKEN_WEBHOOK_SECRET: 'whsec_c2VjcmV0LXNlY3JldC1zZWNyZXQ=',
    DATABASE_URL: database.url,
    // Embedded: a DATA_DIR of its own that no service has created yet (never the checkout's ./data).
    DATA_DIR: join(tmpdir(), `tbpo-check-none-${process.pid}`),
    ...overrides,
  };
  return Object.fromEntries(
    Object.entries(all).filter((e): e is [string, string] => e[1] !== undefined),
  );
}

async function check(overrides: Record<string, string | undefined> = {}): Promise<CheckLine[]> {
  const logger = createLogger({ level: 'warn', destination: new LogCapture() });
  return runChecks(loadConfig(env(overrides)), logger);
}

const line = (lines: CheckLine[], name: string) => lines.find((l) => l.check === name);

/** `npm run check` as a user runs it: the CLI in a child process with only this environment. */
function runCli(
  environment: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(TSX, ['src/check-cli.ts'], {
      env: { PATH: process.env.PATH ?? '', ...environment },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('npm run check', () => {
  it('with both sides configured and working: every line OK or off, one page of each type read', async () => {
    tb.clearRequests();
    po.clearRequests();
    const lines = await check();
    expect(lines.filter((l) => l.status === 'fail')).toEqual([]);
    expect(line(lines, 'tidsbanken auth')?.status).toBe('ok');
    expect(line(lines, 'tidsbanken Ansatt')).toMatchObject({
      status: 'ok',
      detail: '2 on the first page, e.g. Id 41',
    });
    expect(line(lines, 'tidsbanken Kunde')).toMatchObject({ status: 'ok' });
    expect(line(lines, 'poweroffice token')?.status).toBe('ok');
    expect(line(lines, 'poweroffice privileges')).toMatchObject({ status: 'ok' });
    expect(line(lines, 'poweroffice Customer')?.detail).toMatch(
      /^1 on the first page, e.g. Id \d+$/,
    );
    expect(line(lines, 'poweroffice Employee')).toMatchObject({ status: 'ok' });
    expect(line(lines, 'tidsbanken webhook secret')).toMatchObject({ status: 'ok' });
    expect(line(lines, 'poweroffice webhook secret')).toMatchObject({ status: 'off' });
    expect(line(lines, 'database')?.status).toBe('ok');
    // Reads only: nothing was written to either system.
    const writes = [...tb.requests, ...po.requests].filter(
      (r) => r.method !== 'GET' && !/token/i.test(r.path),
    );
    expect(writes).toEqual([]);
    expect(po.requests.some((r) => r.path.endsWith('/ClientIntegrationInformation'))).toBe(true);
    expect(formatCheckTable(lines)).toContain('All configured parts work.');
  });

  it('reports a refused key, a missing privilege and a partly configured side, each on its own FAIL line', async () => {
    const saved = po.privileges;
    po.privileges = ['Customer_Full', 'Project_Full'];
    try {
      const lines = await check({
        TIDSBANKEN_API_KEY: 'wrong-key',
        POWEROFFICE_WEBHOOK_SECRET: undefined,
      });
      expect(line(lines, 'tidsbanken auth')).toMatchObject({ status: 'fail' });
      expect(line(lines, 'tidsbanken auth')?.detail).toMatch(/401/);
      expect(line(lines, 'poweroffice privileges')).toMatchObject({ status: 'fail' });
      expect(line(lines, 'poweroffice privileges')?.detail).toMatch(/employee needs Employee_Full/);
      // Without the privilege PowerOffice refuses the read itself (403): the page line says so.
      expect(line(lines, 'poweroffice Employee')).toMatchObject({ status: 'fail' });
      expect(line(lines, 'poweroffice Employee')?.detail).toMatch(
        /HTTP 403: .*\(a privilege is missing\)$/,
      );
      expect(line(lines, 'poweroffice Customer')).toMatchObject({ status: 'ok' });
      const table = formatCheckTable(lines);
      expect(table).toMatch(/3 problem\(s\)/);
      expect(table).not.toContain('wrong-key');
    } finally {
      po.privileges = saved;
    }

    const partly = await check({ POWEROFFICE_CLIENT_KEY: undefined });
    expect(line(partly, 'poweroffice configuration')).toEqual({
      check: 'poweroffice configuration',
      status: 'fail',
      detail: 'partly configured: set POWEROFFICE_CLIENT_KEY',
    });
  });

  it.runIf(process.env.DATABASE_URL)('reports an unreachable database', async () => {
    const lines = await check({ DATABASE_URL: 'postgres://postgres@127.0.0.1:1/nothing' });
    expect(line(lines, 'database')).toMatchObject({ status: 'fail' });
    expect(line(lines, 'database')?.detail).toMatch(/^not reachable/);
  });

  it('the CLI prints the table and exits 0 only when every configured part works; 1 on a FAIL; 78 on a bad variable', async () => {
    const ok = await runCli(env());
    expect(ok.stdout).toMatch(/^check\s+result\s+detail$/m);
    expect(ok.stdout).toMatch(/^tidsbanken Ansatt\s+OK\s+2 on the first page, e\.g\. Id 41$/m);
    expect(ok.stdout).toContain('All configured parts work.');
    expect(ok.code).toBe(0);

    const refused = await runCli(env({ TIDSBANKEN_API_KEY: 'wrong-key-123' }));
    expect(refused.stdout).toMatch(/^tidsbanken auth\s+FAIL\s+HTTP 401/m);
    expect(refused.stdout).toMatch(/1 problem\(s\)/);
    expect(refused.code).toBe(1);
    expect(refused.stdout + refused.stderr).not.toContain('wrong-key-123');

    // A whsec_ secret that is not base64 could never verify: a configuration error, named
    // without its value.
    const invalid = await runCli(
      env({ POLL_INTERVAL_MS: 'soon', POWEROFFICE_WEBHOOK_SECRET: 'whsec_%%not-base64%%' }),
    );
    expect(invalid.code).toBe(78);
    const output = invalid.stderr + invalid.stdout;
    expect(output).toContain('POLL_INTERVAL_MS');
    expect(output).toContain('POWEROFFICE_WEBHOOK_SECRET');
    expect(output).not.toContain('not-base64');
  });

  it('checks a page and the write privileges of every PowerOffice record type in the registry', async () => {
    const lines = await check();
    for (const type of recordTypesOf('poweroffice')) {
      expect(WRITE_PRIVILEGES[type], `${type} has its write privileges`).toBeDefined();
      expect(line(lines, `poweroffice ${RECORD_ADAPTERS[type].label}`)?.status).toBe('ok');
    }
    for (const type of recordTypesOf('tidsbanken')) {
      expect(line(lines, `tidsbanken ${RECORD_ADAPTERS[type].label}`)?.status).toBe('ok');
    }
  });
});
