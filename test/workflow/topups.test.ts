import { randomUUID } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { putRule } from '../../db/topup-rules';
import { Ledger } from '../../ledger/ledger';
import { topUpWorkflowId } from '../../ledger/payments';
import { topUpStatusQuery } from '../../workflows/topup';
import { holdSweeper } from '../../workflows/sweeper';
import { call, makeKey, putTokensRateCard, type TestApi } from '../support/api';
import { startStack, type Stack } from '../support/stack';

let stack: Stack;
let pool: Pool;
let t: Stack['t'];
let api: TestApi;
let admin: string;
let service: string;

beforeAll(async () => {
  stack = await startStack((t) => ({
    payments: () => Promise.resolve(t.payments),
    gateway: t.gateway,
    topUps: t.topUps,
  }));
  ({ pool, t, api } = stack);
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, admin);
});
afterAll(async () => {
  await stack.close();
});

async function customer(o: { grant?: string; paymentMethod?: string } = {}) {
  const id = `tu-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  if (o.grant)
    await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
      key: admin,
      json: { amount: o.grant, kind: 'promotional' },
      headers: { 'idempotency-key': randomUUID() },
    });
  const pm = await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, {
    key: service,
    json: { paymentMethod: o.paymentMethod ?? 'pm_card_visa' },
  });
  expect(pm.status).toBe(200);
  return id;
}
const rule = async (id: string, json: Record<string, unknown>) => {
  const r = await call(api.url, 'PUT', `/v1/customers/${id}/auto-topup`, {
    key: admin,
    json: { enabled: true, mode: 'fixed', unitPrice: { amountMinor: '1', currency: 'USD' }, ...json },
  });
  expect(r.status).toBe(200);
  return r.body;
};
/** One-credit usage events (1,000 tokens each), `perRequest` per request, all requests at once. */
async function burn(id: string, events: number, perRequest = 50, quantity = '1000') {
  const requests = [];
  const run = randomUUID().slice(0, 8);
  for (let i = 0; i < events; i += perRequest) {
    const batch = Array.from({ length: Math.min(perRequest, events - i) }, (_, k) => ({
      id: `${id}-${run}-e${i + k}`,
      customerId: id,
      meter: 'tokens',
      quantity,
    }));
    requests.push(call(api.url, 'POST', '/v1/events', { key: service, json: { events: batch } }));
  }
  for (const r of await Promise.all(requests)) {
    expect(r.status).toBe(200);
    expect(r.body.results.filter((x: { status: string }) => x.status !== 'accepted')).toEqual([]);
  }
}
const available = async (id: string) =>
  (await call(api.url, 'GET', `/v1/customers/${id}/balance`, { key: admin })).body.available as string;
const topUps = async (id: string) =>
  (
    await pool.query<{ id: string; status: string; credits: string; amount_minor: string; attempts: number }>(
      `SELECT id, status, credits::text, amount_minor::text, attempts FROM payments
       WHERE customer_id = $1 AND source = 'topup' ORDER BY created_at, id`,
      [id],
    )
  ).rows;
const charges = async (id: string) =>
  (
    await pool.query<{ amount_minor: string }>(
      'SELECT amount_minor::text FROM sandbox_charges WHERE customer_id = $1 ORDER BY created_at',
      [id],
    )
  ).rows.map((r) => r.amount_minor);
const outbox = async (id: string) =>
  (
    await pool.query<{ type: string }>('SELECT type FROM outbox_events WHERE customer_id = $1 ORDER BY id', [id])
  ).rows.map((r) => r.type);
const status = (id: string) => t.client.workflow.getHandle(topUpWorkflowId(id)).query(topUpStatusQuery);

async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 30_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined as T);
    if (v !== undefined && ok(v)) return v;
    if (Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}
/** The workflow looked at the wallet after its last top-up and found nothing to do. */
const settled = (id: string) =>
  eventually(
    () => status(id),
    (s) => s.status === 'idle' && s.lastPlan !== 'charge',
  );

describe('auto top-up (real Temporal, Postgres, sandbox gateway)', () => {
  it('1,000 one-credit events across the threshold at once → one top-up, the balance exactly as computed', async () => {
    const c = await customer({ grant: '100' });
    await rule(c, { threshold: '50', credits: '2000', cooldownSeconds: 1 });
    await burn(c, 1000);
    await t.topUps.settled();
    const s = await settled(c);
    expect(s.lastPlan).toBe('above_threshold');
    expect(await topUps(c)).toEqual([
      { id: 'topup_1', status: 'succeeded', credits: '2000000000', amount_minor: '2000', attempts: 1 },
    ]);
    expect(await charges(c)).toEqual(['2000']);
    expect(await available(c)).toBe('1100'); // 100 − 1,000 + 2,000
    expect(await outbox(c)).toEqual(['topup.succeeded']);
    const g = await call(api.url, 'GET', `/v1/customers/${c}/auto-topup`, { key: admin });
    expect(g.body.state).toMatchObject({ consecutiveFailures: 0, today: { count: 1, credits: '2000' } });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('target mode closes a deep gap (arrears included) with one charge, rounded up', async () => {
    const c = await customer({ grant: '10' });
    await rule(c, {
      threshold: '100',
      mode: 'target',
      credits: '5000',
      unitPrice: { amountMinor: '0.35', currency: 'USD' },
      cooldownSeconds: 1,
    });
    await burn(c, 1, 1, '3000000'); // one event of 3,000 credits: 10 − 3,000 = −2,990, arrears
    await settled(c);
    // 5,000 − (−2,990) = 7,990 credits × 0.35 = 2,796.5 → 2,797 minor units.
    expect(await topUps(c)).toMatchObject([{ status: 'succeeded', credits: '7990000000', amount_minor: '2797' }]);
    expect(await charges(c)).toEqual(['2797']);
    expect(await available(c)).toBe('5000');
    const lot = await pool.query(
      `SELECT cost_amount_minor::text AS cost FROM credit_lots WHERE customer_id = $1 AND kind = 'purchased'`,
      [c],
    );
    expect(lot.rows).toEqual([{ cost: '2797' }]);
  });

  it('a decline: topup.failed each time, disabled after maxAttempts (topup.disabled), no charge while disabled', async () => {
    const c = await customer({ grant: '10', paymentMethod: 'pm_card_chargeDeclined' });
    await rule(c, { threshold: '50', credits: '100', cooldownSeconds: 0, maxAttempts: 3 });
    await burn(c, 1);
    const s = await eventually(
      () => call(api.url, 'GET', `/v1/customers/${c}/auto-topup`, { key: admin }),
      (r) => r.body.state.status === 'disabled',
    );
    expect(s.body).toMatchObject({
      enabled: false,
      state: { status: 'disabled', disabledReason: 'max_attempts', consecutiveFailures: 3 },
    });
    await settled(c);
    expect((await topUps(c)).map((p) => [p.status, p.attempts])).toEqual([
      ['failed', 1],
      ['failed', 1],
      ['failed', 1],
    ]); // a decline is never retried within a top-up
    expect(await outbox(c)).toEqual(['topup.failed', 'topup.failed', 'topup.failed', 'topup.disabled']);
    // Further debits while disabled: the workflow looks, charges nothing.
    await burn(c, 5);
    await t.topUps.settled();
    await settled(c);
    expect(await topUps(c)).toHaveLength(3);
    expect(await charges(c)).toEqual([]);
    // Re-enabling is a PUT: the failure count starts again.
    const again = await rule(c, { threshold: '50', credits: '100', cooldownSeconds: 0, maxAttempts: 3 });
    expect(again.state).toMatchObject({ consecutiveFailures: 0, disabledReason: null });
  });

  it('pm_card_flaky: one successful charge after retries with one gateway key', async () => {
    const c = await customer({ grant: '10', paymentMethod: 'pm_card_flaky' });
    await rule(c, { threshold: '50', credits: '100', cooldownSeconds: 1 });
    await burn(c, 1);
    await eventually(
      () => topUps(c),
      (p) => p[0]?.status === 'succeeded',
    );
    await settled(c);
    expect(await topUps(c)).toMatchObject([{ status: 'succeeded', attempts: 3 }]);
    expect(await charges(c)).toEqual(['100']);
    expect(await available(c)).toBe('109');
  });

  it('a runaway rule (each top-up too small) stops at maxPerDay with topup.burst', async () => {
    const c = await customer({ paymentMethod: 'pm_card_visa' });
    await rule(c, { threshold: '1000', credits: '10', cooldownSeconds: 0, maxPerDay: 3 });
    await burn(c, 1);
    const s = await eventually(
      () => call(api.url, 'GET', `/v1/customers/${c}/auto-topup`, { key: admin }),
      (r) => r.body.state.status === 'disabled',
    );
    expect(s.body.state).toMatchObject({ disabledReason: 'max_per_day', today: { count: 3 } });
    await settled(c);
    expect(await charges(c)).toEqual(['10', '10', '10']);
    expect(await outbox(c)).toEqual(['topup.succeeded', 'topup.succeeded', 'topup.succeeded', 'topup.burst']);
  });

  it('a wallet below its threshold whose signal never came (Temporal away) is caught up by the scan', async () => {
    const c = await customer({ grant: '10' });
    // Rule and debit written behind the API's back: no trigger ever fired.
    await putRule(pool, c, {
      enabled: true,
      threshold: '50000000',
      mode: 'fixed',
      credits: 100_000_000n,
      unitPrice: '1',
      currency: 'USD',
      paymentMethod: null,
      cooldownSeconds: 60,
      maxPerDay: 10,
      maxAttempts: 4,
    } as never);
    await new Ledger(pool).debit({ key: `d-${c}`, customerId: c, requestHash: 'h' }, { amount: 5_000_000n });
    await expect(t.client.workflow.getHandle(topUpWorkflowId(c)).describe()).rejects.toThrow();
    const swept = await t.client.workflow.execute(holdSweeper, {
      taskQueue: t.taskQueue,
      workflowId: `sweep-${c}`,
      args: [{ graceSeconds: 60 }],
    });
    expect(swept.topUpsNudged).toContain(c);
    await eventually(
      () => topUps(c),
      (p) => p[0]?.status === 'succeeded',
    );
    expect(await available(c)).toBe('105');
  });
});
