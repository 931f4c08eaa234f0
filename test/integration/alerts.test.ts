import { randomUUID } from 'node:crypto';
import { credits } from '../../domain/amount';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { LifecycleLedger } from '../../ledger/lifecycle';
import { RefundsLedger, requestRefund } from '../../ledger/refunds';
import { call, makeKey, snapshotTables, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/**
 * Low-balance alerts on real Postgres: the wallet trigger of migration 009 fires `balance.low`
 * once per downward crossing of each threshold, whatever moved the balance (usage under
 * concurrency, holds, expiry, claw-back), re-arms when available rises above it (grants,
 * releases, corrections), and `PUT /v1/customers/:id/alerts` sets the thresholds.
 */
const HOUR = 3_600_000;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let ledger: Ledger;
const keys = { admin: '', service: '', support: '' };

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ledger = new Ledger(pool);
  api = await startApi(pool);
  for (const role of ['admin', 'service', 'support'] as const) keys[role] = await makeKey(pool, role);
  await putTokensRateCard(api.url, keys.admin);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

async function customer(grantCredits?: string) {
  const id = `al-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id } })).status).toBe(201);
  if (grantCredits) await grant(id, grantCredits);
  return id;
}
async function grant(id: string, amount: string, extra: Record<string, unknown> = {}) {
  const r = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
    key: keys.admin,
    json: { amount, kind: 'promotional', ...extra },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(201);
  return r.body.lot.id as string;
}
const putAlerts = (id: string, lowBalanceThresholds: unknown, key = keys.admin) =>
  call(api.url, 'PUT', `/v1/customers/${id}/alerts`, { key, json: { lowBalanceThresholds } });
const getAlerts = async (id: string) =>
  (await call(api.url, 'GET', `/v1/customers/${id}/alerts`, { key: keys.admin })).body;

/** `events` usage events of `each` credits: `perRequest` per request, `concurrency` requests in flight. */
async function burn(id: string, events: number, o: { perRequest?: number; concurrency?: number; each?: number } = {}) {
  const { perRequest = 10, concurrency = 10, each = 1 } = o;
  const run = randomUUID().slice(0, 8);
  const batches: { id: string; customerId: string; meter: string; quantity: string }[][] = [];
  for (let i = 0; i < events; i += perRequest)
    batches.push(
      Array.from({ length: Math.min(perRequest, events - i) }, (_, k) => ({
        id: `${id}-${run}-e${i + k}`,
        customerId: id,
        meter: 'tokens',
        quantity: String(each * 1000),
      })),
    );
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < batches.length) {
        const r = await call(api.url, 'POST', '/v1/events', { key: keys.service, json: { events: batches[next++] } });
        expect(r.status).toBe(200);
        expect(r.body.results.filter((x: { status: string }) => x.status !== 'accepted')).toEqual([]);
      }
    }),
  );
  return batches.flat().map((e) => e.id);
}
/** The `balance.low` notifications of a customer, oldest first, as numbers for comparisons. */
const lows = async (id: string) =>
  (
    await pool.query<{ threshold: string; available: string }>(
      `SELECT payload->>'threshold' AS threshold, payload->>'available' AS available FROM outbox_events
        WHERE customer_id = $1 AND type = 'balance.low' ORDER BY id`,
      [id],
    )
  ).rows.map((r) => ({ threshold: Number(r.threshold), available: Number(r.available) }));
const thresholdsOf = async (id: string) => (await lows(id)).map((l) => l.threshold);
const available = async (id: string) =>
  Number((await call(api.url, 'GET', `/v1/customers/${id}/balance`, { key: keys.admin })).body.available);
const outboxCount = async (id: string, type: string) =>
  Number(
    (await pool.query(`SELECT count(*) n FROM outbox_events WHERE customer_id = $1 AND type = $2`, [id, type])).rows[0]
      .n,
  );

describe('balance.low from usage', () => {
  it('500 concurrent one-credit debits cross 400 and 200 once each; a grant re-arms both, the next crossing fires again', async () => {
    const c = await customer('500');
    const set = await putAlerts(c, ['200', '400']);
    expect(set.status).toBe(200);
    expect(set.body).toEqual({ customerId: c, lowBalanceThresholds: ['400', '200'], armed: ['400', '200'], fired: [] });
    expect(await lows(c)).toEqual([]); // 500 is above both: nothing fires on setting them

    await burn(c, 500); // 50 requests of 10, 10 in flight
    expect(await available(c)).toBe(0);
    const first = await lows(c);
    expect(first.map((l) => l.threshold)).toEqual([400, 200]);
    for (const l of first) expect(l.available).toBeLessThan(l.threshold); // reported at the crossing
    expect(first[1]!.available).toBeLessThanOrEqual(first[0]!.available);
    expect(await getAlerts(c)).toMatchObject({ armed: [], fired: ['400', '200'] });

    await grant(c, '500'); // available 500 > 400 > 200: both re-armed
    expect(await getAlerts(c)).toMatchObject({ armed: ['400', '200'], fired: [] });
    expect(await thresholdsOf(c)).toEqual([400, 200]);
    await burn(c, 500);
    expect(await thresholdsOf(c)).toEqual([400, 200, 400, 200]);
    const consumed = await pool.query(
      `SELECT sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'`,
      [c],
    );
    expect(consumed.rows[0].s).toBe(credits('1000').toString());
    expect(await findViolations(pool)).toEqual([]);
  });

  it('thresholds changed mid-way: a dropped one stops, one already crossed fires at once, new ones fire once', async () => {
    const c = await customer('500');
    await putAlerts(c, ['400', '200']);
    await burn(c, 250, { concurrency: 5 });
    expect(await thresholdsOf(c)).toEqual([400]);

    // Available is 250: 300 is already crossed (fires in this very update), 100 is armed, 400 and 200 are gone.
    const changed = await putAlerts(c, ['100', '300']);
    expect(changed.body).toEqual({
      customerId: c,
      lowBalanceThresholds: ['300', '100'],
      armed: ['100'],
      fired: ['300'],
    });
    expect(await lows(c)).toEqual([
      { threshold: 400, available: expect.any(Number) },
      { threshold: 300, available: 250 },
    ]);

    // Changed again while 250 debits run: whatever the interleaving, each threshold crosses once.
    const debits = burn(c, 250, { concurrency: 5 });
    await new Promise((r) => setTimeout(r, 50));
    expect((await putAlerts(c, ['300', '100', '50'])).status).toBe(200);
    await debits;
    expect(await available(c)).toBe(0);
    expect((await thresholdsOf(c)).sort((a, b) => b - a)).toEqual([400, 300, 100, 50]);
    expect(await getAlerts(c)).toMatchObject({ armed: [], fired: ['300', '100', '50'] });

    // Clearing empties `fired` too (the trigger does not run on a wallet without thresholds).
    expect((await putAlerts(c, [])).body).toEqual({ customerId: c, lowBalanceThresholds: [], armed: [], fired: [] });
    const row = await pool.query(`SELECT low_balance_fired::text f FROM wallets WHERE customer_id = $1`, [c]);
    expect(row.rows[0].f).toBe('{}');
    // Set again while below it: a new setting, a new alert, each time (the trigger's dedupe key
    // holds the wallet version, which every setting moves: no collision with the last one).
    expect((await putAlerts(c, ['100'])).body.fired).toEqual(['100']);
    await putAlerts(c, []);
    expect((await putAlerts(c, ['100'])).body.fired).toEqual(['100']);
    expect(await thresholdsOf(c)).toEqual([400, 300, 100, 50, 100, 100]);
  });
});

