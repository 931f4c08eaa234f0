import { int8 } from '../domain/amount';
import type { LotKind, LotStatus } from '../domain/lots';
import type { Queryable } from './queryable';

export interface Recurrence {
  every: 'month' | 'week' | 'day';
  count?: number;
}

export interface LotRow {
  id: string;
  customerId: string;
  kind: LotKind;
  priority: number;
  original: bigint;
  remaining: bigint;
  held: bigint;
  effectiveAt: Date;
  expiresAt: Date | null;
  rolloverCap: bigint | null;
  recurrence: Recurrence | null;
  costMinor: bigint;
  costCurrency: string | null;
  paymentReference: string | null;
  reason: string | null;
  status: LotStatus;
  createdAt: Date;
  /** Rolled-over credits: the lot they came from. */
  originLotId?: string | null;
  /** A renewal: the lot of the previous period. */
  renewsLotId?: string | null;
  /** 1 for a first grant, n for the n-th period of a recurring allowance. */
  period?: number;
}

interface RawLot {
  id: string;
  customer_id: string;
  kind: LotKind;
  priority: number;
  original: string;
  remaining: string;
  held: string;
  effective_at: Date;
  expires_at: Date | null;
  rollover_cap: string | null;
  recurrence: Recurrence | null;
  cost_amount_minor: string | null;
  cost_currency: string | null;
  payment_reference: string | null;
  reason: string | null;
  status: LotStatus;
  created_at: Date;
  origin_lot_id: string | null;
  renews_lot_id: string | null;
  period: number;
}

const toLot = (r: RawLot): LotRow => ({
  id: r.id,
  customerId: r.customer_id,
  kind: r.kind,
  priority: r.priority,
  original: int8(r.original),
  remaining: int8(r.remaining),
  held: int8(r.held),
  effectiveAt: r.effective_at,
  expiresAt: r.expires_at,
  rolloverCap: r.rollover_cap === null ? null : int8(r.rollover_cap),
  recurrence: r.recurrence,
  costMinor: int8(r.cost_amount_minor),
  costCurrency: r.cost_currency,
  paymentReference: r.payment_reference,
  reason: r.reason,
  status: r.status,
  createdAt: r.created_at,
  originLotId: r.origin_lot_id,
  renewsLotId: r.renews_lot_id,
  period: r.period,
});

export async function insertLot(tx: Queryable, l: LotRow): Promise<void> {
  await tx.query(
    `INSERT INTO credit_lots (id, customer_id, kind, priority, original, remaining, held, effective_at, expires_at,
       rollover_cap, recurrence, cost_amount_minor, cost_currency, payment_reference, reason, status, created_at,
       origin_lot_id, renews_lot_id, period)
     VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20)`,
    [
      l.id,
      l.customerId,
      l.kind,
      l.priority,
      l.original.toString(),
      l.remaining.toString(),
      l.held.toString(),
      l.effectiveAt,
      l.expiresAt,
      l.rolloverCap?.toString() ?? null,
      l.recurrence ? JSON.stringify(l.recurrence) : null,
      l.costCurrency ? l.costMinor.toString() : null,
      l.costCurrency,
      l.paymentReference,
      l.reason,
      l.status,
      l.createdAt,
      l.originLotId ?? null,
      l.renewsLotId ?? null,
      l.period ?? 1,
    ],
  );
}

export async function lockLot(tx: Queryable, customerId: string, lotId: string): Promise<LotRow | null> {
  const res = await tx.query<RawLot>(`SELECT * FROM credit_lots WHERE id = $1 AND customer_id = $2 FOR UPDATE`, [
    lotId,
    customerId,
  ]);
  return res.rows[0] ? toLot(res.rows[0]) : null;
}

/** Writes new remaining/held/status for several lots in one statement. */
export async function updateLots(
  tx: Queryable,
  changes: readonly { id: string; remaining: bigint; held: bigint; status: LotStatus }[],
): Promise<void> {
  if (changes.length === 0) return;
  await tx.query(
    `UPDATE credit_lots l SET remaining = c.remaining, held = c.held, status = c.status
       FROM unnest($1::uuid[], $2::bigint[], $3::bigint[], $4::text[]) AS c(id, remaining, held, status)
      WHERE l.id = c.id`,
    [
      changes.map((c) => c.id),
      changes.map((c) => c.remaining.toString()),
      changes.map((c) => c.held.toString()),
      changes.map((c) => c.status),
    ],
  );
}

