import { credits } from '../../domain/amount';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { Ledger } from '../../ledger/ledger';
import { ingestEvents } from '../../metering/ingest';
import { RateCardResolver } from '../../metering/rate-cards';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let admin: string;
let service: string;
let n = 0;
const uid = (p: string) => `${p}-${++n}-${Math.random().toString(36).slice(2, 7)}`;

const T0 = '2026-01-01T00:00:00Z';
const defaultCard = {
  effectiveFrom: T0,
  rules: [
    { meter: 'llm.output_tokens', credits: '2', per: 1000 },
    { meter: 'llm.output_tokens', dimensions: { model: 'big' }, credits: '10', per: '1000' },
    { meter: 'llm.input_tokens', dimensions: { model: '*' }, credits: '1', per: 1000 },
    { meter: 'images', dimensions: { size: '1024' }, credits: '10' },
  ],
};

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool);
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
  const r = await call(api.url, 'PUT', '/v1/rate-cards/default', { key: admin, json: defaultCard });
  expect(r.status).toBe(201);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

async function customer(grant = '100') {
  const id = uid('m');
  await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } });
  if (grant !== '0') {
    await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
      key: admin,
      json: { amount: grant, kind: 'purchased' },
      headers: { 'idempotency-key': uid('g') },
    });
  }
  return id;
}
const send = (events: unknown[], key = service) => call(api.url, 'POST', '/v1/events', { key, json: { events } });
const balance = async (id: string) => (await call(api.url, 'GET', `/v1/customers/${id}/balance`, { key: admin })).body;
const counts = async () =>
  (
    await pool.query(
      `SELECT (SELECT count(*) FROM usage_events) ev, (SELECT count(*) FROM ledger_transactions) t,
              (SELECT count(*) FROM ledger_entries) e, (SELECT sum(version)::text FROM wallets) v`,
    )
  ).rows[0];