describe('the trigger at its edges', () => {
  it('fires strictly below a threshold and re-arms strictly above it, to the micro-credit', async () => {
    const c = await customer('50');
    await putAlerts(c, ['50']);
    const step = async (kind: 'debit' | 'grant', micros: bigint) => {
      const cmd = { customerId: c, key: `${c}:${randomUUID()}`, requestHash: 'x' };
      if (kind === 'debit') await ledger.debit(cmd, { amount: micros });
      else await ledger.grant(cmd, { amount: micros, kind: 'promotional' });
      return (await lows(c)).length;
    };
    expect(await step('debit', 1n)).toBe(1); // 49.999999 < 50
    expect(await step('grant', 1n)).toBe(1); // exactly 50: not above it, still fired
    expect(await step('debit', 1n)).toBe(1);
    expect(await step('grant', 2n)).toBe(1); // 50.000001: re-armed
    expect(await step('debit', 1n)).toBe(1); // exactly 50: not below it
    expect(await step('debit', 1n)).toBe(2);
    expect((await lows(c)).map((l) => l.available)).toEqual([49.999999, 49.999999]);
  });

  // Failed with the first migration 009: trim_scale(t::numeric / 1000000) kept ~16 significant
  // digits (1234567890123.456789 → "1234567890123.4568"); × 0.000001 is exact.
  it('reports large amounts exactly (payload strings are credits, like the API)', async () => {
    const c = await customer();
    const big = '1234567890123.456789';
    await putAlerts(c, [big]);
    const rows = await pool.query(`SELECT payload FROM outbox_events WHERE customer_id = $1`, [c]);
    expect(rows.rows).toEqual([{ payload: { threshold: big, available: '0' } }]);
  });
});

