import { z } from 'zod';
import { createLogger } from './lib/logger.js';

// The only reader of process.env. Every variable of the README's "Configuration", parsed once; a
// bad value stops start-up with one message naming every bad variable.

export const FLOW_IDS = [
  'ansatt-contactperson',
  'ansatt-employee',
  'kunde-customer',
  'prosjekt-project',
] as const;
export type FlowId = (typeof FLOW_IDS)[number];

export const UNMATCHED_POLICIES = [
  'link-only',
  'create-in-poweroffice',
  'create-in-tidsbanken',
  'create-both',
] as const;
export type UnmatchedPolicy = (typeof UNMATCHED_POLICIES)[number];

export const CONFLICT_POLICIES = ['newest-wins', 'tidsbanken-wins', 'poweroffice-wins'] as const;
export type ConflictPolicy = (typeof CONFLICT_POLICIES)[number];

/** `kunde-customer` → `FLOW_KUNDE_CUSTOMER_ON_UNMATCHED` */
export function unmatchedVariableName(flow: FlowId): string {
  return `FLOW_${flow.toUpperCase().replaceAll('-', '_')}_ON_UNMATCHED`;
}

// An unset variable and an empty one mean the same: "not configured".
const optionalString = z
  .string()
  .optional()
  .transform((v) => (v === undefined || v.trim() === '' ? undefined : v));

const url = (fallback: string) =>
  z
    .string()
    .default(fallback)
    .transform((v) => v.replace(/\/+$/, ''))
    .pipe(z.url({ protocol: /^https?$/, error: 'must be an http(s) URL' }));

const positiveNumber = (fallback: number) =>
  z.coerce
    .number({ error: 'must be a number' })
    .positive({ error: 'must be greater than 0' })
    .default(fallback);

const booleanString = z
  .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
  .default('false')
  .transform((v) => v === 'true' || v === '1');

// One secret, or several separated by whitespace (rotation: any one verifies).
const webhookSecrets = optionalString
  .transform((v) => (v === undefined ? undefined : v.trim().split(/\s+/)))
  .refine(
    (list) =>
      list === undefined ||
      list.every((v) => !v.startsWith('whsec_') || /^whsec_[A-Za-z0-9+/=]+$/.test(v)),
    { error: 'must be whsec_ followed by base64' },
  );

