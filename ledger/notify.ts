import { enqueue } from '../db/outbox';
import type { NotificationType } from '../db/notifications';
import type { Queryable } from '../db/queryable';

/**
 * The emit points' one mechanism: each type's payload (the notification's `data`), and `notify`,
 * which stores it in the outbox with the caller's transaction, so the notification commits (or
 * not) with its cause. A new type is a line here and a call where its cause is booked.
 * `balance.low` is emitted by the wallet trigger (migration 009), not from TypeScript.
 */
export interface NotificationData {
  'balance.low': { threshold: string; available: string };
  'credits.expiring_soon': { lotId: string; expiresAt: string; amount: string };
  'credits.expired': { lotId: string; expiresAt: string; amount: string };
  'hold.expired': { holdId: string; released: string; expiresAt: string };
  'purchase.succeeded': PaymentSucceeded;
  'purchase.failed': PaymentFailed;
  'topup.succeeded': PaymentSucceeded;
  'topup.failed': PaymentFailed;
  'topup.disabled': PaymentRef & { reason: string; consecutiveFailures?: number };
  'topup.burst': PaymentRef & { maxPerDay: number; today: number; day: string };
  'refund.succeeded': RefundData & { refundReference: string | null };
  'refund.failed': RefundData & { code: string; reason: string; creditsRestored: string };
  'reconciliation.discrepancy': {
    runId: string;
    date: string;
    count: number;
    customers: string[];
    discrepancies: unknown[];
  };
}

// Type aliases, not interfaces: the outbox payload is a plain record.
type PaymentRef = {
  paymentId: string;
  source: 'purchase' | 'topup';
};
type PaymentSucceeded = PaymentRef & {
  credits: string;
  amountMinor: string;
  currency: string;
  lotId: string;
  paymentReference: string;
};
type PaymentFailed = PaymentRef & { code: string; reason: string; credits?: string };
type RefundData = {
  refundId: string;
  lotId: string;
  credits: string;
  moneyMinor: string;
  currency: string | null;
};

// Every key is a type of the catalogue (db/notifications.ts): this line fails to compile otherwise.
const _catalogued: readonly NotificationType[] = [] as (keyof NotificationData)[];

/** One notification per dedupe key, ever: a retried or replayed cause emits nothing new. */
export type Notification = {
  [T in keyof NotificationData]: {
    type: T;
    /** null: an operator's event about no one customer (a reconciliation run) */
    customerId: string | null;
    dedupeKey: string;
    data: NotificationData[T];
  };
}[keyof NotificationData];

export async function notify(q: Queryable, notifications: readonly Notification[]): Promise<void> {
  await enqueue(
    q,
    notifications.map((n) => ({ dedupeKey: n.dedupeKey, type: n.type, customerId: n.customerId, payload: n.data })),
  );
}