export async function listLots(q: Queryable, customerId: string, opts: { openOnly: boolean }): Promise<LotRow[]> {
  const res = await q.query<RawLot>(
    `SELECT * FROM credit_lots WHERE customer_id = $1 ${opts.openOnly ? `AND status = 'active'` : ''}`,
    [customerId],
  );
  return res.rows.map(toLot);
}

/**
 * The open lots of customers whose wallet rows the caller has locked. Lots are only ever written
 * under their wallet's lock (the ledger's protocol), so no row lock is needed to read them here:
 * skipping it halves the row writes of a large usage batch.
 */
export async function openLotsOf(tx: Queryable, customerIds: readonly string[]): Promise<LotRow[]> {
  const res = await tx.query<RawLot>(
    `SELECT * FROM credit_lots WHERE customer_id = ANY($1::text[]) AND status = 'active' AND remaining > 0
      ORDER BY id`,
    [customerIds],
  );
  return res.rows.map(toLot);
}

/** Specific lots of a customer whose wallet the caller has locked (see openLotsOf on why no row lock). */
export async function lotsByIds(tx: Queryable, customerId: string, ids: readonly string[]): Promise<LotRow[]> {
  if (ids.length === 0) return [];
  const res = await tx.query<RawLot>(
    `SELECT * FROM credit_lots WHERE customer_id = $1 AND id = ANY($2::uuid[]) ORDER BY id`,
    [customerId, ids],
  );
  return res.rows.map(toLot);
}

/** Active lots whose expiry (or period end) has come by `asOf`, for customers the caller has locked. */
export async function lotsDueBy(tx: Queryable, customerId: string, asOf: Date): Promise<LotRow[]> {
  const res = await tx.query<RawLot>(
    `SELECT * FROM credit_lots WHERE customer_id = $1 AND status IN ('active', 'depleted') AND expires_at <= $2
      ORDER BY expires_at, id`,
    [customerId, asOf],
  );
  return res.rows.map(toLot);
}

/** Upcoming expiries / period ends, soonest first. */
export async function upcomingExpiries(
  q: Queryable,
  customerId: string,
  after: Date,
  limit: number,
): Promise<LotRow[]> {
  const res = await q.query<RawLot>(
    `SELECT * FROM credit_lots WHERE customer_id = $1 AND status IN ('active', 'depleted') AND expires_at > $2
      ORDER BY expires_at, id LIMIT $3`,
    [customerId, after, limit],
  );
  return res.rows.map(toLot);
}

/** Lots with credits that become drawable after `after` (future-dated grants), soonest first. */
export async function upcomingEffective(
  q: Queryable,
  customerId: string,
  after: Date,
  limit: number,
): Promise<LotRow[]> {
  const res = await q.query<RawLot>(
    `SELECT * FROM credit_lots WHERE customer_id = $1 AND status = 'active' AND remaining > 0 AND effective_at > $2
      ORDER BY effective_at, id LIMIT $3`,
    [customerId, after, limit],
  );
  return res.rows.map(toLot);
}

/**
 * The wallet's version when it has arrears and a lot drawable at `at` still has credits (a lot
 * reached its effectiveAt meanwhile): the arrears are payable now. Null when there is nothing to pay.
 */
export async function arrearsPayable(q: Queryable, customerId: string, at: Date): Promise<bigint | null> {
  const res = await q.query<{ version: string }>(
    `SELECT w.version FROM wallets w
      WHERE w.customer_id = $1 AND w.arrears > 0
        AND EXISTS (SELECT 1 FROM credit_lots l
                     WHERE l.customer_id = w.customer_id AND l.status = 'active' AND l.remaining > 0
                       AND l.effective_at <= $2 AND (l.expires_at IS NULL OR l.expires_at > $2))`,
    [customerId, at],
  );
  return res.rows[0] ? int8(res.rows[0].version) : null;
}
