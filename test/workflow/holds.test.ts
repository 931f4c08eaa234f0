import { randomUUID } from 'node:crypto';
import { Worker } from '@temporalio/worker';
import { credits } from '../../domain/amount';
import { DomainError } from '../../domain/errors';
import { getCustomer } from '../../db/customers';
import { getHold } from '../../db/holds';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { captureUpdate, extendUpdate, holdSweeper, reservationWorkflowId } from '../../workflows';
import { freshDatabase } from '../support/db';
import { temporalHarness } from '../support/temporal';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let worker: Worker;
let running: Promise<void>;
let ledger: Ledger;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ledger = new Ledger(pool);
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

async function customer(grant: string) {
  const id = `h-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id }, requestHash({ id }));
  if (grant !== '0')
    await ledger.grant(
      { customerId: id, key: `g:${id}`, requestHash: 'g' },
      { amount: credits(grant), kind: 'purchased' },
    );
  return id;
}
const wallet = async (id: string) => (await getCustomer(pool, id))!.wallet;
const holdTxCount = async (customerId: string, type: string) =>
  Number(
    (
      await pool.query(`SELECT count(*) n FROM ledger_transactions WHERE customer_id = $1 AND type = $2`, [
        customerId,
        type,
      ])
    ).rows[0].n,
  );
const reserve = (customerId: string, amount: string, ttlSeconds = 3600, holdId = randomUUID()) =>
  t.holds.reserve({ customerId, holdId, amount, ttlSeconds });
const result = (customerId: string, holdId: string) =>
  t.client.workflow.getHandle(reservationWorkflowId(customerId, holdId)).result();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Polls with a generous bound: on a loaded machine things are slow, not wrong. */
async function until<T>(label: string, what: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await what();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${label}: not within ${ms} ms`);
    await sleep(200);
  }
}

