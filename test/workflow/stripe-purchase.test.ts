import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import { findViolations } from '../../db/invariants';
import { getRun, type RunRow } from '../../db/reconciliation';
import { reconcile } from '../../workflows/reconcile';
import type { Pool } from '../../db/pool';
import { call, type TestApi } from '../support/api';
import type { FaultProxy } from '../support/fault-proxy';
import { startStripeStack, type StripeStack } from '../support/stripe-stack';

/**
 * The whole purchase path on the Stripe adapter: API → purchase workflow → StripeGateway (the
 * official client) → our fault proxy → localstripe, and the lot on the real ledger.
 */
const PI_PATH = '/v1/payment_intents';
let stack: StripeStack;
let pool: Pool;
let proxy: FaultProxy;
let emulator: Stripe;
let api: TestApi;
let admin: string;

beforeAll(async () => {
  stack = await startStripeStack('stripe');
  ({ pool, proxy, emulator, api, admin } = stack);
}, 60_000);
afterAll(() => stack?.close());

const customerWithCard = (number: string) => stack.customerWithCard('sp', number);
const intentsOf = async (customer: string) => {
  const out: Stripe.PaymentIntent[] = [];
  for await (const pi of emulator.paymentIntents.list({ limit: 100 })) if (pi.customer === customer) out.push(pi);
  return out;
};

it('503 twice at the gateway, then a charge: 201, one PaymentIntent, the same key on every POST, the lot is its cost', async () => {
  const c = await customerWithCard('4242424242424242');
  proxy.reset();
  proxy.inject({ kind: 'status', status: 503, times: 2, method: 'POST', path: PI_PATH });
  const r = await call(api.url, 'POST', `/v1/customers/${c.id}/purchases`, {
    key: admin,
    json: { credits: '500', price: { amountMinor: 4900, currency: 'EUR' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(201);
  const intents = await intentsOf(c.customer);
  expect(intents.map((pi) => [pi.status, pi.amount, pi.currency])).toEqual([['succeeded', 4900, 'eur']]);
  expect(r.body.payment).toEqual({ gateway: 'stripe', reference: intents[0]!.id });
  expect(r.body.lot).toMatchObject({ original: '500', cost: { amountMinor: 4900, currency: 'EUR' } });
  const keys = proxy.seen('POST', PI_PATH).map((x) => x.idempotencyKey);
  expect(keys).toHaveLength(3);
  expect(new Set(keys)).toEqual(new Set([`purchase:${c.id}:${r.body.purchaseId}`]));
  expect(await findViolations(pool)).toEqual([]);
});

it('the reply lost after the emulator charged: the retry finds the charge, one PaymentIntent, one lot', async () => {
  const c = await customerWithCard('4242424242424242');
  proxy.reset();
  proxy.inject({ kind: 'hang-after', method: 'POST', path: PI_PATH });
  const r = await call(api.url, 'POST', `/v1/customers/${c.id}/purchases`, {
    key: admin,
    json: { credits: '20', price: { amountMinor: 200, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(201);
  const intents = await intentsOf(c.customer);
  expect(intents).toHaveLength(1);
  expect(r.body.payment.reference).toBe(intents[0]!.id);
  expect(proxy.seen('POST', PI_PATH)).toHaveLength(1); // the retry looked the key up instead
});

it('a declined card: 402 payment_declined, nothing granted', async () => {
  const c = await customerWithCard('4000000000000341');
  const r = await call(api.url, 'POST', `/v1/customers/${c.id}/purchases`, {
    key: admin,
    json: { credits: '20', price: { amountMinor: 200, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(402);
  expect(r.body).toMatchObject({ code: 'payment_declined', gatewayCode: 'card_declined' });
  const lots = await pool.query(`SELECT 1 FROM credit_lots WHERE customer_id = $1`, [c.id]);
  expect(lots.rows).toEqual([]);
});

describe('reconciliation asks Stripe, not our copy', () => {
  /** A whole reconciliation run on the stack's worker (Stripe gateway); what was made before it is judged. */
  async function reconcileNow() {
    const runId = randomUUID();
    await stack.client.workflow.execute(reconcile, {
      taskQueue: stack.taskQueue,
      workflowId: `reconcile-${runId}`,
      args: [{ runId, gatewaySettleSeconds: 0 }],
    });
    return (await getRun(pool, runId))!;
  }
  const gatewayFindings = (run: RunRow) =>
    run.discrepancies
      .filter((d) => d.check.startsWith('gateway:'))
      .map(({ check, customerId, detail }) => ({ check, customerId, detail }));
  const buy = async (credits: string, amountMinor: number) => {
    const c = await customerWithCard('4242424242424242');
    const r = await call(api.url, 'POST', `/v1/customers/${c.id}/purchases`, {
      key: admin,
      json: { credits, price: { amountMinor, currency: 'USD' } },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(r.status).toBe(201);
    return { ...c, reference: r.body.payment.reference as string };
  };

  it('clean after every purchase above (retries, a lost reply, a decline); then each damage is reported with its customer', async () => {
    proxy.reset();
    const clean = await reconcileNow();
    expect(clean.status).toBe('clean');
    expect(clean.summary.notes?.join()).toMatch(/gateway stripe: \d+ charges and refunds since/);

    // 1. Money taken at the gateway that no lot stands for.
    const rogueCustomer = await customerWithCard('4242424242424242');
    const pm = await emulator.paymentMethods.create({
      type: 'card',
      card: { number: '4242424242424242', exp_month: 12, exp_year: 2030, cvc: '123' },
    });
    const rogue = await emulator.paymentIntents.create({
      amount: 700,
      currency: 'usd',
      payment_method: pm.id,
      confirm: true,
      metadata: { creditflow_key: 'made-by-hand', creditflow_customer: rogueCustomer.id },
    });
    expect(rogue.status).toBe('succeeded');
    // 2. A lot whose charge our copy names but the gateway does not have.
    const gone = await buy('30', 300);
    const gonePayment = (
      await stack.db.owner.query<{ id: string }>(
        `UPDATE payments SET payment_reference = 'pi_gone' WHERE customer_id = $1 RETURNING id`,
        [gone.id],
      )
    ).rows[0]!.id;
    // 3. A lot whose cost basis is not what the gateway charged.
    const dearer = await buy('40', 400);
    await stack.db.owner.query(`UPDATE credit_lots SET cost_amount_minor = 401 WHERE customer_id = $1`, [dearer.id]);

    const damaged = await reconcileNow();
    expect(damaged.status).toBe('discrepancies');
    expect(gatewayFindings(damaged).sort((a, b) => a.detail.localeCompare(b.detail))).toEqual(
      [
        {
          check: 'gateway: every charge has its lot',
          customerId: rogueCustomer.id,
          detail: `charge ${rogue.id} 700 USD (key made-by-hand) has no lot`,
        },
        {
          check: 'gateway: every charge has its lot',
          customerId: gone.id,
          detail: `charge ${gone.reference} 300 USD: payment ${gonePayment} has pi_gone`,
        },
        {
          check: 'gateway: every purchased lot has exactly one charge of its cost basis',
          customerId: gone.id,
          detail: 'charge pi_gone not found at the gateway',
        },
        {
          check: 'gateway: every purchased lot has exactly one charge of its cost basis',
          customerId: dearer.id,
          detail: 'lot cost 401 USD, charge 400 USD',
        },
      ].sort((a, b) => a.detail.localeCompare(b.detail)),
    );
  }, 60_000);
});
