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

export interface ApiKeyView extends ApiKeyRow {
  createdAt: Date;
  revokedAt: Date | null;
}

type ViewRow = {
  id: string;
  role: Role;
  customer_id: string | null;
  name: string | null;
  created_at: Date;
  revoked_at: Date | null;
};
const VIEW_COLUMNS = 'id, role, customer_id, name, created_at, revoked_at';
const view = (r: ViewRow): ApiKeyView => ({
  id: r.id,
  role: r.role,
  customerId: r.customer_id,
  name: r.name,
  createdAt: r.created_at,
  revokedAt: r.revoked_at,
});

/** Keys oldest first (never the hashes); `after` is the id of the last key of the previous page. */
export async function listApiKeys(q: Queryable, o: { after?: string; limit: number }): Promise<ApiKeyView[]> {
  const res = await q.query<ViewRow>(
    `SELECT ${VIEW_COLUMNS} FROM api_keys
      WHERE $1::text IS NULL OR (created_at, id) > (SELECT created_at, id FROM api_keys WHERE id = $1)
      ORDER BY created_at, id
      LIMIT $2`,
    [o.after ?? null, o.limit],
  );
  return res.rows.map(view);
}

export async function getApiKey(q: Queryable, id: string): Promise<ApiKeyView | null> {
  const res = await q.query<ViewRow>(`SELECT ${VIEW_COLUMNS} FROM api_keys WHERE id = $1`, [id]);
  return res.rows[0] ? view(res.rows[0]) : null;
}

/** Revokes a key (once: a second revoke keeps the first time); null when there is no such key. */
export async function revokeApiKey(q: Queryable, id: string): Promise<ApiKeyView | null> {
  const res = await q.query<ViewRow>(
    `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1 RETURNING ${VIEW_COLUMNS}`,
    [id],
  );
  return res.rows[0] ? view(res.rows[0]) : null;
}
