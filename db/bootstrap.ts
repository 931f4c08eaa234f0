import { insertApiKey } from './api-keys';
import type { Queryable } from './queryable';

/** Makes sure the configured admin key exists; removes the dev key whenever not in development mode. */
export async function bootstrapKeys(
  q: Queryable,
  o: { adminKeyHash?: string; devKeyHash?: string; development: boolean },
): Promise<void> {
  if (o.adminKeyHash) {
    await insertApiKey(
      q,
      {
        id: `bootstrap-admin-${o.adminKeyHash.slice(0, 12)}`,
        keyHash: o.adminKeyHash,
        role: 'admin',
        customerId: null,
        name: 'CREDITFLOW_ADMIN_KEY',
      },
      { upsert: true },
    );
  }
  if (o.development && o.devKeyHash) {
    await insertApiKey(
      q,
      { id: 'dev-admin', keyHash: o.devKeyHash, role: 'admin', customerId: null, name: 'development key' },
      { upsert: true },
    );
  } else {
    await q.query(`UPDATE api_keys SET revoked_at = now() WHERE id = 'dev-admin' AND revoked_at IS NULL`);
  }
}