describe('balance.low from every other balance movement', () => {
  const cmd = (customerId: string, key: string) => ({ customerId, key: `${customerId}:${key}`, requestHash: key });

  it('holds cross once, a release re-arms, and a TTL release emits hold.expired once (replayed or swept again)', async () => {
    const holds = new HoldLedger(ledger);
    const c = await customer('100');
    await putAlerts(c, ['50']);
    const expiresAt = new Date(Date.now() + HOUR);
    const place = (holdId: string) =>
      holds.place(cmd(c, `place-${holdId}`), { holdId, workflowId: 'test', amount: credits('60'), expiresAt });
    expect((await place('h1')).result.outcome).toBe('placed');
    expect(await lows(c)).toEqual([{ threshold: 50, available: 40 }]);
    await holds.release(cmd(c, 'release-h1'), { holdId: 'h1', status: 'released' });
    expect(await getAlerts(c)).toMatchObject({ armed: ['50'] });
    expect(await outboxCount(c, 'hold.expired')).toBe(0); // an ordinary release is no expiry

    expect((await place('h2')).result.outcome).toBe('placed');
    expect(await thresholdsOf(c)).toEqual([50, 50]);
    // The TTL release (the workflow's), its retry, and the sweeper's for the same deadline.
    const ttl = { holdId: 'h2', status: 'expired' as const, ifActive: true, deadline: expiresAt };
    const r = await holds.release(cmd(c, 'ttl-h2'), ttl);
    expect(r.result).toMatchObject({ status: 'expired', released: '60' });
    expect((await holds.release(cmd(c, 'ttl-h2'), ttl)).replayed).toBe(true);
    expect((await holds.release(cmd(c, 'sweep-h2'), ttl)).result.noop).toBe(true);
    const expired = await pool.query(
      `SELECT payload FROM outbox_events WHERE customer_id = $1 AND type = 'hold.expired'`,
      [c],
    );
    expect(expired.rows).toEqual([{ payload: { holdId: 'h2', released: '60', expiresAt: expiresAt.toISOString() } }]);
    expect(await available(c)).toBe(100);
    expect(await getAlerts(c)).toMatchObject({ armed: ['50'] });
  });

  it('an expiry crosses once and emits credits.expired once, beside its booking', async () => {
    const lifecycle = new LifecycleLedger(ledger, pool);
    const c = await customer('30');
    const expiresAt = new Date(Date.now() + HOUR);
    const lot = await grant(c, '60', { expiresAt: expiresAt.toISOString() });
    await putAlerts(c, ['50']);
    const asOf = new Date(expiresAt.getTime() + 1000);
    await lifecycle.tick(c, asOf);
    await lifecycle.tick(c, asOf); // a retried tick books nothing twice
    expect(await lows(c)).toEqual([{ threshold: 50, available: 30 }]);
    const rows = await pool.query(
      `SELECT e.payload, t.id IS NOT NULL AS booked FROM outbox_events e
         LEFT JOIN ledger_transactions t ON t.customer_id = e.customer_id AND t.type = 'expiry' AND t.reference = $2
        WHERE e.customer_id = $1 AND e.type = 'credits.expired'`,
      [c, `lot:${lot}`],
    );
    expect(rows.rows).toEqual([
      { payload: { lotId: lot, amount: '60', expiresAt: expiresAt.toISOString() }, booked: true },
    ]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it("an allowance's period end emits credits.expired for what does not roll over, once", async () => {
    const lifecycle = new LifecycleLedger(ledger, pool);
    const c = await customer();
    const expiresAt = new Date(Date.now() + HOUR);
    const lot = await grant(c, '100', {
      kind: 'allowance',
      recurrence: { every: 'day' },
      rolloverCap: '30',
      expiresAt: expiresAt.toISOString(),
    });
    await ledger.debit({ customerId: c, key: `${c}:use`, requestHash: 'u' }, { amount: credits('50') });
    await lifecycle.tick(c, new Date(expiresAt.getTime() + 1000));
    await lifecycle.tick(c, new Date(expiresAt.getTime() + 2000));
    const rows = await pool.query(
      `SELECT payload FROM outbox_events WHERE customer_id = $1 AND type = 'credits.expired'`,
      [c],
    );
    expect(rows.rows).toEqual([{ payload: { lotId: lot, amount: '20', expiresAt: expiresAt.toISOString() } }]);
  });

  it("a refund's claw-back crosses once", async () => {
    const c = await customer();
    const lot = await grant(c, '100', { kind: 'purchased', cost: { amountMinor: 1000, currency: 'USD' } });
    await putAlerts(c, ['50']);
    const refund = await requestRefund(
      pool,
      () => Promise.resolve('no-workflow'),
      {
        customerId: c,
        lotId: lot,
        credits: credits('60'),
        reason: 'test',
        requestedBy: 'test',
        idempotencyKey: 'r1',
        requestHash: 'r1',
      },
      new Date(),
    );
    const refunds = new RefundsLedger(ledger, pool);
    expect((await refunds.clawBack(refund)).credits).toBe('60');
    await refunds.clawBack(refund); // a retried saga step moves nothing
    expect(await lows(c)).toEqual([{ threshold: 50, available: 40 }]);
    expect(await available(c)).toBe(40);
  });

  it('a usage correction re-arms (it only gives credits back), so the next crossing fires again', async () => {
    const c = await customer('100');
    await putAlerts(c, ['50']);
    const events = await burn(c, 3, { perRequest: 3, concurrency: 1, each: 20 });
    expect(await lows(c)).toEqual([{ threshold: 50, available: 40 }]);
    const fix = await call(api.url, 'POST', `/v1/customers/${c}/corrections`, {
      key: keys.support,
      json: { eventId: events[0], reason: 'double-counted' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(fix.status).toBe(201);
    expect(await available(c)).toBe(60);
    expect(await getAlerts(c)).toMatchObject({ armed: ['50'], fired: [] });
    await burn(c, 1, { each: 20 });
    expect(await lows(c)).toEqual([
      { threshold: 50, available: 40 },
      { threshold: 50, available: 40 },
    ]);
  });
});

describe('PUT /v1/customers/:id/alerts', () => {
  it('admin, support and service set thresholds; viewers and keys of other customers are refused', async () => {
    const c = await customer('10');
    const other = await customer();
    for (const role of ['admin', 'support', 'service'] as const)
      expect((await putAlerts(c, ['5'], keys[role])).status).toBe(200);
    const viewer = await makeKey(pool, 'viewer', c); // viewers are always scoped
    expect((await putAlerts(c, ['5'], viewer)).status).toBe(403);
    expect((await putAlerts(c, ['5'], await makeKey(pool, 'service', c))).status).toBe(200);
    expect((await putAlerts(c, ['5'], await makeKey(pool, 'service', other))).status).toBe(403);
    expect((await putAlerts('nobody-here', ['5'])).status).toBe(404);
    const view = await call(api.url, 'GET', `/v1/customers/${c}/alerts`, { key: viewer });
    expect(view.status).toBe(200);
    expect(view.body).toEqual({ customerId: c, lowBalanceThresholds: ['5'], armed: ['5'], fired: [] });
    expect((await call(api.url, 'GET', `/v1/customers/nobody-here/alerts`, { key: keys.admin })).status).toBe(404);
  });

  it('accepts 0–10 distinct non-negative credit strings; anything else is a 400 that writes nothing', async () => {
    const c = await customer('10');
    expect((await putAlerts(c, ['0', '0.5', '9000000000000'])).body.lowBalanceThresholds).toEqual([
      '9000000000000',
      '0.5',
      '0',
    ]);
    const ten = Array.from({ length: 10 }, (_, i) => String(i + 1));
    expect((await putAlerts(c, ten)).status).toBe(200);
    const before = await snapshotTables(pool);
    const wallet = async () =>
      (await pool.query(`SELECT low_balance_thresholds::text t FROM wallets WHERE customer_id = $1`, [c])).rows[0].t;
    const stored = await wallet();
    const bad: unknown[] = [
      ['-1'],
      [...ten, '11'],
      ['5', '5'],
      ['5', '5.0'],
      ['5\u0000'],
      '5',
      null,
      [5],
      ['1.0000001'],
      ['9000000000001'],
      ['1e3'],
      [''],
    ];
    for (const b of bad) {
      const r = await putAlerts(c, b);
      expect([JSON.stringify(b), r.status, r.headers.get('content-type')]).toEqual([
        JSON.stringify(b),
        400,
        'application/problem+json; charset=utf-8',
      ]);
    }
    const shapes: unknown[] = [{}, { lowBalanceThresholds: ['1'], extra: 1 }, []];
    for (const json of shapes)
      expect((await call(api.url, 'PUT', `/v1/customers/${c}/alerts`, { key: keys.admin, json })).status).toBe(400);
    expect(await snapshotTables(pool)).toEqual(before);
    expect(await wallet()).toBe(stored);
  });
});
