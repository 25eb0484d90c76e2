import { loadConfigOrExit, secretsOf } from './config.js';
import { logStartupFailure } from './db/data-dir-lock.js';
import { createLogger } from './lib/logger.js';
import { createRuntime } from './runtime.js';
import type { ReconcileProgress } from './sync/reconcile.js';
import { startSyncWorker } from './sync/worker.js';

// `npm run reconcile`: one reconcile in this process, with a progress line on stderr, then
// exit 0 (done) or 1 (failed). Same configuration and database as the service.
//
// It reads through its own pacers: while the service is running too, both send to the same
// vendor limit, so give this process a lower *_RATE_LIMIT_PER_SECOND (or use POST
// /admin/reconcile, which reads through the service's own pacers). It runs a sync worker so
// that what it reads is processed while it waits; it runs no dispatcher: the commands it
// queues are sent by the service (the dispatcher holder of each system).

const config = loadConfigOrExit();
const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config) });

async function main(): Promise<number> {
  // A heartbeat every 2 s keeps the progress line moving (it is also the stored progress).
  let runtime;
  try {
    runtime = await createRuntime({ config, logger, reconcileHeartbeatMs: 2000 });
  } catch (err) {
    // Not started (e.g. DATA_DIR held by the running service): one JSON line, like the service.
    logStartupFailure(logger, err, 'start-up failed');
    return 1;
  }
  const { reconciler } = runtime;
  if (runtime.pollers.length === 0) {
    process.stderr.write(
      'reconcile: neither Tidsbanken nor PowerOffice has credentials configured; nothing to read.\n',
    );
    await runtime.close();
    return 1;
  }
  // Only the worker runs here (the service is not started): no timed polling, only the
  // reconcile's full reads, and no dispatcher.
  const worker = startSyncWorker({
    db: runtime.database.db,
    config,
    logger,
    clients: runtime.clients,
    metrics: runtime.metrics,
  });
  const bar = createProgressBar(process.stderr);
  reconciler.onProgress(bar.update);

  let interrupted = false;
  const onSignal = () => {
    interrupted = true;
    void reconciler.stop();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  let code = 1;
  try {
    const run = await reconciler.run();
    bar.finish();
    if (run.status === 'done') {
      const p = run.progress as ReconcileProgress;
      process.stderr.write(
        `reconcile ${run.id} done: ${p.recordsRead} records read, ${p.linksMade ?? 0} links made, ` +
          `${p.conflicts ?? 0} conflicts, ${p.commandsQueued ?? 0} commands queued\n`,
      );
      code = 0;
    } else {
      process.stderr.write(`reconcile ${run.id} failed: ${run.error ?? 'unknown error'}\n`);
    }
  } catch (err) {
    bar.finish();
    process.stderr.write(`reconcile: ${err instanceof Error ? err.message : String(err)}\n`);
  } finally {
    if (interrupted) process.stderr.write('reconcile: interrupted\n');
    await worker.stop();
    await runtime.close();
  }
  return code;
}

/**
 * One updating line when `stream` is a terminal; otherwise a plain line on every phase or
 * type change and at most every 5 s, so a CI log stays readable.
 */
function createProgressBar(stream: NodeJS.WriteStream) {
  const started = Date.now();
  const tty = stream.isTTY;
  let lastLine = '';
  let lastPrinted = 0;
  let lastKey = '';
  const render = (p: ReconcileProgress): string => {
    const done = p.read.filter((r) => r.status === 'done').length;
    const width = 20;
    const filled = Math.round((done / Math.max(1, p.read.length)) * width);
    const current = p.read.find((r) => r.status === 'reading');
    const elapsed = Math.round((Date.now() - started) / 1000);
    const parts = [
      `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}]`,
      `${done}/${p.read.length} types`,
      p.phase,
      current !== undefined ? `${current.system}/${current.recordType}` : '',
      `${p.recordsRead} records`,
      p.linksMade !== null ? `${p.linksMade} links, ${p.conflicts ?? 0} conflicts` : '',
      `${elapsed}s`,
    ];
    return parts.filter(Boolean).join('  ');
  };
  return {
    update: (p: ReconcileProgress) => {
      const line = render(p);
      if (tty) {
        stream.write(`\r\x1b[2K${line}`);
        lastLine = line;
        return;
      }
      const key = `${p.phase}:${p.read.map((r) => r.status).join(',')}`;
      if (key !== lastKey || Date.now() - lastPrinted >= 5000) {
        stream.write(`${line}\n`);
        lastKey = key;
        lastPrinted = Date.now();
      }
    },
    finish: () => {
      if (tty && lastLine !== '') stream.write('\n');
    },
  };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(
      `reconcile failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exit(1);
  },
);
