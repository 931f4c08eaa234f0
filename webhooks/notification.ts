import { randomBytes } from 'node:crypto';
import { Webhook } from 'standardwebhooks';

import { notificationBody as publicBody, NOTIFICATION_TYPES, type NotificationType } from '../db/notifications';

/** The one catalogue (db/notifications.ts): an endpoint subscribes to these. */
export { NOTIFICATION_TYPES, type NotificationType };

export interface OutboxRow {
  id: string;
  type: string;
  customerId: string | null;
  createdAt: Date;
  payload: unknown;
}

/** The public id of an outbox row; also the `webhook-id` of every delivery attempt of it. */
export const notificationId = (outboxId: string) => `evt_${outboxId}`;

/** The body of a delivered notification: the very shape of GET /v1/notifications items. */
export const notificationBody = (e: OutboxRow) =>
  publicBody({ ...e, id: BigInt(e.id), payload: (e.payload ?? {}) as Record<string, unknown> });

/** A Standard Webhooks secret: `whsec_` + base64 of 32 random bytes. */
export const newSecret = () => `whsec_${randomBytes(32).toString('base64')}`;

/**
 * Standard Webhooks headers for one attempt. During a rotation's overlap both secrets sign
 * (space-separated signatures), so receivers may switch secrets at any time within it.
 */
export function signedHeaders(
  msgId: string,
  body: string,
  secrets: readonly string[],
  at: Date = new Date(),
): Record<string, string> {
  const signatures = secrets.map((s) => new Webhook(s).sign(msgId, at, body));
  return {
    'webhook-id': msgId,
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': signatures.join(' '),
  };
}
