import type { Queryable } from './queryable';

export type Role = 'admin' | 'service' | 'support' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'service', 'support', 'viewer'];

export interface ApiKeyRow {
  id: string;
  role: Role;
  customerId: string | null;
  name: string | null;
}

export async function insertApiKey(
  q: Queryable,
  k: ApiKeyRow & { keyHash: string },
  opts: { upsert?: boolean } = {},
): Promise<void> {
  await q.query(
    `INSERT INTO api_keys (id, key_hash, role, customer_id, name) VALUES ($1, $2, $3, $4, $5)
     ${opts.upsert ? 'ON CONFLICT (key_hash) DO UPDATE SET role = EXCLUDED.role, revoked_at = NULL' : ''}`,
    [k.id, k.keyHash, k.role, k.customerId, k.name],
  );
}

export async function findApiKeyByHash(q: Queryable, keyHash: string): Promise<ApiKeyRow | null> {
  const res = await q.query<{ id: string; role: Role; customer_id: string | null; name: string | null }>(
    `SELECT id, role, customer_id, name FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL`,
    [keyHash],
  );
  const r = res.rows[0];
  return r ? { id: r.id, role: r.role, customerId: r.customer_id, name: r.name } : null;
}
