import { randomUUID } from 'node:crypto';
import type { Client } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { PaymentsClient } from '../../client/payments';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { refundWorkflowId } from '../../ledger/refunds';
import { SandboxGateway } from '../../payments/sandbox';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { chaosSuite } from '../support/chaos';
import {
  lotFlows,
  lotState,
  mc,
  refundOutbox,
  refundState,
  refundTransactions,
  sandboxRefundsByKey,
} from '../support/refunds';

/**
 * Refund chaos: the real worker process SIGKILLs itself at a step boundary of the refund saga
 * (CREDITFLOW_TEST_CRASH=<activity>:before|after); a clean in-process worker on the same task
 * queue finishes it. Whatever the kill point: one claw-back transaction, one gateway refund under
 * the refund's id (or none, and one compensation, when the card refuses refunds), one outcome.
 *
 * Bounded: each case has its own task queue and all run at once, mostly waiting out the killed
 * workflow task's timeout (10 s); at most `startups` worker processes bundle their workflows at once.
 */
let pool: Pool;
let client: Client;
let admin: string;
let support: string;
let shop: TestApi; // purchases, on their own queue and worker
/** Refund ids the kill cases produced, for the replay test. */
const produced: Promise<string>[] = [];

const {
  scenario,
  track,
  recoveryWorker: worker,
  workerProcess: crashingWorker,
  expectKilled,
} = chaosSuite({
  startups: 2,
  ready: async (c) => {
    ({ pool, client } = c);
    admin = await makeKey(pool, 'admin');
    support = await makeKey(pool, 'support');
    const shopQueue = `refund-chaos-shop-${randomUUID().slice(0, 8)}`;
    shop = await apiFor(shopQueue);
    await worker(shopQueue);
  },
});

async function apiFor(taskQueue: string): Promise<TestApi> {
  const payments = new PaymentsClient(client, taskQueue);
  return track(await startApi(pool, { payments: () => Promise.resolve(payments), gateway: new SandboxGateway(pool) }));
}

/** A customer who bought 300 credits for 1000 minor units with `paymentMethod`. */
async function bought(paymentMethod: string) {
  const id = `rc-${randomUUID().slice(0, 8)}`;
  expect((await call(shop.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  await call(shop.url, 'PUT', `/v1/customers/${id}/payment-method`, { key: admin, json: { paymentMethod } });
  const p = await call(shop.url, 'POST', `/v1/customers/${id}/purchases`, {
    key: admin,
    json: { credits: '300', price: { amountMinor: 1000, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(p.status).toBe(201);
  return { id, lotId: p.body.lot.id as string };
}

interface Point {
  crash: string;
  card: 'pm_card_visa' | 'pm_card_refundFails';
  /** [refund status, claw-back transactions, sandbox refunds] when the worker dies. */
  atDeath: [string, number, number];
}
const POINTS: Point[] = [
  { crash: 'clawBackRefund:after', card: 'pm_card_visa', atDeath: ['pending', 1, 0] },
  { crash: 'refundPayment:after', card: 'pm_card_visa', atDeath: ['pending', 1, 1] },
  { crash: 'recordRefund:before', card: 'pm_card_visa', atDeath: ['pending', 1, 1] },
  { crash: 'compensateRefund:after', card: 'pm_card_refundFails', atDeath: ['failed', 1, 0] },
];

async function killCase(p: Point): Promise<void> {
  let done!: (id: string) => void;
  let fail!: (e: unknown) => void;
  const out = new Promise<string>((resolve, reject) => ((done = resolve), (fail = reject)));
  out.catch(() => undefined);
  produced.push(out);
  try {
    const taskQueue = `refund-chaos-${p.crash.replace(':', '-')}-${randomUUID().slice(0, 8)}`;
    const api = await apiFor(taskQueue);
    const c = await bought(p.card);
    const crashing = await crashingWorker(taskQueue, p.crash);
    const r = await call(api.url, 'POST', '/v1/refunds', {
      key: support,
      json: { customerId: c.id, lotId: c.lotId, credits: '100', reason: 'chaos' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(r.status).toBe(202);
    const refundId = r.body.refundId as string;
    await expectKilled(crashing);
    // The fault fired where intended.
    const clawbacks = async () =>
      (await refundTransactions(pool, refundId)).filter((x) => x.type === 'refund_clawback').length;
    expect([
      (await refundState(pool, refundId))?.status,
      await clawbacks(),
      (await sandboxRefundsByKey(pool, refundId)).length,
    ]).toEqual(p.atDeath);

    await worker(taskQueue);
    const outcome = await client.workflow.getHandle(refundWorkflowId(refundId)).result();
    const txs = (await refundTransactions(pool, refundId)).map((x) => [x.type, x.key]);
    const lot = await lotState(pool, c.lotId);
    const flows = await lotFlows(pool, c.lotId);
    if (p.card === 'pm_card_visa') {
      expect(outcome).toMatchObject({ status: 'succeeded', credits: '100', moneyMinor: '333' });
      expect(txs).toEqual([['refund_clawback', `refund:${refundId}:clawback`]]);
      expect((await sandboxRefundsByKey(pool, refundId)).map((x) => x.amountMinor)).toEqual(['333']);
      expect(await refundOutbox(pool, refundId)).toEqual(['refund.succeeded']);
      expect([lot.remaining, flows.refunded]).toEqual([mc(200), mc(100)]);
      expect(await refundState(pool, refundId)).toMatchObject({ status: 'succeeded', money: '333' });
    } else {
      expect(outcome).toMatchObject({ status: 'failed', creditsRestored: '100' });
      expect(txs).toEqual([
        ['refund_clawback', `refund:${refundId}:clawback`],
        ['refund_compensation', `refund:${refundId}:compensation`],
      ]);
      expect(await sandboxRefundsByKey(pool, refundId)).toEqual([]);
      expect(await refundOutbox(pool, refundId)).toEqual(['refund.failed']);
      expect([lot.remaining, flows.refunded ?? 0n]).toEqual([mc(300), 0n]);
    }
    expect(await findViolations(pool)).toEqual([]);
    done(refundId);
  } catch (err) {
    fail(err);
    throw err;
  }
}

const replay = (history: Parameters<typeof Worker.runReplayHistory>[1], id: string) =>
  Worker.runReplayHistory({ workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! } }, history, id);

async function replayCase(): Promise<void> {
  // A clean refund's history, then those with a killed worker's timed-out workflow task.
  const c = await bought('pm_card_visa');
  const r = await call(shop.url, 'POST', '/v1/refunds', {
    key: support,
    json: { customerId: c.id, lotId: c.lotId, reason: 'replay' },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(202);
  const ids = [r.body.refundId as string, ...(await Promise.all(produced))];
  for (const id of ids) {
    const h = client.workflow.getHandle(refundWorkflowId(id));
    await h.result();
    await replay(await h.fetchHistory(), refundWorkflowId(id));
  }
}

describe('refund chaos: SIGKILL the worker, a clean worker finishes', () => {
  for (const p of POINTS)
    scenario(
      `${p.card}, ${p.crash}: one claw-back, ${p.card === 'pm_card_visa' ? 'one gateway refund, refund.succeeded once' : 'one compensation, refund.failed once'}`,
      () => killCase(p),
      85_000,
    );
  scenario('replay: a clean refund and the killed ones replay deterministically', replayCase, 85_000);
});