const EnvSchema = z
  .object({
    PORT: z.coerce
      .number({ error: 'must be a port number' })
      .int({ error: 'must be a whole number' })
      .min(0)
      .max(65535)
      .default(8080),
    ADMIN_PORT: optionalString
      .refine(
        (v) => v === undefined || (/^\d{1,5}$/.test(v) && Number(v) >= 1 && Number(v) <= 65535),
        {
          error: 'must be a port number (1-65535), or unset to serve admin on PORT',
        },
      )
      .transform((v) => (v === undefined ? undefined : Number(v))),
    DATABASE_URL: optionalString.refine((v) => v === undefined || /^postgres(ql)?:\/\//.test(v), {
      error: 'must be a postgres:// or postgresql:// connection string',
    }),
    DATA_DIR: z.string().min(1).default('./data'),
    LOG_LEVEL: z
      .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'])
      .default('info'),

    TIDSBANKEN_BASE_URL: url('https://api.tidsbanken.net'),
    TIDSBANKEN_API_KEY: optionalString,
    TIDSBANKEN_SUBSCRIPTION_KEY: optionalString,
    TIDSBANKEN_WEBHOOK_SECRET: webhookSecrets,
    TIDSBANKEN_RATE_LIMIT_PER_SECOND: positiveNumber(5),

    POWEROFFICE_BASE_URL: url('https://goapi.poweroffice.net/v2'),
    POWEROFFICE_TOKEN_URL: url('https://goapi.poweroffice.net/OAuth/Token'),
    POWEROFFICE_APPLICATION_KEY: optionalString,
    POWEROFFICE_CLIENT_KEY: optionalString,
    POWEROFFICE_SUBSCRIPTION_KEY: optionalString,
    POWEROFFICE_WEBHOOK_SECRET: webhookSecrets,
    POWEROFFICE_RATE_LIMIT_PER_SECOND: positiveNumber(10),
    POWEROFFICE_CONTACT_PARENT_ID: optionalString.refine(
      (v) => v === undefined || /^\d+$/.test(v),
      {
        error: 'must be a PowerOffice customer or supplier id (digits)',
      },
    ),

    POLL_INTERVAL_MS: z.coerce
      .number({ error: 'must be a number of milliseconds' })
      .int()
      .min(0, { error: 'must be 0 (off) or more' })
      .default(60_000),
    FLOW_ANSATT_CONTACTPERSON_ON_UNMATCHED: z.enum(UNMATCHED_POLICIES).default('link-only'),
    FLOW_ANSATT_EMPLOYEE_ON_UNMATCHED: z.enum(UNMATCHED_POLICIES).default('link-only'),
    FLOW_KUNDE_CUSTOMER_ON_UNMATCHED: z.enum(UNMATCHED_POLICIES).default('link-only'),
    FLOW_PROSJEKT_PROJECT_ON_UNMATCHED: z.enum(UNMATCHED_POLICIES).default('link-only'),
    CONFLICT_POLICY: z.enum(CONFLICT_POLICIES).default('newest-wins'),
    DRY_RUN: booleanString,
    ADMIN_TOKEN: optionalString.refine((v) => v === undefined || v.length >= 16, {
      error: 'must be at least 16 characters',
    }),
    SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().positive().default(25_000),
    SHUTDOWN_DELAY_MS: z.coerce
      .number({ error: 'must be a number of milliseconds' })
      .int()
      .min(0, { error: 'must be 0 or more' })
      .default(5000),
    DATABASE_CONNECT_TIMEOUT_MS: z.coerce
      .number({ error: 'must be a number of milliseconds' })
      .int()
      .positive({ error: 'must be greater than 0' })
      .default(5000),
    // Off behind a pooler in transaction mode that cannot keep named prepared statements
    // (PgBouncer before 1.21, or max_prepared_statements = 0).
    DATABASE_PREPARED_STATEMENTS: z
      .enum(['true', 'false', '1', '0'], { error: 'must be true or false' })
      .default('true')
      .transform((v) => v === 'true' || v === '1'),
    DATABASE_STATEMENT_TIMEOUT_MS: z.coerce
      .number({ error: 'must be a number of milliseconds' })
      .int()
      .min(0, { error: 'must be 0 (off) or more' })
      .default(60_000),
    RETENTION_DAYS: z.coerce
      .number({ error: 'must be a number of days' })
      .int({ error: 'must be a whole number of days' })
      .min(0, { error: 'must be 0 (keep everything) or more' })
      .default(30),
    // A frozen leader is replaced within this (plus one acquire retry, ≤ 2 s).
    LEASE_TTL_MS: z.coerce
      .number({ error: 'must be a number of milliseconds' })
      .int()
      .min(1000, { error: 'must be at least 1000' })
      .max(60_000, { error: 'must be at most 60000' })
      .default(15_000),
    // Fractions allowed (0.5 = every 30 minutes).
    RECONCILE_INTERVAL_HOURS: z.coerce
      .number({ error: 'must be a number of hours' })
      .min(0, { error: 'must be 0 (off) or more' })
      .default(24),
  })
  .superRefine((env, ctx) => {
    // The readiness delay is part of the shutdown budget: the drain needs time after it.
    if (env.SHUTDOWN_DELAY_MS >= env.SHUTDOWN_TIMEOUT_MS) {
      ctx.addIssue({
        code: 'custom',
        path: ['SHUTDOWN_DELAY_MS'],
        message: 'must be less than SHUTDOWN_TIMEOUT_MS',
      });
    }
    // Both Tidsbanken keys go on every call (docs/vendor-apis.md): with one alone every call
    // is refused, so the side would look on and never work.
    if (env.TIDSBANKEN_API_KEY !== undefined && env.TIDSBANKEN_SUBSCRIPTION_KEY === undefined) {
      ctx.addIssue({
        code: 'custom',
        path: ['TIDSBANKEN_SUBSCRIPTION_KEY'],
        message: 'is required when TIDSBANKEN_API_KEY is set',
      });
    }
  });

export interface TidsbankenConfig {
  baseUrl: string;
  apiKey: string;
  subscriptionKey: string;
}

export interface PowerOfficeConfig {
  baseUrl: string;
  tokenUrl: string;
  applicationKey: string;
  clientKey: string;
  subscriptionKey: string;
}

