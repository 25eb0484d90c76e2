// Profiling the service process of a bench (BENCH_PROFILE) and where the results go.
//
//   BENCH_PROFILE=cpu,heap   cpu: `node --cpu-prof` (written when the process exits);
//                            heap: bench/lib/heap-sampler.js, what is alive at the RSS peak;
//                            heap-all: the same sampler, every allocation since the start
//   BENCH_PROFILE_DIR        where the raw profiles go (default a fresh directory in /tmp; they
//                            are many MiB and stay out of the repository)
//
// After the run, `summarize()` writes a Markdown summary of each (bench/lib/profile-summary.ts)
// to bench/<bench>/profiles/<result name>-cpu.md / -heap.md.
import { mkdtempSync, mkdirSync, readdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { summarizeProfile } from './profile-summary.js';

export interface ServiceProfile {
  /** Node options for the service process (before its script). */
  nodeArgs: string[];
  /** Environment for the service process. */
  env: Record<string, string>;
  /** Writes the summaries; returns their paths (and the raw files'). */
  summarize(opts: {
    profilesDir: URL;
    name: string;
    title: string;
    /** The checkout the service ran from (module names are relative to it). */
    root: string;
  }): Promise<string[]>;
}

export function serviceProfile(): ServiceProfile {
  const kinds = new Set(
    (process.env.BENCH_PROFILE ?? '')
      .split(',')
      .map((k) => k.trim())
      .filter((k) => k !== ''),
  );
  for (const kind of kinds) {
    if (!['cpu', 'heap', 'heap-all'].includes(kind))
      throw new Error(`BENCH_PROFILE: unknown kind ${kind} (cpu, heap, heap-all)`);
  }
  if (kinds.size === 0) return { nodeArgs: [], env: {}, summarize: () => Promise.resolve([]) };
  const dir = process.env.BENCH_PROFILE_DIR ?? mkdtempSync(join(tmpdir(), 'tbpo-profile-'));
  mkdirSync(dir, { recursive: true });
  const heapFile = join(dir, 'service.heapprofile');
  const heap = kinds.has('heap') || kinds.has('heap-all');
  const nodeArgs = [
    ...(kinds.has('cpu') ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []),
    ...(heap ? ['--import', fileURLToPath(new URL('./heap-sampler.js', import.meta.url))] : []),
  ];
  const env: Record<string, string> = heap
    ? {
        BENCH_HEAP_PROFILE_FILE: heapFile,
        ...(kinds.has('heap-all') ? { BENCH_HEAP_PROFILE_ALL: '1' } : {}),
      }
    : {};
  return {
    nodeArgs,
    env,
    async summarize({ profilesDir, name, title, root }) {
      const written: string[] = [];
      mkdirSync(profilesDir, { recursive: true });
      const raw = readdirSync(dir).map((f) => join(dir, f));
      // CPU.<date>.<time>.<pid>.<thread>.<n>.cpuprofile: thread 0 is the main thread (a
      // module loader, tsx's, runs in a thread of its own).
      const cpu = raw.filter((f) => /\.\d+\.0\.\d+\.cpuprofile$/.test(f));
      const parts: [string, string | undefined][] = [
        ['cpu', cpu.at(-1)],
        [kinds.has('heap-all') ? 'heap-all' : 'heap', heap ? heapFile : undefined],
      ];
      for (const [kind, file] of parts) {
        if (file === undefined || !raw.includes(file)) continue;
        const out = new URL(`./${name}-${kind}.md`, profilesDir);
        await writeFile(out, await summarizeProfile(file, { title: `${title} (${kind})`, root }));
        written.push(fileURLToPath(out), file);
      }
      return written;
    },
  };
}

/**
 * BENCH_SERVICE_NODE_OPTIONS as the service's NODE_OPTIONS (e.g. deploy/'s
 * `--max-old-space-size=192`), without limiting the bench's other processes (the fakes hold
 * every seeded record).
 */
export function serviceNodeOptions(): Record<string, string> {
  const options = process.env.BENCH_SERVICE_NODE_OPTIONS;
  return options === undefined || options === '' ? {} : { NODE_OPTIONS: options };
}
