import { loadConfigOrExit, secretsOf } from './config.js';
import { logStartupFailure } from './db/data-dir-lock.js';
import { migrateToLatest, openDatabase } from './db/database.js';
import { createLogger } from './lib/logger.js';

// `npm run migrate` (in the image: `node dist/src/migrate-cli.js`): applies pending migrations
// and exits, for a deploy step that migrates before the new replicas start (a Kubernetes
// init container or Job). The service migrates at start-up as well; both are idempotent and
// safe to run at once.

const config = loadConfigOrExit();
const logger = createLogger({ level: config.logLevel, secrets: secretsOf(config) });

async function main(): Promise<void> {
  const database = await openDatabase(config);
  try {
    const applied = await migrateToLatest(database.db);
    logger.info({ database: database.kind, applied }, 'migrations done');
  } finally {
    await database.close();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    logStartupFailure(logger, err, 'migration failed');
    process.exit(1);
  },
);
