import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import Stripe from 'stripe';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { refundWorkflowId } from '../../ledger/refunds';
import { checkGateway } from '../../payments/reconcile';
import { call, makeKey, type TestApi } from '../support/api';
import type { FaultProxy } from '../support/fault-proxy';
import { startStripeStack, type StripeStack } from '../support/stripe-stack';
import { lotFlows, lotState, mc, refundOutbox, refundTransactions } from '../support/refunds';

/**
 * Refunds on the Stripe adapter: API → refund saga → StripeGateway (the official client) → our
 * fault proxy → localstripe. What the emulator holds (its refunds of the PaymentIntent) is the
 * truth about money; the proxy's log shows the keys the adapter sent.
 */
const REFUNDS = '/v1/refunds';
let stack: StripeStack;
let pool: Pool;
let proxy: FaultProxy;
let emulator: Stripe;
let client: Client;
let api: TestApi;
let admin: string;
let support: string;

beforeAll(async () => {
  stack = await startStripeStack('stripe-refund');
  ({ pool, proxy, emulator, client, api, admin } = stack);
  support = await makeKey(pool, 'support');
}, 60_000);
afterAll(() => stack?.close());

/** A customer who bought `credits` for `amountMinor` with a card on the emulator. */
async function bought(credits: string, amountMinor: number) {
  const { id } = await stack.customerWithCard('sr');
  const p = await call(api.url, 'POST', `/v1/customers/${id}/purchases`, {
    key: admin,
    json: { credits, price: { amountMinor, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(p.status).toBe(201);
  return { id, lotId: p.body.lot.id as string, intent: p.body.payment.reference as string };
}
const refund = (json: Record<string, unknown>) =>
  call(api.url, 'POST', '/v1/refunds', {
    key: support,
    json: { reason: 'customer cancelled', ...json },
    headers: { 'idempotency-key': randomUUID() },
  });
async function settled(refundId: string) {
  await client.workflow
    .getHandle(refundWorkflowId(refundId))
    .result()
    .catch(() => undefined);
  return (await call(api.url, 'GET', `/v1/refunds/${refundId}`, { key: admin })).body;
}
/** The emulator's refunds of a PaymentIntent: [id, amount, our key]. */
const refundsOf = async (intent: string) =>
  (await emulator.refunds.list({ payment_intent: intent, limit: 100 })).data
    .map((r) => [r.id, r.amount, r.metadata?.creditflow_key] as const)
    .sort((a, b) => a[1] - b[1]);

it('503 twice on POST /v1/refunds: one refund at the emulator, one key on every POST, cumulative money', async () => {
  const c = await bought('300', 1000);
  proxy.reset();
  proxy.inject({ kind: 'status', status: 503, times: 2, method: 'POST', path: REFUNDS });
  const first = await refund({ customerId: c.id, lotId: c.lotId, credits: '100' });
  expect(first.status).toBe(202);
  const a = await settled(first.body.refundId);
  expect(a).toMatchObject({ status: 'succeeded', creditsClawedBack: '100', moneyRefunded: { amountMinor: 333 } });
  const posts = proxy.seen('POST', REFUNDS);
  expect(posts.map((p) => [p.outcome, p.idempotencyKey])).toEqual([
    ['status', first.body.refundId],
    ['status', first.body.refundId],
    ['forwarded', first.body.refundId],
  ]);
  expect(await refundsOf(c.intent)).toEqual([[a.refundReference, 333, first.body.refundId]]);

  // The rest: floor(1000 × 300 / 300) − 333 = 667, so the emulator holds exactly the charge.
  const rest = await refund({ customerId: c.id, lotId: c.lotId });
  const b = await settled(rest.body.refundId);
  expect(b).toMatchObject({ status: 'succeeded', creditsClawedBack: '200', moneyRefunded: { amountMinor: 667 } });
  const held = await refundsOf(c.intent);
  expect(held.map((r) => r[1])).toEqual([333, 667]);
  expect((await emulator.paymentIntents.retrieve(c.intent)).amount).toBe(1000);
  expect(await lotState(pool, c.lotId)).toMatchObject({ remaining: 0n, status: 'refunded' });
  expect(await refundOutbox(pool, first.body.refundId)).toEqual(['refund.succeeded']);
  expect(await findViolations(pool)).toEqual([]);
});

it('the reply lost after the emulator refunded: the retry finds the refund by its key, one refund', async () => {
  const c = await bought('10', 100);
  proxy.reset();
  proxy.inject({ kind: 'hang-after', method: 'POST', path: REFUNDS });
  const r = await refund({ customerId: c.id, lotId: c.lotId });
  const view = await settled(r.body.refundId);
  expect(view).toMatchObject({ status: 'succeeded', creditsClawedBack: '10', moneyRefunded: { amountMinor: 100 } });
  expect(await refundsOf(c.intent)).toEqual([[view.refundReference, 100, r.body.refundId]]);
  expect(proxy.seen('POST', REFUNDS)).toHaveLength(1); // the retry looked the key up instead
  expect(proxy.seen('GET', REFUNDS).length).toBeGreaterThanOrEqual(2);
  expect(await refundOutbox(pool, r.body.refundId)).toEqual(['refund.succeeded']);
});

it('a permanent refusal (400) at the gateway: compensation, the credits restored exactly, one refund.failed', async () => {
  const c = await bought('50', 500);
  proxy.reset();
  proxy.inject({ kind: 'status', status: 400, method: 'POST', path: REFUNDS });
  const r = await refund({ customerId: c.id, lotId: c.lotId, credits: '20' });
  expect(r.status).toBe(202);
  const view = await settled(r.body.refundId);
  expect(view).toMatchObject({ status: 'failed', creditsClawedBack: '20', failureCode: expect.any(String) });
  expect(proxy.seen('POST', REFUNDS)).toHaveLength(1); // permanent: never retried
  expect(await refundsOf(c.intent)).toEqual([]);
  const lot = await lotState(pool, c.lotId);
  expect([lot.remaining, lot.status]).toEqual([mc(50), 'active']);
  const flows = await lotFlows(pool, c.lotId);
  expect(flows.refunded ?? 0n).toBe(0n); // clawed back 20, given back 20
  expect((await refundTransactions(pool, r.body.refundId)).map((x) => x.type)).toEqual([
    'refund_clawback',
    'refund_compensation',
  ]);
  const outbox = await pool.query(`SELECT type FROM outbox_events WHERE customer_id = $1 AND type LIKE 'refund.%'`, [
    c.id,
  ]);
  expect(outbox.rows).toEqual([{ type: 'refund.failed' }]);
  expect(await findViolations(pool)).toEqual([]);
});

it('reconciliation lists Stripe: clean after the refunds above; a refund made by hand at the gateway, and a refund recorded with other money, are reported', async () => {
  proxy.reset();
  const window = () => ({ since: new Date(Date.now() - 3600_000), until: new Date(Date.now() + 1000) });
  const findings = async () =>
    (await checkGateway(pool, stack.gateway, window())).discrepancies.map(({ check, customerId, detail }) => ({
      check,
      customerId,
      detail,
    }));
  expect(await findings()).toEqual([]);

  const byHand = await bought('300', 1000);
  const rogue = await emulator.refunds.create({ payment_intent: byHand.intent, amount: 50 });
  expect(rogue.status).toBe('succeeded');
  const c = await bought('300', 1000);
  const r = await refund({ customerId: c.id, lotId: c.lotId, credits: '30' });
  expect(await settled(r.body.refundId)).toMatchObject({ status: 'succeeded', moneyRefunded: { amountMinor: 100 } });
  await stack.db.owner.query(`UPDATE refunds SET money_minor = 101 WHERE id = $1`, [r.body.refundId]);

  const found = await findings();
  expect(found).toHaveLength(2);
  expect(found).toEqual(
    expect.arrayContaining([
      {
        check: 'gateway: every gateway refund has its refund',
        customerId: byHand.id,
        detail: `gateway refund 50 of ${byHand.intent} has no refund`,
      },
      {
        check: 'gateway: refunds equal gateway refunds',
        customerId: c.id,
        detail: expect.stringMatching(/^refund succeeded 101 ref re_\w+, gateway 100 of pi_\w+$/),
      },
    ]),
  );
});
