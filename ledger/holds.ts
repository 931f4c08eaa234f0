import { randomUUID } from 'node:crypto';
import { formatCredits } from '../domain/amount';
import { DomainError } from '../domain/errors';
import { allocate, compareConsumptionOrder, drawableTotal, type LotStatus } from '../domain/lots';
import type { WalletRow } from '../db/customers';
import { applyWalletDeltas } from '../db/customers';
import { getHold, insertHold, updateHold, upsertHoldLots, type HoldRow, type HoldStatus } from '../db/holds';
import { appendTransaction, type Entry } from '../db/ledger';
import { lotsByIds, openLotsOf, updateLots, type LotRow } from '../db/lots';
import type { Tx } from '../db/pool';
import type { Command, Ledger, Outcome } from './ledger';

/**
 * Hold movements, all through Ledger.run (one DB transaction, idempotency key, wallet lock).
 * A hold reserves credits lot by lot: available → held. Capture moves held → consumed; release
 * moves held → available, or → expired / voided for a lot that expired or was voided meanwhile.
 */
export interface HoldView {
  holdId: string;
  customerId: string;
  workflowId: string;
  status: HoldStatus;
  amount: string;
  held: string;
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
  captured: formatCredits(h.captured),
  released: formatCredits(h.released),
  expiresAt: h.expiresAt.toISOString(),
  lots: h.lots.map((l) => ({ lotId: l.lotId, held: formatCredits(l.held) })),
});

const notActive = (h: HoldRow) => new DomainError('HoldNotActive', `hold ${h.id} is ${h.status}`, { status: h.status });

/** Mutable working set of one movement: lots touched, entries, wallet deltas. */
class Movement {
  readonly entries: Entry[] = [];
  readonly lots = new Map<string, LotRow>();
  available = 0n;
  held = 0n;
  arrears = 0n;

  constructor(lots: LotRow[]) {
    for (const l of lots) this.lots.set(l.id, l);
  }

  move(from: Entry['account'], to: Entry['account'], lotId: string | null, amount: bigint) {
    if (amount === 0n) return;
    this.entries.push({ account: from, lotId, amount: -amount }, { account: to, lotId, amount });
    if (from === 'available') this.available -= amount;
    if (from === 'held') this.held -= amount;
    if (to === 'available') this.available += amount;
    if (to === 'held') this.held += amount;
  }

  async write(tx: Tx, customerId: string, type: string, key: string, reference: string, now: Date) {
    const transactionId = randomUUID();
    await appendTransaction(tx, {
      id: transactionId,
      customerId,
      type,
      idempotencyKey: key,
      reference,
      createdAt: now,
      entries: this.entries,
    });
    await updateLots(
      tx,
      [...this.lots.values()].map((l) => ({ id: l.id, remaining: l.remaining, held: l.held, status: settleStatus(l) })),
    );
    await applyWalletDeltas(tx, customerId, { available: this.available, held: this.held, arrears: this.arrears });
    return transactionId;
  }
}

function settleStatus(l: LotRow): LotStatus {
  if (l.status === 'depleted' && l.remaining > 0n) return 'active';
  if (l.status === 'active' && l.remaining === 0n && l.held === 0n) return 'depleted';
  return l.status;
}

export class HoldLedger {
  constructor(private readonly ledger: Ledger) {}

