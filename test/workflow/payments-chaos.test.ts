import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { PaymentsClient } from '../../client/payments';
import { TopUpTrigger } from '../../client/topups';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { purchaseWorkflowId, topUpWorkflowId } from '../../ledger/payments';
import { SandboxGateway } from '../../payments/sandbox';
import { autoTopUp, topUpStatusQuery, type TopUpStatus } from '../../workflows/topup';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { chaosSuite, sleep } from '../support/chaos';
import { moneyInProblems, outboxOf, paymentRows, purchasedLots, sandboxCharges } from '../support/payments';

/**
 * Payments chaos (issue 10): the real worker process SIGKILLs itself at a step boundary of the
 * purchase or the auto top-up workflow (CREDITFLOW_TEST_CRASH=<activity>:before|after); a clean
 * worker on the same task queue finishes the work. Whatever the kill point: one gateway charge per
 * payment, every charge with exactly one purchased lot of its amount and reference, one
 * notification per outcome.
 *
 * Bounded time: each case has its own task queue and all cases run at once (mostly waiting on the
 * killed activity's start-to-close timeout, 15–20 s), at most `startups` worker processes bundling
 * their workflows at a time. Recovery workers run in-process on the run's pre-built bundle.
 */
let pool: Pool;
let client: Client;
let admin: string;
let service: string;

/** Workflow ids the kill cases produced, for the replay test. */
const produced = new Map<string, Promise<string>>();
function produce(name: string): { resolve: (id: string) => void; reject: (e: unknown) => void } {
  let out!: { resolve: (id: string) => void; reject: (e: unknown) => void };
  const p = new Promise<string>((resolve, reject) => (out = { resolve, reject }));
  p.catch(() => undefined);
  produced.set(name, p);
  return out;
}

const { scenario, track, recoveryWorker, workerProcess, expectKilled } = chaosSuite({
  startups: 3,
  ready: async (c) => {
    ({ pool, client } = c);
    admin = await makeKey(pool, 'admin');
    service = await makeKey(pool, 'service');
  },
});

/** Polls until `ok` (bounded); returns the last value either way, so the assertion shows it. */
async function eventually<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 120_000): Promise<T | undefined> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn().catch(() => undefined);
    if ((v !== undefined && ok(v)) || Date.now() > deadline) return v;
    await sleep(500);
  }
}
/**
 * Gateway requests a pending payment made (one key for all): a kill after the charge re-runs the
 * charge step, which finds the first charge; a kill before the grant does too unless the charge's
 * workflow task had completed first (a local activity's result is recorded when its task
 * completes). After the grant a re-run still asks the gateway, but the payment is no longer pending.
 */
const gatewayRequests = (point: string): number[] =>
  point === 'chargePayment:after' ? [2] : point === 'grantPayment:before' ? [1, 2] : [1];
const queue = (name: string) => `pay-chaos-${name.replace(':', '-')}-${randomUUID().slice(0, 8)}`;

/** The API as api/main.ts composes it, on the case's task queue (no top-up trigger: `trigger: false`). */
async function apiFor(taskQueue: string, trigger = true): Promise<TestApi> {
  const payments = new PaymentsClient(client, taskQueue);
  const topUps = new TopUpTrigger(pool, () => Promise.resolve(client), taskQueue);
  return track(
    await startApi(pool, {
      payments: () => Promise.resolve(payments),
      gateway: new SandboxGateway(pool),
      ...(trigger ? { topUps } : {}),
    }),
  );
}

