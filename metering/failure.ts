/**
 * What kind of failure an ingest transaction hit, which decides what the batcher may do next:
 *  - `data`: the database refused a value (SQLSTATE class 22 data exception, 23 integrity
 *    violation). Some event caused it, so splitting the work finds it.
 *  - `infra`: the database is unreachable, shutting down, overloaded or timed out. Retrying
 *    in a loop would only add load, so the error goes back to the callers (503).
 *  - `other`: anything else (e.g. a bug an input triggers); isolated between requests only.
 */
export type FailureKind = 'data' | 'infra' | 'other';

const NET_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'ETIMEDOUT',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
]);
// 57014 query cancelled (statement timeout), 57P01–57P05 shutdown / cannot connect now.
const INFRA_STATES = new Set(['57014', '57P01', '57P02', '57P03', '57P04', '57P05']);
// Errors node-postgres raises without a code when a connection or the pool fails.
const INFRA_MESSAGE =
  /connection terminated|timeout exceeded when trying to connect|not queryable|connection error|after calling end on the pool/i;

export function failureKind(err: unknown): FailureKind {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code === 'string') {
    if (NET_CODES.has(code) || INFRA_STATES.has(code)) return 'infra';
    // 08 connection exception, 53 insufficient resources, 58 system (I/O) error.
    if (/^(08|53|58)[0-9A-Z]{3}$/.test(code)) return 'infra';
    if (/^2[23][0-9A-Z]{3}$/.test(code)) return 'data';
  }
  if (err instanceof Error && INFRA_MESSAGE.test(err.message)) return 'infra';
  return 'other';
}
