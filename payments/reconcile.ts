import type { Queryable } from '../db/queryable';
import type { Discrepancy } from '../db/reconciliation';
import type { GatewayRecord, PaymentGateway } from './gateway';

/**
 * Ledger vs gateway, asking the gateway (not our copy of what it said): every succeeded charge it
 * holds has one purchased lot of that cost, every succeeded payment of ours has its charge there,
 * and the same both ways for refunds. Objects created in [since, until) are judged; `until` lies
 * before the run started, so a purchase or refund still in flight is not called a discrepancy,
 * and the gateway is listed from `since` to now, so a charge made after a slow payment's row still
 * matches it. The check names are the sandbox checks' (db/reconciliation.ts), which run in SQL.
 */
export const CHECKS = {
  chargeHasLot: 'gateway: every charge has its lot',
  lotHasCharge: 'gateway: every purchased lot has exactly one charge of its cost basis',
  refundMatches: 'gateway: refunds equal gateway refunds',
  gatewayRefundHasRefund: 'gateway: every gateway refund has its refund',
} as const;

interface PaymentRow {
  customer_id: string;
  id: string;
  status: 'pending' | 'succeeded' | 'failed';
  gateway_key: string;
  payment_reference: string | null;
  created_at: Date;
  cost_amount_minor: string | null;
  cost_currency: string | null;
}
interface RefundRow {
  customer_id: string;
  id: string;
  status: string;
  money_minor: string;
  charge_reference: string | null;
  refund_reference: string | null;
  created_at: Date;
}

export async function checkGateway(
  q: Queryable,
  gateway: PaymentGateway,
  window: { since: Date; until: Date },
): Promise<{ discrepancies: Discrepancy[]; listed: number }> {
  if (!gateway.listSince) throw new Error(`gateway ${gateway.name} cannot be listed`);
  const listed: GatewayRecord[] = [];
  for await (const r of gateway.listSince(window.since)) listed.push(r);
  const charges = listed.filter((r) => r.kind === 'charge');
  const refunds = listed.filter((r) => r.kind === 'refund');
  const judged = (r: { createdAt: Date }) => r.createdAt >= window.since && r.createdAt < window.until;

  const payments = (
    await q.query<PaymentRow>(
      `SELECT p.customer_id, p.id, p.status, p.gateway_key, p.payment_reference, p.created_at,
              l.cost_amount_minor::text, l.cost_currency
         FROM payments p LEFT JOIN credit_lots l ON l.customer_id = p.customer_id AND l.id = p.lot_id
        WHERE p.gateway = $1
          AND (p.created_at >= $2 OR p.payment_reference = ANY($3::text[]) OR p.gateway_key = ANY($4::text[]))`,
      [
        gateway.name,
        window.since,
        charges.map((c) => c.reference),
        charges.flatMap((c) => (c.idempotencyKey ? [c.idempotencyKey] : [])),
      ],
    )
  ).rows;
  const ourRefunds = (
    await q.query<RefundRow>(
      `SELECT customer_id, id, status, money_minor::text, charge_reference, refund_reference, created_at
         FROM refunds
        WHERE gateway = $1 AND (created_at >= $2 OR refund_reference = ANY($3::text[]) OR id = ANY($4::text[]))`,
      [
        gateway.name,
        window.since,
        refunds.map((r) => r.reference),
        refunds.flatMap((r) => (r.idempotencyKey ? [r.idempotencyKey] : [])),
      ],
    )
  ).rows;

  const out: Discrepancy[] = [];
  const byReference = new Map(payments.filter((p) => p.payment_reference).map((p) => [p.payment_reference!, p]));
  const byKey = new Map(payments.map((p) => [p.gateway_key, p]));
  const customerOfCharge = (ref: string | undefined) => (ref ? (byReference.get(ref)?.customer_id ?? null) : null);

  for (const c of charges.filter(judged)) {
    const p = byReference.get(c.reference) ?? (c.idempotencyKey ? byKey.get(c.idempotencyKey) : undefined);
    const charge = `charge ${c.reference} ${c.amountMinor} ${c.currency}`;
    if (!p || p.status === 'failed') {
      const why = p ? `, but payment ${p.id} failed` : ` (key ${c.idempotencyKey ?? 'none'}) has no lot`;
      out.push({
        check: CHECKS.chargeHasLot,
        customerId: p?.customer_id ?? c.customerId,
        subject: c.reference,
        detail: charge + why,
      });
    } else if (p.status === 'succeeded' && p.payment_reference !== c.reference) {
      // A second charge under one payment's key: the customer paid twice for one lot.
      out.push({
        check: CHECKS.chargeHasLot,
        customerId: p.customer_id,
        subject: c.reference,
        detail: `${charge}: payment ${p.id} has ${p.payment_reference}`,
      });
    }
  }
  const charged = new Map(charges.map((c) => [c.reference, c]));
  for (const p of payments) {
    if (p.status !== 'succeeded' || !judged({ createdAt: p.created_at })) continue;
    const c = charged.get(p.payment_reference!);
    const cost = `${p.cost_amount_minor} ${p.cost_currency}`;
    if (!c) {
      out.push({
        check: CHECKS.lotHasCharge,
        customerId: p.customer_id,
        subject: p.id,
        detail: `charge ${p.payment_reference} not found at the gateway`,
      });
    } else if (BigInt(p.cost_amount_minor ?? -1) !== c.amountMinor || p.cost_currency !== c.currency) {
      out.push({
        check: CHECKS.lotHasCharge,
        customerId: p.customer_id,
        subject: p.id,
        detail: `lot cost ${cost}, charge ${c.amountMinor} ${c.currency}`,
      });
    }
  }

  const refundByReference = new Map(ourRefunds.filter((r) => r.refund_reference).map((r) => [r.refund_reference!, r]));
  const refundById = new Map(ourRefunds.map((r) => [r.id, r]));
  for (const g of refunds.filter(judged)) {
    const r = refundByReference.get(g.reference) ?? (g.idempotencyKey ? refundById.get(g.idempotencyKey) : undefined);
    if (!r || r.status === 'failed') {
      const why = r ? `, but refund ${r.id} failed` : ' has no refund';
      out.push({
        check: CHECKS.gatewayRefundHasRefund,
        customerId: r?.customer_id ?? customerOfCharge(g.chargeReference),
        subject: g.reference,
        detail: `gateway refund ${g.amountMinor} of ${g.chargeReference ?? '?'}${why}`,
      });
    }
  }
  const gatewayRefunds = new Map(refunds.map((g) => [g.reference, g]));
  for (const r of ourRefunds) {
    if (r.status !== 'succeeded' || BigInt(r.money_minor) === 0n || !judged({ createdAt: r.created_at })) continue;
    const g = r.refund_reference ? gatewayRefunds.get(r.refund_reference) : undefined;
    if (!g || g.amountMinor !== BigInt(r.money_minor) || g.chargeReference !== r.charge_reference) {
      out.push({
        check: CHECKS.refundMatches,
        customerId: r.customer_id,
        subject: r.id,
        detail: `refund succeeded ${r.money_minor} ref ${r.refund_reference}, gateway ${g ? `${g.amountMinor} of ${g.chargeReference}` : 'none'}`,
      });
    }
  }
  return { discrepancies: out, listed: listed.length };
}
