import { readFileSync, unlinkSync } from 'node:fs';
import { mkdir, readFile, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { basename, join } from 'node:path';

// The embedded database (PGlite in DATA_DIR) takes one process at a time: a second one
// opening the same folder (`npm run migrate` or `npm run reconcile` while the service runs, a
// second `npm start`) writes the same files unsynchronised and can corrupt them. Whoever
// opens the folder first holds DATA_DIR/tbpo.lock (its pid, host and start), created
// exclusively; it is removed when the holder closes the database or exits. A lock whose
// process is gone (kill -9, a crash, a container restarted) is taken over.

export const LOCK_FILE = 'tbpo.lock';

interface LockContent {
  pid: number;
  hostname: string;
  since: string;
  /** The holder's entry file without extension: `main` (the service), `migrate-cli`, ... */
  command: string;
}

/** DATA_DIR is held by another running process: this one must not open it. */
export class DataDirInUseError extends Error {
  constructor(
    readonly dataDir: string,
    readonly holder: LockContent,
  ) {
    super(
      `DATA_DIR ${dataDir} is in use by another process (pid ${holder.pid} on ${holder.hostname}, ` +
        `since ${holder.since}): the embedded database takes one process at a time. Stop that ` +
        `process first (or use POST /admin/reconcile on the running service), or set ` +
        `DATABASE_URL to share a PostgreSQL. If no such process runs, delete ` +
        `${join(dataDir, LOCK_FILE)}.`,
    );
    this.name = 'DataDirInUseError';
  }
}

export interface DataDirLock {
  release(): Promise<void>;
}

/** Who holds DATA_DIR now: a live process's lock, or undefined (free, or a stale lock). */
export async function dataDirHolder(dataDir: string): Promise<LockContent | undefined> {
  const content = await readLock(join(dataDir, LOCK_FILE));
  return content !== undefined && isLive(content) ? content : undefined;
}

/** Takes DATA_DIR for this process, or throws DataDirInUseError. */
export async function acquireDataDirLock(dataDir: string): Promise<DataDirLock> {
  await mkdir(dataDir, { recursive: true });
  const path = join(dataDir, LOCK_FILE);
  const mine: LockContent = {
    pid: process.pid,
    hostname: hostname(),
    since: new Date().toISOString(),
    command: basename(process.argv[1] ?? '').replace(/\.[cm]?[jt]s$/, ''),
  };
  const text = JSON.stringify(mine);
  for (let attempt = 0; ; attempt++) {
    try {
      await writeFile(path, text, { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt >= 3) throw err;
    }
    const holder = await readLock(path);
    if (holder !== undefined && isLive(holder)) throw new DataDirInUseError(dataDir, holder);
    // Stale (its process is gone) or unreadable: taken over.
    await unlink(path).catch(() => undefined);
  }
  // Two processes taking over one stale lock at once: only the one whose content stayed wins.
  if ((await readFile(path, 'utf8').catch(() => '')) !== text) {
    const holder = await readLock(path);
    throw new DataDirInUseError(
      dataDir,
      holder ?? { pid: 0, hostname: 'unknown', since: 'unknown', command: 'unknown' },
    );
  }
  let released = false;
  // process.exit() (every CLI's end, a fatal error) skips close(): the lock goes anyway.
  const onExit = () => {
    if (!released && ownedBy(path, text)) unlinkSync(path);
  };
  process.on('exit', onExit);
  return {
    async release() {
      if (released) return;
      released = true;
      process.off('exit', onExit);
      if (ownedBy(path, text)) await unlink(path).catch(() => undefined);
    },
  };
}

function ownedBy(path: string, text: string): boolean {
  try {
    return readFileSync(path, 'utf8') === text;
  } catch {
    return false;
  }
}

async function readLock(path: string): Promise<LockContent | undefined> {
  try {
    const value = JSON.parse(await readFile(path, 'utf8')) as Partial<LockContent>;
    if (typeof value.pid !== 'number' || !Number.isInteger(value.pid) || value.pid <= 0) {
      return undefined;
    }
    return {
      pid: value.pid,
      hostname: typeof value.hostname === 'string' ? value.hostname : 'unknown',
      since: typeof value.since === 'string' ? value.since : 'unknown',
      command: typeof value.command === 'string' ? value.command : 'unknown',
    };
  } catch {
    return undefined;
  }
}

/**
 * Whether the lock's process still runs. Only a process of this host can be asked; a lock
 * with this process's own pid is a previous run's (a container restarted: the service is
 * pid 1 again). A lock from another host (a volume moved between machines) counts as live:
 * its holder cannot be asked, and taking it could corrupt the folder.
 */
function isLive(lock: LockContent): boolean {
  if (lock.hostname !== hostname()) return true;
  if (lock.pid === process.pid) return false;
  try {
    process.kill(lock.pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * A start-up failure as one JSON line: DATA_DIR in use names the folder and its holder (the
 * message says what to do); anything else is logged with `fallback` and the error.
 */
export function logStartupFailure(
  logger: { fatal(obj: object, msg: string): void; flush(): void },
  err: unknown,
  fallback: string,
): void {
  if (err instanceof DataDirInUseError) {
    logger.fatal(
      {
        dataDir: err.dataDir,
        holderPid: err.holder.pid,
        holderHostname: err.holder.hostname,
        holderSince: err.holder.since,
        holderCommand: err.holder.command,
      },
      err.message,
    );
  } else {
    logger.fatal({ err }, fallback);
  }
  logger.flush();
}
