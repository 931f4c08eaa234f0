import type { Entry } from '../db/ledger';
import type { LotRow } from '../db/lots';
import { allocate } from '../domain/lots';

export interface ArrearsPayment {
  paid: bigint;
  entries: Entry[];
  /** The lots drawn (mutated in place), for the caller to write. */
  lots: LotRow[];
  draws: { lotId: string; amount: bigint }[];
}

/**
 * Invariant 6: arrears are paid first from the next credits. The one place that pays them, used
 * wherever credits become drawable while the wallet owes: a grant, a hold's credits coming back
 * (release, settle), a capture that turns overdraft into arrears, a lot reaching its effectiveAt,
 * a renewal or rollover. Draws the lots drawable at `at` in consumption order; each draw moves the
 * lot's credits onto the unassigned `available` account that the unpaid debit left negative. The
 * caller lowers the wallet's arrears by `paid` (its `available` does not change).
 */
export function payArrears(lots: readonly LotRow[], arrears: bigint, at: Date): ArrearsPayment {
  if (arrears <= 0n) return { paid: 0n, entries: [], lots: [], draws: [] };
  const { draws } = allocate(lots, arrears, at);
  const out: ArrearsPayment = { paid: 0n, entries: [], lots: [], draws };
  for (const d of draws) {
    const lot = lots.find((l) => l.id === d.lotId)!;
    lot.remaining -= d.amount;
    if (lot.remaining === 0n && lot.held === 0n) lot.status = 'depleted';
    out.entries.push(
      { account: 'available', lotId: lot.id, amount: -d.amount },
      { account: 'available', lotId: null, amount: d.amount },
    );
    out.lots.push(lot);
    out.paid += d.amount;
  }
  return out;
}
