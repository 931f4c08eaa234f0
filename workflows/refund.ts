import {
  ActivityCancellationType,
  ActivityFailure,
  ApplicationFailure,
  CancellationScope,
  defineQuery,
  isCancellation,
  proxyLocalActivities,
  setHandler,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ClawedBack } from '../ledger/refunds';
import { applicationFailure } from './util';

/** `refund:<refundId>`: claw back → refund the money → record; a failed refund gives the credits back. */
export interface RefundInput {
  refundId: string;
  customerId: string;
}

export type RefundOutcome =
  | { status: 'succeeded'; credits: string; moneyMinor: string; reference: string | null }
  | { status: 'failed'; code: string; reason: string; creditsRestored: string };

export const refundStatusQuery = defineQuery<{ step: string; clawedBack: ClawedBack | null }>('status');

// Ledger steps: idempotent per refund; an outage past an hour fails the run visibly, and the
// sweeper re-runs a refund left pending.
const ledger = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  scheduleToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/**
 * The gateway refund: one key (the refund id) for every attempt; a permanent failure is final.
 * A cancelled workflow waits for a call in flight to end (an HTTP request cannot be taken back),
 * so the lookup before any compensation sees what that call did.
 */
const gateway = proxyLocalActivities<Activities>({
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  startToCloseTimeout: '20 seconds',
  retry: {
    initialInterval: '1 second',
    backoffCoefficient: 2,
    maximumInterval: '30 seconds',
    maximumAttempts: 8,
    nonRetryableErrorTypes: ['RefundFailed'],
  },
});

/** `NotRefundable` → `not_refundable`: failure codes are snake_case like the gateways'. */
const snake = (s: string) => s.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();

function failureOf(err: unknown): { code: string; reason: string } {
  const f = applicationFailure(err);
  if (f) return { code: f.code ?? snake(f.type ?? 'refund_failed'), reason: f.message };
  const cause = err instanceof ActivityFailure ? err.cause : err;
  return { code: 'refund_failed', reason: String((cause as Error)?.message ?? cause) };
}

export async function refund(input: RefundInput): Promise<RefundOutcome> {
  let step = 'claw-back';
  let clawedBack: ClawedBack | null = null;
  setHandler(refundStatusQuery, () => ({ step, clawedBack }));
  try {
    clawedBack = await ledger.clawBackRefund(input);
  } catch (err) {
    if (isCancellation(err)) {
      // The claw-back may have committed before the cancellation reached it: undo what the ledger has.
      const f = { code: 'cancelled', reason: 'the refund was cancelled' };
      await CancellationScope.nonCancellable(() => ledger.compensateRefund({ refundId: input.refundId, ...f }));
      throw err;
    }
    const cause = err instanceof ActivityFailure ? err.cause : err;
    // Nothing was clawed back (not refundable any more, e.g. spent meanwhile): it just fails.
    if (cause instanceof ApplicationFailure && cause.nonRetryable) {
      const f = failureOf(err);
      await ledger.compensateRefund({ refundId: input.refundId, ...f });
      return { status: 'failed', ...f, creditsRestored: '0' };
    }
    throw err;
  }
  step = 'gateway';
  let paid: { reference: string | null };
  try {
    paid = clawedBack.moneyMinor === '0' ? { reference: null } : await gateway.refundPayment(clawedBack);
  } catch (err) {
    // A permanent gateway failure, retries exhausted, or the workflow cancelled. First ask the
    // gateway whether the money went back anyway (a lost reply, a call that finished after the
    // cancellation): then the refund completes. Only if it did not are the credits returned — in
    // a scope cancellation cannot interrupt. Never both the money and the credits.
    const c = clawedBack;
    const made = await CancellationScope.nonCancellable(() => ledger.findRefundPayment(c));
    if (made) {
      step = 'record';
      const at = new Date(Date.now()).toISOString();
      await CancellationScope.nonCancellable(() =>
        ledger.recordRefund({ refundId: input.refundId, reference: made.reference, at }),
      );
      if (isCancellation(err)) throw err;
      return { status: 'succeeded', credits: c.credits, moneyMinor: c.moneyMinor, reference: made.reference };
    }
    step = 'compensation';
    const f = isCancellation(err) ? { code: 'cancelled', reason: 'the refund was cancelled' } : failureOf(err);
    await CancellationScope.nonCancellable(() => ledger.compensateRefund({ refundId: input.refundId, ...f }));
    if (isCancellation(err)) throw err;
    return { status: 'failed', ...f, creditsRestored: c.credits };
  }
  // The money went back: from here the refund only completes (never compensated, even if cancelled).
  step = 'record';
  const at = new Date(Date.now()).toISOString();
  await CancellationScope.nonCancellable(() =>
    ledger.recordRefund({ refundId: input.refundId, reference: paid.reference, at }),
  );
  return {
    status: 'succeeded',
    credits: clawedBack.credits,
    moneyMinor: clawedBack.moneyMinor,
    reference: paid.reference,
  };
}
