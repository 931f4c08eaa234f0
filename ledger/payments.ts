import { credits, formatCredits } from '../domain/amount';
import { notify, type Notification, type NotificationData } from './notify';
import {
  getPayment,
  insertPayment,
  markFailed,
  markSucceeded,
  pendingTopUp,
  topUpsBetween,
  type NewPayment,
  type PaymentRow,
} from '../db/payments';
import { withTransaction, type Pool, type Tx } from '../db/pool';
import { disableRule, getRule, recordFailure, recordSuccess, takeSeq } from '../db/topup-rules';
import { requestHash } from '../lib/hash';
import { composeKey } from '../lib/ids';
import { chargeFor, MAX_CHARGE_MINOR } from '../payments/pricing';
import type { Ledger } from './ledger';
import { ensureFits } from './limits';

/**
 * What a payment workflow charges and grants: fixed before the first step runs (from the API
 * request or the top-up plan), so every retry sends the identical gateway request.
 */
export interface PaymentOrder {
  customerId: string;
  paymentId: string;
  source: 'purchase' | 'topup';
  /** Decimal credit string. */
  credits: string;
  amountMinor: string;
  currency: string;
  gateway: string;
  paymentMethod?: string;
  gatewayCustomerId?: string;
  /** `manual` gateway: the offline payment's reference. */
  offlineReference?: string;
  gatewayKey: string;
  expiresAt?: string;
  reason?: string;
  /** Charge attempts on retryable gateway errors, with backoff, before the payment fails. */
  maxAttempts: number;
  /** The API key that asked for a purchase (recorded on its grant's ledger transaction). */
  requestedBy?: string;
}

export interface ChargeDone {
  reference: string;
  amountMinor: string;
  currency: string;
}

export type TopUpPlan =
  | { action: 'none'; reason: string }
  | { action: 'wait'; until: string }
  | { action: 'charge'; order: PaymentOrder; resumed: boolean };

/** Charge attempts of a purchase on retryable gateway errors (backoff 1 s … 30 s, ~2 min in all). */
export const PURCHASE_ATTEMPTS = 8;

export const purchaseWorkflowId = (customerId: string, purchaseId: string) => `purchase:${customerId}:${purchaseId}`;
export const topUpWorkflowId = (customerId: string) => `topup:${customerId}`;

const DAY_MS = 86_400_000;
const dayOf = (d: Date) => new Date(Math.floor(d.getTime() / DAY_MS) * DAY_MS);

export const orderOf = (p: PaymentRow, maxAttempts: number): PaymentOrder => ({
  customerId: p.customerId,
  paymentId: p.id,
  source: p.source,
  credits: formatCredits(p.credits),
  amountMinor: p.amountMinor.toString(),
  currency: p.currency,
  gateway: p.gateway,
  ...(p.paymentMethod ? { paymentMethod: p.paymentMethod } : {}),
  ...(p.gatewayCustomerId ? { gatewayCustomerId: p.gatewayCustomerId } : {}),
  gatewayKey: p.gatewayKey,
  ...(p.expiresAt ? { expiresAt: p.expiresAt.toISOString() } : {}),
  ...(p.reason ? { reason: p.reason } : {}),
  maxAttempts,
});

/**
 * Money in, on the ledger: a paid charge becomes one purchased lot (cost basis = the money
 * actually charged, payment reference = the charge) in the same transaction that marks the
 * payment paid and writes its notification; a failed one is marked and announced once.
 */
export class PaymentsLedger {
  constructor(
    private readonly ledger: Ledger,
    private readonly pool: Pool,
  ) {}

  /** A purchase's row, written by its workflow's first step (nothing is written if it never starts). */
  recordPurchase(p: NewPayment): Promise<PaymentRow> {
    return insertPayment(this.pool, p);
  }

