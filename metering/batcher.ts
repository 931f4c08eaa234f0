import { failureKind, type FailureKind } from '../lib/unavailable';
import type { EventResult } from './ingest';

type Ingest = (events: unknown[], now: Date) => Promise<EventResult[]>;

interface Pending {
  events: unknown[];
  scope: string | null;
  resolve: (r: EventResult[]) => void;
  reject: (e: unknown) => void;
}

/** One in-scope event of a group: the request and position its answer goes back to. */
interface Item {
  req: number;
  at: number;
  event: unknown;
}

/** Events still to store, with the failure that split them off (none for the first attempt). */
interface Part {
  items: Item[];
  failure: { err: unknown; kind: FailureKind } | null;
}

export interface BatcherOptions {
  maxInFlight: number;
  maxEvents: number;
  /** Transactions one group may spend, beyond its first, isolating a failure. */
  maxRetries: number;
}

const DEFAULTS: BatcherOptions = { maxInFlight: 4, maxEvents: 2000, maxRetries: 64 };

const idOf = (e: unknown): string | null => {
  const id = (e as { id?: unknown } | null)?.id;
  return typeof id === 'string' ? id : null;
};

/**
 * Adaptive group commit for ingestion. While fewer than `maxInFlight` ingest transactions run,
 * a request goes straight to the database (no added latency); beyond that, requests queue and
 * the next free slot takes all of them (up to `maxEvents`) as ONE transaction. Many clients
 * sending one event each then cost a few transactions instead of one each.
 *
 * One request never sinks another: when a group's transaction fails, the group is split by
 * request, and a request the database refuses with a data error is split by event, until the
 * culprits stand alone (about 2·log2(n) more transactions per culprit, at most `maxRetries`).
 * Events are idempotent by (customerId, id), so running a part again is safe. An infrastructure
 * failure is never retried here: it goes back to every request still waiting on it.
 */
export class IngestBatcher {
  private readonly queue: Pending[] = [];
  private inFlight = 0;
  private readonly opts: BatcherOptions;

  constructor(
    private readonly ingest: Ingest,
    private readonly clock: () => Date,
    opts: Partial<BatcherOptions> = {},
  ) {
    this.opts = { ...DEFAULTS, ...opts };
  }

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
    const answers = group.map((p) => new Array<EventResult | undefined>(p.events.length));
    const items: Item[] = [];
    group.forEach((p, req) =>
      p.events.forEach((event, at) => {
        const customerId = (event as { customerId?: unknown } | null)?.customerId;
        if (p.scope !== null && typeof customerId === 'string' && customerId !== p.scope) {
          answers[req]![at] = {
            index: at,
            id: idOf(event),
            status: 'rejected',
            error: { code: 'forbidden', message: 'this key is scoped to another customer' },
          };
        } else items.push({ req, at, event });
      }),
    );
    let failed = new Map<number, unknown>();
    try {
      failed = await this.store(items, answers);
    } catch (err) {
      for (let req = 0; req < group.length; req++) failed.set(req, err);
    }
    group.forEach((p, req) => {
      if (failed.has(req)) p.reject(failed.get(req));
      else p.resolve(answers[req]!.map((r, i) => ({ ...r!, index: i })));
    });
  }

  /** Stores the items, filling `answers`; returns the requests that failed as a whole, with why. */
  private async store(items: Item[], answers: (EventResult | undefined)[][]): Promise<Map<number, unknown>> {
    const failed = new Map<number, unknown>();
    if (items.length === 0) return failed;
    const now = this.clock();
    let retries = this.opts.maxRetries;
    // A stack with the left part on top: parts commit in batch order, so within a customer the
    // earlier events are still debited first (the order the overflow checks accept them in).
    const todo: Part[] = [{ items, failure: null }];
    while (todo.length > 0) {
      const part = todo.pop()!;
      const live = part.items.filter((i) => !failed.has(i.req));
      if (live.length === 0) continue;
      if (part.failure && retries-- <= 0) {
        giveUp(live, part.failure, answers, failed);
        continue;
      }
      try {
        const results = await this.ingest(
          live.map((i) => i.event),
          now,
        );
        live.forEach((i, k) => (answers[i.req]![i.at] = results[k]));
      } catch (err) {
        const kind = failureKind(err);
        if (kind === 'infra') {
          for (const i of [...live, ...todo.flatMap((p) => p.items)]) if (!failed.has(i.req)) failed.set(i.req, err);
          break;
        }
        const halves = split(live, kind);
        if (halves) {
          todo.push({ items: halves[1], failure: { err, kind } }, { items: halves[0], failure: { err, kind } });
        } else if (kind === 'data') {
          answers[live[0]!.req]![live[0]!.at] = unstorable(live[0]!, err, 'cannot be stored');
        } else {
          failed.set(live[0]!.req, err);
        }
      }
    }
    return failed;
  }
}

/** Halves by request while several share the part; one request's events only on a data error. */
function split(live: Item[], kind: FailureKind): [Item[], Item[]] | null {
  const requests = [...new Set(live.map((i) => i.req))];
  if (requests.length > 1) {
    const cut = live.findIndex((i) => i.req === requests[Math.floor(requests.length / 2)]);
    return [live.slice(0, cut), live.slice(cut)];
  }
  if (kind !== 'data' || live.length < 2) return null;
  const cut = Math.floor(live.length / 2);
  return [live.slice(0, cut), live.slice(cut)];
}

/** Out of retries: bad data is still answered per event (never a 500); other errors fail the requests. */
function giveUp(
  live: Item[],
  failure: { err: unknown; kind: FailureKind },
  answers: (EventResult | undefined)[][],
  failed: Map<number, unknown>,
): void {
  for (const i of live) {
    if (failure.kind === 'data')
      answers[i.req]![i.at] = unstorable(
        i,
        failure.err,
        'not stored: it could not be told apart from events the database refused; send it again on its own',
      );
    else failed.set(i.req, failure.err);
  }
}

function unstorable(i: Item, err: unknown, message: string): EventResult {
  const code = (err as { code?: unknown } | null)?.code;
  return {
    index: i.at,
    id: idOf(i.event),
    status: 'rejected',
    error: { code: 'invalid', message: typeof code === 'string' ? `${message} (SQLSTATE ${code})` : message },
  };
}
