import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import type { Worker } from '@temporalio/worker';
import { notifyTopUp, TopUpTrigger } from '../../client/topups';
import { credits } from '../../domain/amount';
import { getCustomer } from '../../db/customers';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { getRule, putRule, type TopUpSettings } from '../../db/topup-rules';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { topUpWorkflowId } from '../../ledger/payments';
import { requestHash } from '../../lib/hash';
import { SandboxGateway } from '../../payments/sandbox';
import { createWorker } from '../../worker/worker';
import { topUpStatusQuery } from '../../workflows/topup';
import { freshDatabase } from '../support/db';
import { ROOT } from '../support/paths';
import { quietRuntime } from '../support/quiet-runtime';

/**
 * Auto top-up's cooldown and daily cap on the time-skipping test server: a real worker with the
 * sandbox gateway and real Postgres; the workflow's clock (hence the plan's `asOf`, the payments'
 * created_at and cooldown_until) is the skipped one.
 */
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let env: TestWorkflowEnvironment;
let worker: Worker;
let running: Promise<void>;
let trigger: TopUpTrigger;
const taskQueue = `topup-time-${randomUUID()}`;

beforeAll(async () => {
  quietRuntime();
  db = await freshDatabase();
  pool = db.pool;
  const local = path.join(ROOT, '.tools', 'bin', 'temporal-test-server');
  const bin = process.env.TEMPORAL_TEST_SERVER_BIN || (existsSync(local) ? local : '');
  env = await TestWorkflowEnvironment.createTimeSkipping(
    bin ? { server: { executable: { type: 'existing-path', path: bin } } } : {},
  );
  // The production trigger, minus search attributes (the test server has none registered).
  trigger = new TopUpTrigger(pool, () => Promise.resolve(env.client), taskQueue, {
    searchAttributes: false,
    timeoutMs: 30_000,
  });
  worker = await createWorker({
    connection: env.nativeConnection,
    namespace: 'default',
    taskQueue,
    pool,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    gateway: new SandboxGateway(pool),
    topUps: trigger,
  });
  running = worker.run();
});
afterAll(async () => {
  worker?.shutdown();
  await running;
  await env?.teardown();
  await db.drop();
});

const virtualNow = async () => env.currentTimeMs();
/** Skips the test server's clock to `at` (ms); timers due on the way fire at their own time. */
async function skipTo(at: number) {
  const now = await virtualNow();
  if (at > now) await env.sleep(at - now);
}
/** The next UTC midnight (virtual) plus `offset`: so a test's day never crosses midnight by accident. */
const nextUtcDay = async (offset: number) => (Math.floor((await virtualNow()) / DAY) + 1) * DAY + offset;

async function customer(rule: Partial<TopUpSettings>) {
  const c = `tt-${randomUUID().slice(0, 8)}`;
  await createCustomer(pool, { id: c }, requestHash({ id: c }));
  await putRule(pool, c, settings(rule));
  return c;
}
const settings = (rule: Partial<TopUpSettings>): TopUpSettings => ({
  enabled: true,
  threshold: credits('100'),
  mode: 'fixed',
  credits: credits('500'),
  unitPrice: '1',
  currency: 'USD',
  paymentMethod: 'pm_card_visa',
  cooldownSeconds: 3600,
  maxPerDay: 10,
  maxAttempts: 4,
  ...rule,
});
const available = async (c: string) => (await getCustomer(pool, c))!.wallet.available;
const topUps = async (c: string) =>
  (
    await pool.query<{ id: string; status: string; created_at: Date; payment_reference: string }>(
      `SELECT id, status, created_at, payment_reference FROM payments
       WHERE customer_id = $1 AND source = 'topup' ORDER BY created_at`,
      [c],
    )
  ).rows;
/** The sandbox's own record of money taken, each with the lot it bought (if any). */
const charges = async (c: string) =>
  (
    await pool.query<{ id: string; amount_minor: string; lots: number }>(
      `SELECT s.id, s.amount_minor::text,
              (SELECT count(*)::int FROM credit_lots l WHERE l.payment_reference = s.id
                 AND l.cost_amount_minor = s.amount_minor AND l.kind = 'purchased') AS lots
         FROM sandbox_charges s WHERE s.customer_id = $1 ORDER BY s.created_at`,
      [c],
    )
  ).rows;
const outbox = async (c: string) =>
  (
    await pool.query<{ type: string }>('SELECT type FROM outbox_events WHERE customer_id = $1 ORDER BY id', [c])
  ).rows.map((r) => r.type);
const status = (c: string) => env.client.workflow.getHandle(topUpWorkflowId(c)).query(topUpStatusQuery);
const gapsSeconds = (rows: { created_at: Date }[]) =>
  rows.slice(1).map((r, i) => (r.created_at.getTime() - rows[i]!.created_at.getTime()) / 1000);
const utcDay = (d: Date) => d.toISOString().slice(0, 10);

