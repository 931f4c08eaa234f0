import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

export interface CorrectableEvent {
  credits: bigint;
  transactionId: string;
  /** The id of the correction already made, or null. */
  correctionId: string | null;
}

/** The event and whether it is corrected; for a customer whose wallet the caller has locked. */
export async function findCorrectableEvent(
  q: Queryable,
  customerId: string,
  eventId: string,
): Promise<CorrectableEvent | null> {
  const res = await q.query<{ credits: string; transaction_id: string; correction_id: string | null }>(
    `SELECT e.credits, e.transaction_id, c.id AS correction_id
       FROM usage_events e
       LEFT JOIN usage_corrections c ON c.customer_id = e.customer_id AND c.event_id = e.id
      WHERE e.customer_id = $1 AND e.id = $2`,
    [customerId, eventId],
  );
  const r = res.rows[0];
  return r ? { credits: int8(r.credits), transactionId: r.transaction_id, correctionId: r.correction_id } : null;
}

export interface Draw {
  /** null: the part no lot paid (it became arrears). */
  lotId: string | null;
  /** What the usage transaction consumed from this source. */
  drawn: bigint;
  /** What corrections of its events have already given back from this source. */
  reversed: bigint;
}

/**
 * A usage transaction's consumption per source in consumption order (the order its entries were
 * written; the arrears part last), with what earlier corrections of its events reversed.
 */
export async function drawsOf(q: Queryable, customerId: string, transactionId: string): Promise<Draw[]> {
  const res = await q.query<{ lot_id: string | null; drawn: string; reversed: string }>(
    `WITH drawn AS (
       SELECT lot_id, sum(amount) AS drawn, min(id) AS first FROM ledger_entries
        WHERE transaction_id = $2 AND account = 'consumed' AND amount > 0 GROUP BY lot_id
     ), reversed AS (
       SELECT x.lot_id, -sum(x.amount) AS reversed
         FROM usage_corrections c
         JOIN usage_events e ON e.customer_id = c.customer_id AND e.id = c.event_id
         JOIN ledger_entries x ON x.transaction_id = c.transaction_id AND x.account = 'consumed'
        WHERE c.customer_id = $1 AND e.transaction_id = $2
        GROUP BY x.lot_id
     )
     SELECT d.lot_id, d.drawn::text, COALESCE(r.reversed, 0)::text AS reversed
       FROM drawn d LEFT JOIN reversed r ON r.lot_id IS NOT DISTINCT FROM d.lot_id
      ORDER BY d.lot_id IS NULL, d.first`,
    [customerId, transactionId],
  );
  return res.rows.map((r) => ({ lotId: r.lot_id, drawn: int8(r.drawn), reversed: int8(r.reversed) }));
}

export interface NewCorrection {
  id: string;
  customerId: string;
  eventId: string;
  credits: bigint;
  transactionId: string;
  requestedBy: string;
  reason: string;
  createdAt: Date;
}

export async function insertCorrection(tx: Queryable, c: NewCorrection): Promise<void> {
  await tx.query(
    `INSERT INTO usage_corrections (id, customer_id, event_id, credits, transaction_id, requested_by, reason, created_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
    [c.id, c.customerId, c.eventId, c.credits.toString(), c.transactionId, c.requestedBy, c.reason, c.createdAt],
  );
}
