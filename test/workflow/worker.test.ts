import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Worker } from '@temporalio/worker';
import { createActivities } from '../../activities';
import { credits } from '../../domain/amount';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import * as workflows from '../../workflows';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { temporalHarness } from '../support/temporal';

/** What the worker that createWorker builds serves: every workflow type and every activity the workflows call. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let worker: Worker;
let running: Promise<void>;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  t = await temporalHarness(pool);
  worker = await t.startWorker();
  running = worker.run();
});
afterAll(async () => {
  worker.shutdown();
  await running;
  await t.close();
  await db.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls with a generous bound: a loaded machine is slow, never wrong. */
async function until<T>(what: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(200);
  }
}

/** Activity names the workflow sources call: `acts.x(` and `const { x } = proxy…Activities`. */
function activitiesCalledByWorkflows(): string[] {
  const names = new Set<string>();
  const dir = path.join(ROOT, 'workflows');
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
    const src = readFileSync(path.join(dir, file), 'utf8');
    for (const m of src.matchAll(/\bacts\.(\w+)\(/g)) names.add(m[1]!);
    for (const m of src.matchAll(/const \{([^}]+)\} = proxy(?:Local)?Activities/g))
      for (const n of m[1]!.split(',')) names.add(n.trim());
  }
  return [...names].sort();
}

const workflowTypes = Object.entries(workflows)
  .filter(([name, v]) => typeof v === 'function' && !name.endsWith('WorkflowId'))
  .map(([name]) => name)
  .sort();

describe('worker built by createWorker, on a real Temporal dev server', () => {
  it('registers every activity createActivities builds, which includes every activity the workflows call', () => {
    const registered = [...worker.options.activities.keys()].sort();
    expect(registered).toEqual(Object.keys(createActivities({ pool })).sort());
    const called = activitiesCalledByWorkflows();
    expect(called).toEqual(
      expect.arrayContaining(['databaseTime', 'lifecycleTick', 'placeHold', 'releaseHold', 'sweepStrandedHolds']),
    );
    expect(registered).toEqual(expect.arrayContaining(called));
  });

  it('the workflow entry point exports exactly the known workflow types', () => {
    // A new workflow type must be added to the run below, so that this file runs every one of them.
    expect(workflowTypes).toEqual([
      'autoTopUp',
      'connectivityCheck',
      'creditLifecycle',
      'holdSweeper',
      'housekeeping',
      'purchase',
      'reconcile',
      'refund',
      'reservation',
      'webhookDelivery',
      'webhookKeeper',
    ]);
  });

  it('connectivityCheck: workflow → activity → Postgres round trip returns the database clock', async () => {
    const workflowId = `connectivity:${randomUUID()}`;
    const before = Date.now();
    const result = await t.client.workflow.execute(workflows.connectivityCheck, {
      taskQueue: t.taskQueue,
      workflowId,
      workflowExecutionTimeout: '60s',
    });
    expect(result.workflowId).toBe(workflowId);
    // Postgres' now() and this process share the machine's clock: allow a generous skew.
    const dbTime = Date.parse(result.databaseTime);
    expect(dbTime).toBeGreaterThan(before - 60_000);
    expect(dbTime).toBeLessThan(Date.now() + 60_000);
  });

  it('holdSweeper runs its activity against Postgres and Temporal (nothing to sweep in a fresh database)', async () => {
    const r = await t.client.workflow.execute(workflows.holdSweeper, {
      taskQueue: t.taskQueue,
      workflowId: `sweep-${randomUUID()}`,
      args: [{ graceSeconds: 0 }],
      workflowExecutionTimeout: '60s',
    });
    expect(r).toEqual({
      checked: 0,
      released: [],
      lifecyclesNudged: [],
      topUpsNudged: [],
      purchasesRestarted: [],
      refundsRestarted: [],
    });
  });

  it('reservation places a hold through its local activity and releases it', async () => {
    const c = `w-${randomUUID().slice(0, 8)}`;
    await createCustomer(pool, { id: c }, requestHash({ id: c }));
    await new Ledger(pool).grant(
      { customerId: c, key: `g:${c}`, requestHash: 'g' },
      { amount: credits('5'), kind: 'purchased' },
    );
    const placed = await t.holds.reserve({ customerId: c, holdId: 'h1', amount: '2', ttlSeconds: 3600 });
    expect(placed).toMatchObject({ outcome: 'placed', hold: { amount: '2', held: '2' } });
    await t.holds.release(c, 'h1');
    expect((await t.client.workflow.getHandle(placed.workflowId).result()).status).toBe('released');
  });

  it('purchase charges the sandbox and grants the purchased lot through its local activities', async () => {
    const c = `w-${randomUUID().slice(0, 8)}`;
    await createCustomer(pool, { id: c }, requestHash({ id: c }));
    const order = {
      customerId: c,
      paymentId: 'pur_w1',
      source: 'purchase' as const,
      credits: '3',
      amountMinor: '30',
      currency: 'USD',
      gateway: 'sandbox',
      paymentMethod: 'pm_card_visa',
      gatewayKey: `purchase:${c}:pur_w1`,
      maxAttempts: 2,
    };
    const r = await t.client.workflow.execute(workflows.purchase, {
      taskQueue: t.taskQueue,
      workflowId: `purchase:${c}:pur_w1`,
      args: [{ order, createdAt: new Date().toISOString(), requestHash: 'h' }],
      workflowExecutionTimeout: '60s',
    });
    expect(r).toMatchObject({ status: 'succeeded', amountMinor: '30', currency: 'USD' });
  });

  it('autoTopUp plans once and finishes when idle (a customer without a rule)', async () => {
    const c = `w-${randomUUID().slice(0, 8)}`;
    await createCustomer(pool, { id: c }, requestHash({ id: c }));
    const s = await t.client.workflow.execute(workflows.autoTopUp, {
      taskQueue: t.taskQueue,
      workflowId: `topup:${c}`,
      args: [{ customerId: c, triggered: true, idleMs: 100 }],
      workflowExecutionTimeout: '60s',
    });
    expect(s).toMatchObject({ plans: 1, lastPlan: 'no_rule', status: 'idle' });
  });

  it('creditLifecycle runs its tick activity (a customer without lots: one wake-up, nothing upcoming)', async () => {
    const c = `w-${randomUUID().slice(0, 8)}`;
    await createCustomer(pool, { id: c }, requestHash({ id: c }));
    const handle = await t.client.workflow.start(workflows.creditLifecycle, {
      taskQueue: t.taskQueue,
      workflowId: workflows.lifecycleWorkflowId(c),
      args: [{ customerId: c }],
    });
    try {
      const state = await until(async () => {
        const s = await handle.query(workflows.deadlinesQuery);
        return s.wakeUps >= 1 ? s : undefined;
      });
      expect(state).toMatchObject({ customerId: c, upcoming: [], wakeUps: 1 });
      expect(state.lastTickAt).not.toBeNull();
    } finally {
      await handle.terminate('test done');
    }
  });

  it('reconcile pages over the wallets and stores a clean report (a fresh database)', async () => {
    const runId = randomUUID();
    const r = await t.client.workflow.execute(workflows.reconcile, {
      taskQueue: t.taskQueue,
      workflowId: workflows.reconcileWorkflowId('worker-test', runId),
      args: [{ runId }],
      workflowExecutionTimeout: '60s',
    });
    expect(r).toMatchObject({ status: 'clean', discrepancies: 0 });
    const row = await pool.query('SELECT status FROM reconciliation_runs WHERE id = $1', [runId]);
    expect(row.rows).toEqual([{ status: 'clean' }]);
  });
});