describe('ingestion', () => {
  it('a mixed batch: valid, duplicate, conflicting and invalid events get the right results; only accepted ones are debited', async () => {
    const c = await customer('100');
    const first = await send([
      { id: 'e0', customerId: c, meter: 'llm.output_tokens', quantity: '1000', timestamp: '2026-06-01T00:00:00Z' },
    ]);
    expect(first.body.results[0]).toMatchObject({ status: 'accepted', credits: '2' });
    const r = await send([
      { id: 'e1', customerId: c, meter: 'llm.output_tokens', quantity: '1500', dimensions: { model: 'big' } }, // 15
      { id: 'e0', customerId: c, meter: 'llm.output_tokens', quantity: '1000', timestamp: '2026-06-01T00:00:00Z' }, // dup
      { id: 'e0', customerId: c, meter: 'llm.output_tokens', quantity: '999', timestamp: '2026-06-01T00:00:00Z' }, // conflict
      { id: 'e2', customerId: c, meter: 'images', quantity: '3', dimensions: { size: '1024' } }, // 30
      { id: 'e2', customerId: c, meter: 'images', quantity: '3', dimensions: { size: '1024' } }, // in-batch dup
      { id: 'e3', customerId: c, meter: 'images', quantity: '1', dimensions: { size: '512' } }, // no rate
      { id: 'e4', customerId: c, meter: 'video.seconds', quantity: '1' }, // unknown meter
      { id: 'e5', customerId: 'nobody-here', meter: 'images', quantity: '1', dimensions: { size: '1024' } },
      { id: 'e6', customerId: c, meter: 'images', quantity: '1e3' },
      { id: 'e7', customerId: c, meter: 'images', quantity: '1', extra: true },
      'not an object',
      { id: 'e8', customerId: c, meter: 'llm.input_tokens', quantity: '10' }, // model missing → no rate
      { id: 'e9', customerId: c, meter: 'llm.input_tokens', quantity: '10', dimensions: { model: 'x' } }, // 0.01
    ]);
    expect(r.status).toBe(200);
    const got = r.body.results.map((x: any) => [x.status, x.error?.code ?? x.credits]);
    expect(got).toEqual([
      ['accepted', '15'],
      ['duplicate', '2'],
      ['rejected', 'conflict'],
      ['accepted', '30'],
      ['duplicate', '30'],
      ['rejected', 'no_rate'],
      ['rejected', 'unknown_meter'],
      ['rejected', 'unknown_customer'],
      ['rejected', 'invalid'],
      ['rejected', 'invalid'],
      ['rejected', 'invalid'],
      ['rejected', 'no_rate'],
      ['accepted', '0.01'],
    ]);
    expect((await balance(c)).available).toBe('52.99'); // 100 − 2 − 15 − 30 − 0.01
    expect(r.body.results[0].transactionId).toBe(r.body.results[3].transactionId); // one ledger tx per customer per request
    expect(await findViolations(pool)).toEqual([]);
  });

  it('the same batch sent twice debits once; the replay reports duplicates', async () => {
    const c = await customer('50');
    const batch = Array.from({ length: 20 }, (_, i) => ({
      id: `r${i}`,
      customerId: c,
      meter: 'images',
      quantity: '0.1',
      dimensions: { size: '1024' },
    }));
    const a = await send(batch);
    const before = await counts();
    const b = await send(batch);
    expect(a.body.results.every((x: any) => x.status === 'accepted')).toBe(true);
    expect(b.body.results.every((x: any) => x.status === 'duplicate')).toBe(true);
    expect(b.body.results.map((x: any) => x.transactionId)).toEqual(a.body.results.map((x: any) => x.transactionId));
    expect(await counts()).toEqual(before);
    expect((await balance(c)).available).toBe('30');
  });

  it('the same batch sent concurrently from two clients debits once', async () => {
    const c = await customer('50');
    const batch = Array.from({ length: 50 }, (_, i) => ({
      id: `c${i}`,
      customerId: c,
      meter: 'images',
      quantity: '0.1',
      dimensions: { size: '1024' },
    }));
    const [a, b] = await Promise.all([send(batch), send(batch)]);
    const statuses = [...a.body.results, ...b.body.results].map((x: any) => x.status);
    expect(statuses.filter((s) => s === 'accepted')).toHaveLength(50);
    expect(statuses.filter((s) => s === 'duplicate')).toHaveLength(50);
    expect((await balance(c)).available).toBe('0');
    expect(await findViolations(pool)).toEqual([]);
  });

  it('20 concurrent ingesting clients on one wallet keep every invariant; overspend becomes arrears', async () => {
    const c = await customer('100');
    const others = [await customer('5'), await customer('5')];
    await Promise.all(
      Array.from({ length: 20 }, (_, k) =>
        send(
          Array.from({ length: 30 }, (_, i) => ({
            id: `k${k}-${i}`,
            customerId: i % 10 === 0 ? others[(k + i) % 2] : c,
            meter: 'llm.output_tokens',
            quantity: '100',
          })),
        ),
      ),
    );
    // c: 20 × 27 events × 0.2 = 108 credits against 100 → 8 in arrears
    const b = await balance(c);
    expect(b).toMatchObject({ available: '-8', arrears: '8' });
    expect(await findViolations(pool)).toEqual([]);
    const consumed = await pool.query(
      `SELECT sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'`,
      [c],
    );
    expect(consumed.rows[0].s).toBe(credits('108').toString());
  });

  it('events across a rate-card version change are priced by the version in force at their timestamps', async () => {
    const card = uid('card');
    const v1 = await call(api.url, 'PUT', `/v1/rate-cards/${card}`, {
      key: admin,
      json: {
        effectiveFrom: '2026-01-01T00:00:00Z',
        rules: [{ meter: 'gpu.seconds', dimensions: { gpu: '*' }, credits: '1' }],
      },
    });
    const v2 = await call(api.url, 'PUT', `/v1/rate-cards/${card}`, {
      key: admin,
      json: {
        effectiveFrom: '2026-03-01T00:00:00Z',
        rules: [{ meter: 'gpu.seconds', dimensions: { gpu: '*' }, credits: '3' }],
      },
    });
    expect([v1.body.version, v2.body.version]).toEqual([1, 2]);
    const c = await customer('1000');
    expect(
      (await call(api.url, 'PUT', `/v1/customers/${c}/rate-card`, { key: admin, json: { name: card } })).status,
    ).toBe(200);
    const r = await send([
      {
        id: 'before',
        customerId: c,
        meter: 'gpu.seconds',
        quantity: '10',
        dimensions: { gpu: 'h100' },
        timestamp: '2026-02-28T23:59:59Z',
      },
      {
        id: 'after',
        customerId: c,
        meter: 'gpu.seconds',
        quantity: '10',
        dimensions: { gpu: 'h100' },
        timestamp: '2026-03-01T00:00:00Z',
      },
      {
        id: 'ancient',
        customerId: c,
        meter: 'gpu.seconds',
        quantity: '10',
        dimensions: { gpu: 'h100' },
        timestamp: '2025-12-31T00:00:00Z',
      },
    ]);
    expect(r.body.results.map((x: any) => [x.credits ?? x.error.code, x.rateCard?.version])).toEqual([
      ['10', 1],
      ['30', 2],
      ['no_rate', undefined],
    ]);
    const stored = await pool.query(
      `SELECT id, card_name, card_version FROM usage_events WHERE customer_id = $1 ORDER BY id`,
      [c],
    );
    expect(stored.rows).toEqual([
      { id: 'after', card_name: card, card_version: 2 },
      { id: 'before', card_name: card, card_version: 1 },
    ]);
  });

  it('rate cards and usage events are append-only in the database, even to the owner', async () => {
    await expect(db.owner.query(`UPDATE rate_cards SET rules = '[]'`)).rejects.toThrow(/append-only/);
    await expect(db.owner.query(`DELETE FROM rate_cards`)).rejects.toThrow(/append-only/);
    await expect(db.owner.query(`UPDATE usage_events SET credits = 0`)).rejects.toThrow(/append-only/);
  });

  it('rejects bad envelopes with 4xx and writes nothing', async () => {
    const before = await counts();
    for (const [b, status] of [
      [{ events: [] }, 400],
      [{ events: Array.from({ length: 1001 }, () => ({})) }, 400],
      [{}, 400],
      [{ events: 'x' }, 400],
      [{ events: [], more: 1 }, 400],
    ] as const) {
      expect((await call(api.url, 'POST', '/v1/events', { key: service, json: b })).status).toBe(status);
    }
    expect(
      (
        await call(api.url, 'POST', '/v1/events', {
          key: service,
          raw: '{"events": [',
          contentType: 'application/json',
        })
      ).status,
    ).toBe(400);
    expect(
      (await call(api.url, 'POST', '/v1/events', { key: service, raw: 'x', contentType: 'text/plain' })).status,
    ).toBe(415);
    const support = await makeKey(pool, 'support');
    expect((await send([{ id: 'x', customerId: 'x', meter: 'images', quantity: '1' }], support)).status).toBe(403);
    expect(await counts()).toEqual(before);
  });

  it('a customer-scoped service key can only send its own customer’s events', async () => {
    const c = await customer('10');
    const other = await customer('10');
    const key = await makeKey(pool, 'service', c);
    const r = await send(
      [
        { id: 's1', customerId: c, meter: 'images', quantity: '1', dimensions: { size: '1024' } },
        { id: 's2', customerId: other, meter: 'images', quantity: '1', dimensions: { size: '1024' } },
      ],
      key,
    );
    expect(r.body.results.map((x: any) => x.status)).toEqual(['accepted', 'rejected']);
    expect(r.body.results[1].error.code).toBe('forbidden');
    expect((await balance(other)).available).toBe('10');
  });
});