  /** Idempotent per payment: the ledger key is `payment:<customer>:<payment>`. */
  async grant(order: PaymentOrder, charge: ChargeDone, asOf: Date) {
    const cmd = {
      key: composeKey('payment', order.customerId, order.paymentId),
      customerId: order.customerId,
      requestHash: requestHash({ paymentId: order.paymentId, charge }),
    };
    return this.ledger.grant(
      cmd,
      {
        amount: credits(order.credits),
        kind: 'purchased',
        cost: { amountMinor: BigInt(charge.amountMinor), currency: charge.currency.toUpperCase() },
        paymentReference: charge.reference,
        // Paid credits are never refused: an expiry that passed while the payment was charging
        // (the API asks for a future one) is dropped rather than granting credits already expired.
        ...(order.expiresAt && Date.parse(order.expiresAt) > asOf.getTime() + 60_000
          ? { expiresAt: new Date(order.expiresAt) }
          : {}),
        reason:
          (order.reason ?? (order.source === 'topup' ? 'auto top-up' : 'purchase')) +
          (order.expiresAt && Date.parse(order.expiresAt) <= asOf.getTime() + 60_000
            ? ` (expiry ${order.expiresAt} passed before the charge completed: not applied)`
            : ''),
      },
      async (tx, result) => {
        await markSucceeded(tx, order.customerId, order.paymentId, {
          paymentReference: charge.reference,
          lotId: result.lot.id,
        });
        if (order.source === 'topup') {
          const rule = await getRule(tx, order.customerId);
          await recordSuccess(
            tx,
            order.customerId,
            asOf,
            new Date(asOf.getTime() + (rule?.cooldownSeconds ?? 0) * 1000),
          );
        }
        await notifyPayment(tx, order, `${order.source}.succeeded`, {
          credits: order.credits,
          amountMinor: charge.amountMinor,
          currency: charge.currency.toUpperCase(),
          lotId: result.lot.id,
          paymentReference: charge.reference,
        });
      },
    );
  }

  /** Marks the payment failed (once) and, for a top-up, counts the failure; may disable the rule. */
  fail(order: PaymentOrder, f: { code: string; reason: string }, asOf: Date) {
    return withTransaction(this.pool, async (tx) => {
      const p = await getPayment(tx, order.customerId, order.paymentId, true);
      if (!p || p.status !== 'pending' || !(await markFailed(tx, order.customerId, order.paymentId, f)))
        return { failures: 0, disabled: false, already: true };
      await notifyPayment(tx, order, `${order.source}.failed`, {
        code: f.code,
        reason: f.reason,
        credits: order.credits,
      });
      if (order.source !== 'topup') return { failures: 0, disabled: false, already: false };
      const rule = await getRule(tx, order.customerId);
      const backoff = Math.min(3600, (rule?.cooldownSeconds ?? 0) * 2 ** Math.min(10, rule?.consecutiveFailures ?? 0));
      const r = await recordFailure(tx, order.customerId, new Date(asOf.getTime() + backoff * 1000));
      if (r.disabled)
        await notifyPayment(tx, order, 'topup.disabled', { reason: 'max_attempts', consecutiveFailures: r.failures });
      return { failures: r.failures, disabled: r.disabled, already: false };
    });
  }

