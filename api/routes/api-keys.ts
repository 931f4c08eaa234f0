import { randomBytes } from 'node:crypto';
import { Router } from 'express';
import { customerNotFound } from '../../domain/errors';
import { getApiKey, insertApiKey, listApiKeys, revokeApiKey, type ApiKeyRow, type ApiKeyView } from '../../db/api-keys';
import { insertAuditEvent } from '../../db/audit-events';
import { customerExists } from '../../db/customers';
import { withTransaction, type Pool } from '../../db/pool';
import { sha256 } from '../../lib/hash';
import { allow } from '../auth';
import { problem } from '../problem';
import { ApiKeyId, ApiKeyListQuery, ApiKeyParams, CreateApiKeyBody } from '../schemas';
import { body, decodeCursor, encodeCursor, params, query } from '../validate';

/** Never the secret nor its hash: the secret is shown once, in the response that creates it. */
const keyView = (k: ApiKeyView) => ({
  id: k.id,
  role: k.role,
  customerId: k.customerId,
  name: k.name,
  createdAt: k.createdAt.toISOString(),
  revokedAt: k.revokedAt?.toISOString() ?? null,
});

/** The audit record of a key change (the API's and the CLI's). */
export const keyEvent = (action: 'api_key.created' | 'api_key.revoked', k: ApiKeyRow) => ({
  action,
  subject: `api_key:${k.id}`,
  customerId: k.customerId,
  detail: { role: k.role, name: k.name },
});

const KEY = 'key';
const isKeyId = (v: string) => ApiKeyId.safeParse(v).success;

/** API keys (admin only). Auth reads the table on every request, so a revoke applies at once everywhere. */
export function apiKeyRoutes(deps: { pool: Pool }): Router {
  const r = Router();
  const { pool } = deps;

  r.post('/api-keys', allow([]), async (req, res) => {
    const b = body(CreateApiKeyBody, req);
    if (b.customerId !== undefined && !(await customerExists(pool, b.customerId))) throw customerNotFound(b.customerId);
    const id = `key_${randomBytes(8).toString('hex')}`;
    const secret = `cf_${b.role}_${randomBytes(24).toString('base64url')}`;
    const k = await withTransaction(pool, async (tx) => {
      const row = { id, role: b.role, customerId: b.customerId ?? null, name: b.name ?? null };
      await insertApiKey(tx, { ...row, keyHash: sha256(secret) });
      await insertAuditEvent(tx, keyEvent('api_key.created', row));
      return (await getApiKey(tx, id))!;
    });
    res.status(201).json({ ...keyView(k), key: secret });
  });

  r.get('/api-keys', allow([]), async (req, res) => {
    const q = query(ApiKeyListQuery, req);
    const after = q.cursor ? decodeCursor(KEY, q.cursor, isKeyId) : undefined;
    const rows = await listApiKeys(pool, { after, limit: q.limit + 1 });
    const page = rows.slice(0, q.limit);
    res.json({
      keys: page.map(keyView),
      nextCursor: rows.length > q.limit ? encodeCursor(KEY, page[page.length - 1]!.id) : null,
    });
  });

  r.delete('/api-keys/:id', allow([]), async (req, res) => {
    const { id } = params(ApiKeyParams, req);
    const k = await withTransaction(pool, async (tx) => {
      const before = await getApiKey(tx, id);
      const after = before && (await revokeApiKey(tx, id));
      // Only the revoke that changed the key is recorded (a concurrent twin may record it too).
      if (after && !before.revokedAt) await insertAuditEvent(tx, keyEvent('api_key.revoked', after));
      return after;
    });
    if (!k) throw problem(404, `API key ${id} does not exist`);
    res.json(keyView(k));
  });

  return r;
}
