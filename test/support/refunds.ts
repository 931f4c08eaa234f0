import type { Pool } from '../../db/pool';
import { refundWorkflowId } from '../../ledger/refunds';

/** Credits in µc (the ledger's unit): 1 credit = 1,000,000. */
export const MICRO = 1_000_000n;
export const mc = (credits: number | bigint) => BigInt(credits) * MICRO;

/** The lot as stored, in µc. */
export async function lotState(pool: Pool, lotId: string) {
  const r = await pool.query<{ remaining: string; held: string; original: string; status: string }>(
    'SELECT remaining::text, held::text, original::text, status FROM credit_lots WHERE id = $1',
    [lotId],
  );
  const l = r.rows[0]!;
  return { remaining: BigInt(l.remaining), held: BigInt(l.held), original: BigInt(l.original), status: l.status };
}

/** Σ ledger entries per system account for one lot (µc): where its credits went, by the ledger. */
export async function lotFlows(pool: Pool, lotId: string): Promise<Record<string, bigint>> {
  const r = await pool.query<{ account: string; s: string }>(
    `SELECT account, sum(amount)::text AS s FROM ledger_entries WHERE lot_id = $1 GROUP BY account`,
    [lotId],
  );
  return Object.fromEntries(r.rows.map((x) => [x.account, BigInt(x.s)]));
}

/** The ledger transactions a refund's saga wrote (by the workflow id the ledger recorded). */
export async function refundTransactions(pool: Pool, refundId: string) {
  const r = await pool.query<{
    type: string;
    key: string;
    reference: string | null;
    requestedBy: string | null;
    reason: string | null;
  }>(
    `SELECT type, idempotency_key AS key, reference, requested_by AS "requestedBy", reason
       FROM ledger_transactions WHERE workflow_id = $1 OR reference = $1 ORDER BY seq`,
    [refundWorkflowId(refundId)],
  );
  return r.rows;
}

/** What the sandbox gateway refunded under this key (its own table: the money that moved). */
export async function sandboxRefundsByKey(pool: Pool, key: string) {
  const r = await pool.query<{ id: string; chargeId: string; amountMinor: string }>(
    `SELECT id, charge_id AS "chargeId", amount_minor::text AS "amountMinor"
       FROM sandbox_refunds WHERE idempotency_key = $1 ORDER BY created_at`,
    [key],
  );
  return r.rows;
}

/** The charge's refunded total as the sandbox keeps it. */
export async function sandboxRefunded(pool: Pool, chargeId: string): Promise<string> {
  const r = await pool.query<{ v: string }>('SELECT refunded_minor::text AS v FROM sandbox_charges WHERE id = $1', [
    chargeId,
  ]);
  return r.rows[0]!.v;
}

/** The refund's notifications, by type, in insertion order. */
export async function refundOutbox(pool: Pool, refundId: string): Promise<string[]> {
  const r = await pool.query<{ type: string }>(
    `SELECT type FROM outbox_events WHERE payload->>'refundId' = $1 ORDER BY id`,
    [refundId],
  );
  return r.rows.map((x) => x.type);
}

/** The refund's row, figures as strings (µc for credits). */
export async function refundState(pool: Pool, refundId: string) {
  const r = await pool.query<{
    status: string;
    clawed: string;
    money: string;
    gateway: string | null;
    failureCode: string | null;
    clawedBackAt: Date | null;
    compensatedAt: Date | null;
    refundReference: string | null;
  }>(
    `SELECT status, credits_clawed_back::text AS clawed, money_minor::text AS money, gateway,
            failure_code AS "failureCode", clawed_back_at AS "clawedBackAt", compensated_at AS "compensatedAt",
            refund_reference AS "refundReference"
       FROM refunds WHERE id = $1`,
    [refundId],
  );
  return r.rows[0];
}

export { eventually } from './eventually';
