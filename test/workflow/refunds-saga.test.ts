import { randomUUID } from 'node:crypto';
import { WorkflowFailedError } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { refundWorkflowId } from '../../ledger/refunds';
import type { PaymentGateway, Refund, RefundRequest } from '../../payments/gateway';
import { GatewayError } from '../../payments/gateway';
import { SandboxGateway } from '../../payments/sandbox';
import { refundStatusQuery } from '../../workflows/refund';
import { createWorker } from '../../worker/worker';
import { call, makeKey, snapshotTables, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import {
  eventually,
  lotFlows,
  lotState,
  mc,
  refundOutbox,
  refundState,
  refundTransactions,
  sandboxRefunded,
  sandboxRefundsByKey,
} from '../support/refunds';
import { temporalHarness } from '../support/temporal';

/**
 * The refund saga on real Temporal + Postgres + the sandbox gateway, checked from the ledger's
 * entries, the lots and the sandbox's own refund table. The worker's gateway is the sandbox behind
 * a gate, so a test can hold a refund at the gateway step (to cancel the workflow there).
 */

/** Holds the gateway refund of one charge until the test says how it ends. */
class GatedSandbox implements PaymentGateway {
  readonly name = 'sandbox' as const;
  private readonly gates = new Map<
    string,
    { entered: () => void; release: Promise<'proceed' | 'fail'>; open: (how: 'proceed' | 'fail') => void }
  >();
  constructor(private readonly inner: SandboxGateway) {}

  /** Returns `entered` (the saga reached the gateway) and `open` (let the call proceed or fail). */
  hold(chargeReference: string) {
    let entered!: () => void;
    const reached = new Promise<void>((r) => (entered = r));
    let open!: (how: 'proceed' | 'fail') => void;
    const release = new Promise<'proceed' | 'fail'>((r) => (open = r));
    this.gates.set(chargeReference, { entered, release, open });
    return { reached, open };
  }
  openAll() {
    for (const g of this.gates.values()) g.open('fail');
  }
  acceptsPaymentMethod(pm: string) {
    return this.inner.acceptsPaymentMethod(pm);
  }
  charge(req: Parameters<PaymentGateway['charge']>[0]) {
    return this.inner.charge(req);
  }
  findCharge(q: Parameters<PaymentGateway['findCharge']>[0]) {
    return this.inner.findCharge(q);
  }
  findRefund(q: Parameters<PaymentGateway['findRefund']>[0]) {
    return this.inner.findRefund(q);
  }
  async refund(req: RefundRequest): Promise<Refund> {
    const gate = this.gates.get(req.chargeReference);
    if (gate) {
      gate.entered();
      if ((await gate.release) === 'fail')
        throw new GatewayError('retryable', 'api_connection_error', 'the connection to the gateway was lost');
    }
    return this.inner.refund(req);
  }
}

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let t: Awaited<ReturnType<typeof temporalHarness>>;
let native: NativeConnection;
let gated: GatedSandbox;
let worker: Worker;
let running: Promise<void>;
let api: TestApi;
let admin: string;
let support: string;
let service: string;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  t = await temporalHarness(pool);
  native = await NativeConnection.connect({ address: t.address });
  gated = new GatedSandbox(new SandboxGateway(pool));
  worker = await createWorker({
    connection: native,
    namespace: 'default',
    taskQueue: t.taskQueue,
    pool,
    workflowBundle: { codePath: process.env.TEST_WORKFLOW_BUNDLE! },
    temporal: () => Promise.resolve(t.client),
    gateway: gated,
    topUps: t.topUps,
  });
  running = worker.run();
  api = await startApi(pool, { payments: () => Promise.resolve(t.payments), gateway: t.gateway });
  admin = await makeKey(pool, 'admin');
  support = await makeKey(pool, 'support');
  service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, admin);
});
afterAll(async () => {
  gated?.openAll();
  await api?.close();
  worker?.shutdown();
  await running;
  await native?.close();
  await t?.close();
  await db?.drop();
});

