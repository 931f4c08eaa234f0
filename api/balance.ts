import { formatCredits } from '../domain/amount';
import { compareConsumptionOrder } from '../domain/lots';
import { getCustomer } from '../db/customers';
import { listLots } from '../db/lots';
import type { Queryable } from '../db/queryable';
import { lotView } from '../ledger/views';

/** The body of GET /v1/customers/:id/balance (also each `balance` event of its stream). */
export type BalanceBody = NonNullable<Awaited<ReturnType<typeof readBalance>>>['body'];

/** The customer's balance and open lots, with the wallet version it reflects; null for an unknown customer. */
export async function readBalance(q: Queryable, id: string, now: Date) {
  const c = await getCustomer(q, id);
  if (!c) return null;
  const lots = (await listLots(q, id, { openOnly: true })).sort(compareConsumptionOrder);
  // Credits next to expire: the earliest future expiry among lots that still have unheld credits.
  const expiring = lots.filter((l) => l.expiresAt && l.expiresAt > now && l.remaining > 0n);
  const first = expiring.reduce<Date | null>((m, l) => (!m || l.expiresAt! < m ? l.expiresAt : m), null);
  const nextExpiry = first
    ? {
        at: first.toISOString(),
        amount: formatCredits(
          expiring.filter((l) => l.expiresAt!.getTime() === first.getTime()).reduce((s, l) => s + l.remaining, 0n),
        ),
      }
    : null;
  return {
    version: c.wallet.version,
    body: {
      customerId: id,
      available: formatCredits(c.wallet.available),
      held: formatCredits(c.wallet.held),
      arrears: formatCredits(c.wallet.arrears),
      lots: lots.map(lotView),
      nextExpiry,
    },
  };
}
