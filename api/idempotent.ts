import type { Response } from 'express';
import type { Pool } from '../db/pool';
import { problem } from './problem';

export interface Reply {
  status: number;
  body: unknown;
}

/**
 * API-level idempotency for operations that are not a single ledger command (holds go through
 * Temporal): a session advisory lock marks the key in flight (→ 409), the first response is
 * stored with the request hash, an exact replay gets it back with Idempotent-Replayed: true, and
 * another request under the key is a 409. Only final outcomes (< 500) are stored.
 */
export async function idempotent(
  pool: Pool,
  res: Response,
  key: string,
  hash: string,
  fn: () => Promise<Reply>,
): Promise<void> {
  const client = await pool.connect();
  let locked = false;
  try {
    locked = (await client.query<{ l: boolean }>(`SELECT pg_try_advisory_lock(hashtextextended($1, 0)) AS l`, [key]))
      .rows[0]!.l;
    if (!locked) throw problem(409, 'a request with this Idempotency-Key is still in flight');
    const prior = await client.query<{ request_hash: string; result: Reply }>(
      `SELECT request_hash, result FROM idempotency_keys WHERE key = $1`,
      [key],
    );
    const row = prior.rows[0];
    if (row) {
      if (row.request_hash !== hash)
        throw problem(409, 'this Idempotency-Key was already used with a different request');
      res.setHeader('Idempotent-Replayed', 'true');
      send(res, row.result);
      return;
    }
    const reply = await fn();
    if (reply.status < 500) {
      await client.query(`INSERT INTO idempotency_keys (key, request_hash, result) VALUES ($1, $2, $3)`, [
        key,
        hash,
        JSON.stringify(reply),
      ]);
    }
    send(res, reply);
  } finally {
    let broken = false;
    if (locked) {
      // A session lock must not outlive the request: if unlocking fails, drop the connection.
      await client.query(`SELECT pg_advisory_unlock(hashtextextended($1, 0))`, [key]).catch(() => (broken = true));
    }
    client.release(broken);
  }
}

function send(res: Response, r: Reply) {
  if (r.status >= 400) res.status(r.status).type('application/problem+json').send(JSON.stringify(r.body));
  else res.status(r.status).json(r.body);
}
