import express from 'express';
import request from 'supertest';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { requestLog } from '../../src/http/request-log.js';
import { createLogger } from '../../src/lib/logger.js';
import { createMetrics } from '../../src/lib/metrics.js';
import { LogCapture } from '../helpers/app.js';

// The request log's level rule on its own: an answered webhook is routine (debug) unless it
// took a second or more. The clock is the request log's own (performance.now); the route
// moves it forward instead of waiting.
describe('request log levels', () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  function appWith(elapsedMs: number) {
    const logs = new LogCapture();
    const app = express();
    app.use(
      requestLog(createLogger({ level: 'debug', destination: logs }), createMetrics()).middleware,
    );
    let offset = 0;
    const now = performance.now.bind(performance);
    vi.spyOn(performance, 'now').mockImplementation(() => now() + offset);
    app.post('/webhooks/tidsbanken', (_req, res) => {
      offset += elapsedMs;
      res.status(202).json({ ok: true });
    });
    app.get('/admin/x', (_req, res) => {
      res.json({ ok: true });
    });
    return { app, logs };
  }
  const levels = (logs: LogCapture) =>
    logs.lines
      .map((l) => JSON.parse(l) as { level: number; msg: string })
      .filter((l) => l.msg === 'request completed')
      .map((l) => l.level);

  it('a fast accepted webhook at debug, any other 2xx at info', async () => {
    const { app, logs } = appWith(5);
    await request(app).post('/webhooks/tidsbanken').expect(202);
    await request(app).get('/admin/x').expect(200);
    expect(levels(logs)).toEqual([20, 30]);
  });

  it('an accepted webhook that took a second or more at info', async () => {
    const { app, logs } = appWith(1500);
    await request(app).post('/webhooks/tidsbanken').expect(202);
    expect(levels(logs)).toEqual([30]);
  });
});
