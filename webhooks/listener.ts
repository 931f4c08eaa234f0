import pg from 'pg';
import type { Pool } from '../db/pool';

export const OUTBOX_CHANNEL = 'creditflow_outbox';

/**
 * One LISTEN connection per process (per pool), shared by every delivery loop in it: a NOTIFY
 * from the outbox trigger wakes them all. Open while anyone listens; a dropped connection is
 * reopened after a second (the loops poll meanwhile, so nothing is lost, only later).
 */
class OutboxListener {
  private readonly subscribers = new Set<() => void>();
  private client: pg.Client | null = null;
  private opening: Promise<void> | null = null;

  constructor(private readonly pool: Pool) {}

  subscribe(fn: () => void): () => void {
    this.subscribers.add(fn);
    this.open();
    return () => {
      this.subscribers.delete(fn);
      if (this.subscribers.size === 0) this.close();
    };
  }

  private open(): void {
    if (this.client || this.opening || this.subscribers.size === 0) return;
    const client = new pg.Client({ ...this.pool.options });
    client.on('notification', () => this.subscribers.forEach((fn) => fn()));
    client.on('error', () => this.dropped(client));
    client.on('end', () => this.dropped(client));
    this.opening = client
      .connect()
      .then(() => client.query(`LISTEN ${OUTBOX_CHANNEL}`))
      .then(() => {
        this.client = client;
        if (this.subscribers.size === 0) this.close();
        // Rows may have landed while the connection opened.
        else this.subscribers.forEach((fn) => fn());
      })
      .catch(() => this.dropped(client))
      .finally(() => {
        this.opening = null;
      });
  }

  private dropped(client: pg.Client): void {
    if (this.client === client) this.client = null;
    void client.end().catch(() => undefined);
    if (this.subscribers.size > 0) setTimeout(() => this.open(), 1000).unref();
  }

  private close(): void {
    const c = this.client;
    this.client = null;
    if (c) {
      c.removeAllListeners('end');
      c.removeAllListeners('error');
      c.on('error', () => undefined);
      void c.end().catch(() => undefined);
    }
  }
}

const listeners = new WeakMap<Pool, OutboxListener>();

/** Calls `fn` whenever outbox rows may have been committed; returns the unsubscribe. */
export function onOutboxInsert(pool: Pool, fn: () => void): () => void {
  let l = listeners.get(pool);
  if (!l) listeners.set(pool, (l = new OutboxListener(pool)));
  return l.subscribe(fn);
}