describe('the same id twice in one request', () => {
  const ev = (customerId: string, id: string, quantity: string) => ({
    id,
    customerId,
    meter: 'llm.output_tokens',
    quantity,
    timestamp: '2026-06-01T00:00:00Z',
  });
  const stored = async (customerId: string) =>
    (
      await pool.query(
        `SELECT id, quantity::text, credits::text FROM usage_events WHERE customer_id = $1 ORDER BY id`,
        [customerId],
      )
    ).rows;
  const consumed = async (customerId: string) =>
    (
      await pool.query(
        `SELECT coalesce(sum(amount), 0)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'`,
        [customerId],
      )
    ).rows[0].s;

  /** The same batch through each entry point: POST /v1/events and ingestEvents itself. */
  const paths: [string, (events: unknown[]) => Promise<any[]>][] = [
    ['POST /v1/events', async (events) => (await send(events)).body.results],
    ['ingestEvents', (events) => ingestEvents(new Ledger(pool), new RateCardResolver(), events, new Date())],
  ];

  it.each(paths)(
    '%s: different content under one id → the later one is rejected as a conflict; only the first is debited',
    async (_name, ingest) => {
      const c = await customer('100');
      const results = await ingest([
        ev(c, 'x', '1000'), // 2 credits
        ev(c, 'x', '2000'), // same id, other quantity
        { ...ev(c, 'x', '1000'), dimensions: { model: 'big' } }, // same id, other dimensions (would be 10)
        { ...ev(c, 'x', '1000'), timestamp: '2026-06-01T00:00:01Z' }, // same id, other timestamp
      ]);
      expect(results.map((r) => [r.status, r.error?.code ?? r.credits])).toEqual([
        ['accepted', '2'],
        ['rejected', 'conflict'],
        ['rejected', 'conflict'],
        ['rejected', 'conflict'],
      ]);
      expect(results[1].error.message).toMatch(/event 0 of this batch/);
      expect(results.slice(1).every((r) => r.transactionId === undefined)).toBe(true);
      expect(await stored(c)).toEqual([{ id: 'x', quantity: '1000', credits: credits('2').toString() }]);
      expect(await consumed(c)).toBe(credits('2').toString());
      expect((await balance(c)).available).toBe('98');
      // The stored event is the first one: a later request with the rejected content is a conflict too.
      const later = await send([ev(c, 'x', '2000'), ev(c, 'x', '1000')]);
      expect(later.body.results.map((r: any) => r.status)).toEqual(['rejected', 'duplicate']);
      expect(later.body.results[0].error.code).toBe('conflict');
      expect((await balance(c)).available).toBe('98');
    },
  );

  it.each(paths)(
    '%s: the same content under one id → the twin is a duplicate pointing at the first one’s transaction',
    async (_name, ingest) => {
      const c = await customer('100');
      const other = await customer('100');
      const results = await ingest([
        ev(c, 'y', '1500'), // 3 credits
        ev(other, 'y', '500'), // the same id of another customer is another event: 1 credit
        ev(c, 'y', '1500'),
        ev(c, 'z', '500'), // 1 credit, in the same ledger transaction as y
      ]);
      expect(results.map((r) => [r.status, r.credits])).toEqual([
        ['accepted', '3'],
        ['accepted', '1'],
        ['duplicate', '3'],
        ['accepted', '1'],
      ]);
      expect(results[2].transactionId).toBe(results[0].transactionId);
      expect(results[3].transactionId).toBe(results[0].transactionId);
      expect(results[1].transactionId).not.toBe(results[0].transactionId);
      expect(await stored(c)).toEqual([
        { id: 'y', quantity: '1500', credits: credits('3').toString() },
        { id: 'z', quantity: '500', credits: credits('1').toString() },
      ]);
      expect((await balance(c)).available).toBe('96');
      expect((await balance(other)).available).toBe('99');
      expect(await findViolations(pool)).toEqual([]);
    },
  );
});