describe('reservation workflow (real Temporal dev server + Postgres)', () => {
  it('place → capture → settle: captures the final amount and releases the rest', async () => {
    const c = await customer('100');
    const r = await reserve(c, '40');
    expect(r.outcome).toBe('placed');
    if (r.outcome !== 'placed') return;
    expect(await wallet(c)).toMatchObject({ available: credits('60'), held: credits('40') });
    const h = r.hold.holdId;
    expect((await t.holds.capture(c, h, '10')).captured).toBe('10');
    const s = await t.holds.settle(c, h, '25');
    expect(s).toMatchObject({ captured: '25', released: '15', overage: '0' });
    expect(await wallet(c)).toMatchObject({ available: credits('75'), held: 0n });
    expect((await result(c, h)).status).toBe('settled');
    await expect(t.holds.settle(c, h, '25')).rejects.toMatchObject({ code: 'HoldNotActive' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('place → release: everything back to available', async () => {
    const c = await customer('10');
    const r = await reserve(c, '10');
    if (r.outcome !== 'placed') throw new Error('not placed');
    await t.holds.release(c, r.hold.holdId);
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n });
    expect((await result(c, r.hold.holdId)).status).toBe('released');
  });

  it('place → TTL passes → released automatically, exactly once', async () => {
    const c = await customer('10');
    const r = await reserve(c, '7', 2);
    if (r.outcome !== 'placed') throw new Error('not placed');
    const final = await result(c, r.hold.holdId);
    expect(final.status).toBe('expired');
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n });
    expect(await holdTxCount(c, 'hold_release')).toBe(1);
  });

  it('place → extend → settle above the held amount takes the excess from available credits', async () => {
    const c = await customer('100');
    const r = await reserve(c, '20', 60);
    if (r.outcome !== 'placed') throw new Error('not placed');
    const h = r.hold.holdId;
    const e = await t.holds.extend(c, h, { amount: '10', ttlSeconds: 600 });
    expect(e).toMatchObject({ amount: '30', held: '30' });
    expect(Date.parse(e.expiresAt)).toBeGreaterThan(Date.now() + 500_000);
    await expect(t.holds.extend(c, h, { amount: '1000' })).rejects.toMatchObject({ code: 'InsufficientCredits' });
    const s = await t.holds.settle(c, h, '45');
    expect(s).toMatchObject({ captured: '45', released: '0', overage: '15' });
    expect(await wallet(c)).toMatchObject({ available: credits('55'), held: 0n, arrears: 0n });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('settle above everything the wallet has leaves arrears', async () => {
    const c = await customer('10');
    const r = await reserve(c, '10');
    if (r.outcome !== 'placed') throw new Error('not placed');
    await t.holds.settle(c, r.hold.holdId, '12');
    expect(await wallet(c)).toMatchObject({ available: credits('-2'), arrears: credits('2') });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a hold is refused at once with the shortfall, and nothing is held', async () => {
    const c = await customer('5');
    const r = await reserve(c, '8');
    expect(r).toMatchObject({ outcome: 'rejected', reason: 'insufficient_credits', available: '5', shortfall: '3' });
    expect(await wallet(c)).toMatchObject({ available: credits('5'), held: 0n });
    expect(await getHold(pool, c, r.workflowId.split(':')[2]!)).toBeNull();
  });

  it('bad update input is refused by validators before entering history', async () => {
    const c = await customer('10');
    const r = await reserve(c, '5');
    if (r.outcome !== 'placed') throw new Error('not placed');
    const handle = t.client.workflow.getHandle(reservationWorkflowId(c, r.hold.holdId));
    for (const bad of ['-1', '1e3', '0', 'abc']) {
      // The typed client refuses it before Temporal; the workflow's validator refuses it too.
      await expect(t.holds.capture(c, r.hold.holdId, bad)).rejects.toBeInstanceOf(DomainError);
      await expect(handle.executeUpdate(captureUpdate, { args: [{ amount: bad }] })).rejects.toMatchObject({
        cause: { message: expect.stringMatching(/amount/) },
      });
    }
    await expect(handle.executeUpdate(extendUpdate, { args: [{ expiresAt: 'tomorrow' }] })).rejects.toMatchObject({
      cause: { message: expect.stringMatching(/expiresAt/) },
    });
    const events = (await handle.fetchHistory()).events ?? [];
    const accepted = events.map((e) => e.workflowExecutionUpdateAcceptedEventAttributes?.acceptedRequest?.input?.name);
    expect(accepted.filter((n) => n && n !== 'place')).toEqual([]);
    await expect(t.holds.capture(c, r.hold.holdId, '6')).rejects.toMatchObject({ code: 'InvalidRequest' });
    await t.holds.release(c, r.hold.holdId);
  });

  it('100 concurrent holds on one wallet never hold more than it has', async () => {
    const c = await customer('50');
    const results = await Promise.all(Array.from({ length: 100 }, () => reserve(c, '1', 600)));
    expect(results.filter((r) => r.outcome === 'placed')).toHaveLength(50);
    expect(results.filter((r) => r.outcome === 'rejected')).toHaveLength(50);
    expect(await wallet(c)).toMatchObject({ available: 0n, held: credits('50') });
    expect(await findViolations(pool)).toEqual([]);
    await Promise.all(
      results.map((r) => (r.outcome === 'placed' ? t.holds.release(c, r.hold.holdId) : Promise.resolve(null))),
    );
  });

  it('a terminated hold is released by the sweeper once past its TTL, exactly once', async () => {
    const c = await customer('10');
    // A long TTL, so the workflow cannot release the hold itself before it is terminated.
    const r = await reserve(c, '6', 3600);
    if (r.outcome !== 'placed') throw new Error('not placed');
    await t.client.workflow.getHandle(r.workflowId).terminate('operator test');
    const sweep = () =>
      t.client.workflow.execute(holdSweeper, {
        taskQueue: t.taskQueue,
        workflowId: `sweep-${randomUUID()}`,
        args: [{ graceSeconds: 0 }],
      });
    const early = await sweep(); // not past its TTL yet: the sweeper leaves it alone
    expect(early.released.find((x) => x.customerId === c)).toBeUndefined();
    // Its TTL passes with no workflow to act on it (moved back instead of waited for).
    await pool.query(
      `UPDATE holds SET expires_at = date_trunc('milliseconds', now()) - interval '1 minute'
        WHERE customer_id = $1 AND id = $2`,
      [c, r.hold.holdId],
    );
    expect(await wallet(c)).toMatchObject({ held: credits('6') }); // stranded
    const first = await sweep();
    expect(first.released).toContainEqual({ customerId: c, holdId: r.hold.holdId, workflowStatus: 'TERMINATED' });
    const second = await sweep();
    expect(second.released.find((x) => x.customerId === c)).toBeUndefined();
    expect(await wallet(c)).toMatchObject({ available: credits('10'), held: 0n });
    expect(await holdTxCount(c, 'hold_release')).toBe(1);
  });

  it('a lot expiring while held stays reserved; what the hold releases from it expires', async () => {
    const id = `h-${randomUUID().slice(0, 8)}`;
    await createCustomer(pool, { id }, requestHash({ id }));
    // The hold must be placed before the lot expires: a margin for a loaded machine.
    const g = await ledger.grant(
      { customerId: id, key: `g:${id}`, requestHash: 'g' },
      { amount: credits('10'), kind: 'promotional', expiresAt: new Date(Date.now() + 5000) },
    );
    const r = await reserve(id, '6');
    expect(r).toMatchObject({ outcome: 'placed' });
    if (r.outcome !== 'placed') return;
    await sleep(Date.parse(g.result.lot.expiresAt!) - Date.now() + 500); // the lot expires while held
    expect((await t.holds.capture(id, r.hold.holdId, '2')).captured).toBe('2'); // the held part is still usable
    await t.holds.release(id, r.hold.holdId);
    const expired = await pool.query(
      `SELECT sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'expired'`,
      [id],
    );
    expect(expired.rows[0].s).toBe(credits('4').toString()); // released from an expired lot → expired
    expect(await wallet(id)).toMatchObject({ held: 0n, available: credits('4') }); // the unheld 4 await their expiry booking
    expect(await findViolations(pool)).toEqual([]);
  });

  it('the sweeper restarts a lifecycle that a grant could not notify, so overdue lots get booked', async () => {
    const id = `h-${randomUUID().slice(0, 8)}`;
    await createCustomer(pool, { id }, requestHash({ id }));
    const g = await ledger.grant(
      { customerId: id, key: `g:${id}`, requestHash: 'g' },
      { amount: credits('3'), kind: 'promotional', expiresAt: new Date(Date.now() + 1000) },
    ); // as if Temporal had been unreachable: no lifecycle workflow was started
    await sleep(Date.parse(g.result.lot.expiresAt!) - Date.now() + 500); // past its end, unbooked
    const swept = await t.client.workflow.execute(holdSweeper, {
      taskQueue: t.taskQueue,
      workflowId: `sweep-${randomUUID()}`,
      args: [{ graceSeconds: 0 }],
    });
    expect(swept.lifecyclesNudged).toContain(id);
    const status = async () =>
      (await pool.query<{ status: string }>(`SELECT status FROM credit_lots WHERE id = $1`, [g.result.lot.id])).rows[0]!
        .status;
    await until('lot expired', async () => ((await status()) === 'expired' ? true : undefined));
    await t.client.workflow.getHandle(`wallet:${id}`).terminate('test done');
  });

  it('a reservation workflow carries the CustomerId search attribute (visibility query)', async () => {
    const c = await customer('5');
    const r = await reserve(c, '1');
    if (r.outcome !== 'placed') throw new Error('not placed');
    const found = await until('listed by CustomerId', async () => {
      const ids: string[] = [];
      for await (const w of t.client.workflow.list({ query: `CustomerId = "${c}"` })) ids.push(w.workflowId);
      return ids.length > 0 ? ids : undefined;
    });
    expect(found).toEqual([r.workflowId]);
    await t.holds.release(c, r.hold.holdId);
  });

  it('a completed hold history replays without nondeterminism', async () => {
    const c = await customer('20');
    const r = await reserve(c, '10');
    if (r.outcome !== 'placed') throw new Error('not placed');
    await t.holds.capture(c, r.hold.holdId, '2');
    await t.holds.extend(c, r.hold.holdId, { ttlSeconds: 120 });
    await t.holds.settle(c, r.hold.holdId, '4');
    await result(c, r.hold.holdId);
    const history = await t.client.workflow.getHandle(r.workflowId).fetchHistory();
    await Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } },
      history,
      r.workflowId,
    );
  });
});
