import type { Queryable } from './queryable';

export interface RefundRow {
  id: string;
  customerId: string;
  lotId: string;
  status: 'pending' | 'succeeded' | 'failed';
  creditsRequested: bigint | null;
  creditsClawedBack: bigint;
  moneyMinor: bigint;
  currency: string | null;
  gateway: string | null;
  chargeReference: string | null;
  refundReference: string | null;
  clawedBackAt: Date | null;
  compensatedAt: Date | null;
  failureCode: string | null;
  failureReason: string | null;
  requestedBy: string;
  /** The asking key's name, when it has one (read at query time). */
  requestedByName?: string | null;
  reason: string;
  requestHash: string;
  workflowId: string;
  createdAt: Date;
  completedAt: Date | null;
}

interface Raw {
  id: string;
  customer_id: string;
  lot_id: string;
  status: RefundRow['status'];
  credits_requested: string | null;
  credits_clawed_back: string;
  money_minor: string;
  currency: string | null;
  gateway: string | null;
  charge_reference: string | null;
  refund_reference: string | null;
  clawed_back_at: Date | null;
  compensated_at: Date | null;
  failure_code: string | null;
  failure_reason: string | null;
  requested_by: string;
  requested_by_name?: string | null;
  reason: string;
  request_hash: string;
  workflow_id: string;
  created_at: Date;
  completed_at: Date | null;
}

/** Every refund column, and the asking key's name. */
const SELECT = `SELECT r.*, (SELECT k.name FROM api_keys k WHERE k.id = r.requested_by) AS requested_by_name FROM refunds r`;

const fromRaw = (r: Raw): RefundRow => ({
  id: r.id,
  customerId: r.customer_id,
  lotId: r.lot_id,
  status: r.status,
  creditsRequested: r.credits_requested === null ? null : BigInt(r.credits_requested),
  creditsClawedBack: BigInt(r.credits_clawed_back),
  moneyMinor: BigInt(r.money_minor),
  currency: r.currency,
  gateway: r.gateway,
  chargeReference: r.charge_reference,
  refundReference: r.refund_reference,
  clawedBackAt: r.clawed_back_at,
  compensatedAt: r.compensated_at,
  failureCode: r.failure_code,
  failureReason: r.failure_reason,
  requestedBy: r.requested_by,
  requestedByName: r.requested_by_name ?? null,
  reason: r.reason,
  requestHash: r.request_hash,
  workflowId: r.workflow_id,
  createdAt: r.created_at,
  completedAt: r.completed_at,
});

export async function insertRefund(
  q: Queryable,
  r: Pick<
    RefundRow,
    'id' | 'customerId' | 'lotId' | 'creditsRequested' | 'requestedBy' | 'reason' | 'requestHash' | 'workflowId'
  >,
): Promise<RefundRow> {
  await q.query(
    `INSERT INTO refunds (id, customer_id, lot_id, status, credits_requested, requested_by, reason, request_hash, workflow_id)
     VALUES ($1, $2, $3, 'pending', $4, $5, $6, $7, $8) ON CONFLICT (customer_id, id) DO NOTHING`,
    [
      r.id,
      r.customerId,
      r.lotId,
      r.creditsRequested?.toString() ?? null,
      r.requestedBy,
      r.reason,
      r.requestHash,
      r.workflowId,
    ],
  );
  return (await getRefund(q, r.id))!;
}

export async function getRefund(q: Queryable, id: string, lock = false): Promise<RefundRow | null> {
  const r = await q.query<Raw>(`${SELECT} WHERE r.id = $1${lock ? ' FOR UPDATE OF r' : ''}`, [id]);
  return r.rows[0] ? fromRaw(r.rows[0]) : null;
}

/** Newest first; `after` is the last row of the previous page (created_at, id). */
export async function listRefunds(
  q: Queryable,
  customerId: string,
  o: { limit: number; after?: { createdAt: Date; id: string } },
): Promise<RefundRow[]> {
  const r = await q.query<Raw>(
    `${SELECT} WHERE r.customer_id = $1
       AND ($2::timestamptz IS NULL OR (r.created_at, r.id) < ($2::timestamptz, $3::text))
     ORDER BY r.created_at DESC, r.id DESC LIMIT $4`,
    [customerId, o.after?.createdAt ?? null, o.after?.id ?? null, o.limit],
  );
  return r.rows.map(fromRaw);
}

