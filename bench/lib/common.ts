// Shared bench helpers: scratch databases, signed webhooks, percentiles, machine facts.
// Only what more than one bench under bench/ needs.
import { execSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { cpus, loadavg, totalmem } from 'node:os';
import pg from 'pg';
import { Webhook } from 'standardwebhooks';

export const SERVER_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

export function databaseUrl(name: string): string {
  const url = new URL(SERVER_URL);
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin(text: string): Promise<void> {
  const client = new pg.Client({ connectionString: SERVER_URL });
  await client.connect();
  try {
    await client.query(text);
  } finally {
    await client.end();
  }
}

/** A fresh, empty database on the bench server; `drop()` removes it (also mid-use). */
export async function createScratchDatabase(
  prefix: string,
): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${randomBytes(4).toString('hex')}`;
  await admin(`create database ${name}`);
  return {
    name,
    url: databaseUrl(name),
    drop: () => admin(`drop database if exists ${name} with (force)`),
  };
}

export function newWebhookSecret(): string {
  return `whsec_${randomBytes(32).toString('base64')}`;
}

/** POSTs one Standard-Webhooks-signed event (README "Endpoints"); resolves with the status. */
export async function postWebhook(
  url: string,
  secret: string,
  type: string,
  data: Record<string, unknown>,
): Promise<number> {
  const id = `msg_${randomUUID()}`;
  const now = new Date();
  const body = JSON.stringify({ type, timestamp: now.toISOString(), data });
  const signature = new Webhook(secret).sign(id, now, body);
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'webhook-id': id,
      'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
      'webhook-signature': signature,
    },
    body,
  });
  await res.arrayBuffer();
  return res.status;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export async function waitFor(
  what: string,
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  everyMs = 20,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}`);
    await sleep(everyMs);
  }
}

export function machine(): Record<string, string | number> {
  const sh = (cmd: string) => {
    try {
      return execSync(cmd, { encoding: 'utf8' }).trim();
    } catch {
      return 'unknown';
    }
  };
  return {
    nproc: sh('nproc'),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    memoryGiB: +(totalmem() / 2 ** 30).toFixed(1),
    memFree: sh('free -h | awk \'/^Mem:/ {print $2" total, "$7" available"}\''),
    node: process.version,
    loadAvg1m: +(loadavg()[0] ?? 0).toFixed(2),
  };
}

/** A Markdown table (headers + rows) for stdout and the README. */
export function table(rows: (string | number)[][]): string {
  return rows.map((r) => `| ${r.map(String).join(' | ')} |`).join('\n');
}

export const fmt = (n: number, digits = 1) =>
  Number.isFinite(n) ? (Number.isInteger(n) ? String(n) : n.toFixed(digits)) : String(n);

/** A bench's entry point: exits with `process.exitCode` (0 unless set), or 1 with the error. */
export function runBench(main: () => Promise<unknown>): void {
  main().then(
    () => process.exit(process.exitCode ?? 0),
    (err: unknown) => {
      process.stderr.write(
        `bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
      );
      process.exit(1);
    },
  );
}
