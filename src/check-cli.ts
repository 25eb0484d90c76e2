import { formatCheckTable, runChecks } from './check.js';
import { loadConfigOrExit, secretsOf } from './config.js';
import { createLogger } from './lib/logger.js';

// `npm run check` (in the image: `node dist/src/check-cli.js`): the table on stdout; exit 0
// when every configured part works, 1 otherwise, 78 when the configuration is invalid.

const config = loadConfigOrExit();
// Only warnings and worse: the table is the output.
const logger = createLogger({ level: 'warn', secrets: secretsOf(config) });

runChecks(config, logger).then(
  (lines) => {
    process.stdout.write(formatCheckTable(lines));
    process.exit(lines.some((l) => l.status === 'fail') ? 1 : 0);
  },
  (err: unknown) => {
    logger.fatal({ err }, 'check failed');
    logger.flush();
    process.exit(1);
  },
);
