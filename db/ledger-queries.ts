import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

/** Read models over the ledger; kept apart from the write path. */
export interface TransactionView {
  id: string;
  seq: bigint;
  type: string;
  createdAt: Date;
  reference: string | null;
  idempotencyKey: string;
  /** Who asked (an API key id, with its name when the key still exists), why, and the workflow. */
  requestedBy: { keyId: string; name: string | null } | null;
  reason: string | null;
  workflowId: string | null;
  /** The API request that wrote it (its X-Request-Id), when a request did. */
  requestId: string | null;
  entries: { account: string; lotId: string | null; lotKind: string | null; amount: bigint }[];
}

export interface LedgerFilter {
  type?: string;
  from?: Date;
  to?: Date;
  beforeSeq?: bigint;
  limit: number;
}

export async function listTransactions(q: Queryable, customerId: string, f: LedgerFilter): Promise<TransactionView[]> {
  const res = await q.query<{
    id: string;
    seq: string;
    type: string;
    created_at: Date;
    reference: string | null;
    idempotency_key: string;
    requested_by: string | null;
    requested_by_name: string | null;
    reason: string | null;
    workflow_id: string | null;
    request_id: string | null;
    entries: { account: string; lot_id: string | null; lot_kind: string | null; amount: string }[] | null;
  }>(
    `SELECT t.id, t.seq, t.type, t.created_at, t.reference, t.idempotency_key, t.requested_by, t.reason,
            t.workflow_id, t.request_id, (SELECT k.name FROM api_keys k WHERE k.id = t.requested_by) AS requested_by_name,
            (SELECT json_agg(json_build_object('account', e.account, 'lot_id', e.lot_id, 'lot_kind', l.kind,
                                               'amount', e.amount::text) ORDER BY e.id)
               FROM ledger_entries e LEFT JOIN credit_lots l ON l.id = e.lot_id
              WHERE e.transaction_id = t.id) AS entries
       FROM ledger_transactions t
      WHERE t.customer_id = $1
        AND ($2::text IS NULL OR t.type = $2)
        AND ($3::timestamptz IS NULL OR t.created_at >= $3)
        AND ($4::timestamptz IS NULL OR t.created_at < $4)
        AND ($5::bigint IS NULL OR t.seq < $5)
      ORDER BY t.seq DESC
      LIMIT $6`,
    [customerId, f.type ?? null, f.from ?? null, f.to ?? null, f.beforeSeq?.toString() ?? null, f.limit],
  );
  return res.rows.map((r) => ({
    id: r.id,
    seq: int8(r.seq),
    type: r.type,
    createdAt: r.created_at,
    reference: r.reference,
    idempotencyKey: r.idempotency_key,
    requestedBy: r.requested_by ? { keyId: r.requested_by, name: r.requested_by_name } : null,
    reason: r.reason,
    workflowId: r.workflow_id,
    requestId: r.request_id,
    entries: (r.entries ?? []).map((e) => ({
      account: e.account,
      lotId: e.lot_id,
      lotKind: e.lot_kind,
      amount: int8(e.amount),
    })),
  }));
}

/** Σ entries per (account, lot) for one customer: the ground truth the cached balances must equal. */
export async function entrySums(
  q: Queryable,
  customerId: string,
): Promise<{ account: string; lotId: string | null; sum: bigint }[]> {
  const res = await q.query<{ account: string; lot_id: string | null; sum: string }>(
    `SELECT account, lot_id, sum(amount)::text AS sum FROM ledger_entries WHERE customer_id = $1
      GROUP BY account, lot_id`,
    [customerId],
  );
  return res.rows.map((r) => ({ account: r.account, lotId: r.lot_id, sum: int8(r.sum) }));
}
