import { int8 } from '../domain/amount';
import type { Queryable } from './queryable';

export interface WalletRow {
  customerId: string;
  available: bigint;
  held: bigint;
  arrears: bigint;
  overdraftLimit: bigint;
  status: 'active' | 'frozen';
  version: bigint;
}

export interface CustomerRow {
  id: string;
  name: string | null;
  metadata: Record<string, unknown>;
  requestHash: string;
  createdAt: Date;
  wallet: WalletRow;
}

interface RawWallet {
  customer_id: string;
  available: string;
  held: string;
  arrears: string;
  overdraft_limit: string;
  status: 'active' | 'frozen';
  version: string;
}

const toWallet = (r: RawWallet): WalletRow => ({
  customerId: r.customer_id,
  available: int8(r.available),
  held: int8(r.held),
  arrears: int8(r.arrears),
  overdraftLimit: int8(r.overdraft_limit),
  status: r.status,
  version: int8(r.version),
});

/** Inserts customer + wallet; returns false when the id already exists (nothing written). */
export async function insertCustomer(
  tx: Queryable,
  c: {
    id: string;
    name: string | null;
    metadata: Record<string, unknown>;
    overdraftLimit: bigint;
    requestHash: string;
  },
): Promise<boolean> {
  const res = await tx.query(
    `INSERT INTO customers (id, name, metadata, request_hash) VALUES ($1, $2, $3, $4)
     ON CONFLICT (id) DO NOTHING RETURNING id`,
    [c.id, c.name, JSON.stringify(c.metadata), c.requestHash],
  );
  if (res.rowCount === 0) return false;
  await tx.query(`INSERT INTO wallets (customer_id, overdraft_limit) VALUES ($1, $2)`, [
    c.id,
    c.overdraftLimit.toString(),
  ]);
  return true;
}

export async function getCustomer(q: Queryable, id: string): Promise<CustomerRow | null> {
  const res = await q.query<
    RawWallet & {
      id: string;
      name: string | null;
      metadata: Record<string, unknown>;
      request_hash: string;
      created_at: Date;
    }
  >(
    `SELECT c.id, c.name, c.metadata, c.request_hash, c.created_at, w.*
       FROM customers c JOIN wallets w ON w.customer_id = c.id WHERE c.id = $1`,
    [id],
  );
  const r = res.rows[0];
  if (!r) return null;
  return {
    id: r.id,
    name: r.name,
    metadata: r.metadata,
    requestHash: r.request_hash,
    createdAt: r.created_at,
    wallet: toWallet(r),
  };
}

export async function customerExists(q: Queryable, id: string): Promise<boolean> {
  const res = await q.query(`SELECT 1 FROM customers WHERE id = $1`, [id]);
  return (res.rowCount ?? 0) > 0;
}

/**
 * Locks the wallet row: the per-customer mutex every credit movement takes first.
 * Lock order is fixed: wallets (by customer id), then that wallet's lots (by lot id).
 */
export async function lockWallet(tx: Queryable, customerId: string): Promise<WalletRow | null> {
  const res = await tx.query<RawWallet>(`SELECT * FROM wallets WHERE customer_id = $1 FOR NO KEY UPDATE`, [customerId]);
  return res.rows[0] ? toWallet(res.rows[0]) : null;
}

export async function applyWalletDeltas(
  tx: Queryable,
  customerId: string,
  d: { available: bigint; held: bigint; arrears: bigint },
): Promise<void> {
  await tx.query(
    `UPDATE wallets SET available = available + $2, held = held + $3, arrears = arrears + $4,
            version = version + 1, updated_at = now()
      WHERE customer_id = $1`,
    [customerId, d.available.toString(), d.held.toString(), d.arrears.toString()],
  );
}

/** Locks several wallets in customer-id order (the fixed order); missing customers are simply absent. */
export async function lockWallets(tx: Queryable, customerIds: readonly string[]): Promise<Map<string, WalletRow>> {
  const res = await tx.query<RawWallet>(
    `SELECT * FROM wallets WHERE customer_id = ANY($1::text[]) ORDER BY customer_id FOR NO KEY UPDATE`,
    [customerIds],
  );
  return new Map(res.rows.map((r) => [r.customer_id, toWallet(r)]));
}

export async function applyWalletDeltasMany(
  tx: Queryable,
  deltas: readonly { customerId: string; available: bigint; held: bigint; arrears: bigint }[],
): Promise<void> {
  if (deltas.length === 0) return;
  await tx.query(
    `UPDATE wallets w SET available = w.available + d.available, held = w.held + d.held,
            arrears = w.arrears + d.arrears, version = w.version + 1, updated_at = now()
       FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS d(customer_id, available, held, arrears)
      WHERE w.customer_id = d.customer_id`,
    [
      deltas.map((d) => d.customerId),
      deltas.map((d) => d.available.toString()),
      deltas.map((d) => d.held.toString()),
      deltas.map((d) => d.arrears.toString()),
    ],
  );
}
