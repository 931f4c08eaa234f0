import pino from 'pino';

export type Logger = pino.Logger;

/** Structured JSON logs on stdout. Secrets (keys, auth headers) are redacted by path. */
export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level,
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'apiKey', 'key', 'secret', '*.secret'],
      censor: '[redacted]',
    },
  });
}
