import { randomUUID } from 'node:crypto';
import { credits } from '../../domain/amount';
import { allocate, compareConsumptionOrder, type LotForAllocation } from '../../domain/lots';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { Ledger } from '../../ledger/ledger';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/**
 * The consumption order, one key at a time: each fixture is two lots on which exactly one key
 * decides and the next key would decide the other way, checked in the pure function, the
 * ledger (debit), the batch path (POST /v1/events) and the balance endpoint's lot listing.
 */
const DAY = 86_400_000;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let admin: string;
let ledger: Ledger;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ledger = new Ledger(pool);
  api = await startApi(pool);
  admin = await makeKey(pool, 'admin');
  const card = await call(api.url, 'PUT', '/v1/rate-cards/default', {
    key: admin,
    json: { effectiveFrom: '2020-01-01T00:00:00Z', rules: [{ meter: 'unit', credits: '1' }] },
  });
  expect(card.status).toBe(201);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

interface LotSpec {
  priority: number;
  expiresInDays?: number;
  costMinor?: number;
  effectiveDaysAgo: number;
}

/** Pairs [first, second]: the named key decides; the keys after it would order them the other way. */
const FIXTURES: Record<string, [LotSpec, LotSpec]> = {
  'priority beats an earlier expiry': [
    { priority: 10, expiresInDays: 30, effectiveDaysAgo: 1 },
    { priority: 20, expiresInDays: 1, effectiveDaysAgo: 2 },
  ],
  'expiry beats a lower cost': [
    { priority: 30, expiresInDays: 2, costMinor: 900, effectiveDaysAgo: 1 },
    { priority: 30, expiresInDays: 20, costMinor: 0, effectiveDaysAgo: 2 },
  ],
  'a never-expiring lot comes after an expiring one, whatever its cost': [
    { priority: 30, expiresInDays: 20, costMinor: 900, effectiveDaysAgo: 1 },
    { priority: 30, costMinor: 0, effectiveDaysAgo: 2 },
  ],
  'cost per credit beats an earlier effectiveAt': [
    { priority: 30, costMinor: 100, effectiveDaysAgo: 1 },
    { priority: 30, costMinor: 500, effectiveDaysAgo: 3 },
  ],
  'effectiveAt beats the lot id': [
    { priority: 30, effectiveDaysAgo: 3 },
    { priority: 30, effectiveDaysAgo: 1 },
  ],
};

async function grantPair(specs: readonly LotSpec[], now = new Date()) {
  const customerId = `co-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id: customerId } })).status).toBe(201);
  const ids: string[] = [];
  for (const s of specs) {
    const r = await call(api.url, 'POST', `/v1/customers/${customerId}/grants`, {
      key: admin,
      headers: { 'idempotency-key': randomUUID() },
      json: {
        amount: '10',
        kind: 'purchased',
        priority: s.priority,
        effectiveAt: new Date(now.getTime() - s.effectiveDaysAgo * DAY).toISOString(),
        ...(s.expiresInDays ? { expiresAt: new Date(now.getTime() + s.expiresInDays * DAY).toISOString() } : {}),
        ...(s.costMinor !== undefined ? { cost: { amountMinor: s.costMinor, currency: 'USD' } } : {}),
      },
    });
    expect(r.status).toBe(201);
    ids.push(r.body.lot.id as string);
  }
  return { customerId, ids };
}

const pure = (id: string, s: LotSpec, now: Date): LotForAllocation => ({
  id,
  priority: s.priority,
  remaining: credits('10'),
  effectiveAt: new Date(now.getTime() - s.effectiveDaysAgo * DAY),
  expiresAt: s.expiresInDays ? new Date(now.getTime() + s.expiresInDays * DAY) : null,
  costMinor: BigInt(s.costMinor ?? 0),
  original: credits('10'),
  status: 'active',
});

describe.each(Object.entries(FIXTURES))('%s', (_name, [first, second]) => {
  it('in the pure function (whatever the ids and input order)', () => {
    const now = new Date();
    for (const [a, b] of [
      ['a', 'b'],
      ['b', 'a'],
    ] as const) {
      const lots = [pure(a, first, now), pure(b, second, now)];
      expect(compareConsumptionOrder(lots[0]!, lots[1]!)).toBeLessThan(0);
      expect(allocate([...lots].reverse(), credits('5'), now).draws).toEqual([{ lotId: a, amount: credits('5') }]);
    }
  });

  it('in the ledger, the batch path and the balance listing', async () => {
    const viaLedger = await grantPair([second, first]); // granted in the "wrong" order on purpose
    const d = await ledger.debit(
      { customerId: viaLedger.customerId, key: `d:${randomUUID()}`, requestHash: 'd' },
      { amount: credits('12') },
    );
    expect(d.result.draws).toEqual([
      { lotId: viaLedger.ids[1], amount: '10' },
      { lotId: viaLedger.ids[0], amount: '2' },
    ]);

    const viaBatch = await grantPair([second, first]);
    const ev = await call(api.url, 'POST', '/v1/events', {
      key: admin,
      json: { events: [{ id: 'e1', customerId: viaBatch.customerId, meter: 'unit', quantity: '7' }] },
    });
    expect(ev.body.results[0]).toMatchObject({ status: 'accepted', credits: '7' });
    const bal = await call(api.url, 'GET', `/v1/customers/${viaBatch.customerId}/balance`, { key: admin });
    expect(bal.body.lots.map((l: { id: string; remaining: string }) => [l.id, l.remaining])).toEqual([
      [viaBatch.ids[1], '3'],
      [viaBatch.ids[0], '10'],
    ]);
  });
});

it('a full tie falls to the lot id, in the ledger and the listing', async () => {
  const same: LotSpec = { priority: 30, effectiveDaysAgo: 1 };
  const now = new Date();
  const { customerId, ids } = await grantPair([same, same], now);
  // Both lots share effectiveAt (same request time): only the id can decide.
  await pool.query(`UPDATE credit_lots SET effective_at = $2 WHERE customer_id = $1`, [customerId, now]);
  const lower = [...ids].sort()[0]!;
  const d = await ledger.debit({ customerId, key: `d:${randomUUID()}`, requestHash: 'd' }, { amount: credits('1') });
  expect(d.result.draws).toEqual([{ lotId: lower, amount: '1' }]);
  const bal = await call(api.url, 'GET', `/v1/customers/${customerId}/balance`, { key: admin });
  expect(bal.body.lots[0].id).toBe(lower);
  expect(await findViolations(pool)).toEqual([]);
});
