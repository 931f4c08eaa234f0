import type { Queryable } from './queryable';
import type { Violation } from './invariants';

/**
 * Invariant 9 as SQL: every purchased lot a payment granted has the payment's charge as its cost
 * basis, one charge per purchase or top-up (never two), one lot per charge; for the sandbox
 * gateway, whose charges are ours to read, money taken matches payments exactly. A pending
 * payment is in flight: its charge may exist before its lot. Lots granted by an admin with a
 * cost but no payment row (money taken elsewhere) are not checked. Empty result: it holds.
 */
const CHECKS: Record<string, string> = {
  'inv9: a succeeded payment has its purchased lot, cost basis = the charge': `
    SELECT p.customer_id || '/' || p.id AS subject,
           format('lot %s kind %s cost %s %s ref %s original %s; payment %s %s ref %s credits %s',
                  l.id, l.kind, l.cost_amount_minor, l.cost_currency, l.payment_reference, l.original,
                  p.amount_minor, p.currency, p.payment_reference, p.credits) AS detail
      FROM payments p LEFT JOIN credit_lots l ON l.id = p.lot_id
     WHERE p.status = 'succeeded'
       AND (l.id IS NULL OR l.customer_id <> p.customer_id OR l.kind <> 'purchased'
            OR l.payment_reference IS DISTINCT FROM p.payment_reference
            OR l.cost_amount_minor IS DISTINCT FROM p.amount_minor
            OR l.cost_currency IS DISTINCT FROM p.currency OR l.original <> p.credits)`,
  'inv9: a payment that did not succeed has no lot': `
    SELECT customer_id || '/' || id AS subject, format('%s with lot %s', status, lot_id) AS detail
      FROM payments WHERE status <> 'succeeded' AND lot_id IS NOT NULL`,
  'inv9: one payment per gateway charge': `
    SELECT gateway || ':' || payment_reference AS subject, format('%s payments', count(*)) AS detail
      FROM payments WHERE payment_reference IS NOT NULL AND gateway <> 'manual'
     GROUP BY gateway, payment_reference HAVING count(*) > 1`,
  'inv9: one lot per gateway charge': `
    SELECT l.payment_reference AS subject, format('%s lots', count(*)) AS detail
      FROM credit_lots l
     WHERE l.payment_reference IN (SELECT payment_reference FROM payments
                                    WHERE payment_reference IS NOT NULL AND gateway <> 'manual')
     GROUP BY l.payment_reference HAVING count(*) > 1`,
  'inv9 (sandbox): every charge belongs to a payment that succeeded with it, or is in flight': `
    SELECT s.id AS subject,
           CASE WHEN p.id IS NULL THEN 'no payment with its key ' || s.idempotency_key
                ELSE format('payment %s/%s %s ref %s amount %s %s; charged %s %s', p.customer_id, p.id, p.status,
                            p.payment_reference, p.amount_minor, p.currency, s.amount_minor, s.currency) END AS detail
      FROM sandbox_charges s
      LEFT JOIN payments p ON p.gateway_key = s.idempotency_key AND p.gateway = 'sandbox'
     WHERE p.id IS NULL OR p.status = 'failed' OR p.customer_id <> s.customer_id
        OR p.amount_minor <> s.amount_minor OR p.currency <> s.currency
        OR (p.status = 'succeeded' AND p.payment_reference <> s.id)`,
  'inv9 (sandbox): every succeeded sandbox payment was charged under its key': `
    SELECT p.customer_id || '/' || p.id AS subject, format('reference %s', p.payment_reference) AS detail
      FROM payments p LEFT JOIN sandbox_charges s ON s.id = p.payment_reference
     WHERE p.gateway = 'sandbox' AND p.status = 'succeeded'
       AND (s.id IS NULL OR s.idempotency_key <> p.gateway_key)`,
  'inv9 (sandbox): money refunded never exceeds the charge, and equals its refunds': `
    SELECT s.id AS subject, format('charged %s, refunded %s, refunds %s', s.amount_minor, s.refunded_minor,
                                   COALESCE(r.total, 0)) AS detail
      FROM sandbox_charges s
      LEFT JOIN (SELECT charge_id, sum(amount_minor) AS total FROM sandbox_refunds GROUP BY charge_id) r
        ON r.charge_id = s.id
     WHERE s.refunded_minor > s.amount_minor OR s.refunded_minor <> COALESCE(r.total, 0)`,
};

export async function paymentViolations(q: Queryable): Promise<Violation[]> {
  const out: Violation[] = [];
  for (const [invariant, sql] of Object.entries(CHECKS)) {
    const res = await q.query<{ subject: string; detail: string }>(sql);
    for (const r of res.rows) out.push({ invariant, subject: r.subject, detail: r.detail });
  }
  return out;
}
