import { randomUUID } from 'node:crypto';
import type { Worker } from '@temporalio/worker';
import { notifyLifecycle } from '../../client/lifecycle';
import { credits } from '../../domain/amount';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { deadlinesQuery } from '../../workflows';
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
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls with a generous bound: on a loaded machine things are slow, not wrong. */
async function until<T>(label: string, what: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${label}: not within ${ms} ms`);
    await sleep(200);
  }
}
const notify = (customerId: string) => notifyLifecycle(t.client, t.taskQueue, { customerId }, { timeoutMs: 30_000 });

it('a lot whose expiry passes while all workers are down expires once they return, exactly once', async () => {
  const c = `lr-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id: c }, requestHash({ id: c }));
  let worker: Worker = await t.startWorker();
  let running = worker.run();
  await notify(c);
  const handle = t.client.workflow.getHandle(`wallet:${c}`);
  // The workflow is running and visible by customer in the UI's list query.
  const listed = await until('listed by CustomerId', async () => {
    const ids: string[] = [];
    for await (const w of t.client.workflow.list({ query: `CustomerId = "${c}" AND WorkflowType = "creditLifecycle"` }))
      ids.push(w.workflowId);
    return ids.length > 0 ? ids : undefined;
  });
  expect(listed).toEqual([`wallet:${c}`]);

  // Granted only now, with the workflow up: the deadline is a fixed margin after this moment, not
  // after the start-up above, whose length depends on the machine's load.
  const g = await new Ledger(pool).grant(
    { customerId: c, key: `g:${c}`, requestHash: 'g' },
    { amount: credits('5'), kind: 'promotional', expiresAt: new Date(Date.now() + 5000) },
  );
  const expiresAt = Date.parse(g.result.lot.expiresAt!);
  await notify(c);
  // The workflow has read the deadline (its timer is set) before every worker stops.
  await until('expiry deadline known to the workflow', async () => {
    const s = await handle.query(deadlinesQuery);
    return s.upcoming.some((d) => d.kind === 'expiry' && d.lotId === g.result.lot.id) ? true : undefined;
  });
  worker.shutdown();
  await running;
  expect(Date.now()).toBeLessThan(expiresAt); // the workers stopped before the deadline
  await sleep(expiresAt - Date.now() + 1500); // the deadline passes with no worker
  expect(await status(g.result.lot.id)).toBe('active');

  worker = await t.startWorker();
  running = worker.run();
  await until('lot expired', async () => ((await status(g.result.lot.id)) === 'expired' ? true : undefined));
  // A repeated wake-up books nothing more: wait until the workflow has run its tick for it.
  const before = (await handle.query(deadlinesQuery)).wakeUps;
  await notify(c);
  await until('another wake-up', async () =>
    (await handle.query(deadlinesQuery)).wakeUps > before ? true : undefined,
  );
  const n = await pool.query(
    `SELECT count(*)::int n FROM ledger_transactions WHERE customer_id = $1 AND type = 'expiry'`,
    [c],
  );
  expect(n.rows[0].n).toBe(1);
  await handle.terminate('test done');
  worker.shutdown();
  await running;
}, 180_000);
