import { z } from 'zod';
import type { PowerOfficeConfig } from '../config.js';
import type { Logger } from '../lib/logger.js';
import type { Metrics } from '../lib/metrics.js';
import type { Pacer } from '../lib/pacer.js';
import {
  createUpstreamContext,
  upstreamRequest,
  type UpstreamAuth,
  type UpstreamContext,
} from '../lib/upstream.js';

// OAuth2 client credentials against PowerOffice Go v2 (docs/vendor-apis.md): Basic
// base64(applicationKey:clientKey) plus the subscription key, no refresh token. PowerOffice
// asks integrations to renew before expiry rather than wait for a 401, so a token is used
// for 80% of its `expires_in` and renewed after that.

const TokenResponseSchema = z.looseObject({
  access_token: z.string().min(1),
  token_type: z.string().optional(),
  // 1200 s on v2 today, 600 in the spec's example: always read it (docs/vendor-apis.md).
  expires_in: z.coerce.number().positive(),
});

const RENEW_AT_FRACTION = 0.8;

interface CachedToken {
  value: string;
  renewAt: number;
  expiresAt: number;
}

export interface PowerOfficeTokenOptions {
  config: PowerOfficeConfig;
  pacer: Pacer;
  logger: Logger;
  metrics: Metrics;
  timeoutMs?: number;
  maxAttempts?: number;
  fetch?: typeof fetch;
  /** Clock for the renewal deadline (tests move it forward). */
  now?: () => number;
}

/**
 * The access token for one PowerOffice client integration: cached, renewed before expiry,
 * and single-flight — callers that arrive while a token request is out share its answer.
 */
export class PowerOfficeTokenProvider implements UpstreamAuth {
  private readonly upstream: UpstreamContext;
  private readonly config: PowerOfficeConfig;
  private readonly now: () => number;
  private readonly logger: Logger;
  private cached: CachedToken | undefined;
  private pending: Promise<CachedToken> | undefined;

  constructor(options: PowerOfficeTokenOptions) {
    this.config = options.config;
    this.now = options.now ?? Date.now;
    this.logger = options.logger.child({ module: 'poweroffice-token' });
    this.upstream = createUpstreamContext({
      system: 'poweroffice',
      pacer: options.pacer,
      logger: this.logger,
      metrics: options.metrics,
      ...(options.fetch !== undefined ? { fetch: options.fetch } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
      ...(options.maxAttempts !== undefined ? { maxAttempts: options.maxAttempts } : {}),
    });
  }

  /** A token valid now, from the cache or freshly issued. */
  async getToken(): Promise<string> {
    const cached = this.cached;
    if (cached !== undefined && this.now() < cached.renewAt) return cached.value;
    this.pending ??= this.requestToken().finally(() => {
      this.pending = undefined;
    });
    return (await this.pending).value;
  }

  /** Headers for an API call: the bearer token and the subscription key. */
  async headers(): Promise<Record<string, string>> {
    const token = await this.getToken();
    return {
      authorization: `Bearer ${token}`,
      'ocp-apim-subscription-key': this.config.subscriptionKey,
    };
  }

  /**
   * The API answered 401 to a request sent with `rejected`. Drop the cached token only if it
   * is still that one: a concurrent caller may already have renewed it.
   */
  invalidate(rejected: Record<string, string>): void {
    if (this.cached !== undefined && rejected.authorization === `Bearer ${this.cached.value}`) {
      this.cached = undefined;
    }
  }

  private async requestToken(): Promise<CachedToken> {
    const basic = Buffer.from(`${this.config.applicationKey}:${this.config.clientKey}`).toString(
      'base64',
    );
    const issuedAt = this.now();
    const { data } = await upstreamRequest(this.upstream, {
      method: 'POST',
      url: this.config.tokenUrl,
      kind: 'token',
      // Every other request waits on a token: let it go before queued work.
      priority: 'write',
      headers: {
        authorization: `Basic ${basic}`,
        'ocp-apim-subscription-key': this.config.subscriptionKey,
      },
      body: new URLSearchParams({ grant_type: 'client_credentials' }).toString(),
      contentType: 'application/x-www-form-urlencoded',
      schema: TokenResponseSchema,
      // Asking for a token twice issues two tokens and changes nothing else.
      idempotent: true,
    });
    if (data === undefined) throw new Error('PowerOffice token endpoint answered no token');
    const ttlMs = data.expires_in * 1000;
    const token: CachedToken = {
      value: data.access_token,
      renewAt: issuedAt + ttlMs * RENEW_AT_FRACTION,
      expiresAt: issuedAt + ttlMs,
    };
    this.cached = token;
    this.logger.debug({ expiresInSeconds: data.expires_in }, 'access token issued');
    return token;
  }
}
