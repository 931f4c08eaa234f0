import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { temporal } from '@temporalio/proto';
import { credits } from '../../domain/amount';
import { getCustomer } from '../../db/customers';
import { getHold } from '../../db/holds';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { DependencyUnavailable } from '../../lib/unavailable';
import { reservationWorkflowId } from '../../workflows';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { temporalHarness } from '../support/temporal';

/**
 * Crash tests with the real worker process (dist/worker/main.js): SIGKILL right after the settle
 * activity committed, and all workers down across a hold's TTL.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
const children: ChildProcess[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  t = await temporalHarness(pool);
});
afterAll(async () => {
  for (const c of children) c.kill('SIGKILL');
  await t.close();
  await db.drop();
});

function startWorker(env: Record<string, string> = {}): { proc: ChildProcess; exited: Promise<number | null> } {
  const proc = spawn(process.execPath, [path.join(ROOT, 'dist/worker/main.js')], {
    env: {
      ...process.env,
      DATABASE_URL: db.url,
      TEMPORAL_ADDRESS: t.address,
      TEMPORAL_TASK_QUEUE: t.taskQueue,
      LOG_LEVEL: 'warn',
      CREDITFLOW_TEST_CRASH_AFTER_COMMIT: '',
      ...env,
    },
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  children.push(proc);
  return { proc, exited: new Promise((r) => proc.once('exit', (code) => r(code))) };
}

async function customer(grant: string) {
  const id = `crash-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id }, requestHash({ id }));
  await new Ledger(pool).grant(
    { customerId: id, key: `g:${id}`, requestHash: 'g' },
    { amount: credits(grant), kind: 'purchased' },
  );
  return id;
}
const txCount = async (customerId: string, type: string) =>
  Number(
    (
      await pool.query(`SELECT count(*) n FROM ledger_transactions WHERE customer_id = $1 AND type = $2`, [
        customerId,
        type,
      ])
    ).rows[0].n,
  );
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const until = async (what: () => Promise<boolean>, ms: number, label: string) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await what()) return;
    await sleep(200);
  }
  throw new Error(`${label}: not within ${ms} ms`);
};
/**
 * Resolves once this worker process polls the task queue (its default identity is `<pid>@<host>`):
 * a process bundles its workflows at start-up, which takes seconds on a loaded machine, and a
 * call made before it polls would wait out the client's 10 s bound instead of testing anything.
 */
const polling = (proc: ChildProcess) =>
  until(
    async () => {
      const r = await t.client.workflowService.describeTaskQueue({
        namespace: 'default',
        taskQueue: { name: t.taskQueue },
        taskQueueType: temporal.api.enums.v1.TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
      });
      return (r.pollers ?? []).some((p) => p.identity?.startsWith(`${proc.pid}@`));
    },
    90_000,
    `worker ${proc.pid} polling`,
  );

describe('crashes', () => {
  it('worker SIGKILLed right after the settle activity committed: after restart, exactly one settlement', async () => {
    const c = await customer('100');
    const a = startWorker({ CREDITFLOW_TEST_CRASH_AFTER_COMMIT: 'settleHold' });
    await polling(a.proc);
    const placed = await t.holds.reserve({ customerId: c, holdId: 'job-1', amount: '40', ttlSeconds: 3600 });
    expect(placed.outcome).toBe('placed');
    // The caller's retry uses the same update id (as the API does, from its Idempotency-Key).
    const settle = () => t.holds.settle(c, 'job-1', '25', 'settle-job-1');
    const settling = settle();
    settling.catch(() => undefined);
    await a.exited; // it killed itself after the commit
    expect(await txCount(c, 'hold_settle')).toBe(1); // committed, not yet recorded by the workflow
    // No worker: the call gives up within its bound and says so (it does not hang).
    await expect(settling).rejects.toBeInstanceOf(DependencyUnavailable);
    const b = startWorker();
    await polling(b.proc);
    const result = await settle(); // the retried activity replays the stored result
    expect(result).toMatchObject({ captured: '25', released: '15' });
    expect(await txCount(c, 'hold_settle')).toBe(1);
    expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: credits('75'), held: 0n });
    expect((await t.client.workflow.getHandle(reservationWorkflowId(c, 'job-1')).result()).status).toBe('settled');
    expect(await findViolations(pool)).toEqual([]);
    b.proc.kill('SIGTERM');
    await b.exited;
  }, 240_000);

  it('all workers down across a TTL expiry: the hold is released when they return, exactly once', async () => {
    const c = await customer('10');
    const a = startWorker();
    await polling(a.proc);
    // The TTL must outlast placement + SIGKILL (sub-second, seconds on a loaded machine).
    const placed = await t.holds.reserve({ customerId: c, holdId: 'job-2', amount: '6', ttlSeconds: 8 });
    if (placed.outcome !== 'placed') throw new Error(`not placed: ${JSON.stringify(placed)}`);
    a.proc.kill('SIGKILL');
    await a.exited;
    const deadline = Date.parse(placed.hold.expiresAt);
    expect(Date.now()).toBeLessThan(deadline); // the worker died before its timer could fire
    await sleep(deadline - Date.now() + 2000); // the TTL passes with no worker
    expect((await getHold(pool, c, 'job-2'))!.status).toBe('active');
    const b = startWorker();
    await polling(b.proc);
    await until(async () => (await getHold(pool, c, 'job-2'))!.status === 'expired', 60_000, 'TTL release');
    expect((await t.client.workflow.getHandle(reservationWorkflowId(c, 'job-2')).result()).status).toBe('expired');
    expect(await txCount(c, 'hold_release')).toBe(1);
    expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: credits('10'), held: 0n });
    b.proc.kill('SIGTERM');
    await b.exited;
  }, 240_000);
});