async function newCustomer(): Promise<string> {
  const id = `rs-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  return id;
}
/** A customer with one purchased lot of `credits`, paid `amountMinor` through the sandbox. */
async function bought(credits: string, amountMinor: number, paymentMethod = 'pm_card_visa') {
  const id = await newCustomer();
  await call(api.url, 'PUT', `/v1/customers/${id}/payment-method`, { key: admin, json: { paymentMethod } });
  const p = await call(api.url, 'POST', `/v1/customers/${id}/purchases`, {
    key: admin,
    json: { credits, price: { amountMinor, currency: 'USD' } },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(p.status).toBe(201);
  return { id, lotId: p.body.lot.id as string, charge: p.body.payment.reference as string };
}
async function granted(id: string, json: Record<string, unknown>): Promise<string> {
  const g = await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
    key: admin,
    json,
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(g.status).toBe(201);
  return g.body.lot.id as string;
}
const refund = (json: Record<string, unknown>, idem: string = randomUUID()) =>
  call(api.url, 'POST', '/v1/refunds', {
    key: support,
    json: { reason: 'customer cancelled', ...json },
    headers: { 'idempotency-key': idem },
  });
/** The saga's end (its result or failure) and the API's view of the refund. */
async function settled(refundId: string) {
  const outcome = await t.client.workflow
    .getHandle(refundWorkflowId(refundId))
    .result()
    .catch((err: unknown) => err);
  const view = await call(api.url, 'GET', `/v1/refunds/${refundId}`, { key: admin });
  expect(view.status).toBe(200);
  return { outcome, view: view.body };
}
const usage = (id: string, credits: number) =>
  call(api.url, 'POST', '/v1/events', {
    key: service,
    json: { events: [{ id: randomUUID(), customerId: id, meter: 'tokens', quantity: String(credits * 1000) }] },
  });
const walletArrears = async (id: string) =>
  BigInt(
    (await pool.query<{ a: string }>('SELECT arrears::text AS a FROM wallets WHERE customer_id = $1', [id])).rows[0]!.a,
  );
const usageTotal = async (id: string) =>
  BigInt(
    (
      await pool.query<{ s: string }>(
        'SELECT COALESCE(sum(credits), 0)::text AS s FROM usage_events WHERE customer_id = $1',
        [id],
      )
    ).rows[0]!.s,
  );
/** Where every credit of the lot went, from the ledger entries: refunded + consumed + left = original. */
async function expectLotAccounted(lotId: string) {
  const lot = await lotState(pool, lotId);
  const f = await lotFlows(pool, lotId);
  expect(lot.remaining).toBeGreaterThanOrEqual(0n);
  expect([f.available ?? 0n, f.held ?? 0n]).toEqual([lot.remaining, lot.held]);
  expect((f.refunded ?? 0n) + (f.consumed ?? 0n) + lot.remaining + lot.held).toBe(lot.original);
  return { lot, refunded: f.refunded ?? 0n, consumed: f.consumed ?? 0n };
}
const cost = (paid: bigint, credits: bigint, original: bigint) => (paid * credits) / original;

describe('refund saga (sandbox, in-process worker)', () => {
  it('a whole untouched lot: every credit back and exactly what was paid, once at the gateway', async () => {
    const c = await bought('7', 1001);
    const r = await refund({ customerId: c.id, lotId: c.lotId });
    expect(r.status).toBe(202);
    const { outcome, view } = await settled(r.body.refundId);
    expect(outcome).toMatchObject({ status: 'succeeded', credits: '7', moneyMinor: '1001' });
    expect(view).toMatchObject({ status: 'succeeded', creditsClawedBack: '7', moneyRefunded: { amountMinor: 1001 } });
    expect((await sandboxRefundsByKey(pool, r.body.refundId)).map((x) => [x.chargeId, x.amountMinor])).toEqual([
      [c.charge, '1001'],
    ]);
    expect(await sandboxRefunded(pool, c.charge)).toBe('1001');
    const { lot, refunded } = await expectLotAccounted(c.lotId);
    expect([lot.remaining, lot.status, refunded]).toEqual([0n, 'refunded', mc(7)]);
    expect(await refundOutbox(pool, r.body.refundId)).toEqual(['refund.succeeded']);
    expect(await findViolations(pool)).toEqual([]);
  });

  it('held credits are not refundable; the rest later adds up to the whole to the minor unit', async () => {
    const c = await bought('100', 999);
    const hold = await t.holds.reserve({ customerId: c.id, holdId: randomUUID(), amount: '30', ttlSeconds: 600 });
    if (hold.outcome !== 'placed') throw new Error(`hold refused: ${hold.reason}`);
    expect(await lotState(pool, c.lotId)).toMatchObject({ remaining: mc(70), held: mc(30) });
    const tooMuch = await refund({ customerId: c.id, lotId: c.lotId, credits: '71' });
    expect([tooMuch.status, tooMuch.body.code, tooMuch.body.refundable]).toEqual([422, 'NotRefundable', '70']);

    const first = await refund({ customerId: c.id, lotId: c.lotId }); // omitted: all that is unheld
    const a = await settled(first.body.refundId);
    expect(a.view).toMatchObject({
      status: 'succeeded',
      creditsRequested: null,
      creditsClawedBack: '70',
      moneyRefunded: { amountMinor: Number(cost(999n, 70n, 100n)) }, // 699
    });
    // The hold's credits stayed on the lot; the lot is not "refunded" while they are held.
    expect(await lotState(pool, c.lotId)).toMatchObject({ remaining: 0n, held: mc(30), status: 'active' });

    await t.holds.release(c.id, hold.hold.holdId);
    const second = await refund({ customerId: c.id, lotId: c.lotId });
    const b = await settled(second.body.refundId);
    // Cumulative: floor(999 × 100 / 100) − 699 = 300.
    expect(b.view).toMatchObject({ status: 'succeeded', creditsClawedBack: '30', moneyRefunded: { amountMinor: 300 } });
    expect(await sandboxRefunded(pool, c.charge)).toBe('999');
    const { lot, refunded } = await expectLotAccounted(c.lotId);
    expect([lot.remaining, lot.held, lot.status, refunded]).toEqual([0n, 0n, 'refunded', mc(100)]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it('50 usage events fired with the refund: the lot never goes negative, refunded + consumed + left = original', async () => {
    const c = await bought('100', 1000);
    const [r, ...events] = await Promise.all([
      refund({ customerId: c.id, lotId: c.lotId }),
      ...Array.from({ length: 50 }, () => usage(c.id, 1)),
    ]);
    expect(events.map((e) => e.status).filter((s) => s >= 300)).toEqual([]);
    expect(r.status).toBe(202);
    const { outcome, view } = await settled(r.body.refundId);
    expect(outcome).toMatchObject({ status: 'succeeded' });
    const { lot, refunded, consumed } = await expectLotAccounted(c.lotId);
    expect(refunded).toBe(mc(Number(view.creditsClawedBack)));
    expect(refunded).toBeGreaterThanOrEqual(mc(50)); // at most 50 were used before the claw-back
    expect([lot.remaining, lot.held]).toEqual([0n, 0n]);
    // Usage after the claw-back found no credits: it is owed (arrears), not drawn from the refunded lot.
    expect(await usageTotal(c.id)).toBe(mc(50));
    expect(consumed + (await walletArrears(c.id))).toBe(mc(50));
    expect(view.moneyRefunded.amountMinor).toBe(Number(cost(1000n, refunded / mc(1), 100n)));
    expect((await sandboxRefundsByKey(pool, r.body.refundId)).map((x) => x.amountMinor)).toEqual([
      String(view.moneyRefunded.amountMinor),
    ]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it.each([
    ['both ask for all', undefined, 100n],
    ['both ask for 60 of 100', '60', 60n],
  ])(
    'two concurrent refunds of one lot (%s): never more than it has, one fails or is refused',
    async (_n, credits, wins) => {
      const c = await bought('100', 1000);
      const body = { customerId: c.id, lotId: c.lotId, ...(credits ? { credits } : {}) };
      const answers = await Promise.all([refund(body), refund(body)]);
      const accepted = answers.filter((a) => a.status === 202);
      expect(answers.every((a) => a.status === 202 || (a.status === 422 && a.body.code === 'NotRefundable'))).toBe(
        true,
      );
      const ends = await Promise.all(accepted.map((a) => settled(a.body.refundId)));
      const views = ends.map((e) => e.view);
      const won = views.filter((v) => v.status === 'succeeded');
      const lost = views.filter((v) => v.status !== 'succeeded');
      expect(won).toHaveLength(1);
      expect(won[0]).toMatchObject({
        creditsClawedBack: String(wins),
        moneyRefunded: { amountMinor: Number(wins * 10n) },
      });
      expect(lost.length + answers.filter((a) => a.status === 422).length).toBe(1);
      for (const l of lost) {
        // The loser clawed nothing back, so nothing is restored and no ledger transaction is written.
        expect(l).toMatchObject({
          status: 'failed',
          creditsClawedBack: '0',
          failureCode: expect.stringMatching(/not_?refundable/i),
        });
        expect(await refundTransactions(pool, l.refundId)).toEqual([]);
        expect(await refundOutbox(pool, l.refundId)).toEqual(['refund.failed']);
        expect(await sandboxRefundsByKey(pool, l.refundId)).toEqual([]);
      }
      const { lot, refunded } = await expectLotAccounted(c.lotId);
      expect([refunded, lot.remaining]).toEqual([mc(wins), mc(100n - wins)]);
      expect(await sandboxRefunded(pool, c.charge)).toBe(String(wins * 10n));
      expect(await findViolations(pool)).toEqual([]);
    },
  );

  it('a manual-gateway lot (granted with cost and reference, no payment): refund recorded, no sandbox refund', async () => {
    const id = await newCustomer();
    const lotId = await granted(id, {
      amount: '100',
      kind: 'purchased',
      cost: { amountMinor: 5001, currency: 'USD' },
      paymentReference: 'wire-2026-0042',
    });
    const sandboxBefore = (await pool.query('SELECT 1 FROM sandbox_refunds')).rowCount;
    const r = await refund({ customerId: id, lotId, credits: '40' });
    expect(r.status).toBe(202);
    const { outcome, view } = await settled(r.body.refundId);
    expect(outcome).toMatchObject({ status: 'succeeded', credits: '40', moneyMinor: '2000' }); // floor(5001 × 0.4)
    expect(view).toMatchObject({
      status: 'succeeded',
      gateway: 'manual',
      refundReference: `manual_refund_${r.body.refundId}`,
      moneyRefunded: { amountMinor: 2000, currency: 'USD' },
    });
    expect((await pool.query('SELECT 1 FROM sandbox_refunds')).rowCount).toBe(sandboxBefore);
    const { lot, refunded } = await expectLotAccounted(lotId);
    expect([lot.remaining, refunded]).toEqual([mc(60), mc(40)]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a promotional lot, a zero-cost and an uncosted purchased lot, an expired lot → 422, nothing written', async () => {
    const id = await newCustomer();
    const lots = {
      promotional: await granted(id, { amount: '10', kind: 'promotional' }),
      'zero cost': await granted(id, { amount: '10', kind: 'purchased', cost: { amountMinor: 0, currency: 'USD' } }),
      uncosted: await granted(id, { amount: '10', kind: 'purchased' }),
      expired: await granted(id, {
        amount: '10',
        kind: 'purchased',
        cost: { amountMinor: 100, currency: 'USD' },
        paymentReference: 'wire-1',
        expiresAt: new Date(Date.now() + 1500).toISOString(),
      }),
    };
    await new Promise((r) => setTimeout(r, 1600));
    for (const [what, lotId] of Object.entries(lots)) {
      const before = await snapshotTables(pool);
      const r = await refund({ customerId: id, lotId });
      expect([what, r.status, r.body.code]).toEqual([what, 422, 'NotRefundable']);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
      // Only the reply is kept, for a retry under the same key.
      expect(await snapshotTables(pool)).toEqual({
        ...before,
        http_idempotency: String(Number(before.http_idempotency) + 1),
      });
    }
    expect((await call(api.url, 'GET', `/v1/customers/${id}/refunds`, { key: admin })).body.refunds).toEqual([]);
  });

  it('the ledger listing shows the claw-back and the compensation with the workflow and the requester', async () => {
    const c = await bought('50', 500, 'pm_card_refundFails');
    const r = await refund({ customerId: c.id, lotId: c.lotId, credits: '20' });
    const { view } = await settled(r.body.refundId);
    expect(view).toMatchObject({ status: 'failed', failureCode: 'refund_failed', requestedBy: { keyId: support } });
    const wf = refundWorkflowId(r.body.refundId);
    const listed = async (type: string) =>
      (await call(api.url, 'GET', `/v1/customers/${c.id}/ledger?type=${type}`, { key: admin })).body.transactions;
    expect(await listed('refund_clawback')).toEqual([
      expect.objectContaining({
        workflowId: wf,
        requestedBy: { keyId: support, name: null },
        reason: 'customer cancelled',
      }),
    ]);
    expect(await listed('refund_compensation')).toEqual([
      expect.objectContaining({
        workflowId: wf,
        requestedBy: { keyId: support, name: null },
        reason: expect.stringMatching(/^compensation/),
      }),
    ]);
    expect((await refundTransactions(pool, r.body.refundId)).map((x) => x.type)).toEqual([
      'refund_clawback',
      'refund_compensation',
    ]);
    const { lot, refunded } = await expectLotAccounted(c.lotId);
    expect([lot.remaining, lot.status, refunded]).toEqual([mc(50), 'active', 0n]);
    expect(await refundOutbox(pool, r.body.refundId)).toEqual(['refund.failed']);
  });
});

describe('cancelling the refund workflow at the gateway step', () => {
  /** A refund held at the gateway: the claw-back has committed when this returns. */
  async function heldAtGateway(o: { query: boolean }) {
    const c = await bought('100', 1000);
    const gate = gated.hold(c.charge);
    const r = await refund({ customerId: c.id, lotId: c.lotId, credits: '40' });
    expect(r.status).toBe(202);
    await gate.reached;
    const refundId = r.body.refundId as string;
    expect(await refundState(pool, refundId)).toMatchObject({ status: 'pending', clawed: String(mc(40)) });
    expect((await lotState(pool, c.lotId)).remaining).toBe(mc(60));
    const handle = t.client.workflow.getHandle(refundWorkflowId(refundId));
    if (o.query) {
      // Answered at the workflow task's next heartbeat (~8 s): the saga is waiting on its local activity.
      const status = await t.client.withDeadline(Date.now() + 15_000, () => handle.query(refundStatusQuery));
      expect(status).toMatchObject({ step: 'gateway', clawedBack: { credits: '40', moneyMinor: '400' } });
    }
    await handle.cancel();
    return { c, gate, refundId, handle };
  }

  it('the gateway never got it: the credits are restored exactly, failed/cancelled, no money moved', async () => {
    const { c, gate, refundId, handle } = await heldAtGateway({ query: true });
    // The cancelled saga waits for the gateway call in flight to end (it cannot be taken back),
    // then asks the gateway: no refund under the key, so it compensates, in a scope the
    // cancellation cannot interrupt.
    expect(await refundState(pool, refundId)).toMatchObject({ status: 'pending' });
    gate.open('fail');
    const compensated = await eventually(
      () => refundState(pool, refundId),
      (x) => x?.status !== 'pending',
    );
    const end = await handle.result().catch((err: unknown) => err);
    expect(end).toBeInstanceOf(WorkflowFailedError);
    expect((await handle.describe()).status.name).toBe('CANCELLED');
    expect(compensated).toMatchObject({ status: 'failed', failureCode: 'cancelled', compensatedAt: expect.any(Date) });
    const { lot, refunded } = await expectLotAccounted(c.lotId);
    expect([lot.remaining, lot.status, refunded]).toEqual([mc(100), 'active', 0n]);
    expect((await refundTransactions(pool, refundId)).map((x) => x.type)).toEqual([
      'refund_clawback',
      'refund_compensation',
    ]);
    expect(await sandboxRefundsByKey(pool, refundId)).toEqual([]);
    expect(await refundOutbox(pool, refundId)).toEqual(['refund.failed']);
    expect(await findViolations(pool)).toEqual([]);
  });

  // The gateway request was already on its way when the cancellation came (a real HTTP call is not
  // undone by cancelling the activity): the money went back, so the credits must not come back too.
  // Failed before the fix: the saga compensated on cancellation without asking the gateway whether
  // the refund under its key happened, so the customer got both the money and the credits.
  it('the gateway refunds anyway: never both the money and the credits back', async () => {
    const { c, gate, refundId, handle } = await heldAtGateway({ query: false });
    gate.open('proceed');
    await handle.result().catch(() => undefined);
    const money = await eventually(
      () => sandboxRefundsByKey(pool, refundId),
      (x) => x.length > 0,
      3000,
    );
    const { lot, refunded } = await expectLotAccounted(c.lotId);
    const state = await refundState(pool, refundId);
    const outcome = {
      moneyBack: money.length > 0,
      creditsBack: lot.remaining === mc(100),
      status: state?.status,
    };
    // Consistent outcomes only: money back and credits gone (succeeded), or neither (failed).
    expect([
      { moneyBack: true, creditsBack: false, status: 'succeeded' },
      { moneyBack: false, creditsBack: true, status: 'failed' },
    ]).toContainEqual(outcome);
    expect(refunded).toBe(outcome.creditsBack ? 0n : mc(40));
  });
});
