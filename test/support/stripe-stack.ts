import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import Stripe from 'stripe';
import { PaymentsClient } from '../../client/payments';
import { StripeGateway } from '../../payments/stripe';
import { createWorker } from '../../worker/worker';
import { call, makeKey, startApi } from './api';
import { freshDatabase } from './db';
import { startFaultProxy } from './fault-proxy';
import { startLocalstripe } from './localstripe';
import { quietRuntime } from './quiet-runtime';

const SECRET = 'sk_test_creditflow';

export type StripeStack = Awaited<ReturnType<typeof startStripeStack>>;

/**
 * The payment path on the Stripe adapter, whole: a database, localstripe behind our fault proxy
 * (it never fails by itself), the StripeGateway on a worker against the suite's Temporal server,
 * and the API. `emulator` talks to localstripe directly: the truth about money.
 */
export async function startStripeStack(name: string) {
  quietRuntime();
  const db = await freshDatabase();
  const ls = await startLocalstripe();
  const proxy = await startFaultProxy(ls.url);
  const { hostname, port } = new URL(ls.url);
  const emulator = new Stripe(SECRET, { host: hostname, port, protocol: 'http', maxNetworkRetries: 0 });
  const gateway = new StripeGateway({ secretKey: SECRET, apiBase: proxy.url, timeoutMs: 3000 });
  const address = process.env.TEST_TEMPORAL_ADDRESS!;
  const native = await NativeConnection.connect({ address });
  const connection = await Connection.connect({ address });
  const client = new Client({ connection });
  const taskQueue = `${name}-${randomUUID()}`;
  const worker = await createWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    pool: db.pool,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    temporal: () => Promise.resolve(client),
    gateway,
  });
  const running = worker.run();
  const api = await startApi(db.pool, {
    gateway,
    payments: () => Promise.resolve(new PaymentsClient(client, taskQueue)),
  });
  const admin = await makeKey(db.pool, 'admin');

  /** A new customer with a card (`number`: one of localstripe's test cards) saved as its payment method. */
  async function customerWithCard(prefix: string, number = '4242424242424242') {
    const id = `${prefix}-${randomUUID().slice(0, 8)}`;
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

  return {
    db,
    pool: db.pool,
    proxy,
    emulator,
    gateway,
    client,
    taskQueue,
    api,
    admin,
    customerWithCard,
    async close() {
      await api.close();
      worker.shutdown();
      await running;
      await connection.close();
      await native.close();
      await proxy.close();
      await ls.stop();
      await db.drop();
    },
  };
}
