import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { notifyLifecycle } from '../../client/lifecycle';
import { credits } from '../../domain/amount';
import { setAlerts } from '../../db/alerts';
import { getHold } from '../../db/holds';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { deadlinesQuery, placeUpdate, reservation, reservationWorkflowId } from '../../workflows';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { quietRuntime } from '../support/quiet-runtime';

/**
 * Notifications that time causes, on the time-skipping test server with a real worker and real
 * Postgres: `credits.expiring_soon` 7 days (the default lead) before a lot's expiry,
 * `credits.expired` at it, `hold.expired` when a hold's TTL passes — each exactly once.
 */
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let virtualNow = new Date();
const now = async () => (virtualNow = new Date(await env.currentTimeMs()));
const taskQueue = `alerts-time-${randomUUID()}`;

beforeAll(async () => {
  quietRuntime();
  db = await freshDatabase();
  pool = db.pool;
  const local = path.join(ROOT, '.tools', 'bin', 'temporal-test-server');
  const bin = process.env.TEMPORAL_TEST_SERVER_BIN || (existsSync(local) ? local : '');
  env = await TestWorkflowEnvironment.createTimeSkipping(
    bin ? { server: { executable: { type: 'existing-path', path: bin } } } : {},
  );
  // One worker for the file: a worker stopped mid-task would lock the test server's time skipping.
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    activities: createActivities({ pool }),
  });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
  await db.drop();
});

async function customer(grant: { amount: string; expiresAt?: Date }) {
  await now();
  const id = `at-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id }, requestHash({ id }));
  // The real clock (the activities'): virtual time runs ahead, and a lot dated there is not yet drawable here.
  const g = await new Ledger(pool).grant(
    { customerId: id, key: `g:${id}`, requestHash: 'g' },
    { amount: credits(grant.amount), kind: 'promotional', expiresAt: grant.expiresAt },
  );
  return { id, lotId: g.result.lot.id };
}
const notifications = async (customerId: string, type: string) =>
  (
    await pool.query<{ payload: Record<string, string> }>(
      `SELECT payload FROM outbox_events WHERE customer_id = $1 AND type = $2 ORDER BY id`,
      [customerId, type],
    )
  ).rows.map((r) => r.payload);
/** Lets the worker process what the skipped time made due (real time, time skipping locked). */
async function settle(check: () => Promise<boolean>) {
  for (let i = 0; i < 150; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('not settled');
}

it('a lot expiring in 10 days: credits.expiring_soon at day 3 (7 days before), credits.expired at day 10, once each', async () => {
  const start = (await now()).getTime();
  const expiresAt = new Date(start + 10 * DAY);
  const { id, lotId } = await customer({ amount: '100', expiresAt });
  await notifyLifecycle(env.client, taskQueue, { customerId: id }, { searchAttributes: false });
  const handle = env.client.workflow.getHandle(`wallet:${id}`);
  await settle(async () => (await handle.query(deadlinesQuery)).wakeUps >= 1);

  await env.sleep(3 * DAY - MIN);
  expect(await notifications(id, 'credits.expiring_soon')).toEqual([]);
  await env.sleep(2 * MIN);
  await settle(async () => (await notifications(id, 'credits.expiring_soon')).length > 0);
  const soon = { lotId, expiresAt: expiresAt.toISOString(), amount: '100' };
  expect(await notifications(id, 'credits.expiring_soon')).toEqual([soon]);

  await env.sleep(7 * DAY - 2 * MIN);
  expect(await notifications(id, 'credits.expired')).toEqual([]);
  await env.sleep(2 * MIN);
  await settle(async () => (await notifications(id, 'credits.expired')).length > 0);
  expect(await notifications(id, 'credits.expired')).toEqual([soon]);

  // Days later (more wake-ups, a sweep's nudge would be the same): still exactly once each.
  await notifyLifecycle(env.client, taskQueue, { customerId: id }, { searchAttributes: false });
  await env.sleep(5 * DAY);
  await settle(async () => (await handle.query(deadlinesQuery)).lastTickAt! > expiresAt.toISOString());
  expect(await notifications(id, 'credits.expiring_soon')).toEqual([soon]);
  expect(await notifications(id, 'credits.expired')).toEqual([soon]);
  expect(await findViolations(pool)).toEqual([]);
});

it("a hold's TTL passing emits hold.expired once, and the release re-arms the threshold the hold crossed", async () => {
  const { id } = await customer({ amount: '100' });
  await setAlerts(pool, id, [credits('50')]);
  const expiresAt = new Date(virtualNow.getTime() + HOUR).toISOString();
  const handle = await env.client.workflow.start(reservation, {
    workflowId: reservationWorkflowId(id, 'job'),
    taskQueue,
    args: [{ customerId: id, holdId: 'job', amount: '60', ttlSeconds: 3600, expiresAt }],
  });
  expect((await handle.executeUpdate(placeUpdate)).outcome).toBe('placed');
  expect(await notifications(id, 'balance.low')).toEqual([{ threshold: '50', available: '40' }]);

  await env.sleep(HOUR - MIN);
  expect(await notifications(id, 'hold.expired')).toEqual([]);
  await env.sleep(2 * MIN);
  await settle(async () => (await getHold(pool, id, 'job'))?.status === 'expired');
  expect((await handle.result()).status).toBe('expired');
  expect(await notifications(id, 'hold.expired')).toEqual([{ holdId: 'job', released: '60', expiresAt }]);
  const wallet = await pool.query(
    `SELECT available::text, low_balance_fired::text FROM wallets WHERE customer_id = $1`,
    [id],
  );
  expect(wallet.rows[0]).toEqual({ available: credits('100').toString(), low_balance_fired: '{}' });
  await env.sleep(DAY);
  expect(await notifications(id, 'hold.expired')).toHaveLength(1);
});
