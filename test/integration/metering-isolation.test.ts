import { credits } from '../../domain/amount';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { Ledger } from '../../ledger/ledger';
import { IngestBatcher } from '../../metering/batcher';
import { ingestEvents, type EventResult } from '../../metering/ingest';
import { RateCardResolver } from '../../metering/rate-cards';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/** Issue 8, class 3: one request never sinks another, and sums are checked before they overflow. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let admin: string;
let service: string;
let n = 0;
const uid = (p: string) => `${p}-${++n}-${Math.random().toString(36).slice(2, 7)}`;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool);
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
  const card = (rules: unknown[]) => ({ effectiveFrom: '2026-01-01T00:00:00Z', rules });
  expect(
    (
      await call(api.url, 'PUT', '/v1/rate-cards/default', {
        key: admin,
        json: card([{ meter: 'tokens', credits: '2', per: 1000 }]),
      })
    ).status,
  ).toBe(201);
  // A trillion credits per unit: a few events reach the 9,000,000,000,000-credit maximum.
  expect(
    (
      await call(api.url, 'PUT', '/v1/rate-cards/huge', {
        key: admin,
        json: card([{ meter: 'tokens', credits: '1000000000000' }]),
      })
    ).status,
  ).toBe(201);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

async function customer(grant: string, card?: string): Promise<string> {
  const id = uid('iso');
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  if (grant !== '0') {
    const g = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
      key: admin,
      json: { amount: grant, kind: 'purchased' },
      headers: { 'idempotency-key': uid('g') },
    });
    expect(g.status).toBe(201);
  }
  if (card) {
    const r = await call(api.url, 'PUT', `/v1/customers/${id}/rate-card`, { key: admin, json: { name: card } });
    expect(r.status).toBe(200);
  }
  return id;
}
const send = (events: unknown[]) => call(api.url, 'POST', '/v1/events', { key: service, json: { events } });
const balance = async (id: string) => (await call(api.url, 'GET', `/v1/customers/${id}/balance`, { key: admin })).body;
const stored = async (customerId: string, id: string) =>
  (
    await pool.query(
      `SELECT credits::text, transaction_id::text FROM usage_events WHERE customer_id = $1 AND id = $2`,
      [customerId, id],
    )
  ).rows[0] as { credits: string; transaction_id: string } | undefined;

/** 50 one-event requests over 5 customers (100 credits each): request k costs 2·(k mod 3 + 1) credits. */
async function fiftyRequests() {
  const customers = await Promise.all(Array.from({ length: 5 }, () => customer('100')));
  return Array.from({ length: 50 }, (_, k) => ({
    customerId: customers[k % 5]!,
    price: String(2 * ((k % 3) + 1)),
    events: [{ id: `v${k}`, customerId: customers[k % 5]!, meter: 'tokens', quantity: String(1000 * ((k % 3) + 1)) }],
  }));
}

/** Every valid request accepted at its price, stored under the transaction it reports; wallets debited exactly. */
async function expectAllAccepted(requests: Awaited<ReturnType<typeof fiftyRequests>>, results: EventResult[][]) {
  const spent = new Map<string, bigint>();
  for (const [k, r] of requests.entries()) {
    expect(results[k]).toEqual([
      expect.objectContaining({ index: 0, id: `v${k}`, status: 'accepted', credits: r.price }),
    ]);
    expect(await stored(r.customerId, `v${k}`)).toEqual({
      credits: credits(r.price).toString(),
      transaction_id: results[k]![0]!.transactionId,
    });
    spent.set(r.customerId, (spent.get(r.customerId) ?? 0n) + credits(r.price));
  }
  for (const [c, s] of spent) expect(credits((await balance(c)).available)).toBe(credits('100') - s);
}

/** A batcher on one slot: the first request holds it, so every later one queues into ONE group. */
function groupingBatcher() {
  const ledger = new Ledger(pool);
  const resolver = new RateCardResolver();
  const calls: number[] = [];
  const batcher = new IngestBatcher(
    (events, now) => {
      calls.push(events.length);
      return ingestEvents(ledger, resolver, events, now);
    },
    () => new Date(),
    { maxInFlight: 1, maxEvents: 2000 },
  );
  return { batcher, calls };
}

