import { randomUUID } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { refundWorkflowId } from '../../ledger/refunds';
import { runCli } from '../../cli/commands';
import { call, makeKey, putTokensRateCard, type TestApi } from '../support/api';
import { startStack, type Stack } from '../support/stack';

let stack: Stack;
let pool: Pool;
let t: Stack['t'];
let api: TestApi;
let admin: string;
let support: string;
let service: string;

beforeAll(async () => {
  stack = await startStack((t) => ({ payments: () => Promise.resolve(t.payments), gateway: t.gateway }));
  ({ pool, t, api } = stack);
  admin = await makeKey(pool, 'admin');
  support = await makeKey(pool, 'support');
  service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, admin);
});
afterAll(async () => {
  await stack.close();
});

/** A customer with one purchased lot of `credits` paid `amountMinor` through the sandbox. */
async function bought(credits: string, amountMinor: number, paymentMethod = 'pm_card_visa') {
  const id = `rf-${randomUUID().slice(0, 8)}`;
  await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } });
  await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, { key: admin, json: { paymentMethod } });
  const p = await call(api.url, 'POST', `/v1/customers/${id}/purchases`, {
    key: admin,
    json: { credits, price: { amountMinor, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(p.status).toBe(201);
  return { id, lotId: p.body.lot.id as string, charge: p.body.payment.reference as string };
}
const refund = (json: Record<string, unknown>, idem: string = randomUUID(), key = support) =>
  call(api.url, 'POST', '/v1/refunds', {
    key,
    json: { reason: 'customer cancelled', ...json },
    headers: { 'idempotency-key': idem },
  });
async function settled(refundId: string) {
  const outcome = await t.client.workflow.getHandle(refundWorkflowId(refundId)).result();
  const view = await call(api.url, 'GET', `/v1/refunds/${refundId}`, { key: admin });
  return { outcome, view: view.body };
}
const burn = (id: string, credits: number) =>
  call(api.url, 'POST', '/v1/events', {
    key: service,
    json: { events: [{ id: randomUUID(), customerId: id, meter: 'tokens', quantity: String(credits * 1000) }] },
  });
const lot = async (id: string) =>
  (
    await pool.query<{ remaining: string; status: string }>(
      `SELECT (remaining / 1000000)::text AS remaining, status FROM credit_lots WHERE customer_id = $1 AND kind = 'purchased'`,
      [id],
    )
  ).rows[0];
const sandboxRefunds = async (charge: string) =>
  (
    await pool.query<{ amount_minor: string }>(
      'SELECT amount_minor::text FROM sandbox_refunds WHERE charge_id = $1 ORDER BY created_at',
      [charge],
    )
  ).rows.map((r) => r.amount_minor);

describe('refund saga (real Temporal, Postgres, sandbox)', () => {
  it('a whole untouched lot: every credit back, exactly the money paid', async () => {
    const c = await bought('1000', 999);
    const r = await refund({ customerId: c.id, lotId: c.lotId });
    expect(r.status).toBe(202);
    expect(r.body).toMatchObject({ status: 'pending', workflowId: `refund:${r.body.refundId}` });
    const { outcome, view } = await settled(r.body.refundId);
    expect(outcome).toMatchObject({ status: 'succeeded', credits: '1000', moneyMinor: '999' });
    expect(view).toMatchObject({
      status: 'succeeded',
      creditsClawedBack: '1000',
      moneyRefunded: { amountMinor: 999, currency: 'USD' },
      reason: 'customer cancelled',
    });
    expect(await sandboxRefunds(c.charge)).toEqual(['999']);
    expect(await lot(c.id)).toMatchObject({ remaining: '0', status: 'refunded' });
    const ledger = await call(api.url, 'GET', `/v1/customers/${c.id}/ledger?type=refund_clawback`, { key: admin });
    expect(ledger.body.transactions[0]).toMatchObject({
      workflowId: `refund:${r.body.refundId}`,
      reason: 'customer cancelled',
    });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a partly used lot refunds only the unused part; three partials add up to the whole to the minor unit', async () => {
    const c = await bought('300', 1000); // 3.333… minor units per credit
    await burn(c.id, 10);
    const a = await refund({ customerId: c.id, lotId: c.lotId, credits: '100' });
    expect((await settled(a.body.refundId)).outcome).toMatchObject({ moneyMinor: '333' });
    const b = await refund({ customerId: c.id, lotId: c.lotId, credits: '100' });
    expect((await settled(b.body.refundId)).outcome).toMatchObject({ moneyMinor: '333' });
    const more = await refund({ customerId: c.id, lotId: c.lotId, credits: '91' });
    expect(more.status).toBe(422); // only 90 are left
    expect(more.body).toMatchObject({ code: 'NotRefundable', refundable: '90' });
    const rest = await refund({ customerId: c.id, lotId: c.lotId });
    // floor(1000 × 290 / 300) − 666 = 966 − 666 = 300
    expect((await settled(rest.body.refundId)).outcome).toMatchObject({ credits: '90', moneyMinor: '300' });
    expect(await sandboxRefunds(c.charge)).toEqual(['333', '333', '300']);
    expect(await lot(c.id)).toMatchObject({ remaining: '0', status: 'refunded' });
  });

  it('a refund the gateway refuses for good: credits restored exactly, failed, one refund.failed', async () => {
    const c = await bought('50', 500, 'pm_card_refundFails');
    const r = await refund({ customerId: c.id, lotId: c.lotId, credits: '20' });
    const { outcome, view } = await settled(r.body.refundId);
    expect(outcome).toMatchObject({ status: 'failed', code: 'refund_failed', creditsRestored: '20' });
    expect(view).toMatchObject({ status: 'failed', failureCode: 'refund_failed', creditsClawedBack: '20' });
    expect(await lot(c.id)).toMatchObject({ remaining: '50', status: 'active' });
    const events = await pool.query(`SELECT type FROM outbox_events WHERE customer_id = $1 AND type LIKE 'refund.%'`, [
      c.id,
    ]);
    expect(events.rows).toEqual([{ type: 'refund.failed' }]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it('same key → same refund; another body → 409; a promotional lot → 422; viewer/service → 403', async () => {
    const c = await bought('10', 100);
    const idem = randomUUID();
    const a = await refund({ customerId: c.id, lotId: c.lotId, credits: '1' }, idem);
    const b = await refund({ customerId: c.id, lotId: c.lotId, credits: '1' }, idem);
    expect([a.status, b.status, b.body.refundId]).toEqual([202, 202, a.body.refundId]);
    expect((await refund({ customerId: c.id, lotId: c.lotId, credits: '2' }, idem)).status).toBe(409);
    const promo = await call(api.url, 'POST', `/v1/customers/${c.id}/grants`, {
      key: admin,
      json: { amount: '5', kind: 'promotional' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect((await refund({ customerId: c.id, lotId: promo.body.lot.id })).status).toBe(422);
    expect((await refund({ customerId: c.id, lotId: c.lotId }, randomUUID(), service)).status).toBe(403);
    const viewer = await makeKey(pool, 'viewer', c.id);
    expect((await refund({ customerId: c.id, lotId: c.lotId }, randomUUID(), viewer)).status).toBe(403);
    await settled(a.body.refundId);
  });

  it('the CLI: refunds create (requested by cli:<operator>) and refunds show, through the same path', async () => {
    const c = await bought('40', 400);
    const out: string[] = [];
    const io = {
      out: (l: string) => out.push(l),
      err: (l: string) => out.push(`ERR ${l}`),
      startRefund: (input: { refundId: string; customerId: string }) => t.payments.refund(input),
    };
    const args = ['refunds', 'create', '--customer', c.id, '--lot', c.lotId, '--credits', '10', '--reason', 'goodwill'];
    args.push('--operator', 'sam');
    expect(await runCli(args, pool, io)).toBe(0);
    const created = JSON.parse(out.pop()!) as { refundId: string; key: string };
    await settled(created.refundId);
    expect(await runCli(['refunds', 'show', '--id', created.refundId], pool, io)).toBe(0);
    expect(JSON.parse(out.pop()!)).toMatchObject({
      status: 'succeeded',
      requestedBy: { keyId: 'cli:sam', name: null },
      reason: 'goodwill',
      moneyRefunded: { amountMinor: 100 },
    });
    // The same --key is the same refund; too many credits is refused before anything is written.
    expect(await runCli([...args, '--key', created.key], pool, io)).toBe(0);
    expect(JSON.parse(out.pop()!)).toMatchObject({ refundId: created.refundId });
    expect(
      await runCli(
        [
          'refunds',
          'create',
          '--customer',
          c.id,
          '--lot',
          c.lotId,
          '--credits',
          '31',
          '--reason',
          'x',
          '--operator',
          'sam',
        ],
        pool,
        io,
      ),
    ).toBe(1);
    expect(out.pop()).toMatch(/NotRefundable/);
  });
});
