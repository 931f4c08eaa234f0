import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import Stripe from 'stripe';
import { PaymentsClient } from '../../client/payments';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { StripeGateway } from '../../payments/stripe';
import { createWorker } from '../../worker/worker';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { startFaultProxy, type FaultProxy } from '../support/fault-proxy';
import { startLocalstripe, type Localstripe } from '../support/localstripe';

/**
 * The whole purchase path on the Stripe adapter: API → purchase workflow → StripeGateway (the
 * official client) → our fault proxy → localstripe, and the lot on the real ledger.
 */
const SECRET = 'sk_test_creditflow';
const PI_PATH = '/v1/payment_intents';
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let ls: Localstripe;
let proxy: FaultProxy;
let emulator: Stripe;
let native: NativeConnection;
let connection: Connection;
let worker: Worker;
let running: Promise<void>;
let api: TestApi;
let admin: string;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ls = await startLocalstripe();
  proxy = await startFaultProxy(ls.url);
  const { hostname, port } = new URL(ls.url);
  emulator = new Stripe(SECRET, { host: hostname, port, protocol: 'http', maxNetworkRetries: 0 });
  const gateway = new StripeGateway({ secretKey: SECRET, apiBase: proxy.url, timeoutMs: 3000 });
  const address = process.env.TEST_TEMPORAL_ADDRESS!;
  native = await NativeConnection.connect({ address });
  connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const taskQueue = `stripe-${randomUUID()}`;
  worker = await createWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    pool,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    temporal: () => Promise.resolve(client),
    gateway,
  });
  running = worker.run();
  api = await startApi(pool, { gateway, payments: () => Promise.resolve(new PaymentsClient(client, taskQueue)) });
  admin = await makeKey(pool, 'admin');
}, 60_000);

afterAll(async () => {
  await api?.close();
  worker?.shutdown();
  await running;
  await connection?.close();
  await native?.close();
  await proxy?.close();
  await ls?.stop();
  await db?.drop();
});

async function customerWithCard(number: string) {
  const id = `sp-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  const customer = await emulator.customers.create({ email: `${id}@example.test` });
  const pm = await emulator.paymentMethods.create({
    type: 'card',
    card: { number, exp_month: 12, exp_year: 2030, cvc: '123' },
  });
  await emulator.paymentMethods.attach(pm.id, { customer: customer.id });
  const put = await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, {
    key: admin,
    json: { paymentMethod: pm.id, gatewayCustomerId: customer.id },
  });
  expect(put.status).toBe(200);
  return { id, customer: customer.id };
}
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
