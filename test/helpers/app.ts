import { Writable } from 'node:stream';
import { inject } from 'vitest';
import { createApp } from '../../src/app.js';
import { loadConfig, secretsOf, type Config } from '../../src/config.js';
import { createLogger, type Logger } from '../../src/lib/logger.js';
import { createMetrics, type Metrics } from '../../src/lib/metrics.js';
import { createTestDatabase, type TestDatabase } from './database.js';

/** Captures every log line the app writes, so tests can assert on logs. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    done();
  }
  get text(): string {
    return this.lines.join('\n');
  }
}

export interface TestApp {
  app: ReturnType<typeof createApp>;
  config: Readonly<Config>;
  database: TestDatabase;
  logger: Logger;
  logs: LogCapture;
  metrics: Metrics;
  close(): Promise<void>;
}

/** The real app on this test file's own database, with a config built from `env`. */
export async function createTestApp(env: Record<string, string> = {}): Promise<TestApp> {
  const config = loadConfig({ POLL_INTERVAL_MS: '0', ...env });
  const database = await createTestDatabase(inject('templateDatabase'));
  const logs = new LogCapture();
  const logger = createLogger({ level: 'debug', secrets: secretsOf(config), destination: logs });
  const metrics = createMetrics();
  const app = createApp({ config, db: database.db, logger, metrics });
  return { app, config, database, logger, logs, metrics, close: () => database.close() };
}
