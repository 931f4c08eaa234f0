/**
 * Checks on hold requests shared by the typed client (before anything reaches Temporal) and the
 * reservation workflow's update validators (so bad requests never enter history). Pure: no I/O.
 * Each returns an error message, or null when the value is acceptable.
 */
const CREDITS = /^(0|[1-9][0-9]*)(\.[0-9]{1,6})?$/;
export const CUSTOMER_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
/** No colon: `hold:<customerId>:<holdId>` must name exactly one hold. */
export const HOLD_ID = /^[A-Za-z0-9_.-]{1,128}$/;
const METADATA_KEY = /^[A-Za-z0-9_.-]{1,64}$/;
export const MAX_TTL_SECONDS = 31_536_000;

export function creditsProblem(value: unknown, name: string, opts: { allowZero?: boolean } = {}): string | null {
  if (typeof value !== 'string' || !CREDITS.test(value)) return `${name} must be a decimal string with ≤ 6 decimals`;
  if (!opts.allowZero && /^0(\.0+)?$/.test(value)) return `${name} must be greater than 0`;
  if (value.split('.')[0]!.length > 13) return `${name} is too large`;
  return null;
}

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What PostgreSQL can store as text/jsonb: no NUL, well-formed Unicode (no lone surrogate). */
export function storableProblem(value: string, name: string): string | null {
  if (value.includes('\u0000')) return `${name} contains a NUL character`;
  if (LONE_SURROGATE.test(value)) return `${name} is not well-formed Unicode`;
  return null;
}

export function metadataProblem(m: unknown): string | null {
  if (m === undefined) return null;
  if (!m || typeof m !== 'object' || Array.isArray(m)) return 'metadata must be an object of strings';
  const entries = Object.entries(m as Record<string, unknown>);
  if (entries.length > 50) return 'at most 50 metadata keys';
  for (const [k, v] of entries) {
    if (!METADATA_KEY.test(k)) return 'metadata keys: 1–64 of A-Za-z0-9_.-';
    if (typeof v !== 'string' || v.length > 500) return `metadata.${k} must be a string of ≤ 500 characters`;
    const bad = storableProblem(v, `metadata.${k}`);
    if (bad) return bad;
  }
  return null;
}

export function deadlineProblem(value: unknown, name: string): string | null {
  if (typeof value !== 'string' || Number.isNaN(Date.parse(value)) || new Date(value).toISOString() !== value)
    return `${name} must be an ISO-8601 UTC timestamp (Date.toISOString())`;
  return null;
}

export function ttlProblem(value: unknown): string | null {
  if (value === undefined) return null;
  if (!(typeof value === 'number' && Number.isInteger(value) && value > 0 && value <= MAX_TTL_SECONDS))
    return `ttlSeconds must be an integer in 1..${MAX_TTL_SECONDS}`;
  return null;
}

export interface ReserveRequest {
  customerId: string;
  holdId: string;
  amount: string;
  ttlSeconds: number;
  metadata?: Record<string, string>;
  /** The deadline; the typed client fixes it from ttlSeconds before anything starts. */
  expiresAt?: string;
  /** Continue the workflow as new after this many updates (default 1000; tests lower it). */
  maxUpdates?: number;
}

export function reserveProblem(r: ReserveRequest): string | null {
  if (typeof r.customerId !== 'string' || !CUSTOMER_ID.test(r.customerId))
    return 'customerId: 1–128 characters of A-Za-z0-9_.:-';
  if (typeof r.holdId !== 'string' || !HOLD_ID.test(r.holdId))
    return 'holdId: 1–128 characters of A-Za-z0-9_.- (no colon)';
  return (
    creditsProblem(r.amount, 'amount') ??
    ttlProblem(r.ttlSeconds) ??
    metadataProblem(r.metadata) ??
    (r.expiresAt === undefined ? null : deadlineProblem(r.expiresAt, 'expiresAt'))
  );
}
