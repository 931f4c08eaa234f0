import { listen } from '../db/listen';
import type { Pool } from '../db/pool';

export const OUTBOX_CHANNEL = 'creditflow_outbox';

/**
 * Calls `fn` whenever outbox rows may have been committed; returns the unsubscribe. One LISTEN
 * connection per process (db/listen.ts) wakes every delivery loop; when it (re)opens, rows may
 * have landed meanwhile, so `fn` runs then too (the loops also poll, so a lost wake-up only delays).
 */
export function onOutboxInsert(pool: Pool, fn: () => void): () => void {
  return listen(pool, OUTBOX_CHANNEL, { notify: fn, connected: fn });
}
