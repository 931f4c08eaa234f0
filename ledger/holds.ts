import { formatCredits } from '../domain/amount';
import { DomainError } from '../domain/errors';
import { allocate, drawableTotal, type Draw } from '../domain/lots';
import type { WalletRow } from '../db/customers';
import {
  activeOverdraft,
  getHold,
  insertHold,
  updateHold,
  upsertHoldLots,
  type HoldRow,
  type HoldStatus,
} from '../db/holds';
import { lotsByIds, openLotsOf, type LotRow } from '../db/lots';
import type { Tx } from '../db/pool';
import { composeKey } from '../lib/ids';
import type { Command, Ledger, Outcome } from './ledger';
import { ensureFits } from './limits';
import { captureFromHold, Movement, releaseFromHold } from './movement';
import { notify } from './notify';

/**
 * Hold movements, all through Ledger.run (one DB transaction, idempotency key, wallet lock).
 * A hold reserves credits lot by lot: available → held; what the lots cannot cover, up to the
 * wallet's overdraft limit, is held on no lot (its `overdraft` part). Capture moves held →
 * consumed; release moves held → available, or → expired / voided for a lot that expired or was
 * voided meanwhile. The ledger's clock decides expiry: past its `expiresAt` a hold can no longer
 * be captured, extended or settled, only released.
 */
export interface HoldView {
  holdId: string;
  customerId: string;
  workflowId: string;
  status: HoldStatus;
  amount: string;
  held: string;
  /** The part of `held` on the overdraft limit, backed by no lot. */
  overdraft: string;
  captured: string;
  released: string;
  expiresAt: string;
  lots: { lotId: string; held: string }[];
}

export type PlaceResult =
  | { outcome: 'placed'; hold: HoldView }
  | {
      outcome: 'rejected';
      reason: 'insufficient_credits' | 'arrears' | 'frozen';
      available: string;
      shortfall: string;
    };

export interface SettleResult {
  hold: HoldView;
  captured: string;
  released: string;
  /** What settle charged beyond the held amount (from available credits, arrears if none). */
  overage: string;
}

export const holdView = (h: HoldRow): HoldView => ({
  holdId: h.id,
  customerId: h.customerId,
  workflowId: h.workflowId,
  status: h.status,
  amount: formatCredits(h.amount),
  held: formatCredits(h.held),
  overdraft: formatCredits(h.overdraft),
  captured: formatCredits(h.captured),
  released: formatCredits(h.released),
  expiresAt: h.expiresAt.toISOString(),
  lots: h.lots.map((l) => ({ lotId: l.lotId, held: formatCredits(l.held) })),
});

const notActive = (h: HoldRow) =>
  new DomainError('HoldNotActive', `hold ${h.id} is ${h.status}`, { holdStatus: h.status });

export class HoldLedger {
  constructor(private readonly ledger: Ledger) {}

