import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Worker } from '@temporalio/worker';
import { notifyLifecycle } from '../../client/lifecycle';
import { createActivities } from '../../activities';
import { credits } from '../../domain/amount';
import { getCustomer } from '../../db/customers';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { HoldLedger } from '../../ledger/holds';
import { LifecycleLedger } from '../../ledger/lifecycle';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { deadlinesQuery, lifecycleWorkflowId } from '../../workflows';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { quietRuntime } from '../support/quiet-runtime';

/** Time-skipping tests on the real Temporal test server and real Postgres: months pass in seconds. */
const DAY = 86_400_000;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let env: TestWorkflowEnvironment;
let ledger: Ledger;
let virtualNow = new Date();
/** Reads the test server's current (skipped) time; call before each ledger write. */
const now = async () => (virtualNow = new Date(await env.currentTimeMs()));
const taskQueue = `lifecycle-${randomUUID()}`;

beforeAll(async () => {
  quietRuntime();
  db = await freshDatabase();
  pool = db.pool;
  // The test server's clock is global and moves forward across tests: the ledger follows it.
  ledger = new Ledger(pool, () => virtualNow);
  const local = path.join(ROOT, '.tools', 'bin', 'temporal-test-server');
  const bin = process.env.TEMPORAL_TEST_SERVER_BIN || (existsSync(local) ? local : '');
  env = await TestWorkflowEnvironment.createTimeSkipping(
    bin ? { server: { executable: { type: 'existing-path', path: bin } } } : {},
  );
  // One worker for the whole file: a worker stopped mid-task would leave a task in flight, which
  // locks the test server's time skipping for good.
  realWorker = await Worker.create({
    connection: env.nativeConnection,
    taskQueue,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    activities: createActivities({ pool }),
  });
  running = realWorker.run();
});

let realWorker: Worker;
let running: Promise<void>;
const worker = { runUntil: (fn: () => Promise<void>) => fn() };
afterAll(async () => {
  realWorker?.shutdown();
  await running;
  await env?.teardown();
  await db.drop();
});

