import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, inject } from 'vitest';
import { openPglite, type DatabaseHandle } from '../../src/db/database.js';
import { startFakePowerOffice, type FakePowerOffice } from '../fakes/poweroffice.js';
import { startFakeTidsbanken, type FakeTidsbanken } from '../fakes/tidsbanken.js';
import { createTestDatabase } from './database.js';

// Pieces for tests that run the real entry point (`src/main.ts` under tsx's loader) as a
// child process.

/**
 * Runs a TypeScript file in one node process (see the script for why not the tsx command):
 * a signal sent to the child reaches the service itself.
 */
export const TSX = join('test', 'helpers', 'run-ts');

/** A port nothing listens on right now, for a child service to take. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address !== null
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** Polls `/readyz` until it answers 200 (returned), or throws after `timeoutMs`. */
export async function waitReady(port: number, timeoutMs = 45_000): Promise<Response> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return res;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error('service did not become ready');
    await new Promise((r) => setTimeout(r, 200));
  }
}

export interface ChildService {
  child: ChildProcess;
  /** Resolves with the exit code, or -1 when a signal ended it. */
  exited: Promise<number | null>;
  /**
   * SIGKILL, SIGSTOP and SIGCONT go to the whole process group (tsx runs the service in a
   * grandchild node process); SIGTERM goes to tsx, which forwards it.
   */
  signal(sig: NodeJS.Signals): void;
  output(): string;
  /** The JSON log lines written so far. */
  logs(): Record<string, unknown>[];
}

/**
 * Spawns `command` with exactly `env` (plus PATH), collecting stdout and stderr together.
 * `exited` resolves to the exit code, or -1 when a signal ended the process.
 */
export function spawnCollecting(
  command: string,
  args: string[],
  env: Record<string, string>,
  options: { cwd?: string; detached?: boolean } = {},
): Pick<ChildService, 'child' | 'exited' | 'output'> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: options.detached ?? false,
  });
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.on('exit', (code, signal) => resolve(code ?? (signal === null ? null : -1))),
  );
  return { child, exited, output: () => output };
}

/** Runs `tsx src/main.ts` in its own process group with exactly `env` (plus PATH). */
export function runService(env: Record<string, string>): ChildService {
  const { child, exited, output } = spawnCollecting(
    TSX,
    ['src/main.ts'],
    { LOG_LEVEL: 'info', ...env },
    { detached: true },
  );
  return {
    child,
    exited,
    signal(sig) {
      try {
        process.kill(sig === 'SIGTERM' ? child.pid! : -child.pid!, sig);
      } catch {
        // already gone
      }
    },
    output,
    logs: () =>
      output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .flatMap((line) => {
          try {
            return [JSON.parse(line) as Record<string, unknown>];
          } catch {
            return [];
          }
        }),
  };
}

/** Where a child service keeps its state, on the database the tests run on. */
export interface ChildStore {
  /** DATABASE_URL or DATA_DIR, for the child's environment. */
  env: Record<string, string>;
  /**
   * The store opened in this process. On PGlite only once the child has stopped (one
   * process per data dir); `cleanup` closes it.
   */
  open(): Promise<DatabaseHandle>;
}

/**
 * With DATABASE_URL: a database of its own cloned from the template; else a fresh PGlite data
 * directory named `<dirPrefix>…`. `cleanup` drops or removes it.
 */
export async function childServiceStore(
  cleanup: (() => Promise<unknown>)[],
  dirPrefix: string,
): Promise<ChildStore> {
  if (process.env.DATABASE_URL) {
    const database = await createTestDatabase(inject('templateDatabase'));
    cleanup.push(() => database.close());
    return { env: { DATABASE_URL: database.url! }, open: () => Promise.resolve(database) };
  }
  const dir = await mkdtemp(join(tmpdir(), dirPrefix));
  cleanup.push(() => rm(dir, { recursive: true, force: true }));
  return {
    env: { DATA_DIR: dir },
    open: async () => {
      const handle = await openPglite(dir);
      cleanup.push(() => handle.close());
      return handle;
    },
  };
}

/**
 * The calling file's cleanup steps: each test pushes its own; after the test they run newest
 * first, and one that fails does not stop the rest.
 */
export function cleanupAfterEach(): (() => Promise<unknown>)[] {
  const steps: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    for (const fn of steps.splice(0).reverse()) await fn().catch(() => undefined);
  });
  return steps;
}

/** Both fakes, with these rate limits per second; `cleanup` closes them. */
export async function startFakes(
  cleanup: (() => Promise<unknown>)[],
  tbLimit = 50,
  poLimit = tbLimit,
): Promise<{ tb: FakeTidsbanken; po: FakePowerOffice }> {
  const tb = await startFakeTidsbanken({ rateLimitPerSecond: tbLimit });
  const po = await startFakePowerOffice({ rateLimitPerSecond: poLimit });
  cleanup.push(
    () => tb.close(),
    () => po.close(),
  );
  return { tb, po };
}
