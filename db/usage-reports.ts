import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

/** Read models over usage events and wallets (reporting, preview, authorize); never written here. */
export interface UsageRow {
  meter?: string;
  day?: string;
  dimensions: Record<string, string | null>;
  quantity: string;
  /** Billed credits: every event, corrected or not. */
  credits: bigint;
  /** Of those, the credits of corrected events (their corrections gave them back). */
  corrected: bigint;
  events: number;
}

export async function usageReport(
  q: Queryable,
  customerId: string,
  o: { from: Date; to: Date; groupBy: readonly string[] },
): Promise<UsageRow[]> {
  const dims = o.groupBy.filter((g) => g !== 'meter' && g !== 'day');
  const select: string[] = [];
  const params: unknown[] = [customerId, o.from, o.to];
  if (o.groupBy.includes('meter')) select.push('e.meter');
  if (o.groupBy.includes('day')) select.push(`to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') AS day`);
  dims.forEach((d, i) => {
    params.push(d);
    select.push(`e.dimensions ->> $${params.length} AS d${i}`);
  });
  const groups = select.map((_s, i) => String(i + 1));
  const res = await q.query<Record<string, string | null>>(
    `SELECT ${[...select, 'sum(e.quantity)::text AS quantity', 'sum(e.credits)::text AS credits', 'count(*)::int AS events', 'COALESCE(sum(c.credits), 0)::text AS corrected'].join(', ')}
       FROM usage_events e
       LEFT JOIN usage_corrections c ON c.customer_id = e.customer_id AND c.event_id = e.id
      WHERE e.customer_id = $1 AND e.occurred_at >= $2 AND e.occurred_at < $3
      ${groups.length ? `GROUP BY ${groups.join(', ')} ORDER BY ${groups.join(', ')}` : ''}`,
    params,
  );
  return res.rows.map((r) => ({
    ...(r.meter !== undefined ? { meter: r.meter! } : {}),
    ...(r.day !== undefined ? { day: r.day! } : {}),
    dimensions: Object.fromEntries(dims.map((d, i) => [d, r[`d${i}`] ?? null])),
    quantity: normalizeNumeric(r.quantity ?? '0'),
    credits: int8(r.credits),
    corrected: int8(r.corrected),
    events: Number(r.events),
  }));
}

/** Postgres numeric text → shortest exact decimal text. */
export function normalizeNumeric(s: string): string {
  return s.includes('.') ? s.replace(/0+$/, '').replace(/\.$/, '') : s;
}

export async function usageEventsForPreview(
  q: Queryable,
  customerId: string,
  from: Date,
  to: Date,
  limit: number,
): Promise<{ meter: string; quantity: string; dimensions: Record<string, string>; occurredAt: Date }[]> {
  const res = await q.query<{ meter: string; quantity: string; dimensions: Record<string, string>; occurred_at: Date }>(
    `SELECT meter, quantity::text, dimensions, occurred_at FROM usage_events
      WHERE customer_id = $1 AND occurred_at >= $2 AND occurred_at < $3 ORDER BY occurred_at LIMIT $4`,
    [customerId, from, to, limit],
  );
  return res.rows.map((r) => ({
    meter: r.meter,
    quantity: normalizeNumeric(r.quantity),
    dimensions: r.dimensions,
    occurredAt: r.occurred_at,
  }));
}

export interface SpendableRow {
  status: 'active' | 'frozen';
  arrears: bigint;
  overdraftLimit: bigint;
  drawable: bigint;
}

/** What a wallet can spend right now: one round trip, no locks, no writes. */
export async function spendable(q: Queryable, customerId: string, at: Date): Promise<SpendableRow | null> {
  const res = await q.query<{
    status: 'active' | 'frozen';
    arrears: string;
    overdraft_limit: string;
    drawable: string;
  }>(
    `SELECT w.status, w.arrears, w.overdraft_limit,
            (COALESCE((SELECT sum(l.remaining) FROM credit_lots l
                       WHERE l.customer_id = w.customer_id AND l.status = 'active' AND l.remaining > 0
                         AND l.effective_at <= $2 AND (l.expires_at IS NULL OR l.expires_at > $2)), 0)
            -- Overdraft already held by active holds uses up the same room (invariant 6).
            - COALESCE((SELECT sum(h.overdraft) FROM holds h
                         WHERE h.customer_id = w.customer_id AND h.status = 'active'), 0))::text AS drawable
       FROM wallets w WHERE w.customer_id = $1`,
    [customerId, at],
  );
  const r = res.rows[0];
  if (!r) return null;
  return {
    status: r.status,
    arrears: int8(r.arrears),
    overdraftLimit: int8(r.overdraft_limit),
    drawable: int8(r.drawable),
  };
}
