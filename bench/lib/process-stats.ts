// Memory and CPU of processes from Linux /proc: the service's process tree and the
// PostgreSQL backends serving one database. Elsewhere the numbers stay undefined.
import { readdir, readFile } from 'node:fs/promises';
import pg from 'pg';

const TICK = 100; // USER_HZ: 100 on every Linux this runs on

async function stat(pid: number): Promise<{ ppid: number; cpuSeconds: number } | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined;
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  // After "(comm) ": state ppid … utime is the 14th field of the line, stime the 15th.
  return { ppid: Number(fields[1]), cpuSeconds: (Number(fields[11]) + Number(fields[12])) / TICK };
}

async function statusKiB(pid: number, field: 'VmRSS' | 'VmHWM'): Promise<number> {
  const text = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match === null ? 0 : Number(match[1]);
}

/** `root` and every process below it. */
export async function processTree(root: number): Promise<number[]> {
  const parents = new Map<number, number>();
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const s = await stat(Number(entry));
    if (s !== undefined) parents.set(Number(entry), s.ppid);
  }
  const tree = [root];
  for (let i = 0; i < tree.length; i++) {
    for (const [pid, ppid] of parents) if (ppid === tree[i]) tree.push(pid);
  }
  return tree;
}

/**
 * Samples the resident memory of a process tree: the peak of the tree's summed RSS over the
 * samples, and the largest single-process high-water mark (VmHWM) seen.
 */
export function sampleTreeMemory(root: number, everyMs = 250) {
  let peakSumKiB = 0;
  let peakHwmKiB = 0;
  let cpuSeconds = 0;
  const cpuByPid = new Map<number, number>();
  const sample = async () => {
    let sum = 0;
    for (const pid of await processTree(root)) {
      sum += await statusKiB(pid, 'VmRSS');
      peakHwmKiB = Math.max(peakHwmKiB, await statusKiB(pid, 'VmHWM'));
      const s = await stat(pid);
      if (s !== undefined) cpuByPid.set(pid, s.cpuSeconds);
    }
    peakSumKiB = Math.max(peakSumKiB, sum);
    cpuSeconds = [...cpuByPid.values()].reduce((a, b) => a + b, 0);
  };
  let running = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(sample, sample);
  }, everyMs);
  return {
    async stop() {
      clearInterval(timer);
      await running;
      await sample();
      return {
        peakTreeRssMiB: Math.round(peakSumKiB / 1024),
        peakProcessHwmMiB: Math.round(peakHwmKiB / 1024),
        /** CPU of the tree's processes as last seen (a process that ended keeps its last sample). */
        cpuSeconds: +cpuSeconds.toFixed(1),
      };
    },
  };
}

/**
 * CPU seconds of the PostgreSQL backends serving `database`, sampled: each backend's last
 * seen CPU counts, also after the pool closed it. (The server is shared; its other backends
 * are not ours.)
 */
export function sampleDatabaseCpu(serverUrl: string, database: string, everyMs = 500) {
  const byPid = new Map<number, number>();
  const client = new pg.Client({ connectionString: serverUrl });
  const connected = client.connect();
  const sample = async () => {
    await connected;
    const { rows } = await client.query<{ pid: number }>(
      'select pid from pg_stat_activity where datname = $1',
      [database],
    );
    for (const { pid } of rows) {
      const s = await stat(pid);
      if (s !== undefined) byPid.set(pid, s.cpuSeconds);
    }
  };
  let running: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    running = running.then(sample, () => undefined);
  }, everyMs);
  const total = () => +[...byPid.values()].reduce((a, b) => a + b, 0).toFixed(1);
  return {
    /** CPU seconds so far (a fresh sample), for per-phase numbers. */
    async now(): Promise<number> {
      running = running.then(sample, () => undefined);
      await running.catch(() => undefined);
      return total();
    },
    async stop(): Promise<number> {
      clearInterval(timer);
      await running.catch(() => undefined);
      await sample().catch(() => undefined);
      await client.end();
      return total();
    },
  };
}
