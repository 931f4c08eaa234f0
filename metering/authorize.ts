import { formatCredits } from '../domain/amount';
import { customerNotFound } from '../domain/errors';
import type { Queryable } from '../db/queryable';
import { spendable } from '../db/usage-reports';

export interface Authorization {
  allowed: boolean;
  available: string;
  shortfall: string;
  reason: 'ok' | 'insufficient_credits' | 'arrears' | 'frozen';
}

/**
 * May this customer spend `amount` now? Counts only credits drawable at this instant (an expired
 * lot counts for nothing even before its expiry is booked) plus the overdraft limit. No write.
 */
export async function authorize(q: Queryable, customerId: string, amount: bigint, now: Date): Promise<Authorization> {
  const s = await spendable(q, customerId, now);
  if (!s) throw customerNotFound(customerId);
  const capacity = s.drawable + s.overdraftLimit;
  const shortfall = amount > capacity ? amount - capacity : 0n;
  const reason =
    s.status === 'frozen' ? 'frozen' : s.arrears > 0n ? 'arrears' : shortfall > 0n ? 'insufficient_credits' : 'ok';
  return {
    allowed: reason === 'ok',
    available: formatCredits(s.drawable),
    shortfall: formatCredits(shortfall),
    reason,
  };
}
