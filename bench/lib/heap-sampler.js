// Preloaded into the service by a bench (`node --import ./bench/lib/heap-sampler.js …`): a
// sampling heap profile of what is alive at the process's resident-memory peak. Plain
// JavaScript, so the compiled service (`node dist/src/main.js`) loads it without a transpiler.
//
//   BENCH_HEAP_PROFILE_FILE   where to write the profile (.heapprofile, Chrome DevTools format,
//                             plus a top-level "meta": RSS and heap when it was taken)
//   BENCH_HEAP_PROFILE_ALL=1  every sampled allocation since the start, also those already
//                             collected (where the allocation churn comes from), written at exit
//   BENCH_HEAP_PROFILE_INTERVAL  mean bytes between samples (default 65536)
//
// Peak mode: the V8 sampling heap profiler runs from the start; every 250 ms the RSS is read,
// and when it is 4 % (at least 8 MiB) above the RSS of the last profile taken, and that was
// more than a second ago, the profile of the objects alive now is taken and written over the
// last. The last one written is at (or within those 4 % below) the peak. Taking one costs a few
// milliseconds and a few MiB while it is serialized: a profiled run is not a measured run.
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import process from 'node:process';
import { setInterval } from 'node:timers';

const file = process.env.BENCH_HEAP_PROFILE_FILE;
if (file !== undefined && file !== '') {
  const all = process.env.BENCH_HEAP_PROFILE_ALL === '1';
  const session = new Session();
  session.connect();
  session.post('HeapProfiler.enable');
  session.post('HeapProfiler.startSampling', {
    samplingInterval: Number(process.env.BENCH_HEAP_PROFILE_INTERVAL ?? 65536),
    includeObjectsCollectedByMajorGC: all,
    includeObjectsCollectedByMinorGC: all,
  });
  const startedAt = Date.now();
  const take = (why) => {
    const memory = process.memoryUsage();
    // The in-process session answers synchronously (also inside an 'exit' handler).
    session.post('HeapProfiler.getSamplingProfile', (err, result) => {
      if (err) return;
      const meta = {
        mode: all ? 'all allocations since start' : 'alive at the RSS peak',
        why,
        secondsAfterStart: +((Date.now() - startedAt) / 1000).toFixed(1),
        rssMiB: Math.round(memory.rss / 2 ** 20),
        heapUsedMiB: Math.round(memory.heapUsed / 2 ** 20),
        heapTotalMiB: Math.round(memory.heapTotal / 2 ** 20),
        externalMiB: Math.round(memory.external / 2 ** 20),
        arrayBuffersMiB: Math.round(memory.arrayBuffers / 2 ** 20),
        samplingInterval: Number(process.env.BENCH_HEAP_PROFILE_INTERVAL ?? 65536),
      };
      writeFileSync(file, JSON.stringify({ ...result.profile, meta }));
    });
  };
  if (all) {
    process.on('exit', () => take('exit'));
  } else {
    let lastRss = 0;
    let lastAt = 0;
    setInterval(() => {
      const rss = process.memoryUsage.rss();
      if (rss > Math.max(lastRss * 1.04, lastRss + 8 * 2 ** 20) && Date.now() - lastAt > 1000) {
        lastRss = rss;
        lastAt = Date.now();
        take('new RSS peak');
      }
    }, 250).unref();
  }
}