describe('a poisoned request among 50 concurrent valid ones', () => {
  const poisoned = (c: string) => [
    { id: 'ok-1', customerId: c, meter: 'tokens', quantity: '1000' },
    { id: 'nul', customerId: c, meter: 'tokens', quantity: '1000', dimensions: { model: 'gpt\u0000x' } },
    { id: 'ok-2', customerId: c, meter: 'tokens', quantity: '2000' },
  ];

  it('through the group commit: exactly the culprit is rejected, everything else is accepted and balances', async () => {
    const requests = await fiftyRequests();
    const p = await customer('10');
    const { batcher, calls } = groupingBatcher();
    const all = requests.map((r) => r.events as unknown[]);
    all.splice(25, 0, poisoned(p));
    const results = await Promise.all(all.map((events) => batcher.submit(events, null)));
    expect(calls.slice(0, 2)).toEqual([1, 52]); // the other 50 requests really went as one transaction
    const mine = results.splice(25, 1)[0]!;
    expect(mine.map((x) => [x.id, x.status, x.error?.code ?? x.credits])).toEqual([
      ['ok-1', 'accepted', '2'],
      ['nul', 'rejected', 'invalid'],
      ['ok-2', 'accepted', '4'],
    ]);
    expect(mine[1]!.error!.message).toMatch(/^dimensions\.model: contains NUL/);
    await expectAllAccepted(requests, results);
    expect(await stored(p, 'nul')).toBeUndefined();
    expect((await balance(p)).available).toBe('4');
    expect(await findViolations(pool)).toEqual([]);
  });

  it('over HTTP: the 50 valid requests are accepted; the culprit is refused and nothing of it is stored', async () => {
    const requests = await fiftyRequests();
    const p = await customer('10');
    const [bad, ...ok] = await Promise.all([send(poisoned(p)), ...requests.map((r) => send(r.events))]);
    for (const r of ok) expect(r.status).toBe(200);
    await expectAllAccepted(
      requests,
      ok.map((r) => r.body.results),
    );
    // Per event here; the HTTP layer may instead refuse a body holding NUL as a whole (400). Never a 500.
    expect([200, 400]).toContain(bad.status);
    if (bad.status === 200) {
      expect(bad.body.results.map((x: EventResult) => [x.id, x.status, x.error?.code])).toEqual([
        ['ok-1', 'accepted', undefined],
        ['nul', 'rejected', 'invalid'],
        ['ok-2', 'accepted', undefined],
      ]);
    }
    expect(await stored(p, 'nul')).toBeUndefined();
    expect(await findViolations(pool)).toEqual([]);
  });
});

describe('per-event validation refuses what PostgreSQL cannot store', () => {
  it('NUL or an unpaired surrogate in any string → that event invalid, naming the field; the others stored', async () => {
    const c = await customer('100');
    const ok = { customerId: c, meter: 'tokens', quantity: '1000' };
    const ledger = new Ledger(pool);
    const res = await ingestEvents(
      ledger,
      new RateCardResolver(),
      [
        { id: 'a', ...ok },
        { id: 'b\u0000', ...ok },
        { id: 'c', ...ok, customerId: `${c}\u0000` },
        { id: 'd', ...ok, meter: 'tokens\u0000' },
        { id: 'e', ...ok, quantity: '1\u0000' },
        { id: 'f', ...ok, timestamp: '2026-01-02T00:00:00Z\u0000' },
        { id: 'g', ...ok, dimensions: { 'mo\u0000del': 'x' } },
        { id: 'h', ...ok, dimensions: { model: 'x\ud800' } },
        { id: 'i', ...ok, dimensions: { model: 'x\udc00y' } },
        { id: 'j', ...ok, dimensions: { model: 'emoji \ud83d\ude00 is fine' } },
      ],
      new Date(),
    );
    expect(res.map((r) => [r.id, r.status, r.error?.message.split(':')[0]])).toEqual([
      ['a', 'accepted', undefined],
      ['b\u0000', 'rejected', 'id'],
      ['c', 'rejected', 'customerId'],
      ['d', 'rejected', 'meter'],
      ['e', 'rejected', 'quantity'],
      ['f', 'rejected', 'timestamp'],
      ['g', 'rejected', 'dimensions'],
      ['h', 'rejected', 'dimensions.model'],
      ['i', 'rejected', 'dimensions.model'],
      ['j', 'accepted', undefined],
    ]);
    expect(res.filter((r) => r.status === 'rejected').every((r) => r.error!.code === 'invalid')).toBe(true);
    expect(res[7]!.error!.message).toMatch(/well-formed/);
    expect((await balance(c)).available).toBe('96');
  });
});