describe('prices finer than a micro-credit, seen through the API', () => {
  // Each event is rounded UP to the next micro-credit (PRODUCT.md), so the per-event amounts below
  // are not the exact products: a rating that rounds down or to nearest gives other figures.
  const oddCard = {
    effectiveFrom: T0,
    rules: [
      { meter: 'thirds', credits: '1', per: 3 }, // 1 unit = 0.333333… → 0.333334
      { meter: 'tiny', credits: '0.0000015' }, // 1 unit = 0.0000015 → 0.000002
      { meter: 'gpu', credits: '0.7', per: '0.3' }, // 1 unit = 2.333333… → 2.333334
      { meter: 'tokens', credits: '2', per: 1000 }, // 1 token = 0.002 exactly
    ],
  };
  const at = (day: string) => `2026-07-${day}T12:00:00Z`;
  const e = (customerId: string, id: string, meter: string, quantity: string, day = '01') => ({
    id,
    customerId,
    meter,
    quantity,
    timestamp: at(day),
  });
  let card: string;
  let c: string;
  let results: any[];

  beforeAll(async () => {
    card = uid('odd');
    expect((await call(api.url, 'PUT', `/v1/rate-cards/${card}`, { key: admin, json: oddCard })).status).toBe(201);
    c = await customer('10');
    const assign = await call(api.url, 'PUT', `/v1/customers/${c}/rate-card`, { key: admin, json: { name: card } });
    expect(assign.status).toBe(200);
    results = (
      await send([
        e(c, 't1', 'thirds', '1'),
        e(c, 't2', 'thirds', '1'),
        e(c, 't3', 'thirds', '1', '02'),
        e(c, 't4', 'thirds', '2', '02'), // 0.666666… → 0.666667
        e(c, 'n1', 'tiny', '1'),
        e(c, 'n2', 'tiny', '3'), // 0.0000045 → 0.000005
        e(c, 'n3', 'tiny', '0.000001'), // 0.0000000000015 → 0.000001: never free
        e(c, 'g1', 'gpu', '1'),
        e(c, 'k1', 'tokens', '1'),
      ])
    ).body.results;
  });

  it('each event’s credits in the POST /v1/events results are rounded up to the next micro-credit', () => {
    expect(results.map((r) => [r.id, r.status, r.credits])).toEqual([
      ['t1', 'accepted', '0.333334'],
      ['t2', 'accepted', '0.333334'],
      ['t3', 'accepted', '0.333334'],
      ['t4', 'accepted', '0.666667'],
      ['n1', 'accepted', '0.000002'],
      ['n2', 'accepted', '0.000005'],
      ['n3', 'accepted', '0.000001'],
      ['g1', 'accepted', '2.333334'],
      ['k1', 'accepted', '0.002'],
    ]);
  });

  it('the wallet is debited the sum of the rounded amounts, to the micro-credit', async () => {
    // 3 × 0.333334 + 0.666667 + 0.000002 + 0.000005 + 0.000001 + 2.333334 + 0.002 = 4.002011
    expect(await balance(c)).toMatchObject({ available: '5.997989', arrears: '0' });
    const stored = await pool.query(`SELECT sum(credits)::text s FROM usage_events WHERE customer_id = $1`, [c]);
    expect(stored.rows[0].s).toBe(credits('4.002011').toString());
    expect(await findViolations(pool)).toEqual([]);
  });

  it('the usage report sums the rounded per-event amounts (three thirds cost more than one credit)', async () => {
    const r = await call(
      api.url,
      'GET',
      `/v1/customers/${c}/usage?from=2026-07-01T00:00:00Z&to=2026-08-01T00:00:00Z&groupBy=meter,day`,
      { key: admin },
    );
    expect(r.status).toBe(200);
    expect(r.body.rows).toEqual([
      { meter: 'gpu', day: '2026-07-01', quantity: '1', credits: '2.333334', correctedCredits: '0', events: 1 },
      { meter: 'thirds', day: '2026-07-01', quantity: '2', credits: '0.666668', correctedCredits: '0', events: 2 },
      { meter: 'thirds', day: '2026-07-02', quantity: '3', credits: '1.000001', correctedCredits: '0', events: 2 },
      { meter: 'tiny', day: '2026-07-01', quantity: '4.000001', credits: '0.000008', correctedCredits: '0', events: 3 },
      { meter: 'tokens', day: '2026-07-01', quantity: '1', credits: '0.002', correctedCredits: '0', events: 1 },
    ]);
    expect(r.body.total).toBe('4.002011');
  });

  it('preview rates stored and given events with the same rounding, under the current card and the draft', async () => {
    const draft = {
      rules: [
        { meter: 'thirds', credits: '2', per: 3 }, // 1 unit = 0.666666… → 0.666667
        { meter: 'tiny', credits: '0.0000001' }, // 1 unit = 0.0000001 → 0.000001
      ],
    };
    const stored = await call(api.url, 'POST', '/v1/rate-cards/preview', {
      key: admin,
      json: { draft, customerId: c, from: '2026-07-01T00:00:00Z', to: '2026-08-01T00:00:00Z' },
    });
    expect(stored.status).toBe(200);
    const row = (meter: string) => stored.body.meters.find((m: any) => m.meter === meter);
    // thirds: current 3 × 0.333334 + 0.666667; draft 3 × 0.666667 + 1.333334
    expect(row('thirds')).toMatchObject({ events: 4, current: '1.666669', draft: '3.333335', difference: '1.666666' });
    // tiny: current 0.000002 + 0.000005 + 0.000001; draft 0.000001 + 0.000001 (0.0000003 → 0.000001) + 0.000001
    expect(row('tiny')).toMatchObject({ events: 3, current: '0.000008', draft: '0.000003', difference: '-0.000005' });
    const given = await call(api.url, 'POST', '/v1/rate-cards/preview', {
      key: admin,
      json: { draft, customerId: c, events: [{ meter: 'thirds', quantity: '1' }] },
    });
    expect(given.status).toBe(200);
    expect(given.body.total).toEqual({ current: '0.333334', draft: '0.666667', difference: '0.333333' });
  });
});

