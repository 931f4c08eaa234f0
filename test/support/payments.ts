import type { Pool } from '../../db/pool';

/** What the sandbox gateway charged the customer (its own table: the money that actually moved). */
export async function sandboxCharges(pool: Pool, customerId: string) {
  const r = await pool.query<{ id: string; key: string; amountMinor: string; currency: string }>(
    `SELECT id, idempotency_key AS key, amount_minor::text AS "amountMinor", currency
       FROM sandbox_charges WHERE customer_id = $1 ORDER BY created_at, id`,
    [customerId],
  );
  return r.rows;
}

export async function purchasedLots(pool: Pool, customerId: string) {
  const r = await pool.query<{ id: string; cost: string | null; currency: string | null; reference: string | null }>(
    `SELECT id::text, cost_amount_minor::text AS cost, cost_currency AS currency, payment_reference AS reference
       FROM credit_lots WHERE customer_id = $1 AND kind = 'purchased' ORDER BY created_at, id`,
    [customerId],
  );
  return r.rows;
}

export async function paymentRows(pool: Pool, customerId: string, source: 'purchase' | 'topup') {
  const r = await pool.query<{
    id: string;
    status: string;
    amountMinor: string;
    gatewayKey: string;
    reference: string | null;
    lotId: string | null;
    attempts: number;
  }>(
    `SELECT id, status, amount_minor::text AS "amountMinor", gateway_key AS "gatewayKey",
            payment_reference AS reference, lot_id::text AS "lotId", attempts
       FROM payments WHERE customer_id = $1 AND source = $2 ORDER BY created_at, id`,
    [customerId, source],
  );
  return r.rows;
}

/** The customer's notifications, as `<type>:<paymentId>` in insertion order. */
export async function outboxOf(pool: Pool, customerId: string): Promise<string[]> {
  const r = await pool.query<{ type: string; paymentId: string }>(
    `SELECT type, payload->>'paymentId' AS "paymentId" FROM outbox_events WHERE customer_id = $1 ORDER BY id`,
    [customerId],
  );
  return r.rows.map((e) => `${e.type}:${e.paymentId}`);
}

/**
 * Money in, checked from the gateway's side: every charge has exactly one purchased lot with its
 * reference and amount, and exactly one payment row (by gateway key) that succeeded with it; every
 * purchased lot carrying a reference has its charge. Returns the problems (empty when all hold).
 */
export async function moneyInProblems(pool: Pool, customerId: string): Promise<string[]> {
  const charges = await sandboxCharges(pool, customerId);
  const lots = await purchasedLots(pool, customerId);
  const payments = [
    ...(await paymentRows(pool, customerId, 'purchase')),
    ...(await paymentRows(pool, customerId, 'topup')),
  ];
  const problems: string[] = [];
  for (const c of charges) {
    const mine = lots.filter((l) => l.reference === c.id);
    if (mine.length !== 1) problems.push(`charge ${c.id}: ${mine.length} lots`);
    for (const l of mine)
      if (l.cost !== c.amountMinor || l.currency !== c.currency)
        problems.push(`charge ${c.id} of ${c.amountMinor} ${c.currency}: lot cost ${l.cost} ${l.currency}`);
    const paid = payments.filter((p) => p.gatewayKey === c.key);
    if (paid.length !== 1 || paid[0]!.status !== 'succeeded' || paid[0]!.reference !== c.id)
      problems.push(`charge ${c.id}: payments ${JSON.stringify(paid)}`);
    else if (paid[0]!.lotId !== mine[0]?.id) problems.push(`charge ${c.id}: payment lot ${paid[0]!.lotId}`);
  }
  for (const p of payments)
    if (p.status === 'succeeded' && !charges.some((c) => c.id === p.reference && c.key === p.gatewayKey))
      problems.push(`payment ${p.id} succeeded without its charge ${p.reference}`);
  for (const l of lots)
    if (l.reference && !charges.some((c) => c.id === l.reference))
      problems.push(`lot ${l.id}: no charge ${l.reference}`);
  return problems;
}
