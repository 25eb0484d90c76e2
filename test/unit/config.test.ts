import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, secretsOf, unmatchedVariableName } from '../../src/config.js';

function problemsOf(env: Record<string, string>): string[] {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

describe('loadConfig', () => {
  it('with an empty environment, applies every default of the README Configuration table', () => {
    const config = loadConfig({});
    expect(config.port).toBe(8080);
    expect(config.databaseUrl).toBeUndefined();
    expect(config.dataDir).toBe('./data');
    expect(config.tidsbanken.baseUrl).toBe('https://api.tidsbanken.net');
    expect(config.tidsbanken.credentials).toBeUndefined();
    expect(config.tidsbanken.rateLimitPerSecond).toBe(5);
    expect(config.poweroffice.baseUrl).toBe('https://goapi.poweroffice.net/v2');
    expect(config.poweroffice.tokenUrl).toBe('https://goapi.poweroffice.net/OAuth/Token');
    expect(config.poweroffice.credentials).toBeUndefined();
    expect(config.poweroffice.rateLimitPerSecond).toBe(10);
    expect(config.pollIntervalMs).toBe(60_000);
    expect(config.unmatched).toEqual({
      'ansatt-contactperson': 'link-only',
      'ansatt-employee': 'link-only',
      'kunde-customer': 'link-only',
      'prosjekt-project': 'link-only',
    });
    expect(config.conflictPolicy).toBe('newest-wins');
    expect(config.dryRun).toBe(false);
    expect(config.adminToken).toBeUndefined();
    expect(config.poweroffice.contactParentId).toBeUndefined();
    expect(Object.isFrozen(config)).toBe(true);
  });

  it('an empty variable means unset, for every variable: its default applies, never 0 or an error', () => {
    const names = [
      ...readFileSync(join(import.meta.dirname, '..', '..', '.env.example'), 'utf8').matchAll(
        /^([A-Z][A-Z0-9_]+)=/gm,
      ),
    ].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(20);
    const empty = Object.fromEntries(names.map((name) => [name, '']));
    expect(loadConfig(empty)).toEqual(loadConfig({}));
    expect(loadConfig(Object.fromEntries(names.map((name) => [name, '  '])))).toEqual(
      loadConfig({}),
    );
  });

  it('when PORT is not a number, names PORT', () => {
    expect(problemsOf({ PORT: 'abc' })).toEqual([expect.stringMatching(/^PORT: /)]);
  });

  it('when several variables are bad, names every one of them at once', () => {
    const problems = problemsOf({
      PORT: '70000',
      CONFLICT_POLICY: 'coin-flip',
      FLOW_KUNDE_CUSTOMER_ON_UNMATCHED: 'maybe',
      POLL_INTERVAL_MS: '-5',
      DRY_RUN: 'yes',
      DATABASE_PREPARED_STATEMENTS: 'off',
      DATABASE_URL: 'mysql://x',
      POWEROFFICE_RATE_LIMIT_PER_SECOND: '0',
      TIDSBANKEN_BASE_URL: 'not a url',
    });
    const names = problems.map((p) => p.split(':')[0]);
    expect(names.sort()).toEqual(
      [
        'CONFLICT_POLICY',
        'DATABASE_PREPARED_STATEMENTS',
        'DATABASE_URL',
        'DRY_RUN',
        'FLOW_KUNDE_CUSTOMER_ON_UNMATCHED',
        'POLL_INTERVAL_MS',
        'PORT',
        'POWEROFFICE_RATE_LIMIT_PER_SECOND',
        'TIDSBANKEN_BASE_URL',
      ].sort(),
    );
  });

  it('never echoes a bad value in its message (it may be a secret)', () => {
    const err = (() => {
      try {
        loadConfig({ ADMIN_TOKEN: 's3cr3t' });
      } catch (e) {
        return e as Error;
      }
      throw new Error('expected a ConfigError');
    })();
    expect(err.message).toContain('ADMIN_TOKEN');
    expect(err.message).not.toContain('s3cr3t');
  });

  it('turns a side on only when its credentials are all present', () => {
    const partial = loadConfig({ POWEROFFICE_APPLICATION_KEY: 'a', POWEROFFICE_CLIENT_KEY: 'c' });
    expect(partial.poweroffice.credentials).toBeUndefined();
    const full = loadConfig({
      POWEROFFICE_APPLICATION_KEY: 'a',
      POWEROFFICE_CLIENT_KEY: 'c',
      POWEROFFICE_SUBSCRIPTION_KEY: 's',
      TIDSBANKEN_API_KEY: 'k',
      TIDSBANKEN_SUBSCRIPTION_KEY: 'ts',
      POWEROFFICE_BASE_URL: 'http://127.0.0.1:9/Demo/v2/',
    });
    expect(full.poweroffice.credentials).toMatchObject({
      applicationKey: 'a',
      clientKey: 'c',
      subscriptionKey: 's',
      baseUrl: 'http://127.0.0.1:9/Demo/v2',
    });
    expect(full.tidsbanken.credentials).toMatchObject({ apiKey: 'k', subscriptionKey: 'ts' });
  });

  it('treats an empty variable as unset', () => {
    const config = loadConfig({ DATABASE_URL: '', TIDSBANKEN_API_KEY: ' ' });
    expect(config.databaseUrl).toBeUndefined();
    expect(config.tidsbanken.credentials).toBeUndefined();
  });

  it('parses DRY_RUN, policies and the per-flow unmatched policy', () => {
    const config = loadConfig({
      DRY_RUN: 'true',
      CONFLICT_POLICY: 'poweroffice-wins',
      FLOW_ANSATT_EMPLOYEE_ON_UNMATCHED: 'create-both',
    });
    expect(config.dryRun).toBe(true);
    expect(config.conflictPolicy).toBe('poweroffice-wins');
    expect(config.unmatched['ansatt-employee']).toBe('create-both');
  });

  it('uses named prepared statements unless DATABASE_PREPARED_STATEMENTS is false', () => {
    expect(loadConfig({}).database.preparedStatements).toBe(true);
    expect(loadConfig({ DATABASE_PREPARED_STATEMENTS: 'false' }).database.preparedStatements).toBe(
      false,
    );
  });

  it('lists every configured secret for log scrubbing, each webhook secret of a list on its own', () => {
    const config = loadConfig({
      ADMIN_TOKEN: 'admin-token-0123456789',
      TIDSBANKEN_WEBHOOK_SECRET: 'whsec_c2VjcmV0 whsec_bmV3LXNlY3JldA==',
      TIDSBANKEN_API_KEY: 'tb-key-value',
      TIDSBANKEN_SUBSCRIPTION_KEY: 'tb-subscription-value',
    });
    expect(secretsOf(config).sort()).toEqual(
      [
        'admin-token-0123456789',
        'whsec_c2VjcmV0',
        'whsec_bmV3LXNlY3JldA==',
        'tb-key-value',
        'tb-subscription-value',
      ].sort(),
    );
  });

  it('TIDSBANKEN_API_KEY without TIDSBANKEN_SUBSCRIPTION_KEY is an error naming the missing one', () => {
    let err: ConfigError | undefined;
    try {
      loadConfig({ TIDSBANKEN_API_KEY: 'tb-key-value' });
    } catch (e) {
      err = e as ConfigError;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems).toEqual([
      'TIDSBANKEN_SUBSCRIPTION_KEY: is required when TIDSBANKEN_API_KEY is set',
    ]);
    expect(err!.message).not.toContain('tb-key-value');
  });

  it('a webhook secret variable takes a space-separated list (rotation), each one checked', () => {
    const config = loadConfig({
      POWEROFFICE_WEBHOOK_SECRET: '  whsec_b2xk   whsec_bmV3  ',
    });
    expect(config.poweroffice.webhookSecrets).toEqual(['whsec_b2xk', 'whsec_bmV3']);
    expect(loadConfig({}).tidsbanken.webhookSecrets).toBeUndefined();
    expect(() => loadConfig({ TIDSBANKEN_WEBHOOK_SECRET: 'whsec_b2xk whsec_not*base64' })).toThrow(
      /TIDSBANKEN_WEBHOOK_SECRET: must be whsec_ followed by base64/,
    );
  });

  it('derives the FLOW_<FLOW>_ON_UNMATCHED name from the flow id', () => {
    expect(unmatchedVariableName('kunde-customer')).toBe('FLOW_KUNDE_CUSTOMER_ON_UNMATCHED');
  });
});