describe('a data error validation does not catch', () => {
  // Stands in for any value PostgreSQL refuses that validation lets through: a CHECK (no trigger),
  // added by the owner (the service role cannot alter tables).
  beforeAll(async () => {
    await db.owner.query(
      `ALTER TABLE usage_events ADD CONSTRAINT test_no_poison CHECK (dimensions->>'tag' IS DISTINCT FROM 'poison')`,
    );
  });
  afterAll(async () => {
    await db.owner.query(`ALTER TABLE usage_events DROP CONSTRAINT test_no_poison`);
  });

  it('is pinned on its event by bisection; every other request and event is accepted', async () => {
    const requests = await fiftyRequests();
    const p = await customer('100');
    const { batcher, calls } = groupingBatcher();
    const mine = Array.from({ length: 16 }, (_, i) => ({
      id: `p${i}`,
      customerId: p,
      meter: 'tokens',
      quantity: '1000',
      ...(i === 9 ? { dimensions: { tag: 'poison' } } : {}),
    }));
    mine.push({ ...mine[2]! }); // an in-batch duplicate that the split puts in another transaction
    const all: unknown[][] = requests.map((r) => r.events);
    all.splice(30, 0, mine);
    const results = await Promise.all(all.map((events) => batcher.submit(events, null)));
    const own = results.splice(30, 1)[0]!;
    expect(own.map((x) => x.status)).toEqual(
      mine.map((_, i) => (i === 9 ? 'rejected' : i === 16 ? 'duplicate' : 'accepted')),
    );
    expect(own[16]).toMatchObject({ id: 'p2', credits: '2', transactionId: own[2]!.transactionId });
    expect(own[9]!.error).toEqual({ code: 'invalid', message: 'cannot be stored (SQLSTATE 23514)' });
    // Each accepted event is stored under the transaction it reports (several, after the split).
    for (const x of own.filter((r) => r.status !== 'rejected'))
      expect((await stored(p, x.id!))!.transaction_id).toBe(x.transactionId);
    expect(await stored(p, 'p9')).toBeUndefined();
    expect((await balance(p)).available).toBe('70'); // 15 × 2
    await expectAllAccepted(requests, results);
    // The group, then ≈2·log2(50 requests) + 2·log2(17 events) more transactions, not one per request.
    expect(calls[1]).toBe(49 + 17); // the first request went alone, the other 50 as one group
    expect(calls.length - 2).toBeLessThanOrEqual(2 * 6 + 2 * 5);
    expect(await findViolations(pool)).toEqual([]);
  });
});

describe('sums are checked before they overflow', () => {
  const big = (id: string, customerId: string, quantity: string) => ({ id, customerId, meter: 'tokens', quantity });

  it('a per-customer batch total over the maximum: the events that push it over are too_large, the rest accepted', async () => {
    const c = await customer('0', 'huge');
    const other = await customer('100');
    const r = await send([
      big('a', c, '4'), // 4e12 credits
      big('b', c, '4'), // 8e12
      big('x', other, '1000'),
      big('c', c, '4'), // 12e12: over
      big('d', c, '1'), // 9e12: exactly the maximum
      big('e', c, '0.000000000001'), // 1 credit more: over
    ]);
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: EventResult) => [x.id, x.status, x.error?.code ?? x.credits])).toEqual([
      ['a', 'accepted', '4000000000000'],
      ['b', 'accepted', '4000000000000'],
      ['x', 'accepted', '2'],
      ['c', 'rejected', 'too_large'],
      ['d', 'accepted', '1000000000000'],
      ['e', 'rejected', 'too_large'],
    ]);
    expect(await balance(c)).toMatchObject({ available: '-9000000000000', arrears: '9000000000000' });
    expect((await balance(other)).available).toBe('98');
    expect(await stored(c, 'c')).toBeUndefined();
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a wallet near the bound: an event that would take it past −9,000,000,000,000 is too_large', async () => {
    const c = await customer('0', 'huge');
    expect((await send([big('first', c, '8.9999')])).body.results[0].status).toBe('accepted');
    const r = await send([
      big('over', c, '0.0002'), // arrears would reach 9,000,100,000,000
      big('fits', c, '0.0001'), // exactly 9,000,000,000,000
      big('one-more', c, '0.000000000001'),
    ]);
    expect(r.body.results.map((x: EventResult) => [x.id, x.status, x.error?.code])).toEqual([
      ['over', 'rejected', 'too_large'],
      ['fits', 'accepted', undefined],
      ['one-more', 'rejected', 'too_large'],
    ]);
    expect(r.body.results[0].error.message).toMatch(/-9,000,000,000,000/);
    expect(await balance(c)).toMatchObject({ available: '-9000000000000', arrears: '9000000000000' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a huge quantity × price is too_large on its own; the batch goes on', async () => {
    const c = await customer('100', 'huge');
    const d = await customer('100');
    const r = await send([
      big('q1', c, '999999999999999999.999999999999'),
      big('q2', d, '999999999999999999'), // 2e15 credits on the default card
      big('ok', d, '1000'),
    ]);
    expect(r.status).toBe(200);
    expect(r.body.results.map((x: EventResult) => [x.id, x.status, x.error?.code])).toEqual([
      ['q1', 'rejected', 'too_large'],
      ['q2', 'rejected', 'too_large'],
      ['ok', 'accepted', undefined],
    ]);
    expect((await balance(c)).available).toBe('100');
    expect((await balance(d)).available).toBe('98');
    expect(await findViolations(pool)).toEqual([]);
  });
});
