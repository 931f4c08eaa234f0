import { randomUUID } from 'node:crypto';
import type { Pool } from '../../db/pool';
import { reconciliationStarter } from '../../api/routes/reconciliation';
import { ensureReconciliationSchedule } from '../../worker/schedules';
import { reconcile } from '../../workflows/reconcile';
import { createPool } from '../../db/pool';
import { call, makeKey, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { burstOnFullPool } from '../support/burst';
import { triggerSchedule } from '../support/temporal';
import { startStack, type Stack } from '../support/stack';

let stack: Stack;
let db: Stack['db'];
let pool: Pool;
let t: Stack['t'];
let api: TestApi;
let admin: string;
let service: string;

beforeAll(async () => {
  stack = await startStack((t) => ({
    payments: () => Promise.resolve(t.payments),
    holds: () => Promise.resolve(t.holds),
    gateway: t.gateway,
    reconciliation: reconciliationStarter(t.client, t.taskQueue),
  }));
  ({ db, pool, t, api } = stack);
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, admin);
});
afterAll(async () => {
  await stack.close();
});

interface Report {
  id: string;
  status: string;
  discrepancyCount: number;
  checked: Record<string, number>;
  discrepancies: { check: string; customerId: string | null; subject: string; detail: string }[];
}

async function customer(grant = '100') {
  const id = `rc-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  const g = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
    key: admin,
    json: { amount: grant, kind: 'promotional' },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(g.status).toBe(201);
  return id;
}
async function purchase(id: string, credits = '50', amountMinor = 500) {
  await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, {
    key: admin,
    json: { paymentMethod: 'pm_card_visa' },
  });
  const p = await call(api.url, 'POST', `/v1/customers/${id}/purchases`, {
    key: admin,
    json: { credits, price: { amountMinor, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(p.status).toBe(201);
  return { lotId: p.body.lot.id as string, charge: p.body.payment.reference as string };
}
async function hold(id: string, amount = '5') {
  const h = await call(api.url, 'POST', '/v1/holds', {
    key: service,
    json: { customerId: id, amount, ttlSeconds: 600 },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(h.status).toBe(201);
  const row = await pool.query<{ workflow_id: string }>(
    `SELECT workflow_id FROM holds WHERE customer_id = $1 AND status = 'active'`,
    [id],
  );
  return row.rows[0]!.workflow_id;
}
/** On demand, through the API; waits for the workflow, reads the stored report. */
async function run(): Promise<Report> {
  const r = await call(api.url, 'POST', '/v1/reconciliation/runs', { key: admin, json: {} });
  expect(r.status).toBe(202);
  expect(r.body.workflowId).toBe(`reconcile:${new Date().toISOString().slice(0, 10)}:${r.body.runId}`);
  await t.client.workflow.getHandle(r.body.workflowId).result();
  const view = await call(api.url, 'GET', `/v1/reconciliation/runs/${r.body.runId}`, { key: admin });
  expect(view.status).toBe(200);
  return view.body as Report;
}
const notifications = async (runId: string) =>
  Number(
    (
      await pool.query<{ n: string }>(
        `SELECT count(*) AS n FROM operator_events WHERE type = 'reconciliation.discrepancy' AND payload->>'runId' = $1`,
        [runId],
      )
    ).rows[0]!.n,
  );
/** As the owner, bypassing triggers (append-only, balanced transactions) for one statement batch. */
async function asReplica(fn: (q: Pool) => Promise<unknown>) {
  const c = await db.owner.connect();
  try {
    await c.query('SET session_replication_role = replica');
    await fn(c as unknown as Pool);
  } finally {
    await c.query('RESET session_replication_role');
    c.release();
  }
}
const of = (r: Report, customerId: string) => r.discrepancies.filter((d) => d.customerId === customerId);

describe('reconciliation (real Temporal, Postgres, sandbox)', () => {
  it('a clean ledger with traffic is clean, paged over continue-as-new as in one page; no notification', async () => {
    const a = await customer();
    const burn = await call(api.url, 'POST', '/v1/events', {
      key: service,
      json: { events: [{ id: randomUUID(), customerId: a, meter: 'tokens', quantity: '10000' }] },
    });
    expect(burn.status).toBeLessThan(300);
    const b = await customer('10');
    const bought = await purchase(b, '300', 900);
    const refund = await call(api.url, 'POST', '/v1/refunds', {
      key: admin,
      json: { customerId: b, lotId: bought.lotId, credits: '100', reason: 'test' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(refund.status).toBe(202);
    await t.client.workflow.getHandle(`refund:${refund.body.refundId}`).result();
    await hold(a);
    await customer('7'); // a third wallet, so 1-wallet pages with 2 pages per run continue-as-new

    const r = await run();
    expect(r).toMatchObject({ status: 'clean', discrepancies: [] });
    const wallets = Number((await pool.query<{ n: string }>('SELECT count(*) AS n FROM wallets')).rows[0]!.n);
    expect(r.checked).toMatchObject({ wallets, payments: 1 });
    expect(r.checked.events).toBeGreaterThanOrEqual(1);
    expect(await notifications(r.id)).toBe(0);

    const runId = randomUUID();
    const h = await t.client.workflow.start(reconcile, {
      workflowId: `reconcile:test:${runId}`,
      taskQueue: t.taskQueue,
      args: [{ runId, pageSize: 1, pagesPerRun: 2 }],
    });
    expect(await h.result()).toMatchObject({ status: 'clean', checkedWallets: String(wallets) });
    // continued as new: the last run of the chain is not the first
    expect((await h.describe()).runId).not.toBe(h.firstExecutionRunId);
    const latest = await call(api.url, 'GET', '/v1/reconciliation/latest', { key: admin });
    expect(latest.body).toMatchObject({ id: runId, status: 'clean' });
    expect((await call(api.url, 'POST', '/v1/reconciliation/runs', { key: service, json: {} })).status).toBe(403);
    expect((await call(api.url, 'GET', '/v1/reconciliation/runs/nope', { key: admin })).status).toBe(404);
  }, 40_000);

  it('each kind of damage is reported with its customer and detail, one notification per run, nothing fixed', async () => {
    const expectOne = async (customerId: string, check: RegExp, detail: RegExp) => {
      const r = await run();
      expect(r.status).toBe('discrepancies');
      const found = of(r, customerId);
      expect(found.some((d) => check.test(d.check) && detail.test(d.detail))).toBe(true);
      expect(await notifications(r.id)).toBe(1);
      return r;
    };

    const cache = await customer('100');
    // Damage is done as the owner (the service role cannot alter tables or bypass triggers).
    await db.owner.query('UPDATE wallets SET available = available + 1 WHERE customer_id = $1', [cache]);
    await expectOne(cache, /^inv2/, /cached 100000001\/0, entries 100000000\/0/);
    // never fixed
    expect((await pool.query('SELECT available::text FROM wallets WHERE customer_id = $1', [cache])).rows[0]).toEqual({
      available: '100000001',
    });

    const unbalanced = await customer();
    const tx = randomUUID();
    await asReplica(async (q) => {
      await q.query(
        `INSERT INTO ledger_transactions (id, customer_id, type, idempotency_key) VALUES ($1, $2, 'adjustment', $3)`,
        [tx, unbalanced, `damage:${tx}`],
      );
      await q.query(
        `INSERT INTO idempotency_keys (customer_id, key, request_hash, result) VALUES ($1, $2, 'x', '{}')`,
        [unbalanced, `damage:${tx}`],
      );
      await q.query(
        `INSERT INTO ledger_entries (transaction_id, customer_id, account, amount) VALUES ($1, $2, 'consumed', 5)`,
        [tx, unbalanced],
      );
    });
    const r2 = await expectOne(unbalanced, /^inv1/, /entries sum to 5/);
    expect(of(r2, unbalanced).find((d) => /^inv1/.test(d.check))!.subject).toBe(tx);

    const negative = await customer('20');
    await db.owner.query('ALTER TABLE credit_lots DROP CONSTRAINT IF EXISTS credit_lots_remaining_check');
    await db.owner.query('UPDATE credit_lots SET remaining = -1 WHERE customer_id = $1', [negative]);
    await expectOne(negative, /lots within bounds/, /remaining -1 held 0 original 20000000/);

    const orphan = await customer('1');
    await db.owner.query(
      `INSERT INTO sandbox_charges (id, idempotency_key, request_hash, customer_id, payment_method, amount_minor, currency)
       VALUES ($1, $2, 'x', $3, 'pm_card_visa', 700, 'USD')`,
      [`ch_orphan_${orphan}`, `orphan:${orphan}`, orphan],
    );
    await expectOne(orphan, /every charge has its lot/, /charge 700 USD .* has no lot/);

    const lost = await customer('1');
    const p = await purchase(lost, '40', 400);
    await db.owner.query('DELETE FROM sandbox_charges WHERE id = $1', [p.charge]);
    await expectOne(lost, /every purchased lot has exactly one charge/, new RegExp(`charge ${p.charge} not found`));

    const expired = await customer('30');
    await db.owner.query(
      `UPDATE credit_lots SET effective_at = now() - interval '3 hours', expires_at = now() - interval '2 hours'
        WHERE customer_id = $1`,
      [expired],
    );
    await expectOne(expired, /expired lot still holds a remainder/, /30000000 remaining/);

    const stranded = await customer('50');
    const wf = await hold(stranded, '5');
    await t.client.workflow.getHandle(wf).terminate('damage');
    const last = await expectOne(stranded, /active hold has a running workflow/, /TERMINATED/);

    // Every damaged customer is in the last report; the outbox has one notification naming them all.
    for (const c of [cache, unbalanced, negative, orphan, lost, expired, stranded])
      expect(of(last, c).length).toBeGreaterThan(0);
    const n = await pool.query<{ payload: { customers: string[]; count: number } }>(
      `SELECT payload FROM operator_events WHERE type = 'reconciliation.discrepancy' AND payload->>'runId' = $1`,
      [last.id],
    );
    expect(n.rows[0]!.payload.count).toBe(last.discrepancies.length);
    expect(last.discrepancyCount).toBe(last.discrepancies.length);
    expect(n.rows[0]!.payload.customers).toEqual(expect.arrayContaining([cache, stranded]));
  }, 60_000);

  it('the schedule is upserted once, updated on a new cron, and a triggered run finishes', async () => {
    const scheduleId = `reconcile-${t.taskQueue}`;
    await ensureReconciliationSchedule(t.client, t.taskQueue, {
      reconciliationScheduleId: scheduleId,
      reconciliationCron: '0 2 * * *',
    });
    await ensureReconciliationSchedule(t.client, t.taskQueue, {
      reconciliationScheduleId: scheduleId,
      reconciliationCron: '0 2 * * *',
    });
    const handle = t.client.schedule.getHandle(scheduleId);
    try {
      const ids: string[] = [];
      for await (const s of t.client.schedule.list()) if (s.scheduleId === scheduleId) ids.push(s.scheduleId);
      expect(ids).toHaveLength(1);
      const before = await handle.describe();
      expect(before.action).toMatchObject({ taskQueue: t.taskQueue, memo: { reconciliationCron: '0 2 * * *' } });

      await ensureReconciliationSchedule(t.client, t.taskQueue, {
        reconciliationScheduleId: scheduleId,
        reconciliationCron: '30 4 * * *',
      });
      const after = await handle.describe();
      expect(after.action).toMatchObject({ memo: { reconciliationCron: '30 4 * * *' } });
      expect(after.spec.calendars?.[0]).toMatchObject({ hour: [{ start: 4, end: 4, step: 1 }] });

      const workflowId = await triggerSchedule(handle);
      expect(workflowId).toMatch(/^reconcile-/);
      const outcome = await t.client.workflow.getHandle(workflowId).result();
      expect(['clean', 'discrepancies']).toContain(outcome?.status);
      const stored = await pool.query('SELECT status FROM reconciliation_runs WHERE workflow_id = $1', [workflowId]);
      expect(stored.rows).toEqual([{ status: outcome!.status }]);
    } finally {
      await handle.delete();
    }
  }, 30_000);

  it('hostile reads, in a burst of 3 × a 4-connection pool: wrong roles 403, bad ids 404, all answered, pool given back', async () => {
    const apiPool = createPool(db.url, 4, 30_000);
    const small = await startApi(apiPool);
    try {
      const viewer = await makeKey(pool, 'viewer', await customer('1'));
      const cases = [
        { path: '/v1/reconciliation/latest', key: admin, status: 200 },
        { path: '/v1/reconciliation/latest', key: service, status: 403 },
        { path: '/v1/reconciliation/latest', key: viewer, status: 403 },
        { path: '/v1/reconciliation/runs/%00', key: admin, status: 404 },
        { path: `/v1/reconciliation/runs/${'r'.repeat(129)}`, key: admin, status: 404 },
        { path: '/v1/reconciliation/runs/%F0%9F%92%A5', key: admin, status: 404 },
      ];
      const burst = Array.from({ length: 3 }, () => cases).flat();
      const { answers, queued } = await burstOnFullPool(apiPool, 4, () =>
        burst.map((c) => call(small.url, 'GET', c.path, { key: c.key })),
      );
      expect(queued).toBeGreaterThan(0); // the burst really waited for the pool
      expect(answers.map((r) => r.status)).toEqual(burst.map((c) => c.status));
      expect(apiPool.idleCount).toBe(apiPool.totalCount);
      expect(apiPool.waitingCount).toBe(0);
    } finally {
      await small.close();
      await apiPool.end();
    }
  }, 30_000);
});
