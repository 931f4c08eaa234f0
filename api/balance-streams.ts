import type { ServerResponse } from 'node:http';
import { listen } from '../db/listen';
import type { Pool } from '../db/pool';
import { readBalance } from './balance';

export const BALANCE_CHANNEL = 'creditflow_balance';
const PAYLOAD = /^([A-Za-z0-9_.:-]{1,128}) ([0-9]{1,19})$/;

export interface BalanceStreamOptions {
  /** Open streams this process serves at most; one more is refused (503). */
  maxStreams: number;
  heartbeatMs: number;
  /** Balance reads in flight at once, so streams never take the whole pool from requests. */
  readConcurrency?: number;
  clock?: () => Date;
}

/** One open SSE response and the last wallet version it was sent. */
class Stream {
  lastVersion = -1n;
  /** The last body sent (the string every stream of the customer shares): an equal one is skipped. */
  private lastData = '';
  private started = false;
  /** The newest frame not yet written because the socket is still draining the last one. */
  private queued: string | null = null;

  constructor(
    readonly customerId: string,
    private readonly res: ServerResponse,
    /** Writes the response head; called just before the first event. */
    private readonly start: () => void,
    /** The credential's expiry (portal tokens): the stream ends then, the reconnect is refused. */
    readonly until?: Date,
  ) {
    res.on('drain', () => {
      const q = this.queued;
      this.queued = null;
      if (q) this.write(q);
    });
  }

  /** A slow reader gets the latest state, not a backlog: a newer frame replaces one still waiting. */
  send(version: bigint, data: string): void {
    if (version <= this.lastVersion || this.res.writableEnded || this.res.destroyed) return;
    this.lastVersion = version;
    if (data === this.lastData) return; // a version bump that moved nothing shown (e.g. alert settings)
    this.lastData = data;
    if (!this.started) {
      this.started = true;
      this.start();
    }
    const frame = `id: ${version}\nevent: balance\ndata: ${data}\n\n`;
    if (this.res.writableNeedDrain) this.queued = frame;
    else this.write(frame);
  }

  heartbeat(): void {
    if (this.started && !this.res.writableNeedDrain) this.write(': heartbeat\n\n');
  }

  end(): void {
    if (this.started) this.res.end();
  }

  private write(frame: string): void {
    if (!this.res.writableEnded) this.res.write(frame);
  }
}

type Balance = Awaited<ReturnType<typeof readBalance>>;

/**
 * The live balance of every open stream in this process. Wallet changes arrive as NOTIFYs on one
 * dedicated LISTEN connection (migration 015's trigger, db/listen.ts); each reaches only the
 * streams of its customer, and a burst of them costs one balance read per customer, whatever the
 * number of its streams. No stream holds a pool connection: the pool is used for reads only.
 * With N API processes each listens on its own connection and serves its own streams.
 */
export class BalanceStreams {
  private readonly streams = new Map<string, Set<Stream>>();
  private count = 0;
  /** Per customer: the running read loop, and whether a change arrived after its last read began. */
  private readonly reads = new Map<string, { dirty: boolean; done: Promise<Balance> }>();
  private readonly waiting: (() => void)[] = [];
  private active = 0;
  private unlisten: (() => void) | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private closed = false;
  private readonly clock: () => Date;

  constructor(
    private readonly pool: Pool,
    private readonly opts: BalanceStreamOptions,
  ) {
    this.clock = opts.clock ?? (() => new Date());
  }

  get open(): number {
    return this.count;
  }

  /** Whether one more stream may open now (not past the limit, not shutting down). */
  accepting(): boolean {
    return !this.closed && this.count < this.opts.maxStreams;
  }

  /**
   * Registers a stream and reads the balance for it: registered first, so a change committed
   * meanwhile is read again rather than missed. `start` writes the response head before the first
   * event. Resolves false — nothing written, the stream removed — for an unknown customer.
   */
  async add(customerId: string, res: ServerResponse, start: () => void, until?: Date): Promise<boolean> {
    const s = new Stream(customerId, res, start, until);
    let set = this.streams.get(customerId);
    if (!set) this.streams.set(customerId, (set = new Set()));
    set.add(s);
    this.count++;
    this.ensureRunning();
    res.on('close', () => this.remove(s));
    try {
      if ((await this.refresh(customerId)) !== null) return true;
    } catch (err) {
      // Already streaming (an earlier read reached it): keep it, the read is retried.
      if (s.lastVersion >= 0n) {
        this.changed(customerId);
        return true;
      }
      this.remove(s);
      throw err;
    }
    this.remove(s);
    return false;
  }

  /** Ends every stream (clients reconnect, to another process) and refuses new ones. */
  close(): void {
    this.closed = true;
    for (const set of this.streams.values()) for (const s of set) s.end();
    this.stop();
  }

  private remove(s: Stream): void {
    const set = this.streams.get(s.customerId);
    if (!set?.delete(s)) return;
    this.count--;
    if (set.size === 0) this.streams.delete(s.customerId);
    if (this.count === 0) this.stop();
  }

  private ensureRunning(): void {
    if (this.closed) return;
    this.unlisten ??= listen(this.pool, BALANCE_CHANNEL, {
      notify: (payload) => {
        const m = PAYLOAD.exec(payload);
        if (m && this.streams.has(m[1]!)) this.changed(m[1]!);
      },
      // Changes committed while no connection listened are unknown: read every open customer again.
      connected: () => [...this.streams.keys()].forEach((id) => this.changed(id)),
    });
    this.heartbeat ??= setInterval(() => this.beat(), this.opts.heartbeatMs).unref();
  }

  private stop(): void {
    this.unlisten?.();
    this.unlisten = null;
    if (this.heartbeat) clearInterval(this.heartbeat);
    this.heartbeat = null;
  }

  /** A failed read (database briefly away) is tried again a second later, not dropped. */
  private changed(customerId: string): void {
    this.refresh(customerId).catch(() => {
      setTimeout(() => {
        if (this.streams.has(customerId)) this.changed(customerId);
      }, 1000).unref();
    });
  }

  private beat(): void {
    const now = this.clock();
    for (const set of this.streams.values())
      for (const s of set) {
        if (s.until && s.until <= now) s.end();
        else s.heartbeat();
      }
  }

  /**
   * Reads the customer's balance once for all their streams and sends it to each (those already at
   * that version skip it). While a read runs, further changes only mark it dirty: one more read
   * follows, however many changes arrived. Resolves with the last read (null: no such customer).
   */
  private refresh(customerId: string): Promise<Balance> {
    const running = this.reads.get(customerId);
    if (running) {
      running.dirty = true;
      return running.done;
    }
    const entry = { dirty: true, done: Promise.resolve<Balance>(null) };
    this.reads.set(customerId, entry);
    entry.done = (async () => {
      try {
        let b: Balance = null;
        while (entry.dirty && this.streams.has(customerId)) {
          entry.dirty = false;
          b = await this.limited(() => readBalance(this.pool, customerId, this.clock()));
          if (!b) continue;
          const data = JSON.stringify(b.body); // once per read, shared by every stream
          for (const s of this.streams.get(customerId) ?? []) s.send(b.version, data);
        }
        return b;
      } finally {
        this.reads.delete(customerId);
      }
    })();
    return entry.done;
  }

  private async limited<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= (this.opts.readConcurrency ?? 4)) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}
