import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

export type HoldStatus = 'active' | 'settled' | 'released' | 'expired';

export interface HoldRow {
  customerId: string;
  id: string;
  workflowId: string;
  amount: bigint;
  /** Everything still reserved: the lots' parts plus `overdraft`. */
  held: bigint;
  /** The part of `held` reserved beyond the lots, on the wallet's overdraft limit (no lot). */
  overdraft: bigint;
  captured: bigint;
  released: bigint;
  status: HoldStatus;
  expiresAt: Date;
  metadata: Record<string, string>;
  createdAt: Date;
  lots: { lotId: string; held: bigint }[];
}

interface Raw {
  customer_id: string;
  id: string;
  workflow_id: string;
  amount: string;
  held: string;
  overdraft: string;
  captured: string;
  released: string;
  status: HoldStatus;
  expires_at: Date;
  metadata: Record<string, string>;
  created_at: Date;
  lots: { lot_id: string; held: string }[] | null;
}

const SELECT = `SELECT h.*, (SELECT json_agg(json_build_object('lot_id', l.lot_id, 'held', l.held::text) ORDER BY l.lot_id)
                  FROM hold_lots l WHERE l.customer_id = h.customer_id AND l.hold_id = h.id AND l.held > 0) AS lots
                 FROM holds h`;

const toRow = (r: Raw): HoldRow => ({
  customerId: r.customer_id,
  id: r.id,
  workflowId: r.workflow_id,
  amount: int8(r.amount),
  held: int8(r.held),
  overdraft: int8(r.overdraft),
  captured: int8(r.captured),
  released: int8(r.released),
  status: r.status,
  expiresAt: r.expires_at,
  metadata: r.metadata,
  createdAt: r.created_at,
  lots: (r.lots ?? []).map((l) => ({ lotId: l.lot_id, held: int8(l.held) })),
});

export async function getHold(q: Queryable, customerId: string, id: string): Promise<HoldRow | null> {
  const res = await q.query<Raw>(`${SELECT} WHERE h.customer_id = $1 AND h.id = $2`, [customerId, id]);
  return res.rows[0] ? toRow(res.rows[0]) : null;
}

export async function insertHold(q: Queryable, h: Omit<HoldRow, 'createdAt' | 'lots'>): Promise<void> {
  await q.query(
    `INSERT INTO holds (customer_id, id, workflow_id, amount, held, captured, released, status, expires_at, metadata,
                        overdraft)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
    [
      h.customerId,
      h.id,
      h.workflowId,
      h.amount.toString(),
      h.held.toString(),
      h.captured.toString(),
      h.released.toString(),
      h.status,
      h.expiresAt,
      JSON.stringify(h.metadata),
      h.overdraft.toString(),
    ],
  );
}

export async function updateHold(
  q: Queryable,
  h: Pick<
    HoldRow,
    'customerId' | 'id' | 'amount' | 'held' | 'overdraft' | 'captured' | 'released' | 'status' | 'expiresAt'
  >,
): Promise<void> {
  await q.query(
    `UPDATE holds SET amount = $3, held = $4, captured = $5, released = $6, status = $7, expires_at = $8,
            overdraft = $9, updated_at = now()
      WHERE customer_id = $1 AND id = $2`,
    [
      h.customerId,
      h.id,
      h.amount.toString(),
      h.held.toString(),
      h.captured.toString(),
      h.released.toString(),
      h.status,
      h.expiresAt,
      h.overdraft.toString(),
    ],
  );
}

/** What the customer's active holds reserve on the overdraft limit (beyond their lots). */
export async function activeOverdraft(q: Queryable, customerId: string): Promise<bigint> {
  const res = await q.query<{ s: string }>(
    `SELECT COALESCE(sum(overdraft), 0)::text AS s FROM holds WHERE customer_id = $1 AND status = 'active'`,
    [customerId],
  );
  return int8(res.rows[0]?.s);
}

/** Sets each (hold, lot) reserved amount: one statement. */
export async function upsertHoldLots(
  q: Queryable,
  customerId: string,
  holdId: string,
  lots: readonly { lotId: string; held: bigint }[],
): Promise<void> {
  if (lots.length === 0) return;
  await q.query(
    `INSERT INTO hold_lots (customer_id, hold_id, lot_id, held)
     SELECT $1, $2, l.lot_id, l.held FROM unnest($3::uuid[], $4::bigint[]) AS l(lot_id, held)
     ON CONFLICT (customer_id, hold_id, lot_id) DO UPDATE SET held = EXCLUDED.held`,
    [customerId, holdId, lots.map((l) => l.lotId), lots.map((l) => l.held.toString())],
  );
}

/**
 * Active holds past their TTL (by `graceSeconds`): candidates for the stranded-hold sweeper, with
 * the expiresAt seen, to pass as the release's `deadline` (an extend meanwhile then wins).
 */
export async function overdueHolds(q: Queryable, now: Date, graceSeconds: number, limit: number) {
  const res = await q.query<{ customer_id: string; id: string; workflow_id: string; expires_at: Date }>(
    `SELECT customer_id, id, workflow_id, expires_at FROM holds
      WHERE status = 'active' AND expires_at < $1::timestamptz - make_interval(secs => $2) ORDER BY expires_at LIMIT $3`,
    [now, graceSeconds, limit],
  );
  return res.rows.map((r) => ({
    customerId: r.customer_id,
    holdId: r.id,
    workflowId: r.workflow_id,
    expiresAt: r.expires_at,
  }));
}

/**
 * Customers whose lifecycle work is overdue (a lifecycle workflow missed it): lots past their end
 * not booked yet, or a lot drawable for a while with credits left while the wallet has arrears
 * (its effectiveAt passed without the tick that pays the arrears from it).
 */
export async function customersWithOverdueLots(
  q: Queryable,
  now: Date,
  graceSeconds: number,
  limit: number,
): Promise<string[]> {
  const res = await q.query<{ customer_id: string }>(
    `WITH t AS (SELECT $1::timestamptz - make_interval(secs => $2) AS due)
     SELECT customer_id FROM credit_lots, t
      WHERE status IN ('active', 'depleted') AND expires_at < t.due
     UNION
     SELECT l.customer_id FROM credit_lots l JOIN wallets w ON w.customer_id = l.customer_id, t
      WHERE w.arrears > 0 AND l.status = 'active' AND l.remaining > 0 AND l.effective_at < t.due
        AND (l.expires_at IS NULL OR l.expires_at > $1)
     LIMIT $3`,
    [now, graceSeconds, limit],
  );
  return res.rows.map((r) => r.customer_id);
}