/** What the lot's other refunds have taken so far (a failed one was compensated: it counts nothing). */
export async function lotRefundTotals(
  q: Queryable,
  lotId: string,
  except: string,
): Promise<{ credits: bigint; money: bigint }> {
  const r = await q.query<{ credits: string; money: string }>(
    `SELECT COALESCE(sum(credits_clawed_back), 0)::text AS credits, COALESCE(sum(money_minor), 0)::text AS money
       FROM refunds WHERE lot_id = $1 AND id <> $2 AND status <> 'failed' AND clawed_back_at IS NOT NULL`,
    [lotId, except],
  );
  return { credits: BigInt(r.rows[0]!.credits), money: BigInt(r.rows[0]!.money) };
}

export async function markClawedBack(
  q: Queryable,
  id: string,
  c: { credits: bigint; money: bigint; currency: string; gateway: string; chargeReference: string | null; at: Date },
): Promise<void> {
  await q.query(
    `UPDATE refunds SET credits_clawed_back = $2, money_minor = $3, currency = $4, gateway = $5, charge_reference = $6,
       clawed_back_at = $7, updated_at = now() WHERE id = $1`,
    [id, c.credits.toString(), c.money.toString(), c.currency, c.gateway, c.chargeReference, c.at],
  );
}

export async function markRefundSucceeded(q: Queryable, id: string, refundReference: string | null, at: Date) {
  const r = await q.query(
    `UPDATE refunds SET status = 'succeeded', refund_reference = $2, completed_at = $3, updated_at = now()
     WHERE id = $1 AND status = 'pending'`,
    [id, refundReference, at],
  );
  return (r.rowCount ?? 0) > 0;
}

export async function markRefundFailed(
  q: Queryable,
  id: string,
  f: { code: string; reason: string; compensatedAt: Date | null; at: Date },
) {
  const r = await q.query(
    `UPDATE refunds SET status = 'failed', failure_code = $2, failure_reason = $3, compensated_at = $4,
       completed_at = $5, updated_at = now() WHERE id = $1 AND status = 'pending'`,
    [id, f.code, f.reason.slice(0, 500), f.compensatedAt, f.at],
  );
  return (r.rowCount ?? 0) > 0;
}

/** Another refund of the lot that has clawed back and not finished (money not fixed for good yet). */
export async function refundInProgress(q: Queryable, lotId: string, except: string): Promise<string | null> {
  const r = await q.query<{ id: string }>(
    `SELECT id FROM refunds WHERE lot_id = $1 AND id <> $2 AND status = 'pending' AND clawed_back_at IS NOT NULL LIMIT 1`,
    [lotId, except],
  );
  return r.rows[0]?.id ?? null;
}

/** Refunds still pending after `staleMs` (their workflow may have ended: the sweeper re-runs them). */
export async function stalePendingRefunds(q: Queryable, staleMs: number, limit: number): Promise<RefundRow[]> {
  const r = await q.query<Raw>(
    `SELECT * FROM refunds WHERE status = 'pending' AND updated_at < now() - make_interval(secs => $1 / 1000.0)
     ORDER BY updated_at LIMIT $2`,
    [staleMs, limit],
  );
  return r.rows.map(fromRaw);
}

/** The payment that paid for a lot (its gateway and charge), if the lot came from one. */
export async function paymentOfLot(
  q: Queryable,
  lotId: string,
): Promise<{ gateway: string; reference: string | null } | null> {
  const r = await q.query<{ gateway: string; payment_reference: string | null }>(
    `SELECT gateway, payment_reference FROM payments WHERE lot_id = $1 AND status = 'succeeded'`,
    [lotId],
  );
  return r.rows[0] ? { gateway: r.rows[0].gateway, reference: r.rows[0].payment_reference } : null;
}
