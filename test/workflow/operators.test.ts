import { randomUUID } from 'node:crypto';
import { notifyLifecycle } from '../../client/lifecycle';
import { notifyTopUp } from '../../client/topups';
import type { Pool } from '../../db/pool';
import { purchaseWorkflowId } from '../../ledger/payments';
import { createLogger } from '../../lib/logger';
import { reconciliationStarter } from '../../api/routes/reconciliation';
import { startWebhookDelivery } from '../../webhooks/workflows';
import { webhookWorkflowId } from '../../workflows/webhooks';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { freePort } from '../support/ports';
import { temporalHarness } from '../support/temporal';
import { killAllWorkers, spawnWorker, type WorkerProcess } from '../support/workers';

/**
 * Operators' toolkit on a real Temporal dev server and the real worker process: every workflow
 * type answers `status` and (when it has a customer) is found by `CustomerId`; a ledger line a
 * workflow wrote leads to the worker's log lines; the worker serves Temporal's own metrics; and
 * /metrics counts a real top-up failure.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let worker: WorkerProcess;
const workerLines: Record<string, unknown>[] = [];
let metricsPort: number;
let api: TestApi;
let admin: string;
let service: string;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  t = await temporalHarness(pool);
  metricsPort = await freePort();
  worker = spawnWorker({
    databaseUrl: db.url,
    temporalAddress: t.address,
    taskQueue: t.taskQueue,
    env: { WORKER_METRICS_ADDRESS: `127.0.0.1:${metricsPort}` },
  });
  let partial = '';
  worker.proc.stdout!.on('data', (d: Buffer) => {
    const parts = (partial + d.toString()).split('\n');
    partial = parts.pop()!;
    for (const p of parts) {
      try {
        workerLines.push(JSON.parse(p) as Record<string, unknown>);
      } catch {
        /* not a log line */
      }
    }
  });
  await worker.ready;
  api = await startApi(pool, {
    logger: createLogger('test-api', 'silent'),
    metricsCacheMs: 0,
    holds: () => Promise.resolve(t.holds),
    payments: () => Promise.resolve(t.payments),
    gateway: t.gateway,
    topUps: t.topUps,
    lifecycle: async (customerId) => {
      await notifyLifecycle(t.client, t.taskQueue, { customerId });
    },
    webhooks: (id) => startWebhookDelivery(t.client, t.taskQueue, id),
    reconciliation: reconciliationStarter(t.client, t.taskQueue),
  });
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
}, 120_000);
afterAll(async () => {
  await api.close();
  await killAllWorkers();
  await t.close();
  await db.drop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
async function until<T>(what: () => Promise<T | undefined>, label: string, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await what().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${label}: not within ${ms} ms`);
    await sleep(250);
  }
}

const post = (path: string, json: unknown, key = admin) =>
  call(api.url, 'POST', path, { key, json, headers: { 'idempotency-key': randomUUID() } });

async function customer(paymentMethod = 'pm_card_visa'): Promise<string> {
  const id = `ops-${randomUUID().slice(0, 8)}`;
  expect((await post('/v1/customers', { id })).status).toBe(201);
  const pm = await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, { key: admin, json: { paymentMethod } });
  expect(pm.status).toBe(200);
  return id;
}

const status = (workflowId: string) =>
  until(() => t.client.workflow.getHandle(workflowId).query<Record<string, unknown>>('status'), `status ${workflowId}`);

describe('operators: status queries, CustomerId, logs, metrics', () => {
  it('every workflow type answers `status`; those with a customer are listed by CustomerId', async () => {
    const c = await customer();
    // Lifecycle: an expiring grant starts it through the API's start site.
    const g = await post(`/v1/customers/${c}/grants`, {
      amount: '50',
      kind: 'promotional',
      expiresAt: '2099-01-01T00:00:00Z',
    });
    expect(g.status).toBe(201);
    const hold = await post('/v1/holds', { customerId: c, holdId: 'h1', amount: '1', ttlSeconds: 3600 }, service);
    expect(hold.status).toBe(201);
    const purchase = await post(`/v1/customers/${c}/purchases`, {
      credits: '10',
      price: { amountMinor: 100, currency: 'USD' },
    });
    expect(purchase.status).toBe(201);
    const refund = await post('/v1/refunds', { customerId: c, lotId: purchase.body.lot.id, reason: 'ops test' });
    expect(refund.status).toBe(202);
    await notifyTopUp(t.client, t.taskQueue, c);
    const run = await post('/v1/reconciliation/runs', {});
    expect(run.status).toBe(202);
    await pool.query(
      `INSERT INTO webhook_endpoints (id, url, secret) VALUES ('we_ops1', 'https://example.com/h', 's')`,
    );
    await startWebhookDelivery(t.client, t.taskQueue, 'we_ops1');

    expect(await status(hold.body.workflowId)).toMatchObject({ hold: { holdId: 'h1' } });
    expect(await status(`wallet:${c}`)).toMatchObject({ customerId: c });
    expect(await status(purchaseWorkflowId(c, purchase.body.purchaseId))).toMatchObject({ status: 'succeeded' });
    expect(await status(refund.body.workflowId)).toHaveProperty('step');
    expect(await status(`topup:${c}`)).toHaveProperty('plans');
    const reconcile = await status(run.body.workflowId);
    expect(reconcile).toMatchObject({ runId: run.body.runId });
    expect(await status(webhookWorkflowId('we_ops1'))).toMatchObject({ endpointId: 'we_ops1' });

    const types = await until(async () => {
      const found = new Set<string>();
      for await (const w of t.client.workflow.list({ query: `CustomerId = '${c}'` })) found.add(w.type);
      const want = ['autoTopUp', 'creditLifecycle', 'purchase', 'refund', 'reservation'];
      return want.every((x) => found.has(x)) ? [...found].sort() : undefined;
    }, 'visibility by CustomerId');
    expect(types).toEqual(['autoTopUp', 'creditLifecycle', 'purchase', 'refund', 'reservation']);
    await t.client.workflow.getHandle(webhookWorkflowId('we_ops1')).terminate('test done');
  });

  it("a ledger line written by a workflow leads to the worker's log lines (workflowId, activityType)", async () => {
    const c = await customer();
    expect((await post(`/v1/customers/${c}/grants`, { amount: '5', kind: 'promotional' })).status).toBe(201);
    const hold = await post('/v1/holds', { customerId: c, holdId: 'job-7', amount: '2', ttlSeconds: 3600 }, service);
    expect(hold.status).toBe(201);
    const ledger = await call(api.url, 'GET', `/v1/customers/${c}/ledger`, { key: admin });
    const line = (
      ledger.body.transactions as { id: string; workflowId: string | null; requestId: string | null }[]
    ).find((x) => x.workflowId !== null)!;
    expect(line.workflowId).toBe(hold.body.workflowId);
    const logged = await until(
      () =>
        Promise.resolve(workerLines.find((l) => l.workflowId === line.workflowId && l.msg === 'ledger step committed')),
      'worker log line',
    );
    expect(logged).toMatchObject({
      activityType: 'placeHold',
      workflowType: 'reservation',
      service: 'creditflow-worker',
    });
  });

  it('the worker serves its own Temporal metrics', async () => {
    const text = await until(async () => {
      const r = await fetch(`http://127.0.0.1:${metricsPort}/metrics`);
      const body = await r.text();
      return r.status === 200 && /^temporal_\w+/m.test(body) ? body : undefined;
    }, 'worker metrics');
    expect(text).toMatch(/^temporal_workflow_task_execution_latency/m);
  });

  it('/metrics counts a real top-up failure (a declined card)', async () => {
    const read = async () => {
      const text = (await call(api.url, 'GET', '/metrics')).text;
      return Number(/^creditflow_topups\{status="failed"\} (\S+)$/m.exec(text)?.[1] ?? 'NaN');
    };
    const before = await read();
    const c = await customer('pm_card_chargeDeclined');
    const rule = await call(api.url, 'PUT', `/v1/customers/${c}/auto-topup`, {
      key: admin,
      json: {
        enabled: true,
        mode: 'fixed',
        threshold: '100',
        credits: '500',
        unitPrice: { amountMinor: '1', currency: 'USD' },
      },
    });
    expect(rule.status).toBe(200);
    await notifyTopUp(t.client, t.taskQueue, c);
    expect(await until(async () => ((await read()) > before ? read() : undefined), 'top-up failure')).toBe(before + 1);
  });
});