  place(
    cmd: Command,
    input: { holdId: string; workflowId: string; amount: bigint; expiresAt: Date; metadata?: Record<string, string> },
  ): Promise<Outcome<PlaceResult>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      ensureFits('the hold', input.amount);
      const existing = await getHold(tx, cmd.customerId, input.holdId);
      if (existing) throw new DomainError('HoldExists', `hold ${input.holdId} already exists`);
      const refusal = refuse(wallet);
      const c = await cover(tx, wallet, input.amount, now);
      if (refusal || c.shortfall > 0n) {
        return {
          outcome: 'rejected',
          reason: refusal ?? 'insufficient_credits',
          available: formatCredits(c.available),
          shortfall: formatCredits(refusal ? input.amount : c.shortfall),
        };
      }
      const hold: HoldRow = {
        customerId: cmd.customerId,
        id: input.holdId,
        workflowId: input.workflowId,
        amount: input.amount,
        held: input.amount,
        overdraft: 0n,
        captured: 0n,
        released: 0n,
        status: 'active',
        expiresAt: input.expiresAt,
        metadata: input.metadata ?? {},
        createdAt: now,
        lots: [],
      };
      const m = new Movement([]);
      reserve(hold, m, c);
      await insertHold(tx, hold);
      await upsertHoldLots(tx, cmd.customerId, input.holdId, hold.lots);
      await m.write(tx, wallet, 'hold_place', key, `hold:${input.holdId}`, now);
      return { outcome: 'placed', hold: holdView((await getHold(tx, cmd.customerId, input.holdId))!) };
    });
  }

  capture(cmd: Command, input: { holdId: string; amount: bigint }): Promise<Outcome<HoldView>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId, now);
      if (input.amount > hold.held) {
        throw new DomainError(
          'InvalidRequest',
          `capture of ${formatCredits(input.amount)} exceeds the ${formatCredits(hold.held)} held; settle charges more`,
        );
      }
      captureFromHold(hold, m, input.amount);
      await m.payArrears(tx, wallet, now);
      await this.save(tx, wallet, hold, m, 'hold_capture', key, now);
      return holdView((await getHold(tx, cmd.customerId, input.holdId))!);
    });
  }

  extend(cmd: Command, input: { holdId: string; amount?: bigint; expiresAt?: Date }): Promise<Outcome<HoldView>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId, now);
      if (input.amount && input.amount > 0n) {
        ensureFits('the hold', hold.amount + input.amount);
        const refusal = refuse(wallet);
        const c = await cover(tx, wallet, input.amount, now);
        if (refusal || c.shortfall > 0n) {
          throw new DomainError('InsufficientCredits', 'not enough credits to extend the hold', {
            shortfall: formatCredits(refusal ? input.amount : c.shortfall),
            available: formatCredits(c.available),
          });
        }
        reserve(hold, m, c);
        hold.amount += input.amount;
        hold.held += input.amount;
      }
      if (input.expiresAt && input.expiresAt > hold.expiresAt) hold.expiresAt = input.expiresAt;
      await this.save(tx, wallet, hold, m, 'hold_extend', key, now);
      return holdView((await getHold(tx, cmd.customerId, input.holdId))!);
    });
  }

  /** Final amount: capture it (beyond the hold from available credits, arrears if none), release the rest. */
  settle(cmd: Command, input: { holdId: string; amount: bigint }): Promise<Outcome<SettleResult>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId, now);
      ensureFits('the settled amount', input.amount);
      if (input.amount < hold.captured) {
        throw new DomainError(
          'InvalidRequest',
          `settle amount is below the ${formatCredits(hold.captured)} already captured`,
        );
      }
      const toCapture = input.amount - hold.captured;
      const fromHold = toCapture < hold.held ? toCapture : hold.held;
      captureFromHold(hold, m, fromHold);
      const released = releaseFromHold(hold, m, now);
      const overage = toCapture - fromHold;
      if (overage > 0n) {
        // Drawn from every drawable lot, including the ones this settle just released.
        const lots = await m.drawable(tx, cmd.customerId);
        const { draws, shortfall } = allocate(lots, overage, now);
        for (const d of draws) {
          const lot = lots.find((l) => l.id === d.lotId)!;
          m.lots.set(lot.id, lot);
          lot.remaining -= d.amount;
          m.move('available', 'consumed', lot.id, d.amount);
        }
        m.move('available', 'consumed', null, shortfall);
        m.arrears += shortfall;
        hold.captured += overage;
      }
      await m.payArrears(tx, wallet, now);
      hold.status = 'settled';
      await this.save(tx, wallet, hold, m, 'hold_settle', key, now);
      return {
        hold: holdView((await getHold(tx, cmd.customerId, input.holdId))!),
        captured: formatCredits(hold.captured),
        released: formatCredits(released),
        overage: formatCredits(overage),
      };
    });
  }

  /**
   * Releases everything still held. With `ifActive`, a finished hold is a no-op (sweeper, TTL
   * races). With `deadline` (the TTL timer's: the expiresAt it slept until), only a hold still
   * active and still due by that deadline is released; a hold an extend moved later, or one that
   * finished meanwhile, is a no-op. Decided under the wallet lock, so a committed extend always
   * wins over a concurrent TTL release. The deadline is the caller's time, never this clock.
   */
  release(
    cmd: Command,
    input: { holdId: string; status: 'released' | 'expired'; ifActive?: boolean; deadline?: Date },
  ): Promise<Outcome<HoldView & { noop?: boolean }>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const current = await getHold(tx, cmd.customerId, input.holdId);
      if (current && current.status !== 'active' && (input.ifActive || input.deadline)) {
        return { ...holdView(current), noop: true };
      }
      if (current && input.deadline && current.expiresAt > input.deadline) return { ...holdView(current), noop: true };
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId);
      const released = releaseFromHold(hold, m, now);
      await m.payArrears(tx, wallet, now);
      hold.status = input.status;
      await this.save(tx, wallet, hold, m, 'hold_release', key, now);
      if (input.status === 'expired') {
        await notify(tx, [
          {
            type: 'hold.expired',
            customerId: hold.customerId,
            dedupeKey: composeKey('hold.expired', hold.customerId, hold.id),
            data: { holdId: hold.id, released: formatCredits(released), expiresAt: hold.expiresAt.toISOString() },
          },
        ]);
      }
      return holdView((await getHold(tx, cmd.customerId, input.holdId))!);
    });
  }

  /** The active hold and its lots; with `now`, refused once the hold's own expiry has come. */
  private async load(tx: Tx, customerId: string, holdId: string, now?: Date) {
    const hold = await getHold(tx, customerId, holdId);
    if (!hold) throw new DomainError('HoldNotFound', `hold ${holdId} does not exist`);
    if (hold.status !== 'active') throw notActive(hold);
    if (now && hold.expiresAt <= now) {
      throw new DomainError('HoldExpired', `hold ${holdId} expired at ${hold.expiresAt.toISOString()}`, {
        expiresAt: hold.expiresAt.toISOString(),
      });
    }
    const lots = await lotsByIds(
      tx,
      customerId,
      hold.lots.map((l) => l.lotId),
    );
    return { hold, m: new Movement(lots) };
  }

  private async save(tx: Tx, wallet: WalletRow, hold: HoldRow, m: Movement, type: string, key: string, now: Date) {
    await updateHold(tx, hold);
    await upsertHoldLots(tx, hold.customerId, hold.id, hold.lots);
    await m.write(tx, wallet, type, key, `hold:${hold.id}`, now);
  }
}