export interface Config {
  port: number;
  /** Port of /metrics, /admin and /console apart from the webhooks; undefined → `port`. */
  adminPort: number | undefined;
  databaseUrl: string | undefined;
  dataDir: string;
  logLevel: string;
  tidsbanken: {
    baseUrl: string;
    /** Undefined when the side is off (no API key). */
    credentials: TidsbankenConfig | undefined;
    /** Credential variables left unset while another one is set (a partly configured side). */
    credentialsMissing: string[];
    /** Any one verifies (rotation); undefined when none is configured. */
    webhookSecrets: string[] | undefined;
    rateLimitPerSecond: number;
  };
  poweroffice: {
    baseUrl: string;
    tokenUrl: string;
    /** Undefined when the side is off (any of the three keys missing). */
    credentials: PowerOfficeConfig | undefined;
    /** Credential variables left unset while another one is set (a partly configured side). */
    credentialsMissing: string[];
    webhookSecrets: string[] | undefined;
    rateLimitPerSecond: number;
    contactParentId: string | undefined;
  };
  pollIntervalMs: number;
  unmatched: Record<FlowId, UnmatchedPolicy>;
  conflictPolicy: ConflictPolicy;
  dryRun: boolean;
  adminToken: string | undefined;
  /** SIGTERM to exit, at most (the readiness delay, the drain, the workers' stop). */
  shutdownTimeoutMs: number;
  /** After SIGTERM, /readyz answers 503 this long before the server stops accepting. */
  shutdownDelayMs: number;
  /** PostgreSQL: the bounds on every wait (0: no statement timeout). */
  database: { connectTimeoutMs: number; statementTimeoutMs: number; preparedStatements: boolean };
  /** Days processed events, finished commands and audit rows are kept; 0 keeps them. */
  retentionDays: number;
  /** Length of a system's leadership lease (renewed every third of it). */
  leaseTtlMs: number;
  /**
   * Milliseconds between scheduled full reconciles (they catch edits the change filters never
   * show); 0 turns them off.
   */
  reconcileIntervalMs: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(`Invalid configuration:\n${problems.map((p) => `  - ${p}`).join('\n')}`);
    this.name = 'ConfigError';
  }
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Readonly<Config> {
  const e = parseEnv(env);
  const config: Config = {
    port: e.PORT,
    adminPort: e.ADMIN_PORT,
    databaseUrl: e.DATABASE_URL,
    dataDir: e.DATA_DIR,
    logLevel: e.LOG_LEVEL,
    tidsbanken: tidsbankenConfig(e),
    poweroffice: powerofficeConfig(e),
    pollIntervalMs: e.POLL_INTERVAL_MS,
    unmatched: {
      'ansatt-contactperson': e.FLOW_ANSATT_CONTACTPERSON_ON_UNMATCHED,
      'ansatt-employee': e.FLOW_ANSATT_EMPLOYEE_ON_UNMATCHED,
      'kunde-customer': e.FLOW_KUNDE_CUSTOMER_ON_UNMATCHED,
      'prosjekt-project': e.FLOW_PROSJEKT_PROJECT_ON_UNMATCHED,
    },
    conflictPolicy: e.CONFLICT_POLICY,
    dryRun: e.DRY_RUN,
    adminToken: e.ADMIN_TOKEN,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    shutdownDelayMs: e.SHUTDOWN_DELAY_MS,
    database: {
      connectTimeoutMs: e.DATABASE_CONNECT_TIMEOUT_MS,
      statementTimeoutMs: e.DATABASE_STATEMENT_TIMEOUT_MS,
      preparedStatements: e.DATABASE_PREPARED_STATEMENTS,
    },
    retentionDays: e.RETENTION_DAYS,
    leaseTtlMs: e.LEASE_TTL_MS,
    reconcileIntervalMs: Math.round(e.RECONCILE_INTERVAL_HOURS * 3_600_000),
  };
  return Object.freeze(config);
}

type Env = z.infer<typeof EnvSchema>;

