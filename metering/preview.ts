import { formatCredits } from '../domain/amount';
import { addDecimal, decimal, formatDecimal, type Decimal } from '../domain/decimal';
import { rateEvent, type RateRule } from '../domain/rating';
import type { Queryable } from '../db/queryable';
import { customerRateCards } from '../db/rate-cards';
import { DEFAULT_CARD, type RateCardResolver } from './rate-cards';

export interface PreviewEvent {
  meter: string;
  quantity: string;
  dimensions: Record<string, string>;
  occurredAt: Date;
}

export interface PreviewRow {
  meter: string;
  quantity: string;
  events: number;
  current: string;
  draft: string;
  difference: string;
  /** Events a card cannot price (they would be rejected at ingestion). */
  unpricedCurrent: number;
  unpricedDraft: number;
}

/**
 * Rates events under the draft rules and under the card in force now for the customer (or the
 * default card), per meter. Pure reads: writes nothing.
 */
export async function preview(
  q: Queryable,
  resolver: RateCardResolver,
  o: { draft: RateRule[]; customerId?: string; events: PreviewEvent[]; now: Date },
): Promise<{
  card: { name: string; version: number } | null;
  meters: PreviewRow[];
  total: { current: string; draft: string; difference: string };
}> {
  const cardName = o.customerId
    ? ((await customerRateCards(q, [o.customerId])).get(o.customerId) ?? DEFAULT_CARD)
    : DEFAULT_CARD;
  const current = await (await resolver.forNames(q, [cardName]))(cardName, o.now);
  const rows = new Map<
    string,
    { quantity: Decimal; events: number; current: bigint; draft: bigint; uc: number; ud: number }
  >();
  for (const e of o.events) {
    const row = rows.get(e.meter) ?? { quantity: decimal('0'), events: 0, current: 0n, draft: 0n, uc: 0, ud: 0 };
    const quantity = decimal(e.quantity);
    row.quantity = addDecimal(row.quantity, quantity);
    row.events++;
    const c = current ? rateEvent(current.rules, { ...e, quantity }) : null;
    if (c?.ok) row.current += c.micros;
    else row.uc++;
    const d = rateEvent(o.draft, { ...e, quantity });
    if (d.ok) row.draft += d.micros;
    else row.ud++;
    rows.set(e.meter, row);
  }
  let tc = 0n;
  let td = 0n;
  const meters = [...rows.entries()]
    .sort(([a], [b]) => (a < b ? -1 : 1))
    .map(([meter, r]) => {
      tc += r.current;
      td += r.draft;
      return {
        meter,
        quantity: formatDecimal(r.quantity),
        events: r.events,
        current: formatCredits(r.current),
        draft: formatCredits(r.draft),
        difference: formatCredits(r.draft - r.current),
        unpricedCurrent: r.uc,
        unpricedDraft: r.ud,
      };
    });
  return {
    card: current ? { name: current.name, version: current.version } : null,
    meters,
    total: { current: formatCredits(tc), draft: formatCredits(td), difference: formatCredits(td - tc) },
  };
}