describe('authorize', () => {
  const auth = (id: string, amount: unknown, key = service) =>
    call(api.url, 'POST', `/v1/customers/${id}/authorize`, { key, json: { amount } });

  it('answers allowed / available / shortfall without writing', async () => {
    const c = await customer('10');
    const before = await counts();
    expect((await auth(c, '4')).body).toMatchObject({ allowed: true, available: '10', shortfall: '0' });
    expect((await auth(c, '12.5')).body).toMatchObject({
      allowed: false,
      available: '10',
      shortfall: '2.5',
      reason: 'insufficient_credits',
    });
    expect(await counts()).toEqual(before);
  });

  it('refuses wallets in arrears and frozen wallets; counts no expired credits', async () => {
    const c = await customer('1');
    await send([{ id: 'big', customerId: c, meter: 'images', quantity: '1', dimensions: { size: '1024' } }]); // 10 > 1
    expect((await auth(c, '0.000001')).body).toMatchObject({ allowed: false, reason: 'arrears' });
    const f = await customer('10');
    await pool.query(`UPDATE wallets SET status = 'frozen' WHERE customer_id = $1`, [f]);
    expect((await auth(f, '1')).body).toMatchObject({ allowed: false, reason: 'frozen' });
    const e = await customer('0');
    await pool.query(
      `INSERT INTO credit_lots (id, customer_id, kind, priority, original, remaining, effective_at, expires_at)
       VALUES (gen_random_uuid(), $1, 'promotional', 10, 5000000, 5000000, now() - interval '2 days', now() - interval '1 day')`,
      [e],
    );
    expect((await auth(e, '1')).body).toMatchObject({ allowed: false, available: '0', shortfall: '1' });
  });

  it('bad input → 400/404/403', async () => {
    const c = await customer('1');
    for (const a of ['0', '-1', '1e3', 5, '0.0000001']) expect((await auth(c, a)).status).toBe(400);
    expect((await auth('nobody', '1')).status).toBe(404);
    const viewer = await makeKey(pool, 'viewer', c);
    expect((await auth(c, '1', viewer)).status).toBe(403);
  });
});