  place(
    cmd: Command,
    input: { holdId: string; workflowId: string; amount: bigint; expiresAt: Date; metadata?: Record<string, string> },
  ): Promise<Outcome<PlaceResult>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const existing = await getHold(tx, cmd.customerId, input.holdId);
      if (existing) throw new DomainError('HoldExists', `hold ${input.holdId} already exists`);
      const refusal = refuse(wallet);
      const open = await openLotsOf(tx, [cmd.customerId]);
      const { draws, shortfall } = allocate(open, input.amount, now);
      if (refusal || shortfall > 0n) {
        return {
          outcome: 'rejected',
          reason: refusal ?? 'insufficient_credits',
          available: formatCredits(drawableTotal(open, now)),
          shortfall: formatCredits(refusal ? input.amount : shortfall),
        };
      }
      const m = new Movement(open.filter((l) => draws.some((d) => d.lotId === l.id)));
      for (const d of draws) {
        const lot = m.lots.get(d.lotId)!;
        lot.remaining -= d.amount;
        lot.held += d.amount;
        m.move('available', 'held', lot.id, d.amount);
      }
      const hold: Omit<HoldRow, 'createdAt' | 'lots'> = {
        customerId: cmd.customerId,
        id: input.holdId,
        workflowId: input.workflowId,
        amount: input.amount,
        held: input.amount,
        captured: 0n,
        released: 0n,
        status: 'active',
        expiresAt: input.expiresAt,
        metadata: input.metadata ?? {},
      };
      await insertHold(tx, hold);
      await upsertHoldLots(
        tx,
        cmd.customerId,
        input.holdId,
        draws.map((d) => ({ lotId: d.lotId, held: d.amount })),
      );
      await m.write(tx, cmd.customerId, 'hold_place', key, `hold:${input.holdId}`, now);
      return { outcome: 'placed', hold: holdView((await getHold(tx, cmd.customerId, input.holdId))!) };
    });
  }

  capture(cmd: Command, input: { holdId: string; amount: bigint }): Promise<Outcome<HoldView>> {
    return this.ledger.run(cmd, async ({ tx, now, key }) => {
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId);
      if (input.amount > hold.held) {
        throw new DomainError(
          'InvalidRequest',
          `capture of ${formatCredits(input.amount)} exceeds the ${formatCredits(hold.held)} held; settle charges more`,
        );
      }
      captureFromHold(hold, m, input.amount);
      await this.save(tx, hold, m, 'hold_capture', key, now);
      return holdView((await getHold(tx, cmd.customerId, input.holdId))!);
    });
  }

  extend(cmd: Command, input: { holdId: string; amount?: bigint; expiresAt?: Date }): Promise<Outcome<HoldView>> {
    return this.ledger.run(cmd, async ({ tx, wallet, now, key }) => {
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId);
      if (input.amount && input.amount > 0n) {
        const refusal = refuse(wallet);
        const open = await openLotsOf(tx, [cmd.customerId]);
        const { draws, shortfall } = allocate(open, input.amount, now);
        if (refusal || shortfall > 0n) {
          throw new DomainError('InsufficientCredits', 'not enough credits to extend the hold', {
            shortfall: formatCredits(refusal ? input.amount : shortfall),
            available: formatCredits(input.amount - shortfall),
          });
        }
        for (const d of draws) {
          const lot = m.lots.get(d.lotId) ?? open.find((l) => l.id === d.lotId)!;
          m.lots.set(lot.id, lot);
          lot.remaining -= d.amount;
          lot.held += d.amount;
          m.move('available', 'held', lot.id, d.amount);
          const hl = hold.lots.find((x) => x.lotId === lot.id);
          if (hl) hl.held += d.amount;
          else hold.lots.push({ lotId: lot.id, held: d.amount });
        }
        hold.amount += input.amount;
        hold.held += input.amount;
      }
      if (input.expiresAt && input.expiresAt > hold.expiresAt) hold.expiresAt = input.expiresAt;
      await this.save(tx, hold, m, 'hold_extend', key, now);
      return holdView((await getHold(tx, cmd.customerId, input.holdId))!);
    });
  }

  /** Final amount: capture it (beyond the hold from available credits, arrears if none), release the rest. */
  settle(cmd: Command, input: { holdId: string; amount: bigint }): Promise<Outcome<SettleResult>> {
    return this.ledger.run(cmd, async ({ tx, now, key }) => {
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId);
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
        const open = (await openLotsOf(tx, [cmd.customerId])).map((l) => m.lots.get(l.id) ?? l);
        const { draws, shortfall } = allocate(open, overage, now);
        for (const d of draws) {
          const lot = open.find((l) => l.id === d.lotId)!;
          m.lots.set(lot.id, lot);
          lot.remaining -= d.amount;
          m.move('available', 'consumed', lot.id, d.amount);
        }
        m.move('available', 'consumed', null, shortfall);
        m.arrears += shortfall;
        hold.captured += overage;
      }
      hold.status = 'settled';
      await this.save(tx, hold, m, 'hold_settle', key, now);
      return {
        hold: holdView((await getHold(tx, cmd.customerId, input.holdId))!),
        captured: formatCredits(hold.captured),
        released: formatCredits(released),
        overage: formatCredits(overage),
      };
    });
  }

  /** Releases everything still held. With `ifActive`, a finished hold is a no-op (sweeper, TTL races). */
  release(
    cmd: Command,
    input: { holdId: string; status: 'released' | 'expired'; ifActive?: boolean },
  ): Promise<Outcome<HoldView & { noop?: boolean }>> {
    return this.ledger.run(cmd, async ({ tx, now, key }) => {
      const current = await getHold(tx, cmd.customerId, input.holdId);
      if (current && current.status !== 'active' && input.ifActive) return { ...holdView(current), noop: true };
      const { hold, m } = await this.load(tx, cmd.customerId, input.holdId);
      releaseFromHold(hold, m, now);
      hold.status = input.status;
      await this.save(tx, hold, m, 'hold_release', key, now);
      return holdView((await getHold(tx, cmd.customerId, input.holdId))!);
    });
  }

  private async load(tx: Tx, customerId: string, holdId: string) {
    const hold = await getHold(tx, customerId, holdId);
    if (!hold) throw new DomainError('HoldNotFound', `hold ${holdId} does not exist`);
    if (hold.status !== 'active') throw notActive(hold);
    const lots = await lotsByIds(
      tx,
      customerId,
      hold.lots.map((l) => l.lotId),
    );
    return { hold, m: new Movement(lots) };
  }

  private async save(tx: Tx, hold: HoldRow, m: Movement, type: string, key: string, now: Date) {
    await updateHold(tx, hold);
    await upsertHoldLots(tx, hold.customerId, hold.id, hold.lots);
    await m.write(tx, hold.customerId, type, key, `hold:${hold.id}`, now);
  }
}

