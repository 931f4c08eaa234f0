import fc from 'fast-check';
import { decodeMessage, ingestMessages, MAX_VALUE_BYTES, type UsageMessage } from '../../ingest/messages';
import type { IngestBatcher } from '../../metering/batcher';
import type { EventResult } from '../../metering/ingest';

const msg = (
  value: string | Buffer | undefined,
  key: string | Buffer | undefined = 'acme',
  partition = 0,
  offset = 0n,
) =>
  ({
    key: typeof key === 'string' ? Buffer.from(key) : key,
    value: typeof value === 'string' ? Buffer.from(value) : value,
    headers: new Map(),
    topic: 't',
    partition,
    offset,
  }) satisfies UsageMessage;
const event = (o: object = {}) => JSON.stringify({ id: 'e1', customerId: 'acme', meter: 'm', quantity: '1', ...o });
const reason = (m: UsageMessage) => {
  const d = decodeMessage(m);
  return 'reason' in d ? d.reason : null;
};

describe('decodeMessage: records decoded as strictly as HTTP bodies', () => {
  it('takes one event keyed by its customer', () => {
    expect(decodeMessage(msg(event()))).toEqual({ event: JSON.parse(event()) as unknown });
  });

  it.each([
    ['no value', undefined, /no value/],
    ['an empty value', '', /no value/],
    ['bytes that are not UTF-8', Buffer.from([0x7b, 0xc3, 0x28, 0x7d]), /not valid UTF-8/],
    ['text that is not JSON', '{"id":', /not valid JSON/],
    ['an array', `[${event()}]`, /one event/],
    ['a number', '42', /one event/],
    ['null', 'null', /one event/],
    ['a duplicate key', '{"id":"a","id":"b","customerId":"acme"}', /event\.id: duplicate key/],
    ['an escaped NUL', event({ meter: 'm\\u0000' }).replace('\\\\u0000', '\\u0000'), /NUL/],
    ['a lone surrogate', event().replace('"m"', '"\\ud800"'), /well-formed/],
  ])('refuses %s', (_what, value, why) => {
    expect(reason(msg(value))).toMatch(why);
  });

  it('refuses a value larger than an HTTP body may be', () => {
    expect(reason(msg(Buffer.alloc(MAX_VALUE_BYTES + 1, 0x20)))).toMatch(/larger than/);
  });

  it('refuses a key other than the customerId, no key, or a key that is not UTF-8', () => {
    expect(reason(msg(event(), 'other'))).toMatch(/a different key/);
    expect(reason(msg(event(), Buffer.alloc(0)))).toMatch(/no key/);
    expect(reason(msg(event(), Buffer.from([0xff])))).toMatch(/key is not valid UTF-8/);
  });

  it('leaves the event to the HTTP path’s validation (a missing customerId is its to refuse)', () => {
    expect(decodeMessage(msg('{"id":"x"}'))).toEqual({ event: { id: 'x' } });
  });

  it('never throws, whatever the bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.option(fc.uint8Array({ maxLength: 20 })), (v, k) => {
        const d = decodeMessage(msg(Buffer.from(v), k === null ? undefined : Buffer.from(k)));
        expect('event' in d || typeof d.reason === 'string').toBe(true);
      }),
    );
  });
});

describe('ingestMessages', () => {
  /** A stand-in for the group commit: records each request; answers by id. */
  function fakeBatcher(answer: (e: { id: string; customerId: string }) => EventResult['status'] | Error) {
    const requests: { ids: string[] }[] = [];
    const inFlight = new Map<string, number>();
    const maxInFlight = new Map<string, number>();
    const batcher = {
      submit: async (events: { id: string; customerId: string }[]) => {
        const part = events[0]!.id.split('-')[0]!;
        inFlight.set(part, (inFlight.get(part) ?? 0) + 1);
        maxInFlight.set(part, Math.max(maxInFlight.get(part) ?? 0, inFlight.get(part)!));
        requests.push({ ids: events.map((e) => e.id) });
        await new Promise((r) => setTimeout(r, 5));
        inFlight.set(part, inFlight.get(part)! - 1);
        return events.map((e, index): EventResult => {
          const a = answer(e);
          if (a instanceof Error) throw a;
          return a === 'rejected'
            ? { index, id: e.id, status: a, error: { code: 'unknown_meter', message: 'no such meter' } }
            : { index, id: e.id, status: a };
        });
      },
    } as unknown as IngestBatcher;
    return { batcher, requests, maxInFlight };
  }
  const records = (partition: number, n: number, customer = `c${partition}`) =>
    Array.from({ length: n }, (_, i) =>
      msg(event({ id: `p${partition}-${i}`, customerId: customer }), customer, partition, BigInt(i)),
    );

  it('sends a partition’s records in order, at most 1,000 per request, one request after another', async () => {
    const { batcher, requests, maxInFlight } = fakeBatcher(() => 'accepted');
    const out = await ingestMessages(batcher, [...records(0, 2500), ...records(1, 10)]);
    expect(out.accepted).toBe(2510);
    expect([...out.debited].sort()).toEqual(['c0', 'c1']);
    const p0 = requests.filter((r) => r.ids[0]!.startsWith('p0-'));
    expect(p0.map((r) => r.ids.length)).toEqual([1000, 1000, 500]);
    expect(p0.flatMap((r) => r.ids)).toEqual(Array.from({ length: 2500 }, (_, i) => `p0-${i}`));
    // One request at a time within a partition; partitions side by side.
    expect(Object.fromEntries(maxInFlight)).toEqual({ p0: 1, p1: 1 });
    expect(requests[0]!.ids[0]!.split('-')[0]).not.toBe(requests[1]!.ids[0]!.split('-')[0]);
  });

  it('counts duplicates, and hands back each rejected record with its code and reason', async () => {
    const { batcher } = fakeBatcher((e) =>
      e.id.endsWith('-1') ? 'rejected' : e.id.endsWith('-2') ? 'duplicate' : 'accepted',
    );
    const bad = msg('not json', 'c0', 0, 99n);
    const out = await ingestMessages(batcher, [...records(0, 4), bad]);
    expect([out.accepted, out.duplicate]).toEqual([2, 1]);
    expect(out.rejected.map((r) => [r.message.offset, r.code])).toEqual([
      [99n, 'invalid'],
      [1n, 'unknown_meter'],
    ]);
  });

  it('fails as a whole when the database is unavailable (nothing of the batch may be acknowledged)', async () => {
    const { batcher } = fakeBatcher(() => new Error('connection refused'));
    await expect(ingestMessages(batcher, records(0, 3))).rejects.toThrow('connection refused');
  });
});