describe('usage report and preview', () => {
  it('groups by meter, day and dimension; totals match the ledger to the micro-credit', async () => {
    const c = await customer('1000');
    await send([
      {
        id: 'u1',
        customerId: c,
        meter: 'llm.output_tokens',
        quantity: '333',
        dimensions: { model: 'big' },
        timestamp: '2026-05-01T10:00:00Z',
      },
      {
        id: 'u2',
        customerId: c,
        meter: 'llm.output_tokens',
        quantity: '333',
        dimensions: { model: 'small' },
        timestamp: '2026-05-01T11:00:00Z',
      },
      {
        id: 'u3',
        customerId: c,
        meter: 'llm.output_tokens',
        quantity: '1',
        dimensions: { model: 'big' },
        timestamp: '2026-05-02T10:00:00Z',
      },
      {
        id: 'u4',
        customerId: c,
        meter: 'images',
        quantity: '2',
        dimensions: { size: '1024' },
        timestamp: '2026-05-02T10:00:00Z',
      },
    ]);
    const q = (s: string) =>
      call(api.url, 'GET', `/v1/customers/${c}/usage?from=2026-05-01T00:00:00Z&to=2026-06-01T00:00:00Z&${s}`, {
        key: admin,
      });
    const byMeter = (await q('groupBy=meter')).body;
    expect(byMeter.rows).toEqual([
      { meter: 'images', quantity: '2', credits: '20', correctedCredits: '0', events: 1 },
      { meter: 'llm.output_tokens', quantity: '667', credits: '4.006', correctedCredits: '0', events: 3 }, // 3.33 + 0.666 + 0.01
    ]);
    const byDayModel = (await q('groupBy=day,model')).body;
    expect(byDayModel.rows).toContainEqual({
      day: '2026-05-01',
      model: 'big',
      quantity: '333',
      credits: '3.33',
      correctedCredits: '0',
      events: 1,
    });
    const ledger = await pool.query(
      `SELECT sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'`,
      [c],
    );
    expect(credits(byMeter.total).toString()).toBe(ledger.rows[0].s);
    expect((await q('groupBy=bad;name')).status).toBe(400);
  });

  it('previews a draft card against stored usage and given events, writing nothing', async () => {
    const c = await customer('1000');
    await send([
      { id: 'p1', customerId: c, meter: 'llm.output_tokens', quantity: '1000', timestamp: '2026-05-01T00:00:00Z' },
      {
        id: 'p2',
        customerId: c,
        meter: 'images',
        quantity: '1',
        dimensions: { size: '1024' },
        timestamp: '2026-05-01T00:00:00Z',
      },
    ]);
    const draft = { rules: [{ meter: 'llm.output_tokens', credits: '3', per: 1000 }] };
    const before = await counts();
    const r = await call(api.url, 'POST', '/v1/rate-cards/preview', {
      key: admin,
      json: { draft, customerId: c, from: '2026-04-01T00:00:00Z', to: '2026-06-01T00:00:00Z' },
    });
    expect(r.status).toBe(200);
    expect(r.body.meters).toEqual([
      {
        meter: 'images',
        quantity: '1',
        events: 1,
        current: '10',
        draft: '0',
        difference: '-10',
        unpricedCurrent: 0,
        unpricedDraft: 1,
      },
      {
        meter: 'llm.output_tokens',
        quantity: '1000',
        events: 1,
        current: '2',
        draft: '3',
        difference: '1',
        unpricedCurrent: 0,
        unpricedDraft: 0,
      },
    ]);
    const given = await call(api.url, 'POST', '/v1/rate-cards/preview', {
      key: admin,
      json: { draft, events: [{ meter: 'llm.output_tokens', quantity: '500' }] },
    });
    expect(given.body.total).toEqual({ current: '1', draft: '1.5', difference: '0.5' });
    expect(await counts()).toEqual(before);
    expect((await call(api.url, 'POST', '/v1/rate-cards/preview', { key: admin, json: { draft } })).status).toBe(400);
  });

  it('rate card publishing validates rules and needs an admin key; versions are readable; an unknown card → 404', async () => {
    for (const rules of [
      [],
      [{ meter: 'x', credits: '-1' }],
      [{ meter: 'x', credits: '1', per: 0 }],
      [{ meter: 'x', credits: '1e3' }],
      [
        { meter: 'x', credits: '1' },
        { meter: 'x', credits: '2' },
      ],
      [{ meter: 'x', credits: '1', bogus: 1 }],
    ]) {
      expect((await call(api.url, 'PUT', '/v1/rate-cards/bad', { key: admin, json: { rules } })).status).toBe(400);
    }
    expect((await call(api.url, 'PUT', '/v1/rate-cards/x', { key: service, json: defaultCard })).status).toBe(403);
    expect((await call(api.url, 'GET', '/v1/rate-cards/default?version=1', { key: service })).body.rules).toHaveLength(
      4,
    );
    expect((await call(api.url, 'GET', '/v1/rate-cards/nope', { key: service })).status).toBe(404);
  });
});
