import type { Config } from './config.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { DataDirInUseError, dataDirHolder } from './db/data-dir-lock.js';
import { openDatabase, pendingMigrations, pingDatabase } from './db/database.js';
import type { SystemName } from './db/schema.js';
import { UpstreamError } from './errors.js';
import type { Logger } from './lib/logger.js';
import { createMetrics } from './lib/metrics.js';
import { Pacer } from './lib/pacer.js';
import { PowerOfficeClient } from './poweroffice/client.js';
import { recordIdOf, type Clients, type RecordType } from './record-adapter.js';
import { RECORD_ADAPTERS, recordTypesOf } from './record-types.js';
import { TidsbankenClient } from './tidsbanken/client.js';

// `npm run check`: every configured part tried once with the configured credentials, one line
// per check, before going live. Reads only: nothing is written to either system. An embedded
// database is not opened (it belongs to one process, possibly the running service).

export type CheckStatus = 'ok' | 'fail' | 'off';

export interface CheckLine {
  check: string;
  status: CheckStatus;
  detail: string;
}

// Privileges a write needs, any one of them (the "Auth roles" of each endpoint in the v2
// spec; contact persons also under the customer/supplier privileges). Every PowerOffice record
// type of the registry needs an entry (test/integration/check.test.ts).
export const WRITE_PRIVILEGES: Partial<Record<RecordType, readonly string[]>> = {
  employee: ['Employee_Full'],
  customer: ['Customer_Full'],
  contactperson: ['ContactPerson_Full', 'Customer_Full', 'Supplier_Full'],
  project: ['Project_Full'],
};

const CHECK_TIMEOUT_MS = 15_000;

export async function runChecks(config: Readonly<Config>, logger: Logger): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  const metrics = createMetrics();
  const clientOptions = { logger, metrics, timeoutMs: CHECK_TIMEOUT_MS, maxAttempts: 1 };
  const clients: Clients = {};

  const tb = config.tidsbanken;
  const tbLine = configurationLine(
    'tidsbanken',
    tb,
    'TIDSBANKEN_API_KEY unset: the Tidsbanken side is off',
  );
  if (tbLine !== undefined) lines.push(tbLine);
  else if (tb.credentials !== undefined) {
    clients.tidsbanken = new TidsbankenClient({
      config: tb.credentials,
      pacer: new Pacer('tidsbanken', tb.rateLimitPerSecond),
      ...clientOptions,
    });
  }

  const po = config.poweroffice;
  const poLine = configurationLine(
    'poweroffice',
    po,
    'POWEROFFICE_*_KEY unset: the PowerOffice side is off',
  );
  if (poLine !== undefined) lines.push(poLine);
  else if (po.credentials !== undefined) {
    clients.poweroffice = new PowerOfficeClient({
      config: po.credentials,
      pacer: new Pacer('poweroffice', po.rateLimitPerSecond),
      ...clientOptions,
    });
  }

  if (clients.tidsbanken !== undefined) {
    // Tidsbanken has no token: the first read shows whether the keys are accepted.
    lines.push(...(await checkRecordTypes('tidsbanken', clients, 'tb-key and subscription key')));
  }
  if (clients.poweroffice !== undefined) lines.push(...(await checkPowerOffice(clients)));
  for (const system of ['tidsbanken', 'poweroffice'] as const) {
    lines.push(webhookSecretLine(config, system));
  }
  lines.push(await checkDatabase(config));
  return lines;
}

/**
 * A side's configuration line when it is not fully configured: partly configured fails,
 * no credentials at all is off. Undefined when its credentials are all set.
 */
function configurationLine(
  system: SystemName,
  side: { credentialsMissing: readonly string[]; credentials: unknown },
  offDetail: string,
): CheckLine | undefined {
  if (side.credentialsMissing.length > 0) {
    return {
      check: `${system} configuration`,
      status: 'fail',
      detail: `partly configured: set ${side.credentialsMissing.join(' and ')}`,
    };
  }
  if (side.credentials === undefined) {
    return { check: `${system} configuration`, status: 'off', detail: offDetail };
  }
  return undefined;
}

