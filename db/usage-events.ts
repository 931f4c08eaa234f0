import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

export interface StoredEvent {
  customerId: string;
  id: string;
  contentHash: string;
  credits: bigint;
  transactionId: string;
}

export async function findEvents(
  q: Queryable,
  keys: readonly { customerId: string; id: string }[],
): Promise<Map<string, StoredEvent>> {
  if (keys.length === 0) return new Map();
  const res = await q.query<{
    customer_id: string;
    id: string;
    content_hash: string;
    credits: string;
    transaction_id: string;
  }>(
    `SELECT e.customer_id, e.id, e.content_hash, e.credits, e.transaction_id
       FROM usage_events e
       JOIN unnest($1::text[], $2::text[]) AS k(customer_id, id) ON e.customer_id = k.customer_id AND e.id = k.id`,
    [keys.map((k) => k.customerId), keys.map((k) => k.id)],
  );
  return new Map(
    res.rows.map((r) => [
      eventKey(r.customer_id, r.id),
      {
        customerId: r.customer_id,
        id: r.id,
        contentHash: r.content_hash,
        credits: int8(r.credits),
        transactionId: r.transaction_id,
      },
    ]),
  );
}

export const eventKey = (customerId: string, id: string) => `${customerId}\u0000${id}`;

export interface NewEvent {
  customerId: string;
  id: string;
  meter: string;
  quantity: string;
  occurredAt: Date;
  dimensions: Record<string, string>;
  credits: bigint;
  cardName: string;
  cardVersion: number;
  transactionId: string;
  contentHash: string;
}

export async function insertEvents(tx: Queryable, events: readonly NewEvent[]): Promise<void> {
  if (events.length === 0) return;
  await tx.query(
    `INSERT INTO usage_events (customer_id, id, meter, quantity, occurred_at, dimensions, credits, card_name,
                               card_version, transaction_id, content_hash)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::numeric[], $5::timestamptz[], $6::jsonb[],
                          $7::bigint[], $8::text[], $9::int[], $10::uuid[], $11::text[])`,
    [
      events.map((e) => e.customerId),
      events.map((e) => e.id),
      events.map((e) => e.meter),
      events.map((e) => e.quantity),
      events.map((e) => e.occurredAt),
      events.map((e) => JSON.stringify(e.dimensions)),
      events.map((e) => e.credits.toString()),
      events.map((e) => e.cardName),
      events.map((e) => e.cardVersion),
      events.map((e) => e.transactionId),
      events.map((e) => e.contentHash),
    ],
  );
}
