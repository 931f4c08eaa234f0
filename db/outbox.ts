import type { Queryable } from './queryable';

export interface NewEvent {
  dedupeKey: string;
  type: string;
  /** null: about no one customer (reconciliation); such events go to operator_events (migration 017). */
  customerId: string | null;
  payload: Record<string, unknown>;
}

/** The durable outbox of domain events; the alerts work delivers them. One row per dedupe key. */
export async function enqueue(q: Queryable, events: readonly NewEvent[]): Promise<string[]> {
  const customers = events.filter((e) => e.customerId !== null);
  const operators = events.filter((e) => e.customerId === null);
  const added: string[] = [];
  if (customers.length > 0) {
    const res = await q.query<{ dedupe_key: string }>(
      `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::jsonb[])
       ON CONFLICT (customer_id, dedupe_key) DO NOTHING RETURNING dedupe_key`,
      [
        customers.map((e) => e.dedupeKey),
        customers.map((e) => e.type),
        customers.map((e) => e.customerId),
        customers.map((e) => JSON.stringify(e.payload)),
      ],
    );
    added.push(...res.rows.map((r) => r.dedupe_key));
  }
  if (operators.length > 0) {
    const res = await q.query<{ dedupe_key: string }>(
      `INSERT INTO operator_events (dedupe_key, type, payload)
       SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
       ON CONFLICT (dedupe_key) DO NOTHING RETURNING dedupe_key`,
      [
        operators.map((e) => e.dedupeKey),
        operators.map((e) => e.type),
        operators.map((e) => JSON.stringify(e.payload)),
      ],
    );
    added.push(...res.rows.map((r) => r.dedupe_key));
  }
  return added;
}
