import type { Queryable } from './queryable';

/** System accounts have no balance row (see migration); per-customer accounts are 'available' and 'held'. */
export type Account = 'available' | 'held' | `issued:${string}` | 'consumed' | 'expired' | 'voided' | 'refunded';

export interface Entry {
  account: Account;
  lotId: string | null;
  amount: bigint;
}

export interface NewTransaction {
  id: string;
  customerId: string;
  type: string;
  idempotencyKey: string;
  reference: string | null;
  createdAt: Date;
  entries: readonly Entry[];
}

/** Appends one transaction and all its entries (one INSERT, so the balance trigger sees them together). */
export async function appendTransaction(tx: Queryable, t: NewTransaction): Promise<void> {
  await tx.query(
    `INSERT INTO ledger_transactions (id, customer_id, type, idempotency_key, reference, created_at)
     VALUES ($1, $2, $3, $4, $5, $6)`,
    [t.id, t.customerId, t.type, t.idempotencyKey, t.reference, t.createdAt],
  );
  if (t.entries.length === 0) return;
  await tx.query(
    `INSERT INTO ledger_entries (transaction_id, customer_id, account, lot_id, amount)
     SELECT $1, $2, e.account, e.lot_id, e.amount
       FROM unnest($3::text[], $4::uuid[], $5::bigint[]) AS e(account, lot_id, amount)`,
    [
      t.id,
      t.customerId,
      t.entries.map((e) => e.account),
      t.entries.map((e) => e.lotId),
      t.entries.map((e) => e.amount.toString()),
    ],
  );
}

/** Appends many transactions with two statements in all (entries in one INSERT for the balance check). */
export async function appendTransactions(tx: Queryable, ts: readonly NewTransaction[]): Promise<void> {
  if (ts.length === 0) return;
  await tx.query(
    `INSERT INTO ledger_transactions (id, customer_id, type, idempotency_key, reference, created_at)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])`,
    [
      ts.map((t) => t.id),
      ts.map((t) => t.customerId),
      ts.map((t) => t.type),
      ts.map((t) => t.idempotencyKey),
      ts.map((t) => t.reference),
      ts.map((t) => t.createdAt),
    ],
  );
  const rows = ts.flatMap((t) => t.entries.map((e) => ({ t, e })));
  if (rows.length === 0) return;
  await tx.query(
    `INSERT INTO ledger_entries (transaction_id, customer_id, account, lot_id, amount)
     SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::bigint[])`,
    [
      rows.map((r) => r.t.id),
      rows.map((r) => r.t.customerId),
      rows.map((r) => r.e.account),
      rows.map((r) => r.e.lotId),
      rows.map((r) => r.e.amount.toString()),
    ],
  );
}
