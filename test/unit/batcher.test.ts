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
