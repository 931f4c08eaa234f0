import { randomUUID } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import { holdSweeper } from '../../workflows/sweeper';
import type { Pool } from '../../db/pool';
import { call, makeKey, type TestApi } from '../support/api';
import { eventually } from '../support/eventually';
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
});
afterAll(async () => {
  await stack.close();
});

async function customer(paymentMethod = 'pm_card_visa') {
  const id = `pu-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  const pm = await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, {
    key: service,
    json: { paymentMethod },
  });
  expect(pm.status).toBe(200);
  return id;
}
const buy = (id: string, json: unknown, idem: string = randomUUID()) =>
  call(api.url, 'POST', `/v1/customers/${id}/purchases`, { key: service, json, headers: { 'idempotency-key': idem } });
const charges = async (id: string) =>
  (await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM sandbox_charges WHERE customer_id = $1', [id]))
    .rows[0]!.n;
const lots = async (id: string) =>
  (
    await pool.query<{ cost_amount_minor: string; payment_reference: string; original: string }>(
      `SELECT cost_amount_minor, payment_reference, original FROM credit_lots WHERE customer_id = $1 AND kind = 'purchased'`,
      [id],
    )
  ).rows;

describe('purchases', () => {
  it('charges once and grants one purchased lot whose cost basis and reference are the charge', async () => {
    const c = await customer();
    const idem = randomUUID();
    const body = { credits: '1000', price: { amountMinor: 1999, currency: 'USD' } };
    const r = await buy(c, body, idem);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      status: 'succeeded',
      credits: '1000',
      price: { amountMinor: 1999, currency: 'USD' },
    });
    expect(r.body.payment.gateway).toBe('sandbox');
    expect(r.body.payment.reference).toMatch(/^sbx_ch_/);
    expect(r.body.lot).toMatchObject({ kind: 'purchased', original: '1000', remaining: '1000' });
    // Replay: the same response, one charge.
    const again = await buy(c, body, idem);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(r.body);
    // Same key, another body: 409, nothing charged.
    const other = await buy(c, { ...body, credits: '2000' }, idem);
    expect(other.status).toBe(409);
    expect(await charges(c)).toBe(1);
    expect(await lots(c)).toEqual([
      { cost_amount_minor: '1999', payment_reference: r.body.payment.reference, original: '1000000000' },
    ]);
    const g = await call(api.url, 'GET', `/v1/purchases/${r.body.purchaseId}?customerId=${c}`, { key: admin });
    expect(g.status).toBe(200);
    expect(g.body).toMatchObject({ status: 'succeeded', attempts: 1, lotId: r.body.lot.id });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a decline is 402 payment_declined with nothing granted', async () => {
    const c = await customer('pm_card_chargeDeclined');
    const r = await buy(c, { credits: '10', price: { amountMinor: 100, currency: 'USD' } });
    expect(r.status).toBe(402);
    expect(r.headers.get('content-type')).toContain('application/problem+json');
    expect(r.body).toMatchObject({ status: 402, code: 'payment_declined', gatewayCode: 'card_declined' });
    expect(await charges(c)).toBe(0);
    expect(await lots(c)).toEqual([]);
    const g = await call(api.url, 'GET', `/v1/purchases/${r.body.purchaseId}?customerId=${c}`, { key: admin });
    expect(g.body).toMatchObject({ status: 'failed', failureCode: 'card_declined', attempts: 1 });
  });

  it('pm_card_flaky: retried with one gateway key, one charge', async () => {
    const c = await customer('pm_card_flaky');
    const r = await buy(c, { credits: '5', price: { amountMinor: 50, currency: 'EUR' } });
    expect(r.status).toBe(201);
    expect(await charges(c)).toBe(1);
    const attempts = await pool.query<{ attempts: number; idempotency_key: string }>(
      'SELECT a.attempts, a.idempotency_key FROM sandbox_attempts a JOIN sandbox_charges c USING (idempotency_key) WHERE c.customer_id = $1',
      [c],
    );
    expect(attempts.rows).toEqual([{ attempts: 3, idempotency_key: expect.stringContaining('purchase:') }]);
  });

  it('an expiry that passes while the charge is retried: the paid credits are granted without it, never refused', async () => {
    const c = await customer('pm_card_flaky'); // two retryable failures: ~3 s before the charge succeeds
    const expiresAt = new Date(Date.now() + 2000).toISOString();
    const r = await buy(c, { credits: '7', price: { amountMinor: 70, currency: 'USD' }, expiresAt });
    expect(r.status).toBe(201);
    expect(r.body.lot).toMatchObject({ original: '7', expiresAt: null });
    expect(await charges(c)).toBe(1);
    const reason = await pool.query('SELECT reason FROM credit_lots WHERE id = $1', [r.body.lot.id]);
    expect(reason.rows[0].reason).toContain('not applied');
  });

  it('a purchase left pending by a workflow that ended after its charge is restarted by the sweeper: one charge, one lot', async () => {
    const c = await customer();
    const id = 'pur_stranded';
    const key = `purchase:${c}:${id}`;
    // As left by a run terminated between charge and grant: the row pending, the charge made.
    await pool.query(
      `INSERT INTO payments (customer_id, id, source, status, credits, amount_minor, currency, gateway, payment_method,
         gateway_key, workflow_id, request_hash, created_at, updated_at)
       VALUES ($1, $2, 'purchase', 'pending', 3000000, 30, 'USD', 'sandbox', 'pm_card_visa', $3, $3, 'h', now(), now() - interval '11 minutes')`,
      [c, id, key],
    );
    await t.gateway.charge({
      idempotencyKey: key,
      customerId: c,
      paymentMethod: 'pm_card_visa',
      amountMinor: 30n,
      currency: 'USD',
    });
    const swept = await t.client.workflow.execute(holdSweeper, {
      taskQueue: t.taskQueue,
      workflowId: `sweep-${c}`,
      args: [{ graceSeconds: 60 }],
    });
    expect(swept.purchasesRestarted).toContain(key);
    const g = await eventually(
      () => call(api.url, 'GET', `/v1/purchases/${id}?customerId=${c}`, { key: admin }),
      (x) => x.body?.status === 'succeeded',
    );
    expect(g.body).toMatchObject({ status: 'succeeded', credits: '3', price: { amountMinor: 30 } });
    expect(await charges(c)).toBe(1);
    expect(await lots(c)).toHaveLength(1);
  });
});
