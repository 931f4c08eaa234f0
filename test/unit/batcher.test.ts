import { IngestBatcher } from '../../metering/batcher';
import type { EventResult } from '../../metering/ingest';

const now = () => new Date('2026-01-01T00:00:00Z');
const accept = (events: unknown[]): EventResult[] =>
  events.map((e, index) => ({ index, id: (e as { id: string }).id, status: 'accepted', credits: '1' }));

describe('IngestBatcher (group commit)', () => {
  it('runs at once while slots are free, and groups queued requests into one ingest', async () => {
    const calls: unknown[][] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new IngestBatcher(
      async (events) => {
        calls.push(events);
        if (calls.length === 1) await gate; // hold the only slot
        return accept(events);
      },
      now,
      { maxInFlight: 1, maxEvents: 100 },
    );
    const first = b.submit([{ id: 'a', customerId: 'c' }], null);
    const queued = Array.from({ length: 5 }, (_, i) => b.submit([{ id: `q${i}`, customerId: 'c' }], null));
    release();
    await first;
    const results = await Promise.all(queued);
    expect(calls.map((c) => c.length)).toEqual([1, 5]); // 5 requests, one transaction
    results.forEach((r, i) => expect(r).toEqual([{ index: 0, id: `q${i}`, status: 'accepted', credits: '1' }]));
  });

  it('answers out-of-scope events itself and maps the rest back to request positions', async () => {
    const seen: unknown[][] = [];
    const b = new IngestBatcher((events) => {
      seen.push(events);
      return Promise.resolve(accept(events));
    }, now);
    const r = await b.submit(
      [
        { id: 'x', customerId: 'other' },
        { id: 'y', customerId: 'mine' },
      ],
      'mine',
    );
    expect(seen).toEqual([[{ id: 'y', customerId: 'mine' }]]);
    expect(r.map((x) => [x.index, x.status, x.error?.code])).toEqual([
      [0, 'rejected', 'forbidden'],
      [1, 'accepted', undefined],
    ]);
  });

  it('a failed transaction fails every request in its group, and the next group still runs', async () => {
    let fail = true;
    const b = new IngestBatcher(
      (events) => (fail ? Promise.reject(new Error('db down')) : Promise.resolve(accept(events))),
      now,
    );
    await expect(b.submit([{ id: 'a', customerId: 'c' }], null)).rejects.toThrow('db down');
    fail = false;
    await expect(b.submit([{ id: 'b', customerId: 'c' }], null)).resolves.toHaveLength(1);
  });

  it('never exceeds maxEvents per group (a single large request still goes alone)', async () => {
    const sizes: number[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const b = new IngestBatcher(
      async (events) => {
        sizes.push(events.length);
        if (sizes.length === 1) await gate;
        return accept(events);
      },
      now,
      { maxInFlight: 1, maxEvents: 10 },
    );
    const ev = (n: number) => Array.from({ length: n }, (_, i) => ({ id: `e${i}`, customerId: 'c' }));
    const all = [b.submit(ev(1), null), b.submit(ev(6), null), b.submit(ev(6), null), b.submit(ev(20), null)];
    release();
    await Promise.all(all);
    expect(sizes).toEqual([1, 6, 6, 20]);
  });
});

describe('IngestBatcher isolation: one request never sinks another', () => {
  type Ev = { id: string; customerId: string; poison?: boolean; boom?: boolean };
  const ev = (id: string, extra: Partial<Ev> = {}): Ev => ({ id, customerId: 'c', ...extra });
  const dataError = () => Object.assign(new Error('unsupported Unicode escape sequence'), { code: '22P05' });
  /** Settled at once, so a rejection is an outcome to assert on, never an unhandled one. */
  type Outcome = { results: EventResult[] } | { error: unknown };
  const submit = (b: IngestBatcher, events: Ev[], scope: string | null = null): Promise<Outcome> =>
    b.submit(events, scope).then(
      (results) => ({ results }),
      (error: unknown) => ({ error }),
    );
  const ok = (o: Outcome): EventResult[] => {
    if ('error' in o) throw new Error(`request failed: ${String(o.error)}`);
    return o.results;
  };

  /**
   * A fake database: a call with a poisoned event fails as a whole with a data error (nothing
   * committed); otherwise every event is committed. Records calls and commits.
   */
  function fakeDb(
    fail: (events: Ev[]) => Error | null = (events) => (events.some((e) => e.poison) ? dataError() : null),
  ) {
    const calls: Ev[][] = [];
    const committed: string[] = [];
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const ingest = async (events: unknown[]): Promise<EventResult[]> => {
      const evs = events as Ev[];
      calls.push(evs);
      if (calls.length === 1) await gate; // hold the only slot so the rest queue into one group
      const err = fail(evs);
      if (err) throw err;
      committed.push(...evs.map((e) => e.id));
      return accept(evs);
    };
    return { calls, committed, release, ingest };
  }

  it('a group with one poisoned event: every other request and event is accepted, the culprit alone rejected', async () => {
    const db = fakeDb();
    const b = new IngestBatcher(db.ingest, now, { maxInFlight: 1, maxEvents: 1000 });
    const first = submit(b, [ev('first')]);
    const requests = Array.from({ length: 20 }, (_, r) =>
      r === 13
        ? [ev('p0'), ev('p1'), ev('bad', { poison: true }), ev('p3'), ev('p4', { customerId: 'other' })]
        : [ev(`r${r}a`), ev(`r${r}b`)],
    );
    const pending = requests.map((events) => submit(b, events, 'c')); // a key scoped to customer c
    db.release();
    ok(await first);
    const results = (await Promise.all(pending)).map(ok);
    results.forEach((res, r) => {
      if (r === 13) {
        expect(res.map((x) => [x.index, x.id, x.status, x.error?.code])).toEqual([
          [0, 'p0', 'accepted', undefined],
          [1, 'p1', 'accepted', undefined],
          [2, 'bad', 'rejected', 'invalid'],
          [3, 'p3', 'accepted', undefined],
          [4, 'p4', 'rejected', 'forbidden'], // the scope check still answers out-of-scope events
        ]);
        expect(res[2]!.error!.message).toBe('cannot be stored (SQLSTATE 22P05)');
      } else {
        expect(res.map((x) => [x.index, x.id, x.status])).toEqual([
          [0, `r${r}a`, 'accepted'],
          [1, `r${r}b`, 'accepted'],
        ]);
      }
    });
    expect(db.calls[1]).toHaveLength(2 * 19 + 4); // the 20 requests really were one group
    // Each good event committed exactly once, in batch order; the culprit never.
    const expected = [
      'first',
      ...requests
        .flat()
        .filter((e) => !e.poison && e.customerId === 'c')
        .map((e) => e.id),
    ];
    expect(db.committed).toEqual(expected);
    // Bisection: ≈2·log2(20 requests) + 2·log2(4 events) transactions after the group's, not one per request.
    expect(db.calls.length - 2).toBeLessThanOrEqual(2 * Math.ceil(Math.log2(20)) + 2 * Math.ceil(Math.log2(4)));
  });

  it('finds the culprits of one request by bisection, within ~2·log2(n) transactions each', async () => {
    const db = fakeDb();
    const b = new IngestBatcher(db.ingest, now, { maxInFlight: 1, maxEvents: 2000 });
    db.release();
    const events = Array.from({ length: 1000 }, (_, i) => ev(`e${i}`, { poison: i === 617 || i === 12 }));
    const res = ok(await submit(b, events));
    expect(res.filter((x) => x.status === 'rejected').map((x) => x.index)).toEqual([12, 617]);
    expect(res.every((x, i) => x.index === i && x.id === `e${i}`)).toBe(true);
    expect(db.calls.length - 1).toBeLessThanOrEqual(2 * 2 * Math.ceil(Math.log2(1000)));
    expect(new Set(db.committed).size).toBe(998);
    expect(db.committed).toHaveLength(998);
  });

  it('caps the work: a request of unstorable events costs at most maxRetries more transactions, still no error', async () => {
    const db = fakeDb();
    const b = new IngestBatcher(db.ingest, now, { maxInFlight: 1, maxEvents: 2000, maxRetries: 8 });
    db.release();
    const res = ok(
      await submit(
        b,
        Array.from({ length: 64 }, (_, i) => ev(`e${i}`, { poison: true })),
      ),
    );
    expect(db.calls).toHaveLength(1 + 8);
    expect(res.every((x) => x.status === 'rejected' && x.error?.code === 'invalid')).toBe(true);
    expect(res.some((x) => /could not be told apart/.test(x.error!.message))).toBe(true);
    expect(db.committed).toEqual([]);
  });

  it.each([
    ['ECONNREFUSED', Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' })],
    ['57P01 admin shutdown', Object.assign(new Error('terminating connection'), { code: '57P01' })],
    ['08006 connection failure', Object.assign(new Error('connection failure'), { code: '08006' })],
    ['connection terminated', new Error('Connection terminated unexpectedly')],
    ['pool timeout', new Error('timeout exceeded when trying to connect')],
  ])('an infrastructure error (%s) fails every request of the group at once: no retries', async (_, infra) => {
    const db = fakeDb(() => infra);
    const b = new IngestBatcher(db.ingest, now, { maxInFlight: 1, maxEvents: 2000 });
    const first = submit(b, [ev('first')]);
    const group = Array.from({ length: 10 }, (_, r) => submit(b, [ev(`r${r}`), ev(`s${r}`)]));
    db.release();
    expect(await first).toEqual({ error: infra });
    expect(await Promise.all(group)).toEqual(group.map(() => ({ error: infra })));
    expect(db.calls).toHaveLength(2); // the lone first request, then the group once
  });

  it('an infrastructure error during isolation fails only the requests not yet stored', async () => {
    const infra = Object.assign(new Error('terminating connection'), { code: '57P01' });
    let n = 0;
    const db = fakeDb(() => {
      n++;
      if (n === 2) return dataError(); // the group
      if (n === 4) return infra; // the database goes away after the first half was stored
      return null;
    });
    const b = new IngestBatcher(db.ingest, now, { maxInFlight: 1, maxEvents: 2000 });
    const first = submit(b, [ev('first')]);
    const group = Array.from({ length: 4 }, (_, r) => submit(b, [ev(`r${r}`)]));
    db.release();
    ok(await first);
    const outcomes = await Promise.all(group);
    expect(outcomes.slice(0, 2).map((o) => ok(o)[0]!.status)).toEqual(['accepted', 'accepted']); // stored by call 3
    expect(outcomes.slice(2)).toEqual([{ error: infra }, { error: infra }]);
    expect(db.calls).toHaveLength(4);
  });

  it('an unexpected error is pinned on its own request without bisecting its events', async () => {
    const boom = new Error('boom');
    const db = fakeDb((events) => (events.some((e) => e.boom) ? boom : null));
    const b = new IngestBatcher(db.ingest, now, { maxInFlight: 1, maxEvents: 2000 });
    const first = submit(b, [ev('first')]);
    const ok1 = submit(b, [ev('a')]);
    const bad = submit(
      b,
      Array.from({ length: 50 }, (_, i) => ev(`x${i}`, { boom: i === 3 })),
    );
    const ok2 = submit(b, [ev('b')]);
    db.release();
    ok(await first);
    expect(await bad).toEqual({ error: boom });
    expect(ok(await ok1)[0]!.status).toBe('accepted');
    expect(ok(await ok2)[0]!.status).toBe('accepted');
    expect(db.calls.map((c) => c.length)).toEqual([1, 52, 1, 51, 50, 1]); // group, its halves, no event bisection
  });
});
