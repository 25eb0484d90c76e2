import type { OutgoingHttpHeader, ServerResponse } from 'node:http';
import helmet from 'helmet';
import type { RequestHandler } from 'express';

/**
 * The response headers of a JSON API (OWASP REST Security Cheat Sheet, "Security headers"):
 * nothing here is ever rendered as a page, so the policy forbids every fetch and every frame,
 * HTTPS is pinned, content types are not sniffed and no Referer leaves. The rest of helmet's
 * website set (cross-origin policies, X-Frame-Options, X-XSS-Protection, …) only matters to a
 * browser rendering HTML and costs every webhook a dozen headers.
 *
 * A router that serves HTML sets its own Content-Security-Policy after this one (the last
 * `setHeader` wins).
 */
export function apiSecurityHeaders(): RequestHandler {
  return helmet({
    contentSecurityPolicy: {
      useDefaults: false,
      directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] },
    },
    strictTransportSecurity: true,
    xContentTypeOptions: true,
    referrerPolicy: { policy: 'no-referrer' },
    crossOriginEmbedderPolicy: false,
    crossOriginOpenerPolicy: false,
    crossOriginResourcePolicy: false,
    originAgentCluster: false,
    xDnsPrefetchControl: false,
    xDownloadOptions: false,
    xFrameOptions: false,
    xPermittedCrossDomainPolicies: false,
    xXssProtection: false,
  });
}

/**
 * The same headers as a function that sets them on a bare response, for the webhook fast path
 * (it answers before Express, so before the middleware above). The values are what helmet
 * sets, captured once: the two can never disagree.
 */
export function apiSecurityHeaderSetter(): (res: ServerResponse) => void {
  const headers: [string, OutgoingHttpHeader][] = [];
  const recorder = {
    setHeader(name: string, value: OutgoingHttpHeader) {
      headers.push([name, value]);
      return recorder;
    },
    removeHeader() {},
  };
  let done = false;
  apiSecurityHeaders()({} as never, recorder as never, () => {
    done = true;
  });
  if (!done) throw new Error('helmet did not finish synchronously');
  return (res) => {
    for (const [name, value] of headers) res.setHeader(name, value);
  };
}