function refuse(wallet: WalletRow): 'frozen' | 'arrears' | null {
  if (wallet.status === 'frozen') return 'frozen';
  if (wallet.arrears > 0n) return 'arrears';
  return null;
}

interface Cover {
  draws: Draw[];
  lots: LotRow[];
  /** The part no lot covers, held on the overdraft limit. */
  overdraft: bigint;
  /** The wallet's available credits as invariant 6 counts them (may be negative). */
  available: bigint;
  /** How much `amount` exceeds available + overdraft limit (0: it fits). */
  shortfall: bigint;
}

/**
 * How a new reservation of `amount` would be covered: drawable lots in consumption order, then
 * the overdraft limit. Invariant 6's room: available = Σ drawable lots' remaining − arrears − what
 * the wallet's active holds already hold on overdraft; the reservation fits when
 * available + overdraftLimit − amount ≥ 0.
 */
async function cover(tx: Tx, wallet: WalletRow, amount: bigint, now: Date): Promise<Cover> {
  const lots = await openLotsOf(tx, [wallet.customerId]);
  const { draws, shortfall: uncovered } = allocate(lots, amount, now);
  const available = drawableTotal(lots, now) - wallet.arrears - (await activeOverdraft(tx, wallet.customerId));
  const room = available + wallet.overdraftLimit - amount;
  return { draws, lots, overdraft: uncovered, available, shortfall: room < 0n ? -room : 0n };
}

/** available → held for a covered reservation: each drawn lot, then the overdraft part on no lot. */
function reserve(hold: HoldRow, m: Movement, c: Cover) {
  for (const d of c.draws) {
    const lot = m.lots.get(d.lotId) ?? c.lots.find((l) => l.id === d.lotId)!;
    m.lots.set(lot.id, lot);
    lot.remaining -= d.amount;
    lot.held += d.amount;
    m.move('available', 'held', lot.id, d.amount);
    const hl = hold.lots.find((x) => x.lotId === lot.id);
    if (hl) hl.held += d.amount;
    else hold.lots.push({ lotId: lot.id, held: d.amount });
  }
  m.move('available', 'held', null, c.overdraft);
  hold.overdraft += c.overdraft;
}