  /**
   * Decides the wallet's next top-up at `asOf` (workflow time), under the wallet lock so the
   * balance it reads is the committed one. Idempotent by `key` (run id + plan number): the step is a
   * local activity, so a workflow task retried after a crash may pass a later `asOf`; the hash
   * leaves it out on purpose, and the retry gets the plan that committed first.
   */
  plan(
    customerId: string,
    asOf: Date,
    key: string,
    gateway: string,
    defaultMethod?: (tx: Tx) => Promise<{ paymentMethod: string; gatewayCustomerId: string | null } | null>,
  ) {
    return this.ledger.run(
      { key, customerId, requestHash: requestHash({ customerId, step: 'plan' }) },
      async ({ tx, wallet }): Promise<TopUpPlan> => {
        const rule = await getRule(tx, customerId, true);
        if (!rule) return { action: 'none', reason: 'no_rule' };
        // A top-up left in flight (a run that ended mid-charge) is finished first, even if the rule
        // was disabled since: its charge may have gone through, and a paid charge gets its lot.
        const pending = await pendingTopUp(tx, customerId);
        if (pending) return { action: 'charge', order: orderOf(pending, rule.maxAttempts), resumed: true };
        if (!rule.enabled) return { action: 'none', reason: rule.disabledReason ?? 'disabled' };
        if (rule.cooldownUntil && rule.cooldownUntil > asOf)
          return { action: 'wait', until: rule.cooldownUntil.toISOString() };
        if (wallet.available >= rule.threshold) return { action: 'none', reason: 'above_threshold' };
        const day = dayOf(asOf);
        const today = await topUpsBetween(tx, customerId, day, new Date(day.getTime() + DAY_MS));
        const order = { customerId, source: 'topup' as const, credits: '0', gateway };
        if (today.count >= rule.maxPerDay) {
          await disableRule(tx, customerId, 'max_per_day');
          // Once per day and rule version: a rule re-enabled (PUT) that runs away again alarms again.
          const burstId = `${day.toISOString().slice(0, 10)}-${rule.updatedAt.getTime()}`;
          await notifyPayment(tx, { ...order, paymentId: burstId }, 'topup.burst', {
            maxPerDay: rule.maxPerDay,
            today: today.count,
            day: day.toISOString().slice(0, 10),
          });
          return { action: 'none', reason: 'max_per_day' };
        }
        const method = rule.paymentMethod
          ? { paymentMethod: rule.paymentMethod, gatewayCustomerId: null }
          : ((await defaultMethod?.(tx)) ?? null);
        const micros = rule.mode === 'fixed' ? rule.credits : rule.credits - wallet.available;
        ensureFits('the top-up', micros);
        const amountMinor = chargeFor(micros, rule.unitPrice);
        if (!method || amountMinor > MAX_CHARGE_MINOR) {
          const reason = method ? 'charge_too_large' : 'no_payment_method';
          await disableRule(tx, customerId, reason);
          await notifyPayment(tx, { ...order, paymentId: `${reason}-${asOf.getTime()}` }, 'topup.failed', {
            code: reason,
            reason,
          });
          await notifyPayment(tx, { ...order, paymentId: `${reason}-${asOf.getTime()}` }, 'topup.disabled', { reason });
          return { action: 'none', reason };
        }
        const seq = await takeSeq(tx, customerId);
        const row = await insertPayment(tx, {
          customerId,
          id: `topup_${seq}`,
          source: 'topup',
          credits: micros,
          amountMinor,
          currency: rule.currency,
          gateway,
          paymentMethod: method.paymentMethod,
          gatewayCustomerId: method.gatewayCustomerId,
          gatewayKey: composeKey('topup', customerId, seq.toString()),
          workflowId: topUpWorkflowId(customerId),
          requestHash: requestHash({ rule: rule.updatedAt, seq }),
          expiresAt: null,
          reason: 'auto top-up',
          createdAt: asOf,
        });
        return { action: 'charge', order: orderOf(row, rule.maxAttempts), resumed: false };
      },
    );
  }
}

/** One notification about a payment, keyed by type and payment (see ledger/notify.ts). */
function notifyPayment<
  T extends Exclude<keyof NotificationData, `refund.${string}` | `${'balance' | 'credits' | 'hold'}.${string}`>,
>(
  tx: Tx,
  order: { customerId: string; paymentId: string; source: 'purchase' | 'topup' },
  type: T,
  data: Omit<NotificationData[T], 'paymentId' | 'source'>,
) {
  return notify(tx, [
    {
      type,
      customerId: order.customerId,
      dedupeKey: composeKey(type, order.customerId, order.paymentId),
      data: { paymentId: order.paymentId, source: order.source, ...data },
    } as unknown as Notification,
  ]);
}