/** The OAuth token first: only with a token do the privileges and record types say anything. */
async function checkPowerOffice(clients: Clients): Promise<CheckLine[]> {
  const client = clients.poweroffice!;
  try {
    await client.token.getToken();
  } catch (err) {
    return [{ check: 'poweroffice token', status: 'fail', detail: describe(err) }];
  }
  return [
    { check: 'poweroffice token', status: 'ok', detail: 'OAuth token issued' },
    await checkPrivileges(client),
    ...(await checkRecordTypes('poweroffice', clients)),
  ];
}

function webhookSecretLine(config: Readonly<Config>, system: SystemName): CheckLine {
  const secrets = config[system].webhookSecrets ?? [];
  const name = `${system.toUpperCase()}_WEBHOOK_SECRET`;
  return secrets.length > 0
    ? {
        check: `${system} webhook secret`,
        status: 'ok',
        detail: `${secrets.length} secret(s) set`,
      }
    : {
        check: `${system} webhook secret`,
        status: 'off',
        detail: `${name} unset: POST /webhooks/${system} answers 503 (the poller still syncs)`,
      };
}

async function checkRecordTypes(
  system: SystemName,
  clients: Clients,
  authLabel?: string,
): Promise<CheckLine[]> {
  const lines: CheckLine[] = [];
  let authChecked = authLabel === undefined;
  for (const type of recordTypesOf(system)) {
    const adapter = RECORD_ADAPTERS[type];
    const api = adapter.connect(clients);
    if (api === undefined) continue;
    const check = `${system} ${adapter.label}`;
    try {
      // One page only: the iterator is closed after its first page.
      let page: Record<string, unknown>[] = [];
      let rejected = 0;
      for await (const first of api.listChangedSince(undefined, { priority: 'read' })) {
        page = first.records;
        rejected = first.rejected.length;
        break;
      }
      const sample = page.length > 0 ? recordIdOf(page[0]!) : undefined;
      if (!authChecked) {
        lines.push({ check: `${system} auth`, status: 'ok', detail: `${authLabel} accepted` });
        authChecked = true;
      }
      lines.push({
        check,
        status: 'ok',
        detail:
          `${page.length} on the first page${sample !== undefined ? `, e.g. Id ${sample}` : ''}` +
          (rejected > 0 ? ` (${rejected} unreadable: set aside, see GET /admin/events)` : ''),
      });
    } catch (err) {
      const refused = err instanceof UpstreamError && [401, 403].includes(err.upstreamStatus ?? 0);
      if (!authChecked && refused && err.upstreamStatus === 401) {
        lines.push({ check: `${system} auth`, status: 'fail', detail: describe(err) });
        return lines;
      }
      lines.push({ check, status: 'fail', detail: describe(err) });
    }
  }
  return lines;
}

async function checkPrivileges(client: PowerOfficeClient): Promise<CheckLine> {
  const check = 'poweroffice privileges';
  try {
    const info = await client.getClientIntegrationInformation({ priority: 'read' });
    const valid = new Set(info.ValidPrivileges ?? []);
    const missing = Object.entries(WRITE_PRIVILEGES)
      .filter(([, anyOf]) => !anyOf.some((p) => valid.has(p)))
      .map(([type, anyOf]) => `${type} needs ${anyOf.join(' or ')}`);
    const client_ = info.ClientName ?? 'the client';
    if (missing.length > 0) {
      return {
        check,
        status: 'fail',
        detail: `${client_}: missing ${missing.join('; ')} (grant them to the integration in PowerOffice Go)`,
      };
    }
    const invalid = info.InvalidPrivileges ?? [];
    return {
      check,
      status: 'ok',
      detail:
        `${client_}: ${[...valid].sort().join(', ')}` +
        (invalid.length > 0 ? ` (not usable with its subscriptions: ${invalid.join(', ')})` : ''),
    };
  } catch (err) {
    return { check, status: 'fail', detail: describe(err) };
  }
}

