import { formatCredits } from '../domain/amount';
import type { LotRow } from '../db/lots';

/** The JSON shape of a lot in API responses and stored idempotent results. */
export interface LotView {
  id: string;
  customerId: string;
  kind: string;
  priority: number;
  original: string;
  remaining: string;
  held: string;
  effectiveAt: string;
  expiresAt: string | null;
  rolloverCap: string | null;
  recurrence: LotRow['recurrence'];
  cost: { amountMinor: number; currency: string } | null;
  paymentReference: string | null;
  status: string;
  originLotId: string | null;
  renewsLotId: string | null;
  period: number;
}

export function lotView(l: LotRow): LotView {
  return {
    id: l.id,
    customerId: l.customerId,
    kind: l.kind,
    priority: l.priority,
    original: formatCredits(l.original),
    remaining: formatCredits(l.remaining),
    held: formatCredits(l.held),
    effectiveAt: l.effectiveAt.toISOString(),
    expiresAt: l.expiresAt?.toISOString() ?? null,
    rolloverCap: l.rolloverCap === null ? null : formatCredits(l.rolloverCap),
    recurrence: l.recurrence,
    // Minor units of money are bounded by the schema (≤ Number.MAX_SAFE_INTEGER), unlike credit amounts.
    cost: l.costCurrency ? { amountMinor: Number(l.costMinor), currency: l.costCurrency } : null,
    paymentReference: l.paymentReference,
    status: l.status,
    originLotId: l.originLotId ?? null,
    renewsLotId: l.renewsLotId ?? null,
    period: l.period ?? 1,
  };
}
