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
