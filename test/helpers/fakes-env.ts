import type { FakePowerOffice } from '../fakes/poweroffice.js';
import type { FakeTidsbanken } from '../fakes/tidsbanken.js';

/** The environment that points the service at the fake Tidsbanken and PowerOffice. */
export function fakesEnv(tb: FakeTidsbanken, po: FakePowerOffice): Record<string, string> {
  return {
    TIDSBANKEN_BASE_URL: tb.url,
    TIDSBANKEN_API_KEY: tb.apiKey,
    TIDSBANKEN_SUBSCRIPTION_KEY: tb.subscriptionKey,
    POWEROFFICE_BASE_URL: po.baseUrl,
    POWEROFFICE_TOKEN_URL: po.tokenUrl,
    POWEROFFICE_APPLICATION_KEY: po.applicationKey,
    POWEROFFICE_CLIENT_KEY: po.clientKey,
    POWEROFFICE_SUBSCRIPTION_KEY: po.subscriptionKey,
  };
}
