import { randomUUID } from 'node:crypto';
import type { Worker } from '@temporalio/worker';
import { notifyLifecycle } from '../../client/lifecycle';
import { credits } from '../../domain/amount';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { freshDatabase } from '../support/db';
import { temporalHarness } from '../support/temporal';

/** On the real dev server (real time): every worker down across an expiry deadline. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  t = await temporalHarness(pool);
});
afterAll(async () => {
  await t.close();
  await db.drop();
});

const status = async (lotId: string) =>
  (await pool.query<{ status: string }>(`SELECT status FROM credit_lots WHERE id = $1`, [lotId])).rows[0]!.status;

it('a lot whose expiry passes while all workers are down expires once they return, exactly once', async () => {
  const c = `lr-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id: c }, requestHash({ id: c }));
  const g = await new Ledger(pool).grant(
    { customerId: c, key: `g:${c}`, requestHash: 'g' },
    { amount: credits('5'), kind: 'promotional', expiresAt: new Date(Date.now() + 3000) },
  );
  let worker: Worker = await t.startWorker();
  let running = worker.run();
  await notifyLifecycle(t.client, t.taskQueue, { customerId: c });
  // The workflow is running and visible by customer in the UI's list query.
  let listed: string[] = [];
  for (let i = 0; i < 40 && listed.length === 0; i++) {
    listed = [];
    for await (const w of t.client.workflow.list({ query: `CustomerId = "${c}" AND WorkflowType = "creditLifecycle"` }))
      listed.push(w.workflowId);
    if (listed.length === 0) await new Promise((r) => setTimeout(r, 250));
  }
  expect(listed).toEqual([`wallet:${c}`]);
  worker.shutdown();
  await running;
  await new Promise((r) => setTimeout(r, 4500)); // the deadline passes with no worker
  expect(await status(g.result.lot.id)).toBe('active');
  worker = await t.startWorker();
  running = worker.run();
  for (let i = 0; i < 100 && (await status(g.result.lot.id)) !== 'expired'; i++)
    await new Promise((r) => setTimeout(r, 200));
  expect(await status(g.result.lot.id)).toBe('expired');
  await notifyLifecycle(t.client, t.taskQueue, { customerId: c }); // a repeated wake-up books nothing more
  await new Promise((r) => setTimeout(r, 1000));
  const n = await pool.query(
    `SELECT count(*)::int n FROM ledger_transactions WHERE customer_id = $1 AND type = 'expiry'`,
    [c],
  );
  expect(n.rows[0].n).toBe(1);
  await t.client.workflow.getHandle(`wallet:${c}`).terminate('test done');
  worker.shutdown();
  await running;
});
