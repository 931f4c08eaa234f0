import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

/** A wallet's low-balance thresholds (µc, highest first) and those whose alert went out and is not re-armed. */
export interface AlertSettings {
  customerId: string;
  thresholds: bigint[];
  fired: bigint[];
}

interface Raw {
  customer_id: string;
  low_balance_thresholds: string[];
  low_balance_fired: string[];
}

const toSettings = (r: Raw): AlertSettings => ({
  customerId: r.customer_id,
  thresholds: r.low_balance_thresholds.map(int8),
  fired: r.low_balance_fired.map(int8),
});

export async function getAlerts(q: Queryable, customerId: string): Promise<AlertSettings | null> {
  const res = await q.query<Raw>(
    `SELECT customer_id, low_balance_thresholds::text[], low_balance_fired::text[] FROM wallets WHERE customer_id = $1`,
    [customerId],
  );
  return res.rows[0] ? toSettings(res.rows[0]) : null;
}

/**
 * Replaces the thresholds in one wallet update, so the `balance.low` trigger (migration 009) sees
 * them at once: a threshold the balance is already below fires now, in this transaction. Fired
 * entries for thresholds no longer listed are dropped here too (the trigger does not run once
 * the list is empty). The version moves like any wallet change; it is part of the trigger's
 * dedupe key, so a threshold removed and added back fires again instead of colliding with its
 * earlier key. Null when the customer does not exist.
 */
export async function setAlerts(
  q: Queryable,
  customerId: string,
  thresholds: readonly bigint[],
): Promise<AlertSettings | null> {
  const sorted = [...thresholds].sort((a, b) => (a > b ? -1 : a < b ? 1 : 0));
  const res = await q.query<Raw>(
    `UPDATE wallets
        SET low_balance_thresholds = $2::bigint[],
            low_balance_fired = ARRAY(SELECT f FROM unnest(low_balance_fired) AS f WHERE f = ANY ($2::bigint[])),
            version = version + 1, updated_at = now()
      WHERE customer_id = $1
      RETURNING customer_id, low_balance_thresholds::text[], low_balance_fired::text[]`,
    [customerId, sorted.map(String)],
  );
  return res.rows[0] ? toSettings(res.rows[0]) : null;
}
