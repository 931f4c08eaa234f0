import { randomUUID } from 'node:crypto';
import Stripe from 'stripe';
import { findViolations } from '../../db/invariants';
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
