import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
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
const until = async (what: () => Promise<boolean>, ms: number) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await what()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error('condition not met in time');
};

describe('crashes', () => {
  it('worker SIGKILLed right after the settle activity committed: after restart, exactly one settlement', async () => {
    const c = await customer('100');
    const a = startWorker({ CREDITFLOW_TEST_CRASH_AFTER_COMMIT: 'settleHold' });
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
    const result = await settle(); // the retried activity replays the stored result
    expect(result).toMatchObject({ captured: '25', released: '15' });
    expect(await txCount(c, 'hold_settle')).toBe(1);
    expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: credits('75'), held: 0n });
    expect((await t.client.workflow.getHandle(reservationWorkflowId(c, 'job-1')).result()).status).toBe('settled');
    expect(await findViolations(pool)).toEqual([]);
    b.proc.kill('SIGTERM');
    await b.exited;
  }, 90_000);

  it('all workers down across a TTL expiry: the hold is released when they return, exactly once', async () => {
    const c = await customer('10');
    const a = startWorker();
    const placed = await t.holds.reserve({ customerId: c, holdId: 'job-2', amount: '6', ttlSeconds: 3 });
    expect(placed.outcome).toBe('placed');
    a.proc.kill('SIGKILL');
    await a.exited;
    await new Promise((r) => setTimeout(r, 5000)); // TTL passes with no worker
    expect((await getHold(pool, c, 'job-2'))!.status).toBe('active');
    const b = startWorker();
    await until(async () => (await getHold(pool, c, 'job-2'))!.status === 'expired', 30_000);
    expect((await t.client.workflow.getHandle(reservationWorkflowId(c, 'job-2')).result()).status).toBe('expired');
    expect(await txCount(c, 'hold_release')).toBe(1);
    expect((await getCustomer(pool, c))!.wallet).toMatchObject({ available: credits('10'), held: 0n });
    b.proc.kill('SIGTERM');
    await b.exited;
  }, 90_000);
});
