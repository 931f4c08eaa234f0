import pino from 'pino';
import { currentAudit } from './audit';

export type Logger = pino.Logger;

/**
 * Every line written inside a request or an activity carries its `requestId`, or its `workflowId`
 * and `activityType` (from lib/audit.ts's context): no caller has to pass them along, and nothing
 * is looked up (no I/O per line).
 */
function context(): Record<string, string> {
  const a = currentAudit();
  if (!a) return {};
  const out: Record<string, string> = {};
  if (a.requestId) out.requestId = a.requestId;
  if (a.workflowId) out.workflowId = a.workflowId;
  if (a.activityType) out.activityType = a.activityType;
  return out;
}

/** Structured JSON logs on stdout. Secrets (keys, auth headers) are redacted by path. */
export function createLogger(
  name: string,
  level = process.env.LOG_LEVEL ?? 'info',
  /** Default stdout; tests capture lines here. */
  destination?: pino.DestinationStream,
): Logger {
  const options: pino.LoggerOptions = {
    name,
    level,
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
    mixin: context,
    redact: {
      paths: ['req.headers.authorization', 'headers.authorization', 'apiKey', 'key', 'secret', '*.secret'],
      censor: '[redacted]',
    },
  };
  return destination ? pino(options, destination) : pino(options);
}