function parseEnv(env: NodeJS.ProcessEnv): Env {
  // An empty variable is an unset one (`.env.example` leaves optional ones empty, a Secret may
  // hold ''): its default applies. Else a number would coerce to 0 (polling, retention and the
  // scheduled reconcile silently off, PORT random) and other values would be refused.
  const set = Object.fromEntries(
    Object.entries(env).filter(([, value]) => value !== undefined && value.trim() !== ''),
  );
  const parsed = EnvSchema.safeParse(set);
  if (!parsed.success) {
    // Never echo the value: it may be a secret.
    const problems = parsed.error.issues.map((issue) => {
      const name = issue.path.join('.') || '(environment)';
      return `${name}: ${issue.message}`;
    });
    throw new ConfigError(problems);
  }
  return parsed.data;
}

/** The names not set of a group where some are set: a side only partly configured. */
function missingOf(e: Env, names: (keyof Env)[]): string[] {
  return names.some((n) => e[n] !== undefined) ? names.filter((n) => e[n] === undefined) : [];
}

function tidsbankenConfig(e: Env): Config['tidsbanken'] {
  return {
    baseUrl: e.TIDSBANKEN_BASE_URL,
    credentials:
      e.TIDSBANKEN_API_KEY !== undefined
        ? {
            baseUrl: e.TIDSBANKEN_BASE_URL,
            apiKey: e.TIDSBANKEN_API_KEY,
            subscriptionKey: e.TIDSBANKEN_SUBSCRIPTION_KEY ?? '',
          }
        : undefined,
    credentialsMissing: missingOf(e, ['TIDSBANKEN_API_KEY', 'TIDSBANKEN_SUBSCRIPTION_KEY']),
    webhookSecrets: e.TIDSBANKEN_WEBHOOK_SECRET,
    rateLimitPerSecond: e.TIDSBANKEN_RATE_LIMIT_PER_SECOND,
  };
}

function powerofficeConfig(e: Env): Config['poweroffice'] {
  return {
    baseUrl: e.POWEROFFICE_BASE_URL,
    tokenUrl: e.POWEROFFICE_TOKEN_URL,
    credentials:
      e.POWEROFFICE_APPLICATION_KEY !== undefined &&
      e.POWEROFFICE_CLIENT_KEY !== undefined &&
      e.POWEROFFICE_SUBSCRIPTION_KEY !== undefined
        ? {
            baseUrl: e.POWEROFFICE_BASE_URL,
            tokenUrl: e.POWEROFFICE_TOKEN_URL,
            applicationKey: e.POWEROFFICE_APPLICATION_KEY,
            clientKey: e.POWEROFFICE_CLIENT_KEY,
            subscriptionKey: e.POWEROFFICE_SUBSCRIPTION_KEY,
          }
        : undefined,
    credentialsMissing: missingOf(e, [
      'POWEROFFICE_APPLICATION_KEY',
      'POWEROFFICE_CLIENT_KEY',
      'POWEROFFICE_SUBSCRIPTION_KEY',
    ]),
    webhookSecrets: e.POWEROFFICE_WEBHOOK_SECRET,
    rateLimitPerSecond: e.POWEROFFICE_RATE_LIMIT_PER_SECOND,
    contactParentId: e.POWEROFFICE_CONTACT_PARENT_ID,
  };
}

/** Values that must never reach a log line. */
export function secretsOf(config: Config): string[] {
  return [
    config.tidsbanken.credentials?.apiKey,
    config.tidsbanken.credentials?.subscriptionKey,
    ...(config.tidsbanken.webhookSecrets ?? []),
    config.poweroffice.credentials?.applicationKey,
    config.poweroffice.credentials?.clientKey,
    config.poweroffice.credentials?.subscriptionKey,
    ...(config.poweroffice.webhookSecrets ?? []),
    config.adminToken,
  ].filter((s): s is string => typeof s === 'string' && s.length > 0);
}

/**
 * For entry points (the service and its commands): the configuration, or — when it is
 * invalid — one JSON log line naming every bad variable (the same fields as every other line,
 * so a log pipeline sees why a replica never came up) and exit code 78 (EX_CONFIG).
 */
export function loadConfigOrExit(): Readonly<Config> {
  try {
    return loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // LOG_LEVEL itself may be the bad variable: this line is written at any level.
      const logger = createLogger({ level: 'info' });
      logger.fatal({ problems: err.problems }, 'invalid configuration');
      logger.flush();
      process.exit(78);
    }
    throw err;
  }
}
