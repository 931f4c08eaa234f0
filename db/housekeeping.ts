import type { Queryable } from './queryable';

/** Whatever a caller asks, nothing younger than this is purged (IDEMPOTENCY_RETENTION_DAYS ≥ 7 too). */
export const MIN_RETENTION_DAYS = 7;

/**
 * Deletes up to `limit` stored HTTP replies (Idempotency-Key) created before `cutoff`, oldest
 * first; returns how many. Never a claim whose lease is live (its request is still running), and
 * SKIP LOCKED so a request taking over a lapsed claim meanwhile keeps it. Only http_idempotency:
 * the ledger's idempotency_keys are kept forever (reconciliation's invariant 4 needs each one).
 */
export async function purgeHttpIdempotency(q: Queryable, cutoff: Date, limit: number): Promise<number> {
  const r = await q.query(
    `DELETE FROM http_idempotency WHERE scope IN (
       SELECT scope FROM http_idempotency
        WHERE created_at < $1 AND created_at < now() - make_interval(days => $3)
          AND (state = 'done' OR lease_until < now())
        ORDER BY created_at
        LIMIT $2
        FOR UPDATE SKIP LOCKED)`,
    [cutoff, limit, MIN_RETENTION_DAYS],
  );
  return r.rowCount ?? 0;
}
