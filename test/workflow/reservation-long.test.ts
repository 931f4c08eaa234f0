import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { HoldsClient } from '../../client/holds';
import { credits } from '../../domain/amount';
import { getCustomer } from '../../db/customers';
import { getHold } from '../../db/holds';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { placeUpdate, reservation, reservationWorkflowId } from '../../workflows';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { quietRuntime } from '../support/quiet-runtime';

/**
 * A long-lived hold on the time-skipping test server: extended every hour for 60 days, it
 * continues as new (history stays small), stays correct, and every run's history replays.
 */
const HOUR = 3_600_000;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let virtualNow = new Date();
const taskQueue = `long-${randomUUID()}`;

beforeAll(async () => {
  quietRuntime();
  db = await freshDatabase();
  pool = db.pool;
  const local = path.join(ROOT, '.tools', 'bin', 'temporal-test-server');
  const bin = process.env.TEMPORAL_TEST_SERVER_BIN || (existsSync(local) ? local : '');
  env = await TestWorkflowEnvironment.createTimeSkipping(
    bin ? { server: { executable: { type: 'existing-path', path: bin } } } : {},
  );
  worker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    // The ledger follows the test server's (skipped) clock.
    activities: createActivities({ pool, clock: () => virtualNow }),
  });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
  await db.drop();
});

it('a hold extended every hour for 60 days continues as new, stays correct, and its histories replay', async () => {
  const now = async () => (virtualNow = new Date(await env.currentTimeMs()));
  await now();
  const c = `long-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id: c }, requestHash({ id: c }));
  await new Ledger(pool, () => virtualNow).grant(
    { customerId: c, key: `g:${c}`, requestHash: 'g' },
    { amount: credits('100'), kind: 'purchased' },
  );
  const holds = new HoldsClient(env.client, taskQueue, { timeoutMs: 30_000 });
  const deadline = (t: Date) => new Date(t.getTime() + 2 * HOUR).toISOString();
  // The time-skipping server has no update-with-start: start, then place (what reserve() does in one call).
  const handle = await env.client.workflow.start(reservation, {
    workflowId: reservationWorkflowId(c, 'job'),
    taskQueue,
    args: [
      {
        customerId: c,
        holdId: 'job',
        amount: '40',
        ttlSeconds: 7200,
        expiresAt: deadline(virtualNow),
        maxUpdates: 200,
      },
    ],
  });
  expect((await handle.executeUpdate(placeUpdate)).outcome).toBe('placed');
  const firstRunId = handle.firstExecutionRunId;

  const extensions = 60 * 24;
  let last = '';
  for (let i = 1; i <= extensions; i++) {
    await env.sleep(HOUR); // the hold's 2-hour deadline never passes: each extension moves it
    last = deadline(await now());
    const h = await holds.extend(c, 'job', { expiresAt: last }, `ext-${i}`);
    expect(h.expiresAt).toBe(last);
  }
  const hold = (await getHold(pool, c, 'job'))!;
  expect(hold).toMatchObject({ status: 'active', held: credits('40'), captured: 0n });
  expect(hold.expiresAt.toISOString()).toBe(last);
  const extends_ = await pool.query(
    `SELECT count(*)::int n FROM ledger_transactions WHERE customer_id = $1 AND type = 'hold_extend'`,
    [c],
  );
  expect(extends_.rows[0].n).toBe(extensions);

  // It continued as new (bounded history) and each run's history replays.
  const current = await env.client.workflow.getHandle(reservationWorkflowId(c, 'job')).describe();
  expect(current.runId).not.toBe(firstRunId);
  const first = env.client.workflow.getHandle(reservationWorkflowId(c, 'job'), firstRunId);
  expect((await first.describe()).status.name).toBe('CONTINUED_AS_NEW');
  const currentHistory = await env.client.workflow.getHandle(reservationWorkflowId(c, 'job')).fetchHistory();
  expect(currentHistory.events!.length).toBeLessThan(2000);
  for (const h of [await first.fetchHistory(), currentHistory]) {
    await Worker.runReplayHistory({ workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } }, h);
  }

  // Still a working hold: settle it.
  await now();
  const s = await holds.settle(c, 'job', '25', 'settle');
  expect(s).toMatchObject({ captured: '25', released: '15' });
  expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: credits('75'), held: 0n });
  expect((await env.client.workflow.getHandle(reservationWorkflowId(c, 'job')).result()).status).toBe('settled');
  expect(await findViolations(pool)).toEqual([]);
}, 600_000);
