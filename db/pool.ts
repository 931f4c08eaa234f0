import pg from 'pg';

export type Pool = pg.Pool;
export type Tx = pg.PoolClient;

export const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;

/**
 * Waiting for a connection (opening one, or for a free slot) gives up after connectTimeoutMs, so a
 * request fails fast (503) when Postgres is unreachable instead of hanging.
 */
export function createPool(connectionString: string, max = 20, connectTimeoutMs = DEFAULT_CONNECT_TIMEOUT_MS): Pool {
  const pool = new pg.Pool({
    connectionString,
    max,
    idleTimeoutMillis: 30_000,
    connectionTimeoutMillis: connectTimeoutMs,
  });
  // A dropped idle connection (e.g. Postgres restart) must not crash the process; the pool replaces it.
  pool.on('error', () => undefined);
  // pg-pool listens for errors only while a client is idle: one dying while checked out (pg_ctl stop
  // -m immediate mid-transaction) would emit an unhandled 'error' and kill the process. Its query
  // fails anyway, and the pool discards it on release.
  pool.on('connect', (client) => client.on('error', () => undefined));
  return pool;
}

const RETRYABLE = new Set(['40001', '40P01']); // serialization failure, deadlock detected

/**
 * Runs fn in one database transaction. Serialization failures and deadlocks are retried:
 * safe because every write inside is idempotent by key.
 */
export async function withTransaction<T>(pool: Pool, fn: (tx: Tx) => Promise<T>, attempts = 5): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    const client = await pool.connect();
    let broken = false;
    try {
      await client.query('BEGIN');
      const result = await fn(client);
      await client.query('COMMIT');
      return result;
    } catch (err) {
      await client.query('ROLLBACK').catch(() => {
        broken = true;
      });
      const code = (err as { code?: string }).code;
      if (code && RETRYABLE.has(code) && attempt < attempts) continue;
      throw err;
    } finally {
      client.release(broken);
    }
  }
}
