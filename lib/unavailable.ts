import type { Logger } from './logger';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND', // a stopped container's host name disappears from the network's DNS
]);
// admin/crash shutdown, cannot connect now (starting up, recovering), too many connections.
const SQLSTATES = new Set(['57P01', '57P02', '57P03', '53300']);
const MESSAGES = [
  /timeout exceeded when trying to connect/, // pg-pool: connectionTimeoutMillis
  /Connection terminated/, // pg: the socket closed ("unexpectedly", "due to connection timeout")
  /not queryable/, // pg: a client reused after its connection died
  /Failed to connect/, // Temporal client
];
const GRPC_UNAVAILABLE = 14;

/**
 * True when err (or anything in its cause chain) says a dependency — Postgres or Temporal — cannot
 * be reached right now: a transient condition (503 + Retry-After), not a bug.
 */
export function isUnavailable(err: unknown, seen = new Set<unknown>()): boolean {
  if (!err || typeof err !== 'object' || seen.has(err)) return false;
  seen.add(err);
  const e = err as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
  if (typeof e.code === 'string') {
    if (NETWORK_CODES.has(e.code) || SQLSTATES.has(e.code) || /^08[0-9A-Z]{3}$/.test(e.code)) return true;
  }
  if (e.code === GRPC_UNAVAILABLE) return true;
  if (typeof e.message === 'string' && MESSAGES.some((m) => m.test(e.message as string))) return true;
  if (isUnavailable(e.cause, seen)) return true;
  // AggregateError: e.g. a connect to every address of a host name failed.
  return Array.isArray(e.errors) && e.errors.some((x) => isUnavailable(x, seen));
}

/**
 * Last-resort handlers for a long-running process: an unavailable dependency is logged and survived
 * (the next request or retry will find it back); anything else is an unknown bug, logged before
 * exiting so the supervisor restarts a clean process.
 */
export function guardProcess(log: Logger): void {
  const handle = (what: string) => (err: unknown) => {
    if (isUnavailable(err)) {
      log.warn({ err }, `${what} from an unavailable dependency; carrying on`);
      return;
    }
    log.fatal({ err }, `${what}; exiting`);
    process.exit(1);
  };
  process.on('unhandledRejection', handle('unhandled rejection'));
  process.on('uncaughtException', handle('uncaught exception'));
}
