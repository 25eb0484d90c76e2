// A memory cgroup for the service process: `BENCH_MEMORY_LIMIT_MIB` runs it as in a container
// with that memory limit (deploy/ declares 512Mi), from its first instruction on — Node sizes its
// heap from the limit it sees at start (`process.constrainedMemory()`).
//
//   const cgroup = await createMemoryCgroup(512, 'tbpo_bench_reconcile');
//   const [command, args] = cgroup.wrap('node', ['dist/src/main.js']);  // spawn these
//   … await cgroup.stats() → limit, the cgroup's own peak, failed charges, OOM kills
//   await cgroup.remove()                                                // once the process ended
//
// The cgroup is a child of this process's own memory cgroup (/proc/self/cgroup): cgroup v1
// (`memory.limit_in_bytes`, also `memory.memsw.limit_in_bytes` where swap accounting is on) or
// v2 (`memory.max`, `memory.swap.max`). The wrapped command is `sh -c 'echo $$ > cgroup.procs
// && exec …'`: the shell joins the cgroup, then becomes the command, so every byte the command
// touches is charged there. Processes the command spawns stay in it too.
import { randomBytes } from 'node:crypto';
import { access, mkdir, readFile, rmdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface MemoryCgroupStats {
  version: 1 | 2;
  path: string;
  limitMiB: number;
  /** The cgroup's own high-water mark (v1 `max_usage_in_bytes`, v2 `memory.peak`): RSS plus
   * page cache and kernel memory charged to it; undefined where the kernel has no such file. */
  peakMiB: number | undefined;
  /** v1 `failcnt`: charges that hit the limit and had to reclaim first. */
  failedCharges: number | undefined;
  /** Processes of the cgroup the kernel's OOM killer ended. */
  oomKills: number | undefined;
}

export interface MemoryCgroup {
  path: string;
  version: 1 | 2;
  limitMiB: number;
  /** The command and arguments to spawn so the process runs in this cgroup from its start. */
  wrap(command: string, args: string[]): [string, string[]];
  stats(): Promise<MemoryCgroupStats>;
  /** Removes the cgroup; its processes must have ended (retries for a few seconds). */
  remove(): Promise<void>;
}

const MiB = 2 ** 20;

async function writable(path: string): Promise<boolean> {
  return access(path, 2 /* W_OK */).then(
    () => true,
    () => false,
  );
}

async function readNumber(path: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined);
  if (text === undefined || !/^\d+/.test(text.trim())) return undefined;
  return Number(text.trim().split(/\s/)[0]);
}

async function readKeyed(path: string, key: string): Promise<number | undefined> {
  const text = await readFile(path, 'utf8').catch(() => '');
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return match === null ? undefined : Number(match[1]);
}

/** This process's cgroup paths: the v1 memory hierarchy's and the v2 (unified) one's. */
async function ownCgroups(): Promise<{ v1?: string; v2?: string }> {
  const text = await readFile('/proc/self/cgroup', 'utf8').catch(() => '');
  const own: { v1?: string; v2?: string } = {};
  for (const line of text.split('\n')) {
    const [, controllers, path] = /^\d+:([^:]*):(.*)$/.exec(line) ?? [];
    if (path === undefined) continue;
    if (controllers === '') own.v2 = path;
    else if (controllers!.split(',').includes('memory')) own.v1 = path;
  }
  return own;
}

export async function createMemoryCgroup(limitMiB: number, prefix: string): Promise<MemoryCgroup> {
  if (!Number.isFinite(limitMiB) || limitMiB < 16)
    throw new Error(`BENCH_MEMORY_LIMIT_MIB must be a number of MiB ≥ 16, got ${limitMiB}`);
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  const bytes = String(Math.round(limitMiB * MiB));
  const own = await ownCgroups();
  const tried: string[] = [];

  if (own.v1 !== undefined) {
    const parent = join('/sys/fs/cgroup/memory', own.v1);
    if (await writable(parent)) {
      const path = join(parent, name);
      await mkdir(path);
      await writeFile(join(path, 'memory.limit_in_bytes'), bytes);
      // Memory + swap, where swap accounting is on: the container's limit has no swap either.
      await writeFile(join(path, 'memory.memsw.limit_in_bytes'), bytes).catch(() => undefined);
      return handle(1, path, limitMiB);
    }
    tried.push(`${parent} (cgroup v1): not writable`);
  }
  if (own.v2 !== undefined) {
    const parent = join('/sys/fs/cgroup', own.v2);
    if (
      (await writable(parent)) &&
      (await readFile(join(parent, 'cgroup.controllers'), 'utf8').catch(() => '')).includes(
        'memory',
      )
    ) {
      const path = join(parent, name);
      await mkdir(path);
      // The memory controller must be on for the parent's children (fails where the parent
      // holds processes itself and is not the root: cgroup v2's "no internal processes").
      if (
        !(await access(join(path, 'memory.max')).then(
          () => true,
          () => false,
        ))
      ) {
        await writeFile(join(parent, 'cgroup.subtree_control'), '+memory').catch(() => undefined);
      }
      if (
        await access(join(path, 'memory.max')).then(
          () => true,
          () => false,
        )
      ) {
        await writeFile(join(path, 'memory.max'), bytes);
        await writeFile(join(path, 'memory.swap.max'), '0').catch(() => undefined);
        return handle(2, path, limitMiB);
      }
      await rmdir(path).catch(() => undefined);
      tried.push(`${parent} (cgroup v2): the memory controller is not enabled for its children`);
    } else {
      tried.push(`${parent} (cgroup v2): not writable or no memory controller`);
    }
  }
  throw new Error(
    `BENCH_MEMORY_LIMIT_MIB=${limitMiB} needs a memory cgroup this process may create children in; ` +
      `tried: ${tried.length > 0 ? tried.join('; ') : 'no memory cgroup in /proc/self/cgroup'}. ` +
      'Run as root on a host (or a privileged container) with the cgroup v1 memory controller ' +
      'mounted at /sys/fs/cgroup/memory or a delegated cgroup v2 subtree, or unset it.',
  );
}

function handle(version: 1 | 2, path: string, limitMiB: number): MemoryCgroup {
  const file = (v1: string, v2: string) => join(path, version === 1 ? v1 : v2);
  return {
    path,
    version,
    limitMiB,
    wrap(command, args) {
      // $0 is the cgroup.procs file, "$@" the command: nothing to quote.
      return [
        'sh',
        ['-c', 'echo $$ > "$0" && exec "$@"', join(path, 'cgroup.procs'), command, ...args],
      ];
    },
    async stats() {
      const peak = await readNumber(file('memory.max_usage_in_bytes', 'memory.peak'));
      return {
        version,
        path,
        limitMiB,
        peakMiB: peak === undefined ? undefined : Math.round(peak / MiB),
        failedCharges: version === 1 ? await readNumber(join(path, 'memory.failcnt')) : undefined,
        oomKills: await readKeyed(file('memory.oom_control', 'memory.events'), 'oom_kill'),
      };
    },
    async remove() {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(path);
          return;
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
          if (attempt >= 50) throw err;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
    },
  };
}
