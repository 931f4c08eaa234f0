import type { Queryable } from './queryable';

/** A purchase or one top-up: one gateway charge under `gatewayKey`, then one purchased lot. */
export interface PaymentRow {
  customerId: string;
  id: string;
  source: 'purchase' | 'topup';
  status: 'pending' | 'succeeded' | 'failed';
  credits: bigint;
  amountMinor: bigint;
  currency: string;
  gateway: string;
  paymentMethod: string | null;
  gatewayCustomerId: string | null;
  gatewayKey: string;
  workflowId: string;
  requestHash: string;
  attempts: number;
  paymentReference: string | null;
  lotId: string | null;
  failureCode: string | null;
  failureReason: string | null;
  expiresAt: Date | null;
  reason: string | null;
  createdAt: Date;
}

const COLUMNS = `customer_id, id, source, status, credits, amount_minor, currency, gateway, payment_method,
  gateway_customer_id, gateway_key, workflow_id, request_hash, attempts, payment_reference, lot_id,
  failure_code, failure_reason, expires_at, reason, created_at`;

interface Raw {
  customer_id: string;
  id: string;
  source: PaymentRow['source'];
  status: PaymentRow['status'];
  credits: string;
  amount_minor: string;
  currency: string;
  gateway: string;
  payment_method: string | null;
  gateway_customer_id: string | null;
  gateway_key: string;
  workflow_id: string;
  request_hash: string;
  attempts: number;
  payment_reference: string | null;
  lot_id: string | null;
  failure_code: string | null;
  failure_reason: string | null;
  expires_at: Date | null;
  reason: string | null;
  created_at: Date;
}

const fromRaw = (r: Raw): PaymentRow => ({
  customerId: r.customer_id,
  id: r.id,
  source: r.source,
  status: r.status,
  credits: BigInt(r.credits),
  amountMinor: BigInt(r.amount_minor),
  currency: r.currency,
  gateway: r.gateway,
  paymentMethod: r.payment_method,
  gatewayCustomerId: r.gateway_customer_id,
  gatewayKey: r.gateway_key,
  workflowId: r.workflow_id,
  requestHash: r.request_hash,
  attempts: r.attempts,
  paymentReference: r.payment_reference,
  lotId: r.lot_id,
  failureCode: r.failure_code,
  failureReason: r.failure_reason,
  expiresAt: r.expires_at,
  reason: r.reason,
  createdAt: r.created_at,
});

export type NewPayment = Omit<
  PaymentRow,
  'status' | 'attempts' | 'paymentReference' | 'lotId' | 'failureCode' | 'failureReason'
>;

/** Inserts the payment unless it exists; returns the stored row (the first one on a replay). */
export async function insertPayment(q: Queryable, p: NewPayment): Promise<PaymentRow> {
  await q.query(
    `INSERT INTO payments (customer_id, id, source, status, credits, amount_minor, currency, gateway, payment_method,
       gateway_customer_id, gateway_key, workflow_id, request_hash, expires_at, reason, created_at)
     VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
     ON CONFLICT (customer_id, id) DO NOTHING`,
    [
      p.customerId,
      p.id,
      p.source,
      p.credits.toString(),
      p.amountMinor.toString(),
      p.currency,
      p.gateway,
      p.paymentMethod,
      p.gatewayCustomerId,
      p.gatewayKey,
      p.workflowId,
      p.requestHash,
      p.expiresAt,
      p.reason,
      p.createdAt,
    ],
  );
  return (await getPayment(q, p.customerId, p.id))!;
}

export async function getPayment(
  q: Queryable,
  customerId: string,
  id: string,
  lock = false,
): Promise<PaymentRow | null> {
  const r = await q.query<Raw>(
    `SELECT ${COLUMNS} FROM payments WHERE customer_id = $1 AND id = $2${lock ? ' FOR UPDATE' : ''}`,
    [customerId, id],
  );
  return r.rows[0] ? fromRaw(r.rows[0]) : null;
}

/** The customer's top-up still being charged, if any (at most one: the workflow is one per wallet). */
export async function pendingTopUp(q: Queryable, customerId: string): Promise<PaymentRow | null> {
  const r = await q.query<Raw>(
    `SELECT ${COLUMNS} FROM payments WHERE customer_id = $1 AND source = 'topup' AND status = 'pending'
     ORDER BY created_at LIMIT 1`,
    [customerId],
  );
  return r.rows[0] ? fromRaw(r.rows[0]) : null;
}

