import { ActivityFailure, ApplicationFailure, proxyLocalActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { ChargeDone, PaymentOrder } from '../ledger/payments';
import { applicationFailure } from './util';

export type PaymentOutcome =
  | { status: 'succeeded'; lotId: string; reference: string; amountMinor: string; currency: string }
  | { status: 'failed'; code: string; reason: string; disabled: boolean };

// Local activities: each step runs in the workflow task that scheduled it (no task-queue round
// trip per step), and is re-run after a crash like any activity, so every step is idempotent.
// Ledger steps are quick; an outage longer than an hour fails the run visibly.
const ledger = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  scheduleToCloseTimeout: '1 hour',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

/** Charge attempts: the same gateway idempotency key each time; a decline is final at once. */
const charger = (maxAttempts: number) =>
  proxyLocalActivities<Activities>({
    startToCloseTimeout: '20 seconds',
    retry: {
      initialInterval: '1 second',
      backoffCoefficient: 2,
      maximumInterval: '30 seconds',
      maximumAttempts: maxAttempts,
      nonRetryableErrorTypes: ['PaymentDeclined', 'PaymentFailed'],
    },
  }).chargePayment;

const workflowNow = () => new Date(Date.now()).toISOString();

/**
 * Charge, then grant: the one path money takes into a wallet. Before a payment is marked failed
 * the gateway is asked for a charge under its key (a reply lost after the charge went through),
 * so a paid charge always ends in its lot and a failure never hides one.
 */
export async function pay(order: PaymentOrder): Promise<PaymentOutcome> {
  let charge: ChargeDone | null = null;
  let failure = { code: 'gateway_unavailable', reason: 'the payment gateway did not answer' };
  try {
    charge = await charger(order.maxAttempts)(order);
  } catch (err) {
    const f = applicationFailure(err);
    if (f) failure = { code: f.code ?? f.type ?? 'payment_failed', reason: f.message };
  }
  charge ??= await ledger.findPaymentCharge(order);
  if (charge) {
    try {
      const g = await ledger.grantPayment({ order, charge, asOf: workflowNow() });
      return { status: 'succeeded', lotId: g.lot.id, ...charge };
    } catch (err) {
      // The ledger refused the lot for good (a wallet at its limit): the payment ends failed,
      // loudly (`grant_refused` in its notification, and a charge without a lot for the
      // reconciliation to refund), never pending forever.
      const cause = err instanceof ActivityFailure ? err.cause : err;
      if (!(cause instanceof ApplicationFailure) || !cause.nonRetryable) throw err;
      failure = {
        code: 'grant_refused',
        reason: `charged ${charge.reference} but the grant was refused: ${cause.message}`,
      };
    }
  }
  const f = await ledger.failPayment({ order, ...failure, asOf: workflowNow() });
  return { status: 'failed', ...failure, disabled: f.disabled };
}

export { ledger as paymentSteps };