describe('auto top-up over skipped time (time-skipping server, sandbox gateway)', () => {
  it('a wallet drained every 5 minutes for 3 hours gets one top-up per 1-hour cooldown: exactly 4', async () => {
    const start = await nextUtcDay(HOUR);
    await skipTo(start);
    const c = await customer({ cooldownSeconds: 3600, maxPerDay: 10 });
    const ledger = new Ledger(pool);
    // Minutes 0, 5, …, 175: drain the wallet to 0 and signal, as the debit path does.
    for (let step = 0; step < 36; step++) {
      await skipTo(start + step * 5 * MIN);
      const a = await available(c);
      if (a > 0n) await ledger.debit({ customerId: c, key: `d:${c}:${step}`, requestHash: 'd' }, { amount: a });
      expect(await trigger.signalBelowThreshold([c])).toEqual([c]);
    }
    // No debit after minute 175: the top-up due when the cooldown ends at ~180 min is the last.
    await skipTo(start + 5 * HOUR);
    expect(await status(c)).toMatchObject({ status: 'idle', lastPlan: 'above_threshold' });

    // Top-ups at ~0, 60, 120, 180 min: the wallet was below threshold throughout, so each came the
    // moment the cooldown (cooldown_until = asOf + 3600 s) ended, never earlier.
    const rows = await topUps(c);
    expect(rows.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded']);
    for (const gap of gapsSeconds(rows)) {
      expect(gap).toBeGreaterThanOrEqual(3600);
      expect(gap).toBeLessThan(3600 + 60);
    }
    expect(rows[0]!.created_at.getTime() - start).toBeLessThan(MIN);
    const ch = await charges(c);
    expect(ch.map((x) => [x.amount_minor, x.lots])).toEqual(Array(4).fill(['500', 1]));
    expect(ch.map((x) => x.id).sort()).toEqual(rows.map((r) => r.payment_reference).sort());
    expect(await outbox(c)).toEqual(Array(4).fill('topup.succeeded'));
    // Nothing drains it after the last top-up: 500 credits left, 4 × 500 − 1,500 debited.
    expect(await available(c)).toBe(credits('500'));
    const debited = await pool.query(
      `SELECT COALESCE(sum(-amount), 0)::text AS s FROM ledger_entries e JOIN ledger_transactions t
         ON t.id = e.transaction_id WHERE t.customer_id = $1 AND t.type = 'debit' AND e.account = 'available'`,
      [c],
    );
    expect(debited.rows[0].s).toBe(credits('1500').toString());
    expect(await findViolations(pool)).toEqual([]);
  }, 300_000);

  // Tests 2 and 3 share one wallet: day 1 hits the cap, day 2 starts counting again.
  let capped = '';
  let day1 = 0;

  it('maxPerDay 3, cooldown 10 min, wallet stuck below threshold: 3 top-ups, then disabled with one topup.burst', async () => {
    day1 = await nextUtcDay(HOUR);
    await skipTo(day1);
    // Each top-up (10 credits) leaves the wallet far below its threshold (1,000): a runaway rule.
    capped = await customer({
      threshold: credits('1000'),
      credits: credits('10'),
      cooldownSeconds: 600,
      maxPerDay: 3,
    });
    expect(await trigger.signalBelowThreshold([capped])).toEqual([capped]);
    await skipTo(day1 + 2 * HOUR);

    const rows = await topUps(capped);
    expect(rows.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    for (const gap of gapsSeconds(rows)) {
      expect(gap).toBeGreaterThanOrEqual(600);
      expect(gap).toBeLessThan(600 + 60);
    }
    expect(rows.map((r) => utcDay(r.created_at))).toEqual(Array(3).fill(utcDay(new Date(day1))));
    expect((await charges(capped)).map((x) => [x.amount_minor, x.lots])).toEqual(Array(3).fill(['10', 1]));
    expect(await getRule(pool, capped)).toMatchObject({ enabled: false, disabledReason: 'max_per_day' });
    expect(await outbox(capped)).toEqual([...Array(3).fill('topup.succeeded'), 'topup.burst']);
    expect(await available(capped)).toBe(credits('30'));

    // Disabled: the trigger no longer signals it, and a forced signal plans nothing.
    expect(await trigger.signalBelowThreshold([capped])).toEqual([]);
    await notifyTopUp(env.client, taskQueue, capped, { searchAttributes: false, timeoutMs: 30_000 });
    await skipTo(day1 + 3 * HOUR);
    expect(await status(capped)).toMatchObject({ status: 'idle', lastPlan: 'max_per_day' });
    expect(await charges(capped)).toHaveLength(3);
  }, 300_000);

  it('re-enabled (PUT) the next UTC day: top-ups resume and count from 0, up to the cap again', async () => {
    expect(capped).not.toBe('');
    const day2 = (Math.floor(day1 / DAY) + 1) * DAY + 5 * MIN;
    await skipTo(day2);
    await putRule(
      pool,
      capped,
      settings({ threshold: credits('1000'), credits: credits('10'), cooldownSeconds: 600, maxPerDay: 3 }),
    );
    expect(await trigger.signalBelowThreshold([capped])).toEqual([capped]);
    await skipTo(day2 + 2 * HOUR);

    const rows = await topUps(capped);
    const byDay = (d: number) => rows.filter((r) => utcDay(r.created_at) === utcDay(new Date(d)));
    expect(byDay(day1)).toHaveLength(3);
    expect(byDay(day2).map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(byDay(day2)[0]!.created_at.getTime() - day2).toBeLessThan(MIN);
    expect((await charges(capped)).map((x) => [x.amount_minor, x.lots])).toEqual(Array(6).fill(['10', 1]));
    expect(await getRule(pool, capped)).toMatchObject({ enabled: false, disabledReason: 'max_per_day' });
    // One burst per UTC day.
    const bursts = await pool.query<{ day: string }>(
      `SELECT payload->>'day' AS day FROM outbox_events WHERE customer_id = $1 AND type = 'topup.burst' ORDER BY id`,
      [capped],
    );
    expect(bursts.rows.map((r) => r.day)).toEqual([utcDay(new Date(day1)), utcDay(new Date(day2))]);
    expect(await available(capped)).toBe(credits('60'));
    expect(await findViolations(pool)).toEqual([]);
  }, 300_000);
});