async function customer(api: TestApi, paymentMethod: string, grant?: string): Promise<string> {
  const id = `pc-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  if (grant) {
    const g = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
      key: admin,
      json: { amount: grant, kind: 'promotional' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(g.status).toBe(201);
  }
  const pm = await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, {
    key: service,
    json: { paymentMethod },
  });
  expect(pm.status).toBe(200);
  return id;
}
const available = async (api: TestApi, id: string) =>
  (await call(api.url, 'GET', `/v1/customers/${id}/balance`, { key: admin })).body.available as string;

// ---------------------------------------------------------------------------------------------
// Purchase: record → charge → grant

const PURCHASE_POINTS = [
  'recordPurchase:after',
  'chargePayment:before',
  'chargePayment:after',
  'grantPayment:before',
  'grantPayment:after',
] as const;
/** What the ledger and the gateway hold when the worker dies (the fault fired where intended). */
const PURCHASE_AT_DEATH: Record<(typeof PURCHASE_POINTS)[number], { payment: string; charges: number; lots: number }> =
  {
    'recordPurchase:after': { payment: 'pending', charges: 0, lots: 0 },
    'chargePayment:before': { payment: 'pending', charges: 0, lots: 0 },
    'chargePayment:after': { payment: 'pending', charges: 1, lots: 0 },
    'grantPayment:before': { payment: 'pending', charges: 1, lots: 0 },
    'grantPayment:after': { payment: 'succeeded', charges: 1, lots: 1 },
  };
const PRICE = { amountMinor: 1234, currency: 'USD' };

async function purchaseCase(point: (typeof PURCHASE_POINTS)[number]): Promise<void> {
  const out = produce(`purchase ${point}`);
  try {
    const taskQueue = queue(`pu-${point}`);
    const api = await apiFor(taskQueue);
    const c = await customer(api, 'pm_card_visa');
    const crashing = await workerProcess(taskQueue, point);
    const idem = randomUUID();
    const body = { credits: '250', price: PRICE };
    const post = () =>
      call(api.url, 'POST', `/v1/customers/${c}/purchases`, {
        key: service,
        json: body,
        headers: { 'idempotency-key': idem },
      });
    const first = post();
    await expectKilled(crashing);
    const rows = await paymentRows(pool, c, 'purchase');
    expect({
      payment: rows[0]?.status,
      charges: (await sandboxCharges(pool, c)).length,
      lots: (await purchasedLots(pool, c)).length,
    }).toEqual(PURCHASE_AT_DEATH[point]);

    const recovery = await recoveryWorker(taskQueue);
    // The API waits 10 s for the outcome; the retried step cannot have finished by then.
    const accepted = await first;
    expect([accepted.status, accepted.body.status]).toEqual([202, 'pending']);
    const purchaseId = accepted.body.purchaseId as string;
    const get = () => call(api.url, 'GET', `/v1/purchases/${purchaseId}?customerId=${c}`, { key: service });
    const done = await eventually(get, (r) => r.body.status !== 'pending');
    expect(done?.body.status).toBe('succeeded');

    const charges = await sandboxCharges(pool, c);
    expect(charges).toEqual([
      { id: expect.stringMatching(/^sbx_ch_/), key: expect.any(String), amountMinor: '1234', currency: 'USD' },
    ]);
    const charge = charges[0]!;
    const lots = await purchasedLots(pool, c);
    expect(lots).toEqual([{ id: done!.body.lotId, cost: '1234', currency: 'USD', reference: charge.id }]);
    // A killed charge attempt is retried (attempt 2), with the same gateway key.

    expect(await paymentRows(pool, c, 'purchase')).toEqual([
      {
        id: purchaseId,
        status: 'succeeded',
        amountMinor: '1234',
        gatewayKey: charge.key,
        reference: charge.id,
        lotId: lots[0]!.id,
        attempts: expect.any(Number),
      },
    ]);
    expect(gatewayRequests(point)).toContain((await paymentRows(pool, c, 'purchase'))[0]!.attempts);
    expect(done!.body).toMatchObject({ status: 'succeeded', payment: { gateway: 'sandbox', reference: charge.id } });
    const wf = purchaseWorkflowId(c, purchaseId);
    expect(await client.workflow.getHandle(wf).result()).toMatchObject({ status: 'succeeded', reference: charge.id });

    // The 202 was provisional: the same key now gets the final answer, then replays it.
    const replay = await post();
    expect([replay.status, replay.body.lot?.id]).toEqual([201, lots[0]!.id]);
    expect(replay.body).toEqual(done!.body);
    const again = await post();
    expect([again.status, again.headers.get('idempotent-replayed')]).toEqual([201, 'true']);
    expect(again.body).toEqual(replay.body);

    expect(await sandboxCharges(pool, c)).toHaveLength(1);
    expect(await outboxOf(pool, c)).toEqual([`purchase.succeeded:${purchaseId}`]);
    expect(await available(api, c)).toBe('250');
    expect(await moneyInProblems(pool, c)).toEqual([]);
    expect(await findViolations(pool)).toEqual([]);
    await recovery.stop();
    out.resolve(wf);
  } catch (err) {
    out.reject(err);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Auto top-up: plan → charge → grant (or fail)

type TopUpPoint = { crash: string; card: 'pm_card_visa' | 'pm_card_chargeDeclined' };
const TOPUP_POINTS: TopUpPoint[] = [
  ...['planTopUp', 'chargePayment', 'grantPayment'].flatMap((a) =>
    (['before', 'after'] as const).map((w) => ({ crash: `${a}:${w}`, card: 'pm_card_visa' as const })),
  ),
  { crash: 'failPayment:before', card: 'pm_card_chargeDeclined' },
  { crash: 'failPayment:after', card: 'pm_card_chargeDeclined' },
];
/** [topup payments, charges, lots] when the worker dies. */
const TOPUP_AT_DEATH: Record<string, [string[], number, number]> = {
  'planTopUp:before': [[], 0, 0],
  'planTopUp:after': [['pending'], 0, 0],
  'chargePayment:before': [['pending'], 0, 0],
  'chargePayment:after': [['pending'], 1, 0],
  'grantPayment:before': [['pending'], 1, 0],
  'grantPayment:after': [['succeeded'], 1, 1],
  'failPayment:before': [['pending'], 0, 0],
  'failPayment:after': [['failed'], 0, 0],
};

const topUpStatus = (c: string) =>
  client.withDeadline(Date.now() + 5000, () => client.workflow.getHandle(topUpWorkflowId(c)).query(topUpStatusQuery));
/** The workflow looked again after its last top-up and found nothing to do (it idles for a day). */
const settled = (s: TopUpStatus) => s.status === 'idle' && s.lastPlan !== null && s.lastPlan !== 'charge';

async function topUpCase(p: TopUpPoint): Promise<void> {
  const out = produce(`topup ${p.crash}`);
  try {
    const taskQueue = queue(`tu-${p.crash}`);
    const api = await apiFor(taskQueue);
    const c = await customer(api, p.card, '10');
    const crashing = await workerProcess(taskQueue, p.crash);
    // Below the threshold already: the PUT signals-with-start the wallet's workflow.
    const rule = await call(api.url, 'PUT', `/v1/customers/${c}/auto-topup`, {
      key: admin,
      json: {
        enabled: true,
        threshold: '50',
        mode: 'fixed',
        credits: '100',
        unitPrice: { amountMinor: '1', currency: 'USD' },
        cooldownSeconds: 1,
        maxAttempts: p.card === 'pm_card_visa' ? 4 : 2,
      },
    });
    expect(rule.status).toBe(200);
    await expectKilled(crashing);
    expect([
      (await paymentRows(pool, c, 'topup')).map((r) => r.status),
      (await sandboxCharges(pool, c)).length,
      (await purchasedLots(pool, c)).length,
    ]).toEqual(TOPUP_AT_DEATH[p.crash]);

    const recovery = await recoveryWorker(taskQueue);
    const s = await eventually(() => topUpStatus(c), settled);
    expect(s && settled(s)).toBe(true);

    const payments = await paymentRows(pool, c, 'topup');
    const charges = await sandboxCharges(pool, c);
    const lots = await purchasedLots(pool, c);
    if (p.card === 'pm_card_visa') {
      expect(s!.lastPlan).toBe('above_threshold');
      expect(charges).toEqual([
        { id: expect.any(String), key: expect.any(String), amountMinor: '100', currency: 'USD' },
      ]);
      expect(lots).toEqual([{ id: expect.any(String), cost: '100', currency: 'USD', reference: charges[0]!.id }]);

      expect(payments).toEqual([
        {
          id: 'topup_1',
          status: 'succeeded',
          amountMinor: '100',
          gatewayKey: charges[0]!.key,
          reference: charges[0]!.id,
          lotId: lots[0]!.id,
          attempts: expect.any(Number),
        },
      ]);
      expect(gatewayRequests(p.crash)).toContain(payments[0]!.attempts);
      expect(await outboxOf(pool, c)).toEqual(['topup.succeeded:topup_1']);
      expect(await available(api, c)).toBe('110');
    } else {
      // A decline is final: two top-ups (maxAttempts 2), each failed once, then the rule is off.
      expect(s!.lastPlan).toBe('max_attempts');
      expect([charges, lots]).toEqual([[], []]);
      expect(payments.map((r) => [r.id, r.status, r.reference])).toEqual([
        ['topup_1', 'failed', null],
        ['topup_2', 'failed', null],
      ]);
      expect(await outboxOf(pool, c)).toEqual([
        'topup.failed:topup_1',
        'topup.failed:topup_2',
        'topup.disabled:topup_2',
      ]);
      const r = await call(api.url, 'GET', `/v1/customers/${c}/auto-topup`, { key: admin });
      expect(r.body).toMatchObject({
        enabled: false,
        state: { disabledReason: 'max_attempts', consecutiveFailures: 2 },
      });
      expect(await available(api, c)).toBe('10');
    }
    expect(await moneyInProblems(pool, c)).toEqual([]);
    expect(await findViolations(pool)).toEqual([]);
    await recovery.stop();
    out.resolve(topUpWorkflowId(c));
  } catch (err) {
    out.reject(err);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Replay: the histories these workflows produced replay against today's code

const replay = (history: Parameters<typeof Worker.runReplayHistory>[1], id: string) =>
  Worker.runReplayHistory({ workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } }, history, id);

async function replayCase(): Promise<void> {
  // A top-up that charges, waits out its cooldown and continues as new (maxPlans 2).
  const taskQueue = queue('replay');
  const api = await apiFor(taskQueue, false); // no trigger: this test starts the workflow itself
  const recovery = await recoveryWorker(taskQueue);
  const c = await customer(api, 'pm_card_visa', '10');
  const put = await call(api.url, 'PUT', `/v1/customers/${c}/auto-topup`, {
    key: admin,
    json: {
      enabled: true,
      threshold: '50',
      mode: 'fixed',
      credits: '100',
      unitPrice: { amountMinor: '1', currency: 'USD' },
      cooldownSeconds: 2,
    },
  });
  expect(put.status).toBe(200);
  const wf = topUpWorkflowId(c);
  const h = await client.workflow.start(autoTopUp, {
    workflowId: wf,
    taskQueue,
    args: [{ customerId: c, triggered: true, maxPlans: 2, idleMs: 1000 }],
  });
  const final = await h.result(); // follows the continued run to its end (idle 1 s)
  expect(final.lastPlan).toBe('above_threshold');
  const first = await client.workflow.getHandle(wf, h.firstExecutionRunId).fetchHistory();
  const events = first.events ?? [];
  // Payment steps are local activities: each is a marker in history naming its activity type.
  const activities = events
    .map((e) => e.markerRecordedEventAttributes?.details?.data?.payloads?.[0]?.data)
    .filter((d): d is Uint8Array => !!d)
    .map((d) => JSON.parse(Buffer.from(d).toString()) as { activityType?: string; activity_type?: string })
    .map((m) => m.activityType ?? m.activity_type)
    .filter((n): n is string => !!n);
  expect(activities).toEqual(['planTopUp', 'chargePayment', 'grantPayment', 'planTopUp']);
  expect(events.some((e) => e.timerStartedEventAttributes)).toBe(true); // the cooldown
  expect(events.some((e) => e.workflowExecutionContinuedAsNewEventAttributes)).toBe(true);
  expect(await sandboxCharges(pool, c)).toHaveLength(1);
  expect(await moneyInProblems(pool, c)).toEqual([]);
  await recovery.stop();

  await replay(first, wf);
  await replay(await client.workflow.getHandle(wf).fetchHistory(), wf);
  // Histories with a killed worker's workflow task timeout and the local activity run again.
  for (const name of ['purchase chargePayment:after', 'topup chargePayment:after']) {
    const id = await produced.get(name)!;
    await replay(await client.workflow.getHandle(id).fetchHistory(), id);
  }
}

describe('payments chaos: SIGKILL the worker, a clean worker finishes', () => {
  for (const p of TOPUP_POINTS)
    scenario(
      `top-up, ${p.card}, ${p.crash}: never two charges, never a charge without its lot, one notification each`,
      () => topUpCase(p),
      200_000,
    );
  for (const p of PURCHASE_POINTS)
    scenario(
      `purchase, ${p}: 202 then succeeded, one charge, one lot of its cost and reference, replay 201`,
      () => purchaseCase(p),
      200_000,
    );
  scenario(
    'replay: purchase and top-up histories (charge, cooldown, continue-as-new) replay deterministically',
    replayCase,
    220_000,
  );
});
