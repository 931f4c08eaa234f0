import type { Queryable } from './queryable';

export interface TopUpSettings {
  enabled: boolean;
  threshold: bigint;
  mode: 'fixed' | 'target';
  credits: bigint;
  /** Minor units per credit, a decimal string (may be fractional). */
  unitPrice: string;
  currency: string;
  paymentMethod: string | null;
  cooldownSeconds: number;
  maxPerDay: number;
  maxAttempts: number;
}

export interface TopUpRule extends TopUpSettings {
  customerId: string;
  consecutiveFailures: number;
  disabledReason: string | null;
  lastTopUpAt: Date | null;
  cooldownUntil: Date | null;
  nextSeq: bigint;
  updatedAt: Date;
}

interface Raw {
  customer_id: string;
  enabled: boolean;
  threshold: string;
  mode: 'fixed' | 'target';
  credits: string;
  unit_price_minor: string;
  currency: string;
  payment_method: string | null;
  cooldown_seconds: number;
  max_per_day: number;
  max_attempts: number;
  consecutive_failures: number;
  disabled_reason: string | null;
  last_topup_at: Date | null;
  cooldown_until: Date | null;
  next_seq: string;
  updated_at: Date;
}

const fromRaw = (r: Raw): TopUpRule => ({
  customerId: r.customer_id,
  enabled: r.enabled,
  threshold: BigInt(r.threshold),
  mode: r.mode,
  credits: BigInt(r.credits),
  unitPrice: r.unit_price_minor,
  currency: r.currency,
  paymentMethod: r.payment_method,
  cooldownSeconds: r.cooldown_seconds,
  maxPerDay: r.max_per_day,
  maxAttempts: r.max_attempts,
  consecutiveFailures: r.consecutive_failures,
  disabledReason: r.disabled_reason,
  lastTopUpAt: r.last_topup_at,
  cooldownUntil: r.cooldown_until,
  nextSeq: BigInt(r.next_seq),
  updatedAt: r.updated_at,
});

export async function getRule(q: Queryable, customerId: string, lock = false): Promise<TopUpRule | null> {
  const r = await q.query<Raw>(`SELECT * FROM auto_topup_rules WHERE customer_id = $1${lock ? ' FOR UPDATE' : ''}`, [
    customerId,
  ]);
  return r.rows[0] ? fromRaw(r.rows[0]) : null;
}

/** A PUT replaces the settings; enabling (again) clears the failure count and the disabled reason. */
export async function putRule(q: Queryable, customerId: string, s: TopUpSettings): Promise<TopUpRule> {
  const r = await q.query<Raw>(
    `INSERT INTO auto_topup_rules (customer_id, enabled, threshold, mode, credits, unit_price_minor, currency,
       payment_method, cooldown_seconds, max_per_day, max_attempts)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
     ON CONFLICT (customer_id) DO UPDATE SET enabled = $2, threshold = $3, mode = $4, credits = $5,
       unit_price_minor = $6, currency = $7, payment_method = $8, cooldown_seconds = $9, max_per_day = $10,
       max_attempts = $11,
       consecutive_failures = CASE WHEN $2 THEN 0 ELSE auto_topup_rules.consecutive_failures END,
       disabled_reason = CASE WHEN $2 THEN NULL ELSE auto_topup_rules.disabled_reason END,
       updated_at = now()
     RETURNING *`,
    [
      customerId,
      s.enabled,
      s.threshold.toString(),
      s.mode,
      s.credits.toString(),
      s.unitPrice,
      s.currency,
      s.paymentMethod,
      s.cooldownSeconds,
      s.maxPerDay,
      s.maxAttempts,
    ],
  );
  return fromRaw(r.rows[0]!);
}

/** Takes the next top-up number (it names the payment and its gateway key). */
export async function takeSeq(q: Queryable, customerId: string): Promise<bigint> {
  const r = await q.query<{ seq: string }>(
    `UPDATE auto_topup_rules SET next_seq = next_seq + 1 WHERE customer_id = $1 RETURNING next_seq - 1 AS seq`,
    [customerId],
  );
  return BigInt(r.rows[0]!.seq);
}

export async function recordSuccess(q: Queryable, customerId: string, at: Date, cooldownUntil: Date): Promise<void> {
  await q.query(
    `UPDATE auto_topup_rules SET consecutive_failures = 0, last_topup_at = $2, cooldown_until = $3, updated_at = now()
     WHERE customer_id = $1`,
    [customerId, at, cooldownUntil],
  );
}

/** One more failed top-up in a row; disables the rule at maxAttempts. Returns the new count and whether it disabled. */
export async function recordFailure(
  q: Queryable,
  customerId: string,
  cooldownUntil: Date,
): Promise<{ failures: number; disabled: boolean; maxAttempts: number }> {
  const r = await q.query<{ consecutive_failures: number; enabled: boolean; max_attempts: number; was: boolean }>(
    `UPDATE auto_topup_rules r SET consecutive_failures = r.consecutive_failures + 1,
       enabled = r.enabled AND r.consecutive_failures + 1 < r.max_attempts,
       disabled_reason = CASE WHEN r.enabled AND r.consecutive_failures + 1 >= r.max_attempts
                              THEN 'max_attempts' ELSE r.disabled_reason END,
       cooldown_until = $2, updated_at = now()
     FROM auto_topup_rules prev WHERE r.customer_id = $1 AND prev.customer_id = $1
     RETURNING r.consecutive_failures, r.enabled, r.max_attempts, prev.enabled AS was`,
    [customerId, cooldownUntil],
  );
  const row = r.rows[0];
  if (!row) return { failures: 0, disabled: false, maxAttempts: 0 };
  return { failures: row.consecutive_failures, disabled: row.was && !row.enabled, maxAttempts: row.max_attempts };
}

export async function disableRule(q: Queryable, customerId: string, reason: string): Promise<void> {
  await q.query(
    `UPDATE auto_topup_rules SET enabled = false, disabled_reason = $2, updated_at = now() WHERE customer_id = $1`,
    [customerId, reason],
  );
}

/**
 * Of these customers (or all, when null), those whose top-up workflow has work: an enabled rule
 * with available credits, counting top-ups in flight, below the threshold; or a top-up left
 * pending for longer than `staleMs` (its run ended between charge and grant: terminated, or a
 * step that gave up) — its own credits must not hide it, and the plan finishes it first.
 */
export async function walletsBelowThreshold(
  q: Queryable,
  customerIds: readonly string[] | null,
  limit = 1000,
  staleMs = 5 * 60_000,
): Promise<string[]> {
  const r = await q.query<{ customer_id: string }>(
    `SELECT r.customer_id FROM auto_topup_rules r JOIN wallets w ON w.customer_id = r.customer_id
     WHERE ($1::text[] IS NULL OR r.customer_id = ANY($1))
       AND ((r.enabled AND w.available + COALESCE((SELECT sum(p.credits) FROM payments p
               WHERE p.customer_id = r.customer_id AND p.source = 'topup' AND p.status = 'pending'), 0) < r.threshold)
         OR EXISTS (SELECT 1 FROM payments p WHERE p.customer_id = r.customer_id AND p.source = 'topup'
               AND p.status = 'pending' AND p.updated_at < now() - make_interval(secs => $3 / 1000.0)))
     ORDER BY r.customer_id LIMIT $2`,
    [customerIds, limit, staleMs],
  );
  return r.rows.map((x) => x.customer_id);
}
