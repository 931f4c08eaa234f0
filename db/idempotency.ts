import type { Queryable } from './queryable';

/**
 * Transaction-scoped advisory lock on the key: a second request with the same key while the first
 * is still in flight gets `false` at once (→ 409) instead of waiting on it.
 */
export async function tryLockKey(tx: Queryable, key: string): Promise<boolean> {
  const res = await tx.query<{ locked: boolean }>(
    `SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked`,
    [key],
  );
  return res.rows[0]?.locked === true;
}

/** A ledger command's record, per customer: one customer's key never replays another's result. */
export async function findKey(
  tx: Queryable,
  customerId: string,
  key: string,
): Promise<{ requestHash: string; result: unknown } | null> {
  const res = await tx.query<{ request_hash: string; result: unknown }>(
    `SELECT request_hash, result FROM idempotency_keys WHERE customer_id = $1 AND key = $2`,
    [customerId, key],
  );
  const r = res.rows[0];
  return r ? { requestHash: r.request_hash, result: r.result } : null;
}

export async function saveKey(
  tx: Queryable,
  customerId: string,
  key: string,
  requestHash: string,
  result: unknown,
): Promise<void> {
  await tx.query(`INSERT INTO idempotency_keys (customer_id, key, request_hash, result) VALUES ($1, $2, $3, $4)`, [
    customerId,
    key,
    requestHash,
    JSON.stringify(result),
  ]);
}
