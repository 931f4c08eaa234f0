import type { Logger } from './logger';

const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND', // a stopped container's host name disappears from the network's DNS
]);
// query cancelled (statement timeout), admin/crash shutdown, cannot connect now (starting up,
// recovering), too many connections / out of resources, system I/O errors.
const SQLSTATES = new Set(['57014', '57P01', '57P02', '57P03', '57P04', '57P05']);
const SQLSTATE_CLASSES = /^(08|53|58)[0-9A-Z]{3}$/;
const MESSAGES = [
  /timeout exceeded when trying to connect/, // pg-pool: connectionTimeoutMillis
  /Connection terminated/, // pg: the socket closed ("unexpectedly", "due to connection timeout")
  /not queryable/, // pg: a client reused after its connection died
  /after calling end on the pool/i, // pg-pool: shutting down
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
    if (NETWORK_CODES.has(e.code) || SQLSTATES.has(e.code) || SQLSTATE_CLASSES.test(e.code)) return true;
  }
  if (e.code === GRPC_UNAVAILABLE || err instanceof DependencyUnavailable) return true;
  if (typeof e.message === 'string' && MESSAGES.some((m) => m.test(e.message as string))) return true;
  if (isUnavailable(e.cause, seen)) return true;
  // AggregateError: e.g. a connect to every address of a host name failed.
  return Array.isArray(e.errors) && e.errors.some((x) => isUnavailable(x, seen));
}

/**
 * What kind of failure a database step hit, which decides what may happen next:
 *  - `data`: the database refused a value (SQLSTATE class 22 data exception, 23 integrity
 *    violation): a retry cannot cure it; splitting the work finds the culprit.
 *  - `infra`: a dependency is unreachable, shutting down, overloaded or timed out: retry later
 *    with backoff (workflows) or answer 503 (HTTP); never loop.
 *  - `other`: anything else (a bug an input triggers): retried a bounded number of times at most.
 */
export type FailureKind = 'data' | 'infra' | 'other';

export function failureKind(err: unknown): FailureKind {
  if (isUnavailable(err)) return 'infra';
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^2[23][0-9A-Z]{3}$/.test(code)) return 'data';
  return 'other';
}

/**
 * A dependency (Postgres, Temporal, or the workers behind Temporal) did not answer in time.
 * The API answers 503 with Retry-After; nothing about the request's outcome is implied.
 */
export class DependencyUnavailable extends Error {
  constructor(
    readonly dependency: 'postgres' | 'temporal' | 'worker',
    message: string,
    readonly retryAfterSeconds = 5,
  ) {
    super(message);
    this.name = 'DependencyUnavailable';
  }
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