async function customer() {
  await now();
  const id = `lc-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id }, requestHash({ id }));
  return id;
}
const grant = (customerId: string, input: Parameters<Ledger['grant']>[1]) =>
  ledger.grant({ customerId, key: `g:${customerId}:${randomUUID()}`, requestHash: 'g' }, input);
const start = async (customerId: string, extra: { maxWakeUps?: number } = {}) => {
  await notifyLifecycle(env.client, taskQueue, { customerId, ...extra }, { searchAttributes: false });
  return env.client.workflow.getHandle(lifecycleWorkflowId(customerId));
};
const lot = async (id: string) =>
  (await pool.query(`SELECT status, remaining::text, held::text FROM credit_lots WHERE id = $1`, [id])).rows[0];
const sumEntries = async (customerId: string, account: string) =>
  (
    await pool.query(
      `SELECT COALESCE(sum(amount), 0)::text s FROM ledger_entries WHERE customer_id = $1 AND account = $2`,
      [customerId, account],
    )
  ).rows[0].s as string;
const txCount = async (customerId: string, type: string) =>
  Number(
    (
      await pool.query(`SELECT count(*) n FROM ledger_transactions WHERE customer_id = $1 AND type = $2`, [
        customerId,
        type,
      ])
    ).rows[0].n,
  );
/** Lets the worker process what the skipped time made due (real time, time skipping locked). */
const settle = async (check: () => Promise<boolean>) => {
  for (let i = 0; i < 100; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('not settled');
};

describe('credit lifecycle (time-skipping)', () => {
  it('a 30-day lot expires at day 30 and not before', async () => {
    const c = await customer();
    const g = await grant(c, {
      amount: credits('100'),
      kind: 'promotional',
      expiresAt: new Date((await now()).getTime() + 30 * DAY),
    });
    await worker.runUntil(async () => {
      const h = await start(c);
      await settle(async () => (await h.query(deadlinesQuery)).wakeUps >= 1);
      await env.sleep(29 * DAY);
      expect(await lot(g.result.lot.id)).toMatchObject({ status: 'active', remaining: credits('100').toString() });
      await env.sleep(DAY + 60_000);
      await settle(async () => (await lot(g.result.lot.id)).status === 'expired');
    });
    expect(await sumEntries(c, 'expired')).toBe(credits('100').toString());
    expect(await txCount(c, 'expiry')).toBe(1);
    const alert = await pool.query(`SELECT type FROM outbox_events WHERE customer_id = $1 ORDER BY id`, [c]);
    // 7 days before, then at the expiry itself (in the expiry's transaction).
    expect(alert.rows).toEqual([{ type: 'credits.expiring_soon' }, { type: 'credits.expired' }]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it('monthly 1,000 with a 500 rollover cap, 300 used: month 2 has 1,000 + 500 and 200 expire', async () => {
    const c = await customer();
    const g = await grant(c, {
      amount: credits('1000'),
      kind: 'allowance',
      recurrence: { every: 'month' },
      rolloverCap: credits('500'),
    });
    await ledger.debit({ customerId: c, key: `d:${c}`, requestHash: 'd' }, { amount: credits('300') });
    await worker.runUntil(async () => {
      await start(c);
      await env.sleep(32 * DAY);
      await settle(async () => (await lot(g.result.lot.id)).status === 'expired');
    });
    const lots = await pool.query(
      `SELECT original::text, remaining::text, origin_lot_id, renews_lot_id, period FROM credit_lots WHERE customer_id = $1 AND status = 'active' ORDER BY renews_lot_id NULLS FIRST`,
      [c],
    );
    expect(lots.rows).toEqual([
      {
        original: credits('500').toString(),
        remaining: credits('500').toString(),
        origin_lot_id: g.result.lot.id,
        renews_lot_id: null,
        period: 2,
      },
      {
        original: credits('1000').toString(),
        remaining: credits('1000').toString(),
        origin_lot_id: null,
        renews_lot_id: g.result.lot.id,
        period: 2,
      },
    ]);
    expect((await getCustomer(pool, c))!.wallet.available).toBe(credits('1500'));
    expect(await sumEntries(c, 'expired')).toBe(credits('200').toString());
    expect(await findViolations(pool)).toEqual([]);
  });

  it('twelve monthly renewals run; the workflow continues as new and its history stays bounded; it replays', async () => {
    const c = await customer();
    await grant(c, { amount: credits('10'), kind: 'allowance', recurrence: { every: 'month' } });
    let firstRunId = '';
    await worker.runUntil(async () => {
      const h = await start(c, { maxWakeUps: 5 });
      firstRunId = (await h.describe()).runId;
      await env.sleep(366 * DAY);
      await settle(async () => (await txCount(c, 'renewal')) === 12);
    });
    expect(await txCount(c, 'renewal')).toBe(12);
    const h = env.client.workflow.getHandle(lifecycleWorkflowId(c));
    const d = await h.describe();
    expect(d.runId).not.toBe(firstRunId); // continue-as-new happened
    const history = await h.fetchHistory();
    expect(history.events!.length).toBeLessThan(150);
    const first = await env.client.workflow.getHandle(lifecycleWorkflowId(c), firstRunId).fetchHistory();
    expect(first.events!.some((e) => e.workflowExecutionContinuedAsNewEventAttributes)).toBe(true);
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } },
      first,
      lifecycleWorkflowId(c),
    );
    expect((await getCustomer(pool, c))!.wallet.available).toBe(credits('10')); // no rollover cap: nothing accumulates
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a lot voided before expiry never expires (nor twice)', async () => {
    const c = await customer();
    const g = await grant(c, {
      amount: credits('50'),
      kind: 'promotional',
      expiresAt: new Date((await now()).getTime() + 10 * DAY),
    });
    await now();
    await ledger.voidLot(
      { customerId: c, key: `v:${c}`, requestHash: 'v' },
      { lotId: g.result.lot.id, reason: 'test' },
    );
    await worker.runUntil(async () => {
      const h = await start(c);
      await settle(async () => (await h.query(deadlinesQuery)).wakeUps >= 1);
      expect((await h.query(deadlinesQuery)).upcoming).toEqual([]); // the void left no timer to run
      await env.sleep(11 * DAY);
    });
    // A late or repeated tick after the expiry date books nothing either.
    const lifecycle = new LifecycleLedger(ledger, pool);
    const asOf = await now();
    expect((await lifecycle.tick(c, asOf)).booked).toEqual([]);
    expect(await lifecycle.expire(c, g.result.lot.id, asOf)).toBeNull();
    expect(await txCount(c, 'expiry')).toBe(0);
    expect(await sumEntries(c, 'expired')).toBe('0');
    expect(await sumEntries(c, 'voided')).toBe(credits('50').toString());
  });

  it('a hold spanning an expiry keeps its credits until release; then the released part expires', async () => {
    const c = await customer();
    const g = await grant(c, {
      amount: credits('10'),
      kind: 'promotional',
      expiresAt: new Date((await now()).getTime() + 10 * DAY),
    });
    const holds = new HoldLedger(ledger);
    await holds.place(
      { customerId: c, key: `hp:${c}`, requestHash: 'hp' },
      { holdId: 'job', workflowId: 'test', amount: credits('6'), expiresAt: new Date(virtualNow.getTime() + 20 * DAY) },
    );
    await worker.runUntil(async () => {
      await start(c);
      await env.sleep(10 * DAY + 60_000);
      await settle(async () => (await lot(g.result.lot.id)).status === 'expired');
    });
    expect(await lot(g.result.lot.id)).toMatchObject({ remaining: '0', held: credits('6').toString() });
    expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: 0n, held: credits('6') });
    await now();
    await holds.release({ customerId: c, key: `hr:${c}`, requestHash: 'hr' }, { holdId: 'job', status: 'released' });
    expect(await sumEntries(c, 'expired')).toBe(credits('10').toString());
    expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: 0n, held: 0n });
    expect(await findViolations(pool)).toEqual([]);
  });
});
