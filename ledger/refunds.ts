import { formatCredits } from '../domain/amount';
import { DomainError } from '../domain/errors';
import { customerExists } from '../db/customers';
import { lockLot, lotsByIds, type LotRow } from '../db/lots';
import { notify, type Notification, type NotificationData } from './notify';
import type { Pool, Tx } from '../db/pool';
import { withTransaction } from '../db/pool';
import {
  getRefund,
  insertRefund,
  lotRefundTotals,
  refundInProgress,
  markClawedBack,
  markRefundFailed,
  markRefundSucceeded,
  paymentOfLot,
  type RefundRow,
} from '../db/refunds';
import { requestHash, sha256 } from '../lib/hash';
import { composeKey } from '../lib/ids';
import type { Ledger } from './ledger';
import { Movement } from './movement';

export const refundWorkflowId = (refundId: string) => `refund:${refundId}`;

export interface ClawedBack {
  refundId: string;
  customerId: string;
  credits: string;
  /** Money to return, minor units (cumulative rule, see `moneyFor`). */
  moneyMinor: string;
  currency: string;
  gateway: string;
  chargeReference: string | null;
}

/**
 * Money for a refund, exact in integers and cumulative over the lot's refunds:
 * floor(cost × credits clawed back so far / original) − what earlier refunds returned.
 * Partial refunds therefore add up to exactly what a whole refund returns.
 */
export function moneyFor(
  lot: Pick<LotRow, 'costMinor' | 'original'>,
  before: { credits: bigint; money: bigint },
  credits: bigint,
) {
  return (lot.costMinor * (before.credits + credits)) / lot.original - before.money;
}

/** What may be refunded of a lot now: the unspent, unheld remainder of a paid, drawable purchased lot. */
export function refundableOf(lot: LotRow, now: Date): { refundable: bigint; why?: string } {
  if (lot.kind !== 'purchased') return { refundable: 0n, why: `lot ${lot.id} is ${lot.kind}, not purchased` };
  if (lot.costMinor <= 0n || !lot.costCurrency) return { refundable: 0n, why: `lot ${lot.id} was not paid for` };
  if (lot.status !== 'active' && lot.status !== 'depleted')
    return { refundable: 0n, why: `lot ${lot.id} is ${lot.status}` };
  if (lot.expiresAt && lot.expiresAt <= now) return { refundable: 0n, why: `lot ${lot.id} expired` };
  return { refundable: lot.remaining };
}

const notRefundable = (message: string, refundable: bigint) =>
  new DomainError('NotRefundable', message, { refundable: formatCredits(refundable) });

export interface RefundRequest {
  customerId: string;
  lotId: string;
  credits?: bigint;
  reason: string;
  /** The API key id (or `cli`) that asks. */
  requestedBy: string;
  /** Names the refund: the same key finds the same refund. */
  idempotencyKey: string;
  requestHash: string;
}

/**
 * Asks for a refund (the API and the CLI): refuses what cannot be refunded before anything is
 * written, records the refund, starts its saga. The saga's claw-back checks again under the lock.
 */
export async function requestRefund(
  pool: Pool,
  start: (input: { refundId: string; customerId: string }) => Promise<string>,
  r: RefundRequest,
  now: Date,
): Promise<RefundRow> {
  if (!(await customerExists(pool, r.customerId)))
    throw new DomainError('CustomerNotFound', `customer ${r.customerId} does not exist`);
  const lot = (await lotsByIds(pool, r.customerId, [r.lotId]))[0];
  if (!lot) throw new DomainError('LotNotFound', `lot ${r.lotId} does not exist for ${r.customerId}`);
  const { refundable, why } = refundableOf(lot, now);
  if (why || refundable === 0n || (r.credits !== undefined && r.credits > refundable))
    throw notRefundable(why ?? `only ${formatCredits(refundable)} credits of lot ${lot.id} are refundable`, refundable);
  const refundId = `ref_${sha256(`${r.customerId}\u0000${r.idempotencyKey}`).slice(0, 32)}`;
  const busy = await refundInProgress(pool, lot.id, refundId);
  if (busy) throw notRefundable(`refund ${busy} of lot ${lot.id} is still in progress`, refundable);
  const row = await insertRefund(pool, {
    id: refundId,
    customerId: r.customerId,
    lotId: r.lotId,
    creditsRequested: r.credits ?? null,
    requestedBy: r.requestedBy,
    reason: r.reason,
    requestHash: r.requestHash,
    workflowId: refundWorkflowId(refundId),
  });
  if (row.requestHash !== r.requestHash)
    throw new DomainError('IdempotencyConflict', 'this idempotency key was already used with a different refund');
  await start({ refundId, customerId: r.customerId });
  return row;
}

/**
 * The refund saga's ledger steps, each one transaction keyed by the refund
 * (`refund:<id>:clawback`, `refund:<id>:compensation`): a retried or re-run step never moves
 * credits twice. The claw-back takes credits from the lot's unspent, unheld remainder (never
 * more: under the lot lock) and fixes the money to return; the compensation puts exactly those
 * credits back on the same lot.
 */
export class RefundsLedger {
  constructor(
    private readonly ledger: Ledger,
    private readonly pool: Pool,
  ) {}

