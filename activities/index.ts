import { ApplicationFailure, Context, log } from '@temporalio/activity';
import type { Client } from '@temporalio/client';
import { credits } from '../domain/amount';
import { DomainError, isRetryable } from '../domain/errors';
import { customersWithOverdueLots, overdueHolds } from '../db/holds';
import { notifyLifecycle } from '../client/lifecycle';
import { CustomerIdKey } from '../client/holds';
import type { Pool } from '../db/pool';
import { HoldLedger } from '../ledger/holds';
import { LifecycleLedger } from '../ledger/lifecycle';
import { Ledger } from '../ledger/ledger';
import { requestHash } from '../lib/hash';
import { composeKey } from '../lib/ids';
import { failureKind } from '../lib/unavailable';
import { withAudit } from '../lib/audit';
import { RefundsLedger, type ClawedBack } from '../ledger/refunds';
import { getRefund, stalePendingRefunds } from '../db/refunds';
import { refund } from '../workflows/refund';
import { ManualGateway } from '../payments/manual';
import { getPaymentMethod, recordAttempt, stalePendingPurchases } from '../db/payments';
import {
  orderOf,
  PaymentsLedger,
  PURCHASE_ATTEMPTS,
  purchaseWorkflowId,
  type ChargeDone,
  type PaymentOrder,
} from '../ledger/payments';
import { isGatewayError, type PaymentGateway } from '../payments/gateway';
import type { TopUpTrigger } from '../client/topups';
import { purchase, type PurchaseInput } from '../workflows/purchase';
import { webhookActivities } from './webhooks';
import { reconcileActivities } from './reconcile';
import { housekeepingActivities } from './housekeeping';
import { crashPoint } from './crash';

export interface ActivityDeps {
  pool: Pool;
  clock?: () => Date;
  /** For the sweeper, which asks Temporal whether a hold's workflow still runs. */
  temporal?: () => Promise<Client>;
  /** The task queue lifecycle workflows run on (the sweeper restarts missed ones). */
  taskQueue?: string;
  /** The payment gateway purchases and top-ups charge through. */
  gateway?: PaymentGateway;
  /** After a debit commits: signals wallets left below their top-up threshold. */
  topUps?: TopUpTrigger;
}

/** Serialization failure, deadlock: a retry cures them (the step is idempotent). */
const isTransient = (err: unknown) => ['40001', '40P01'].includes(String((err as { code?: unknown })?.code));
/** Unexpected errors are retried this many times, then surface as a non-retryable failure. */
const UNEXPECTED_ATTEMPTS = 5;

/**
 * Errors, classified: domain errors become typed, non-retryable ApplicationFailures (unless a retry
 * can fix them); data errors are non-retryable; infrastructure errors (connection, pool timeout,
 * serialization) are retried with the workflow's backoff; anything else is retried a few times,
 * then fails visibly. An IdempotencyConflict in a workflow step is a bug: it is logged loudly.
 */
async function domain<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof DomainError) {
      if (err.code === 'IdempotencyConflict') {
        log.error('ledger step met an IdempotencyConflict: its inputs changed between retries', {
          message: err.message,
        });
      }
      throw ApplicationFailure.create({
        type: err.code,
        message: err.message,
        details: [err.details],
        nonRetryable: !isRetryable(err),
      });
    }
    const kind = failureKind(err);
    if (kind === 'data') {
      throw ApplicationFailure.create({ type: 'DataError', message: String(err), nonRetryable: true });
    }
    if (
      kind === 'other' &&
      !isTransient(err) &&
      inActivity() &&
      Context.current().info.attempt >= UNEXPECTED_ATTEMPTS
    ) {
      throw ApplicationFailure.create({ type: 'Unexpected', message: String(err), nonRetryable: true });
    }
    throw err;
  }
}

function inActivity(): boolean {
  try {
    return Boolean(Context.current());
  } catch {
    return false;
  }
}

