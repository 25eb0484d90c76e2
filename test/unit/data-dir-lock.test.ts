import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  acquireDataDirLock,
  dataDirHolder,
  DataDirInUseError,
  LOCK_FILE,
} from '../../src/db/data-dir-lock.js';

// DATA_DIR/tbpo.lock: one process at a time in the embedded database's folder. The processes
// that open it for real (service, migrate, reconcile, check) are in startup.test.ts.

const dirs: string[] = [];
afterEach(async () => {
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

async function dataDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'tbpo-lock-'));
  dirs.push(dir);
  return dir;
}

async function writeLock(dir: string, content: object | string): Promise<void> {
  await writeFile(
    join(dir, LOCK_FILE),
    typeof content === 'string' ? content : JSON.stringify(content),
  );
}

const lockContent = async (dir: string) =>
  JSON.parse(await readFile(join(dir, LOCK_FILE), 'utf8')) as Record<string, unknown>;

describe('the DATA_DIR lock', () => {
  it('is taken with this pid and host, refused to a second taker, and removed on release', async () => {
    const dir = await dataDir();
    const lock = await acquireDataDirLock(dir);
    expect(await lockContent(dir)).toMatchObject({ pid: process.pid, hostname: hostname() });
    // The same folder from a process that runs (this test's parent stands in for it).
    await writeLock(dir, { pid: process.ppid, hostname: hostname(), since: 'x', command: 'main' });
    const refused = await acquireDataDirLock(dir).catch((err: unknown) => err);
    expect(refused).toBeInstanceOf(DataDirInUseError);
    expect((refused as DataDirInUseError).holder.pid).toBe(process.ppid);
    expect((refused as Error).message).toContain(`DATA_DIR ${dir} is in use`);
    expect(await dataDirHolder(dir)).toMatchObject({ pid: process.ppid, command: 'main' });
    // Release removes only its own lock.
    await lock.release();
    expect(existsSync(join(dir, LOCK_FILE))).toBe(true);
  });

  it('takes over a lock whose process is gone, an unreadable one, and its own pid from a previous run', async () => {
    const dir = await dataDir();
    const child = spawn(process.execPath, ['-e', '']);
    await new Promise((resolve) => child.on('exit', resolve));
    for (const stale of [
      { pid: child.pid, hostname: hostname(), since: 'x', command: 'main' },
      'not json',
      { pid: process.pid, hostname: hostname(), since: 'x', command: 'main' },
    ]) {
      await writeLock(dir, stale);
      expect(await dataDirHolder(dir)).toBeUndefined();
      const lock = await acquireDataDirLock(dir);
      expect(await lockContent(dir)).toMatchObject({ pid: process.pid });
      await lock.release();
      expect(existsSync(join(dir, LOCK_FILE))).toBe(false);
    }
  });

  it("counts another host's lock as held: its process cannot be asked", async () => {
    const dir = await dataDir();
    await writeLock(dir, { pid: 1, hostname: 'elsewhere', since: 'x', command: 'main' });
    await expect(acquireDataDirLock(dir)).rejects.toThrow(/in use by another process .* elsewhere/);
  });
});
