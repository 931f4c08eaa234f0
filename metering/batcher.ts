import type { EventResult } from './ingest';

type Ingest = (events: unknown[], now: Date) => Promise<EventResult[]>;

interface Pending {
  events: unknown[];
  scope: string | null;
  resolve: (r: EventResult[]) => void;
  reject: (e: unknown) => void;
}

/**
 * Adaptive group commit for ingestion. While fewer than `maxInFlight` ingest transactions run,
 * a request goes straight to the database (no added latency); beyond that, requests queue and
 * the next free slot takes all of them (up to `maxEvents`) as ONE transaction. Many clients
 * sending one event each then cost a few transactions instead of one each.
 */
export class IngestBatcher {
  private readonly queue: Pending[] = [];
  private inFlight = 0;

  constructor(
    private readonly ingest: Ingest,
    private readonly clock: () => Date,
    private readonly opts: { maxInFlight: number; maxEvents: number } = { maxInFlight: 4, maxEvents: 2000 },
  ) {}

  submit(events: unknown[], scope: string | null): Promise<EventResult[]> {
    return new Promise((resolve, reject) => {
      this.queue.push({ events, scope, resolve, reject });
      this.pump();
    });
  }

  private pump(): void {
    while (this.inFlight < this.opts.maxInFlight && this.queue.length > 0) {
      const group: Pending[] = [this.queue.shift()!];
      let size = group[0]!.events.length;
      while (this.queue.length > 0 && size + this.queue[0]!.events.length <= this.opts.maxEvents) {
        const next = this.queue.shift()!;
        size += next.events.length;
        group.push(next);
      }
      this.inFlight++;
      void this.run(group).finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  private async run(group: Pending[]): Promise<void> {
    // Out-of-scope events are answered here; the rest of every request go into one combined ingest.
    const combined: unknown[] = [];
    const slots = group.map((p) =>
      p.events.map((e): { at: number } | EventResult => {
        const customerId = (e as { customerId?: unknown } | null)?.customerId;
        if (p.scope !== null && typeof customerId === 'string' && customerId !== p.scope) {
          const id = (e as { id?: unknown }).id;
          return {
            index: -1,
            id: typeof id === 'string' ? id : null,
            status: 'rejected',
            error: { code: 'forbidden', message: 'this key is scoped to another customer' },
          };
        }
        combined.push(e);
        return { at: combined.length - 1 };
      }),
    );
    try {
      const results = combined.length > 0 ? await this.ingest(combined, this.clock()) : [];
      group.forEach((p, g) => p.resolve(slots[g]!.map((s, i) => ({ ...('at' in s ? results[s.at]! : s), index: i }))));
    } catch (err) {
      for (const p of group) p.reject(err);
    }
  }
}
