import { hostname } from 'node:os';
import { pino, type Logger } from 'pino';

export type { Logger };

// Headers that carry credentials or signatures: never logged, whatever the level.
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["tb-key"]',
  'req.headers["ocp-apim-subscription-key"]',
  'req.headers["webhook-signature"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["tb-key"]',
  'headers["ocp-apim-subscription-key"]',
  'headers["webhook-signature"]',
  '*.password',
  '*.secret',
  '*.token',
  '*.access_token',
];

export function createLogger(options: {
  level: string;
  /** Configured secrets: scrubbed from every line even if some code logs one by mistake. */
  secrets?: string[];
  destination?: pino.DestinationStream;
}): Logger {
  const secrets = (options.secrets ?? []).filter((s) => s.length >= 4);
  return pino(
    {
      level: options.level,
      // pid and hostname tell replicas (and a restarted process) apart on every line.
      base: { pid: process.pid, hostname: hostname(), service: 'tidsbanken-poweroffice-sync' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      hooks:
        secrets.length > 0
          ? {
              streamWrite(line) {
                let out = line;
                for (const secret of secrets) out = out.replaceAll(secret, '[redacted]');
                return out;
              },
            }
          : {},
    },
    options.destination,
  );
}
