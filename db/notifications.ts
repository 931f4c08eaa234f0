import type { Queryable } from './queryable';

/** The notification catalogue of API.md ("Notifications and webhooks"); the outbox holds nothing else. */
export const NOTIFICATION_TYPES = [
  'balance.low',
  'credits.expiring_soon',
  'credits.expired',
  'hold.expired',
  'purchase.succeeded',
  'purchase.failed',
  'topup.succeeded',
  'topup.failed',
  'topup.disabled',
  'topup.burst',
  'refund.succeeded',
  'refund.failed',
  'reconciliation.discrepancy',
] as const;
export type NotificationType = (typeof NOTIFICATION_TYPES)[number];

export interface OutboxRow {
  id: bigint;
  type: string;
  customerId: string | null;
  payload: Record<string, unknown>;
  createdAt: Date;
}

/** The public shape of a notification: the API's listing and every webhook body. */
export interface NotificationBody {
  id: string;
  type: string;
  customerId?: string;
  createdAt: string;
  data: Record<string, unknown>;
}

export function notificationBody(row: OutboxRow): NotificationBody {
  return {
    id: `evt_${row.id}`,
    type: row.type,
    ...(row.customerId !== null ? { customerId: row.customerId } : {}),
    createdAt: row.createdAt.toISOString(),
    data: row.payload,
  };
}

interface RawOutbox {
  id: string;
  type: string;
  customer_id: string | null;
  payload: Record<string, unknown>;
  created_at: Date;
}

export const toOutboxRow = (r: RawOutbox): OutboxRow => ({
  id: BigInt(r.id),
  type: r.type,
  customerId: r.customer_id,
  payload: r.payload,
  createdAt: r.created_at,
});

/** Newest first; `beforeId` is the id of the last notification of the previous page. */
export async function listNotifications(
  q: Queryable,
  f: { customerId?: string; type?: string; beforeId?: bigint; limit: number },
): Promise<OutboxRow[]> {
  const res = await q.query<RawOutbox>(
    `SELECT id::text, type, customer_id, payload, created_at FROM notification_events
      WHERE ($1::text IS NULL OR customer_id = $1)
        AND ($2::text IS NULL OR type = $2)
        AND ($3::bigint IS NULL OR id < $3)
      ORDER BY id DESC
      LIMIT $4`,
    [f.customerId ?? null, f.type ?? null, f.beforeId?.toString() ?? null, f.limit],
  );
  return res.rows.map(toOutboxRow);
}
