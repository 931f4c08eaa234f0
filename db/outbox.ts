import type { Queryable } from './queryable';

/** The durable outbox of domain events; the alerts work delivers them. One row per dedupe key. */
export async function enqueue(
  q: Queryable,
  events: readonly { dedupeKey: string; type: string; customerId: string | null; payload: Record<string, unknown> }[],
): Promise<string[]> {
  if (events.length === 0) return [];
  const res = await q.query<{ dedupe_key: string }>(
    `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
     ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key`,
    [
      events.map((e) => e.dedupeKey),
      events.map((e) => e.type),
      events.map((e) => e.customerId),
      events.map((e) => JSON.stringify(e.payload)),
    ],
  );
  return res.rows.map((r) => r.dedupe_key);
}
