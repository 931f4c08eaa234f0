import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import type { Pool } from '../../db/pool';
import { reconcile, reconcileWorkflowId } from '../../workflows/reconcile';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { temporalHarness } from '../support/temporal';
import { killAllWorkers, spawnWorker, startInProcessWorker } from '../support/workers';

/**
 * The real worker process SIGKILLs itself at each step boundary of a reconciliation; a restarted
 * worker finishes the run, and the stored report counts every wallet and every discrepancy exactly
 * once (a page's results are added once per cursor; the verdict is reached once), with one
 * notification. The histories replay with today's workflow code.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let api: TestApi;
let damaged: string;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  t = await temporalHarness(pool);
  api = await startApi(pool);
  const admin = await makeKey(pool, 'admin');
  for (let i = 0; i < 5; i++) {
    const id = `rk-${i}-${randomUUID().slice(0, 6)}`;
    expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
    const g = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
      key: admin,
      json: { amount: '10', kind: 'promotional' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(g.status).toBe(201);
    damaged = id;
  }
  // Discrepancies to count: a wallet cache off by 1 µc (inv2 and inv3; as the owner: the service
  // role may not).
  await db.owner.query('UPDATE wallets SET available = available + 1 WHERE customer_id = $1', [damaged]);
});
afterAll(async () => {
  await killAllWorkers();
  await api.close();
  await t.close();
  await db.drop();
});

const wallets = async () => Number((await pool.query<{ n: string }>('SELECT count(*) n FROM wallets')).rows[0]!.n);

/** One crash point: the run on its own task queue, killed there, finished by a restarted worker. */
async function killAndFinish(crash: string) {
  const taskQueue = `reconcile-kill-${randomUUID().slice(0, 8)}`;
  const crashing = spawnWorker({ databaseUrl: db.url, temporalAddress: t.address, taskQueue, crash });
  await crashing.ready;
  const runId = randomUUID();
  // 2 wallets a page, one at a time: the crash lands after some pages, before others.
  const h = await t.client.workflow.start(reconcile, {
    workflowId: reconcileWorkflowId('chaos', runId),
    taskQueue,
    args: [{ runId, pageSize: 2, concurrency: 1 }],
  });
  expect({ crash, exit: await crashing.exited }).toEqual({ crash, exit: { code: null, signal: 'SIGKILL' } });

  const native = await NativeConnection.connect({ address: t.address });
  const connection = await Connection.connect({ address: t.address });
  const w = await startInProcessWorker({ connection: native, client: new Client({ connection }), taskQueue, pool });
  try {
    const n = String(await wallets());
    expect({ crash, result: await h.result() }).toEqual({
      crash,
      result: { status: 'discrepancies', discrepancies: 2, checkedWallets: n },
    });
    const report = await pool.query<{ checked_wallets: string; summary: { discrepancyCount: number } }>(
      'SELECT checked_wallets::text, summary FROM reconciliation_runs WHERE id = $1',
      [runId],
    );
    expect({ crash, report: report.rows[0] }).toMatchObject({
      crash,
      report: { checked_wallets: n, summary: { discrepancyCount: 2 } },
    });
    const notified = await pool.query(
      `SELECT payload FROM operator_events WHERE type = 'reconciliation.discrepancy' AND payload->>'runId' = $1`,
      [runId],
    );
    expect({ crash, notified: notified.rows }).toMatchObject({
      crash,
      notified: [{ payload: { count: 2, customers: [damaged] } }],
    });
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } },
      await h.fetchHistory(),
      h.workflowId,
    );
  } finally {
    await w.stop();
    await connection.close();
    await native.close();
  }
}

it('SIGKILL before a page, after a page, after the verdict: a restarted worker finishes; every wallet and discrepancy counted once; one notification; the histories replay', async () => {
  // side by side (each on its own task queue): a killed worker's activity waits out its 30 s heartbeat timeout
  await Promise.all(['reconcilePage:before', 'reconcilePage:after', 'finishReconciliation:after'].map(killAndFinish));
}, 120_000);
