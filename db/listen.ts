import pg from 'pg';
import type { Pool } from './pool';

export interface ChannelSubscriber {
  /** A NOTIFY on the channel, with its payload. */
  notify(payload: string): void;
  /** The connection (re)opened: notifications may have been missed meanwhile; catch up. */
  connected(): void;
}

const BACKOFF_MS = [250, 500, 1000, 2000, 5000];

/**
 * One dedicated LISTEN connection per pool and channel (never a pool connection: it stays open
 * for good), shared by every subscriber in the process. Open while anyone subscribes; a dropped
 * connection is reopened with backoff (250 ms doubling to 5 s), and subscribers are told each time
 * it opens, since a NOTIFY sent while no connection listened is gone.
 */
class ChannelListener {
  private readonly subscribers = new Set<ChannelSubscriber>();
  private client: pg.Client | null = null;
  private opening: Promise<void> | null = null;
  private failures = 0;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly pool: Pool,
    private readonly channel: string,
  ) {}

  subscribe(s: ChannelSubscriber): () => void {
    this.subscribers.add(s);
    this.open();
    return () => {
      this.subscribers.delete(s);
      if (this.subscribers.size === 0) this.close();
    };
  }

  private open(): void {
    if (this.client || this.opening || this.retry || this.subscribers.size === 0) return;
    const client = new pg.Client({ ...this.pool.options });
    client.on('notification', (n) => this.subscribers.forEach((s) => s.notify(n.payload ?? '')));
    client.on('error', () => this.dropped(client));
    client.on('end', () => this.dropped(client));
    this.opening = client
      .connect()
      .then(() => client.query(`LISTEN ${this.channel}`))
      .then(() => {
        this.client = client;
        this.failures = 0;
        if (this.subscribers.size === 0) this.close();
        else this.subscribers.forEach((s) => s.connected());
      })
      .catch(() => this.dropped(client))
      .finally(() => {
        this.opening = null;
      });
  }

  private dropped(client: pg.Client): void {
    if (this.client === client) this.client = null;
    client.removeAllListeners('end');
    void client.end().catch(() => undefined);
    if (this.subscribers.size === 0 || this.retry) return;
    const wait = BACKOFF_MS[Math.min(this.failures++, BACKOFF_MS.length - 1)]!;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.open();
    }, wait);
    this.retry.unref();
  }

  private close(): void {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
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

const listeners = new WeakMap<Pool, Map<string, ChannelListener>>();

/** Subscribes to NOTIFYs on `channel` (a plain identifier) over the pool's one listener; returns the unsubscribe. */
export function listen(pool: Pool, channel: string, s: ChannelSubscriber): () => void {
  if (!/^[a-z_][a-z0-9_]*$/.test(channel)) throw new Error(`not a channel name: ${channel}`);
  let byChannel = listeners.get(pool);
  if (!byChannel) listeners.set(pool, (byChannel = new Map<string, ChannelListener>()));
  let l = byChannel.get(channel);
  if (!l) byChannel.set(channel, (l = new ChannelListener(pool, channel)));
  return l.subscribe(s);
}
