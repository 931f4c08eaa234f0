import { currentAudit } from '../lib/audit';
import type { Queryable } from './queryable';

/** Admin actions that move no credits; the ledger's own transactions carry who/why themselves. */
export type AuditAction =
  | 'rate_card.published'
  | 'customer.rate_card_assigned'
  | 'customer.alerts_set'
  | 'api_key.created'
  | 'api_key.revoked'
  | 'webhook_endpoint.created'
  | 'webhook_endpoint.deleted'
  | 'webhook_endpoint.secret_rotated'
  | 'reconciliation.requested';

export interface NewAuditEvent {
  action: AuditAction;
  subject: string;
  customerId?: string | null;
  /** Default: the API key of the request in progress (lib/audit.ts). */
  requestedBy?: string | null;
  detail?: Record<string, unknown>;
}

/** Call with the transaction that makes the change, so the change and its record commit together. */
export async function insertAuditEvent(q: Queryable, e: NewAuditEvent): Promise<void> {
  await q.query(
    `INSERT INTO audit_events (action, subject, customer_id, requested_by, detail) VALUES ($1, $2, $3, $4, $5)`,
    [
      e.action,
      e.subject,
      e.customerId ?? null,
      e.requestedBy !== undefined ? e.requestedBy : (currentAudit()?.requestedBy ?? null),
      JSON.stringify(e.detail ?? {}),
    ],
  );
}

export interface AuditEventView {
  id: bigint;
  action: string;
  subject: string;
  customerId: string | null;
  /** The key's name when the key still exists (the CLI's `cli` has none). */
  requestedBy: { keyId: string; name: string | null } | null;
  detail: unknown;
  createdAt: Date;
}

/** Newest first; `beforeId` is the id of the last event of the previous page. */
export async function listAuditEvents(
  q: Queryable,
  f: { customerId?: string; action?: string; beforeId?: bigint; limit: number },
): Promise<AuditEventView[]> {
  const res = await q.query<{
    id: string;
    action: string;
    subject: string;
    customer_id: string | null;
    requested_by: string | null;
    requested_by_name: string | null;
    detail: unknown;
    created_at: Date;
  }>(
    `SELECT a.id::text, a.action, a.subject, a.customer_id, a.requested_by, a.detail, a.created_at,
            (SELECT k.name FROM api_keys k WHERE k.id = a.requested_by) AS requested_by_name
       FROM audit_events a
      WHERE ($1::text IS NULL OR a.customer_id = $1)
        AND ($2::text IS NULL OR a.action = $2)
        AND ($3::bigint IS NULL OR a.id < $3)
      ORDER BY a.id DESC
      LIMIT $4`,
    [f.customerId ?? null, f.action ?? null, f.beforeId?.toString() ?? null, f.limit],
  );
  return res.rows.map((r) => ({
    id: BigInt(r.id),
    action: r.action,
    subject: r.subject,
    customerId: r.customer_id,
    requestedBy: r.requested_by ? { keyId: r.requested_by, name: r.requested_by_name } : null,
    detail: r.detail,
    createdAt: r.created_at,
  }));
}