  async clawBack(refund: Pick<RefundRow, 'id' | 'customerId'>): Promise<ClawedBack> {
    const cmd = {
      key: composeKey('refund', refund.id, 'clawback'),
      customerId: refund.customerId,
      requestHash: requestHash({ refundId: refund.id }),
    };
    const r = await this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const row = (await getRefund(tx, refund.id, true))!;
      if (row.status !== 'pending') throw new DomainError('InvalidRequest', `refund ${row.id} is ${row.status}`);
      const lot = await lockLot(tx, row.customerId, row.lotId);
      if (!lot) throw notRefundable(`lot ${row.lotId} does not exist`, 0n);
      const { refundable, why } = refundableOf(lot, now);
      if (why) throw notRefundable(why, 0n);
      const credits = row.creditsRequested ?? refundable;
      if (credits <= 0n || credits > refundable)
        throw notRefundable(`only ${formatCredits(refundable)} credits of lot ${lot.id} are refundable`, refundable);
      // One refund of a lot at a time: the cumulative money rule needs the earlier refunds' final
      // figures (a pending one may still fail and give its credits back).
      const busy = await refundInProgress(tx, lot.id, row.id);
      if (busy) throw notRefundable(`refund ${busy} of lot ${lot.id} is still in progress`, refundable);
      const before = await lotRefundTotals(tx, lot.id, row.id);
      const money = moneyFor(lot, before, credits);
      const paid = await paymentOfLot(tx, lot.id);
      const m = new Movement([lot]);
      m.move('available', 'refunded', lot.id, credits);
      lot.remaining -= credits;
      if (lot.remaining === 0n && lot.held === 0n) lot.status = 'refunded';
      await m.write(tx, wallet, 'refund_clawback', key, refundWorkflowId(row.id), now);
      const out: ClawedBack = {
        refundId: row.id,
        customerId: row.customerId,
        credits: formatCredits(credits),
        moneyMinor: money.toString(),
        currency: lot.costCurrency!,
        // A purchased lot granted by hand (no payment row) was paid offline: refunded by hand.
        gateway: paid?.gateway ?? 'manual',
        chargeReference: paid?.reference ?? lot.paymentReference,
      };
      await markClawedBack(tx, row.id, {
        credits,
        money,
        currency: out.currency,
        gateway: out.gateway,
        chargeReference: out.chargeReference,
        at: now,
      });
      return out;
    });
    return r.result;
  }

  /** The gateway gave the money back: the refund succeeded (once), `refund.succeeded`. */
  succeed(refundId: string, refundReference: string | null, at: Date): Promise<void> {
    return withTransaction(this.pool, async (tx) => {
      const row = await getRefund(tx, refundId, true);
      if (row && (await markRefundSucceeded(tx, refundId, refundReference, at)))
        await notifyRefund(tx, row, 'refund.succeeded', { refundReference });
    });
  }

  /**
   * The saga's compensation: the clawed-back credits return to the same lot (arrears are paid
   * from them first, as from any credits that become drawable), the refund ends failed, once.
   */
  async compensate(refundId: string, f: { code: string; reason: string }): Promise<void> {
    // Under the refund row's lock (the claw-back takes it too): a claw-back committing meanwhile
    // is seen, never left standing behind a refund marked failed.
    const next = await withTransaction(this.pool, async (tx) => {
      const row = await getRefund(tx, refundId, true);
      if (!row || row.status !== 'pending') return 'done';
      if (row.clawedBackAt) return row;
      if (await markRefundFailed(tx, refundId, { ...f, compensatedAt: null, at: new Date() }))
        await notifyRefund(tx, row, 'refund.failed', { code: f.code, reason: f.reason, creditsRestored: '0' });
      return 'done';
    });
    if (next === 'done') return;
    const row = next;
    const cmd = {
      key: composeKey('refund', refundId, 'compensation'),
      customerId: row.customerId,
      requestHash: requestHash({ refundId }),
    };
    await this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const current = (await getRefund(tx, refundId, true))!;
      if (current.status !== 'pending') return { restored: '0' };
      const lot = (await lockLot(tx, row.customerId, row.lotId))!;
      const credits = current.creditsClawedBack;
      const m = new Movement([lot]);
      m.move('refunded', 'available', lot.id, credits);
      lot.remaining += credits;
      if (lot.status === 'refunded' || lot.status === 'depleted') lot.status = 'active';
      await m.payArrears(tx, wallet, now);
      await m.write(tx, wallet, 'refund_compensation', key, refundWorkflowId(refundId), now);
      await markRefundFailed(tx, refundId, { ...f, compensatedAt: now, at: now });
      await notifyRefund(tx, current, 'refund.failed', {
        code: f.code,
        reason: f.reason,
        creditsRestored: formatCredits(credits),
      });
      return { restored: formatCredits(credits) };
    });
  }
}

/** One notification about a refund, keyed by type and refund (see ledger/notify.ts). */
function notifyRefund<T extends 'refund.succeeded' | 'refund.failed'>(
  tx: Tx,
  r: RefundRow,
  type: T,
  data: Omit<NotificationData[T], 'refundId' | 'lotId' | 'credits' | 'moneyMinor' | 'currency'>,
) {
  return notify(tx, [
    {
      type,
      customerId: r.customerId,
      dedupeKey: composeKey(type, r.id),
      data: {
        refundId: r.id,
        lotId: r.lotId,
        credits: formatCredits(r.creditsClawedBack),
        moneyMinor: r.moneyMinor.toString(),
        currency: r.currency,
        ...data,
      },
    } as unknown as Notification,
  ]);
}
