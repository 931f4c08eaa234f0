import type { Queryable } from './queryable';

export interface StoredReply {
  status: number;
  body: unknown;
}

export type Claim =
  | { kind: 'claimed'; owner: string }
  | { kind: 'replay'; reply: StoredReply }
  | { kind: 'conflict' }
  | { kind: 'in_flight' };

/**
 * Claims `scope` for one request: a new key, or an in-flight claim whose lease has passed (its
 * process died) with the same request. One statement, so two racing requests cannot both win.
 */
export async function claimKey(
  q: Queryable,
  scope: string,
  requestHash: string,
  owner: string,
  leaseMs: number,
  attempt = 1,
): Promise<Claim> {
  const won = await q.query(
    `INSERT INTO http_idempotency (scope, request_hash, state, owner, lease_until)
     VALUES ($1, $2, 'in_flight', $3, now() + make_interval(secs => $4::double precision / 1000))
     ON CONFLICT (scope) DO UPDATE SET owner = EXCLUDED.owner, lease_until = EXCLUDED.lease_until, updated_at = now()
      WHERE http_idempotency.state = 'in_flight' AND http_idempotency.lease_until < now()
        AND http_idempotency.request_hash = EXCLUDED.request_hash
     RETURNING owner`,
    [scope, requestHash, owner, leaseMs],
  );
  if (won.rowCount === 1) return { kind: 'claimed', owner };
  const res = await q.query<{ request_hash: string; state: string; response: StoredReply | null }>(
    `SELECT request_hash, state, response FROM http_idempotency WHERE scope = $1`,
    [scope],
  );
  const row = res.rows[0];
  if (!row) {
    // Abandoned between our two statements: try once more, then report it as still in flight.
    return attempt < 3 ? claimKey(q, scope, requestHash, owner, leaseMs, attempt + 1) : { kind: 'in_flight' };
  }
  if (row.request_hash !== requestHash) return { kind: 'conflict' };
  if (row.state === 'done' && row.response) return { kind: 'replay', reply: row.response };
  return { kind: 'in_flight' };
}

/** Stores the final response; only the claim's owner may (a taken-over claim is not ours any more). */
export async function completeKey(q: Queryable, scope: string, owner: string, reply: StoredReply): Promise<void> {
  await q.query(
    `UPDATE http_idempotency SET state = 'done', response = $3, updated_at = now()
      WHERE scope = $1 AND owner = $2 AND state = 'in_flight'`,
    [scope, owner, JSON.stringify(reply)],
  );
}

/** Gives the key back (no final outcome: the client may retry at once). */
export async function abandonKey(q: Queryable, scope: string, owner: string): Promise<void> {
  await q.query(`DELETE FROM http_idempotency WHERE scope = $1 AND owner = $2 AND state = 'in_flight'`, [scope, owner]);
}