async function checkDatabase(config: Readonly<Config>): Promise<CheckLine> {
  const check = 'database';
  if (config.databaseUrl === undefined) return checkEmbeddedDatabase(config);
  let handle;
  try {
    handle = await openDatabase(config);
    await pingDatabase(handle.db);
    const pending = await pendingMigrations(handle.db);
    return pending.length === 0
      ? { check, status: 'ok', detail: 'PostgreSQL reachable, migrations done' }
      : {
          check,
          status: 'fail',
          detail: `PostgreSQL reachable, ${pending.length} migration(s) pending: run \`npm run migrate\` (or start the service)`,
        };
  } catch (err) {
    return { check, status: 'fail', detail: `not reachable: ${describe(err)}` };
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

/**
 * The embedded database in DATA_DIR. Held by a running process (one at a time, see
 * db/data-dir-lock.ts): not opened, reported as in use. Free: opened for a moment to read
 * which migrations it has. Not there yet: the service creates it at its first start.
 */
async function checkEmbeddedDatabase(config: Readonly<Config>): Promise<CheckLine> {
  const check = 'database';
  const where = `embedded PostgreSQL in ${config.dataDir}`;
  const production = 'Set DATABASE_URL for production.';
  const inUse = (holder: { pid: number; command: string }): CheckLine => ({
    check,
    status: 'ok',
    detail:
      `${where}: in use by ${holder.command === 'main' ? 'the running service' : `a running ${holder.command}`} ` +
      `(pid ${holder.pid}), not opened here; the service migrates it at start. ${production}`,
  });
  const holder = await dataDirHolder(config.dataDir);
  if (holder !== undefined) return inUse(holder);
  if (!existsSync(join(config.dataDir, 'PG_VERSION'))) {
    return {
      check,
      status: 'ok',
      detail: `${where}: not created yet; the service creates and migrates it at its first start. ${production}`,
    };
  }
  let handle;
  try {
    handle = await openDatabase(config);
    const pending = await pendingMigrations(handle.db);
    return pending.length === 0
      ? { check, status: 'ok', detail: `${where}: migrations done. ${production}` }
      : {
          check,
          status: 'fail',
          detail: `${where}: ${pending.length} migration(s) pending: run \`npm run migrate\` (or start the service)`,
        };
  } catch (err) {
    // Taken by a process that started meanwhile.
    if (err instanceof DataDirInUseError) return inUse(err.holder);
    return { check, status: 'fail', detail: `${where}: cannot be opened: ${describe(err)}` };
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function describe(err: unknown): string {
  if (err instanceof UpstreamError) {
    const status = err.upstreamStatus !== undefined ? `HTTP ${err.upstreamStatus}: ` : '';
    const hint =
      err.upstreamStatus === 401
        ? ' (credentials refused: check the keys)'
        : err.upstreamStatus === 403
          ? ' (a privilege is missing)'
          : '';
    return `${status}${err.message}${hint}`;
  }
  return err instanceof Error ? err.message : String(err);
}

/** The lines as an aligned table, then a summary line. */
export function formatCheckTable(lines: readonly CheckLine[]): string {
  const width = Math.max(...lines.map((l) => l.check.length), 'check'.length);
  const row = (a: string, b: string, c: string) => `${a.padEnd(width)}  ${b.padEnd(6)}  ${c}`;
  const failed = lines.filter((l) => l.status === 'fail').length;
  return [
    row('check', 'result', 'detail'),
    row('-'.repeat(width), '------', '------'),
    ...lines.map((l) => row(l.check, l.status.toUpperCase(), l.detail)),
    '',
    failed === 0 ? 'All configured parts work.' : `${failed} problem(s): see the FAIL lines above.`,
    '',
  ].join('\n');
}