function refuse(wallet: WalletRow): 'frozen' | 'arrears' | null {
  if (wallet.status === 'frozen') return 'frozen';
  if (wallet.arrears > 0n) return 'arrears';
  return null;
}

/** held → consumed, drawing the hold's lots in consumption order. */
function captureFromHold(hold: HoldRow, m: Movement, amount: bigint) {
  let left = amount;
  const lots = hold.lots
    .map((hl) => ({ hl, lot: m.lots.get(hl.lotId)! }))
    .sort((a, b) => compareConsumptionOrder(a.lot, b.lot));
  for (const { hl, lot } of lots) {
    if (left === 0n) break;
    const take = hl.held < left ? hl.held : left;
    hl.held -= take;
    lot.held -= take;
    m.move('held', 'consumed', lot.id, take);
    left -= take;
  }
  hold.held -= amount;
  hold.captured += amount;
}

/** held → available; for a lot past expiry → expired; for a voided lot → voided. Returns the total. */
function releaseFromHold(hold: HoldRow, m: Movement, now: Date): bigint {
  let total = 0n;
  for (const hl of hold.lots) {
    if (hl.held === 0n) continue;
    const lot = m.lots.get(hl.lotId)!;
    lot.held -= hl.held;
    if (lot.status === 'voided') m.move('held', 'voided', lot.id, hl.held);
    else if (lot.status === 'expired' || (lot.expiresAt && lot.expiresAt <= now))
      m.move('held', 'expired', lot.id, hl.held);
    else {
      lot.remaining += hl.held;
      m.move('held', 'available', lot.id, hl.held);
    }
    total += hl.held;
    hl.held = 0n;
  }
  hold.released += total;
  hold.held = 0n;
  return total;
}