/** The ledger transaction a step wrote (steps return an Outcome or a bare result), when it says. */
const transactionIdOf = (r: unknown): string | undefined => {
  const o = r as { transactionId?: unknown; result?: { transactionId?: unknown } } | null;
  const id = o?.transactionId ?? o?.result?.transactionId;
  return typeof id === 'string' ? id : undefined;
};

/** Runs one ledger step between its two crash points. */
async function step<T>(activity: string, fn: () => Promise<T>): Promise<T> {
  crashPoint(activity, 'before');
  // The ledger records which workflow wrote each transaction (lib/audit.ts).
  const workflowId = inActivity() ? Context.current().info.workflowExecution?.workflowId : undefined;
  const r = await withAudit(workflowId ? { workflowId } : {}, () => domain(fn));
  crashPoint(activity, 'after');
  // One line per committed step (with workflowId and activityType, from the SDK's activity logger):
  // a ledger line's workflowId leads here, and its transactionId when the step returns one.
  if (workflowId) {
    const replayed = (r as { replayed?: unknown } | null)?.replayed === true;
    log.info('ledger step committed', { step: activity, transactionId: transactionIdOf(r), replayed });
  }
  return r;
}

/**
 * A gateway's answer, classified: a permanent error (a decline) is final at once; a retryable one
 * is retried by the workflow with the same idempotency key; anything else goes through `domain`.
 */
async function gatewayCall<T>(fn: () => Promise<T>, permanentType?: string): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (!isGatewayError(err))
      return domain(() => {
        throw err;
      });
    const declined = err.code === 'card_declined';
    throw ApplicationFailure.create({
      type:
        err.kind === 'retryable'
          ? 'GatewayRetryable'
          : (permanentType ?? (declined ? 'PaymentDeclined' : 'PaymentFailed')),
      message: err.message,
      details: [{ code: err.code, declineCode: err.declineCode }],
      nonRetryable: err.kind === 'permanent',
    });
  }
}

/** A workflow's status name (`RUNNING`, `TERMINATED`, …), or `NOT_FOUND` when Temporal has none. */
function statusOf(client: Client, workflowId: string): Promise<string> {
  return client.workflow
    .getHandle(workflowId)
    .describe()
    .then(
      (d) => d.status.name,
      () => 'NOT_FOUND',
    );
}

export interface HoldCommand {
  /** `<workflowId>:<step>`: a retried activity replays the stored result instead of moving credits again. */
  key: string;
  customerId: string;
  holdId: string;
}

const cmd = (c: HoldCommand, input: unknown) => ({
  key: c.key,
  customerId: c.customerId,
  requestHash: requestHash(input),
});