/** Top-ups started (pending or succeeded) in [from, to): what counts toward maxPerDay. */
export async function topUpsBetween(
  q: Queryable,
  customerId: string,
  from: Date,
  to: Date,
): Promise<{ count: number; credits: bigint }> {
  const r = await q.query<{ count: number; credits: string }>(
    `SELECT count(*)::int AS count, COALESCE(sum(credits), 0)::text AS credits FROM payments
     WHERE customer_id = $1 AND source = 'topup' AND status <> 'failed' AND created_at >= $2 AND created_at < $3`,
    [customerId, from, to],
  );
  return { count: r.rows[0]!.count, credits: BigInt(r.rows[0]!.credits) };
}

/** One more request to the gateway for this pending payment (retries and re-runs after a crash count). */
export async function recordAttempt(q: Queryable, customerId: string, id: string): Promise<void> {
  await q.query(
    `UPDATE payments SET attempts = attempts + 1, updated_at = now()
     WHERE customer_id = $1 AND id = $2 AND status = 'pending'`,
    [customerId, id],
  );
}

export async function markSucceeded(
  q: Queryable,
  customerId: string,
  id: string,
  s: { paymentReference: string; lotId: string },
): Promise<void> {
  await q.query(
    `UPDATE payments SET status = 'succeeded', payment_reference = $3, lot_id = $4, updated_at = now()
     WHERE customer_id = $1 AND id = $2 AND status = 'pending'`,
    [customerId, id, s.paymentReference, s.lotId],
  );
}

export async function markFailed(
  q: Queryable,
  customerId: string,
  id: string,
  f: { code: string; reason: string },
): Promise<boolean> {
  const r = await q.query(
    `UPDATE payments SET status = 'failed', failure_code = $3, failure_reason = $4, updated_at = now()
     WHERE customer_id = $1 AND id = $2 AND status = 'pending'`,
    [customerId, id, f.code, f.reason.slice(0, 500)],
  );
  return (r.rowCount ?? 0) > 0;
}

export interface PaymentMethodRow {
  paymentMethod: string;
  gatewayCustomerId: string | null;
  updatedAt: Date;
}

export async function getPaymentMethod(q: Queryable, customerId: string): Promise<PaymentMethodRow | null> {
  const r = await q.query<{ payment_method: string; gateway_customer_id: string | null; updated_at: Date }>(
    'SELECT payment_method, gateway_customer_id, updated_at FROM payment_methods WHERE customer_id = $1',
    [customerId],
  );
  const row = r.rows[0];
  return row
    ? { paymentMethod: row.payment_method, gatewayCustomerId: row.gateway_customer_id, updatedAt: row.updated_at }
    : null;
}

export async function putPaymentMethod(
  q: Queryable,
  customerId: string,
  m: { paymentMethod: string; gatewayCustomerId?: string },
): Promise<PaymentMethodRow> {
  const r = await q.query<{ updated_at: Date }>(
    `INSERT INTO payment_methods (customer_id, payment_method, gateway_customer_id) VALUES ($1, $2, $3)
     ON CONFLICT (customer_id) DO UPDATE SET payment_method = $2, gateway_customer_id = $3, updated_at = now()
     RETURNING updated_at`,
    [customerId, m.paymentMethod, m.gatewayCustomerId ?? null],
  );
  return {
    paymentMethod: m.paymentMethod,
    gatewayCustomerId: m.gatewayCustomerId ?? null,
    updatedAt: r.rows[0]!.updated_at,
  };
}

/** Purchases still pending after `staleMs` (their workflow may have ended between charge and grant). */
export async function stalePendingPurchases(q: Queryable, staleMs: number, limit: number): Promise<PaymentRow[]> {
  const r = await q.query<Raw>(
    `SELECT ${COLUMNS} FROM payments WHERE source = 'purchase' AND status = 'pending'
       AND updated_at < now() - make_interval(secs => $1 / 1000.0) ORDER BY updated_at LIMIT $2`,
    [staleMs, limit],
  );
  return r.rows.map(fromRaw);
}