/** Activities come from a factory taking their dependencies; only the worker wires them. */
export function createActivities(deps: ActivityDeps) {
  const ledger = new Ledger(deps.pool, deps.clock);
  const holds = new HoldLedger(ledger);
  const lifecycle = new LifecycleLedger(ledger, deps.pool);
  const now = deps.clock ?? (() => new Date());
  const payments = new PaymentsLedger(ledger, deps.pool);
  const refunds = new RefundsLedger(ledger, deps.pool);
  const manual = new ManualGateway();
  const gateway = () => {
    if (!deps.gateway)
      throw ApplicationFailure.create({ type: 'Unexpected', message: 'no payment gateway configured' });
    return deps.gateway;
  };
  /** A debit just committed: the wallet may need its top-up (never fails the step). */
  const debited = (customerId: string) => deps.topUps?.check([customerId]);
  return {
    ...webhookActivities(deps),
    ...reconcileActivities(deps),
    ...housekeepingActivities(deps),
    /** Connectivity check: proves the worker reaches Postgres. */
    async databaseTime(): Promise<string> {
      const r = await deps.pool.query<{ now: Date }>('SELECT now() AS now');
      return r.rows[0]!.now.toISOString();
    },

    async placeHold(
      c: HoldCommand & { workflowId: string; amount: string; expiresAt: string; metadata?: Record<string, string> },
    ) {
      const r = await step('placeHold', () =>
        holds.place(cmd(c, c), { ...c, amount: credits(c.amount), expiresAt: new Date(c.expiresAt) }),
      );
      debited(c.customerId);
      return r.result;
    },

    async captureHold(c: HoldCommand & { amount: string }) {
      const r = await step('captureHold', () =>
        holds.capture(cmd(c, c), { holdId: c.holdId, amount: credits(c.amount) }),
      );
      debited(c.customerId);
      return r.result;
    },

    async extendHold(c: HoldCommand & { amount?: string; expiresAt?: string }) {
      const r = await step('extendHold', () =>
        holds.extend(cmd(c, c), {
          holdId: c.holdId,
          amount: c.amount ? credits(c.amount) : undefined,
          expiresAt: c.expiresAt ? new Date(c.expiresAt) : undefined,
        }),
      );
      debited(c.customerId);
      return r.result;
    },

    async settleHold(c: HoldCommand & { amount: string }) {
      const r = await step('settleHold', () =>
        holds.settle(cmd(c, c), { holdId: c.holdId, amount: credits(c.amount) }),
      );
      debited(c.customerId);
      return r.result;
    },

    /** `deadline` (the TTL release): only if the hold's deadline is still this one (no extend won). */
    async releaseHold(c: HoldCommand & { status: 'released' | 'expired'; ifActive?: boolean; deadline?: string }) {
      const r = await step('releaseHold', () =>
        holds.release(cmd(c, c), {
          holdId: c.holdId,
          status: c.status,
          ifActive: c.ifActive,
          ...(c.deadline ? { deadline: new Date(c.deadline) } : {}),
        }),
      );
      return r.result;
    },

    /** Books the customer's expiries and renewals due at the workflow's `asOf`; returns what comes next. */
    async lifecycleTick(o: { customerId: string; asOf: string; alertLeadMs?: number }) {
      const r = await step('lifecycleTick', () => lifecycle.tick(o.customerId, new Date(o.asOf), o.alertLeadMs));
      debited(o.customerId); // expiries
      return r;
    },

    /** The purchase's row; its first step, so nothing is written for a workflow that never ran. */
    async recordPurchase(p: PurchaseInput) {
      const o = p.order;
      await step('recordPurchase', () =>
        payments.recordPurchase({
          customerId: o.customerId,
          id: o.paymentId,
          source: 'purchase',
          credits: credits(o.credits),
          amountMinor: BigInt(o.amountMinor),
          currency: o.currency,
          gateway: o.gateway,
          paymentMethod: o.paymentMethod ?? null,
          gatewayCustomerId: o.gatewayCustomerId ?? null,
          gatewayKey: o.gatewayKey,
          workflowId: purchaseWorkflowId(o.customerId, o.paymentId),
          requestHash: p.requestHash,
          expiresAt: o.expiresAt ? new Date(o.expiresAt) : null,
          reason: o.reason ?? null,
          createdAt: new Date(p.createdAt),
        }),
      );
    },

    /** One gateway charge under the order's key (a retry sends the identical request). */
    async chargePayment(o: PaymentOrder): Promise<ChargeDone> {
      crashPoint('chargePayment', 'before');
      await domain(() => recordAttempt(deps.pool, o.customerId, o.paymentId));
      const c = await gatewayCall(() =>
        gateway().charge({
          idempotencyKey: o.gatewayKey,
          customerId: o.customerId,
          paymentMethod: o.paymentMethod ?? '',
          ...(o.gatewayCustomerId ? { gatewayCustomerId: o.gatewayCustomerId } : {}),
          ...(o.offlineReference ? { offlineReference: o.offlineReference } : {}),
          amountMinor: BigInt(o.amountMinor),
          currency: o.currency,
        }),
      );
      crashPoint('chargePayment', 'after');
      return { reference: c.reference, amountMinor: c.amountMinor.toString(), currency: c.currency.toUpperCase() };
    },

    /** The charge made under the order's key, if the gateway has one (a reply we never got). */
    async findPaymentCharge(o: PaymentOrder): Promise<ChargeDone | null> {
      const c = await gatewayCall(() =>
        gateway().findCharge({
          idempotencyKey: o.gatewayKey,
          customerId: o.customerId,
          ...(o.gatewayCustomerId ? { gatewayCustomerId: o.gatewayCustomerId } : {}),
        }),
      );
      return c
        ? { reference: c.reference, amountMinor: c.amountMinor.toString(), currency: c.currency.toUpperCase() }
        : null;
    },

    async grantPayment(o: { order: PaymentOrder; charge: ChargeDone; asOf: string }) {
      const audit = { requestedBy: o.order.requestedBy, reason: o.order.reason };
      const r = await step('grantPayment', () =>
        withAudit(audit, () => payments.grant(o.order, o.charge, new Date(o.asOf))),
      );
      return r.result;
    },

    async failPayment(o: { order: PaymentOrder; code: string; reason: string; asOf: string }) {
      return step('failPayment', () => payments.fail(o.order, { code: o.code, reason: o.reason }, new Date(o.asOf)));
    },

    /** The refund saga's first step: claw the credits back and fix the money (once per refund). */
    async clawBackRefund(o: { refundId: string; customerId: string }): Promise<ClawedBack> {
      const row = await domain(() => getRefund(deps.pool, o.refundId));
      return step('clawBackRefund', () =>
        withAudit({ requestedBy: row?.requestedBy, reason: row?.reason }, () =>
          refunds.clawBack({ id: o.refundId, customerId: o.customerId }),
        ),
      );
    },

    /** The money back through the lot's gateway, the refund id as the gateway's idempotency key. */
    async refundPayment(c: ClawedBack): Promise<{ reference: string }> {
      crashPoint('refundPayment', 'before');
      const g = c.gateway === 'manual' ? manual : gateway();
      if (g.name !== c.gateway)
        throw ApplicationFailure.create({
          type: 'RefundFailed',
          message: `the lot was paid through ${c.gateway}, this service runs ${g.name}`,
          details: [{ code: 'gateway_mismatch' }],
          nonRetryable: true,
        });
      const r = await gatewayCall(
        () =>
          g.refund({
            idempotencyKey: c.refundId,
            chargeReference: c.chargeReference ?? '',
            amountMinor: BigInt(c.moneyMinor),
          }),
        'RefundFailed',
      );
      crashPoint('refundPayment', 'after');
      return { reference: r.reference };
    },

    /** The refund the gateway made under the refund id, if any (a reply lost, a call cut off). */
    async findRefundPayment(c: ClawedBack): Promise<{ reference: string } | null> {
      if (c.gateway === 'manual') return null;
      const r = await gatewayCall(() =>
        gateway().findRefund({ idempotencyKey: c.refundId, chargeReference: c.chargeReference ?? '' }),
      );
      return r ? { reference: r.reference } : null;
    },

    async recordRefund(o: { refundId: string; reference: string | null; at: string }) {
      await step('recordRefund', () => refunds.succeed(o.refundId, o.reference, new Date(o.at)));
    },

    /** The compensation: the clawed-back credits back to the lot, the refund failed (once). */
    async compensateRefund(o: { refundId: string; code: string; reason: string }) {
      const row = await domain(() => getRefund(deps.pool, o.refundId));
      await step('compensateRefund', () =>
        withAudit({ requestedBy: row?.requestedBy, reason: `compensation: ${o.reason}` }, () =>
          refunds.compensate(o.refundId, { code: o.code, reason: o.reason }),
        ),
      );
    },

    /** The top-up workflow's look at the wallet: nothing to do, wait (cooldown), or charge this order. */
    async planTopUp(o: { customerId: string; asOf: string; key: string }) {
      const r = await step('planTopUp', () =>
        payments.plan(o.customerId, new Date(o.asOf), o.key, gateway().name, async (tx) =>
          getPaymentMethod(tx, o.customerId),
        ),
      );
      return r.result;
    },

    /**
     * Finds active holds past their TTL whose workflow no longer runs (terminated, failed) and
     * releases them. Idempotent: the key is per hold, and a hold released meanwhile is a no-op.
     */
    async sweepStrandedHolds(o: { graceSeconds: number; limit?: number }) {
      if (!deps.temporal) throw new Error('sweeper needs a Temporal client');
      const client = await deps.temporal();
      const candidates = await overdueHolds(deps.pool, now(), o.graceSeconds, o.limit ?? 500);
      const released: { customerId: string; holdId: string; workflowStatus: string }[] = [];
      for (const h of candidates) {
        const workflowStatus = await statusOf(client, h.workflowId);
        if (workflowStatus === 'RUNNING') continue; // its own timer will release it
        const r = await domain(() =>
          holds.release(
            { key: composeKey('sweep', h.customerId, h.holdId), customerId: h.customerId, requestHash: 'sweep' },
            // Only at the deadline it found: a hold extended meanwhile is not touched.
            { holdId: h.holdId, status: 'expired', ifActive: true, deadline: h.expiresAt },
          ),
        );
        if (!r.result.noop && !r.replayed)
          released.push({ customerId: h.customerId, holdId: h.holdId, workflowStatus });
      }
      // Safety net for the credit lifecycle: a grant whose signal-with-start failed (Temporal
      // away) leaves lots past their end unbooked; nudge those customers' workflows.
      const nudged: string[] = [];
      if (deps.taskQueue) {
        for (const customerId of await customersWithOverdueLots(deps.pool, now(), o.graceSeconds, o.limit ?? 500)) {
          await notifyLifecycle(client, deps.taskQueue, { customerId });
          nudged.push(customerId);
        }
      }
      // And auto top-up: a wallet below its threshold with an enabled rule is never left alone
      // (a debit whose signal found Temporal away, a workflow terminated from the UI).
      let topUpsNudged: string[] = [];
      if (deps.topUps) {
        topUpsNudged = await deps.topUps.signalBelowThreshold(null, o.limit ?? 500).catch((err: unknown) => {
          log.warn('top-up scan could not signal every wallet', { err: String(err) });
          return [];
        });
      }
      // A purchase whose workflow ended between charge and grant (terminated, a step that gave up)
      // is run again from its row: the same gateway key, so it finds its charge and grants once.
      const purchasesRestarted: string[] = [];
      if (deps.taskQueue) {
        for (const p of await stalePendingPurchases(deps.pool, 10 * 60_000, o.limit ?? 500)) {
          if (p.gateway === 'manual') continue; // its offline reference is the caller's: nothing to look up
          const workflowId = purchaseWorkflowId(p.customerId, p.id);
          if ((await statusOf(client, workflowId)) === 'RUNNING') continue;
          await client.workflow.start(purchase, {
            workflowId,
            taskQueue: deps.taskQueue,
            args: [
              {
                order: orderOf(p, PURCHASE_ATTEMPTS),
                createdAt: p.createdAt.toISOString(),
                requestHash: p.requestHash,
              },
            ],
            workflowIdReusePolicy: 'ALLOW_DUPLICATE',
            typedSearchAttributes: [{ key: CustomerIdKey, value: p.customerId }],
          });
          purchasesRestarted.push(workflowId);
        }
      }
      // Likewise a refund left pending (its saga ended early): re-run, every step keyed by the refund.
      const refundsRestarted: string[] = [];
      if (deps.taskQueue) {
        for (const r of await stalePendingRefunds(deps.pool, 10 * 60_000, o.limit ?? 500)) {
          if ((await statusOf(client, r.workflowId)) === 'RUNNING') continue;
          await client.workflow.start(refund, {
            workflowId: r.workflowId,
            taskQueue: deps.taskQueue,
            args: [{ refundId: r.id, customerId: r.customerId }],
            workflowIdReusePolicy: 'ALLOW_DUPLICATE',
            typedSearchAttributes: [{ key: CustomerIdKey, value: r.customerId }],
          });
          refundsRestarted.push(r.workflowId);
        }
      }
      return {
        checked: candidates.length,
        released,
        lifecyclesNudged: nudged,
        topUpsNudged,
        purchasesRestarted,
        refundsRestarted,
      };
    },
  };
}

export type Activities = ReturnType<typeof createActivities>;
