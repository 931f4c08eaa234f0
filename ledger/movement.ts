import { randomUUID } from 'node:crypto';
import { compareConsumptionOrder, type LotStatus } from '../domain/lots';
import { applyWalletDeltas, type WalletRow } from '../db/customers';
import type { HoldRow } from '../db/holds';
import { appendTransaction, type Account, type Entry } from '../db/ledger';
import { openLotsOf, updateLots, type LotRow } from '../db/lots';
import type { Tx } from '../db/pool';
import { payArrears } from './arrears';
import { ensureFits } from './limits';

/** Mutable working set of one hold movement: lots touched, entries, wallet deltas. */
export class Movement {
  readonly entries: Entry[] = [];
  readonly lots = new Map<string, LotRow>();
  available = 0n;
  held = 0n;
  arrears = 0n;

  constructor(lots: LotRow[]) {
    for (const l of lots) this.lots.set(l.id, l);
  }

  move(from: Account, to: Account, lotId: string | null, amount: bigint) {
    if (amount === 0n) return;
    this.entries.push({ account: from, lotId, amount: -amount }, { account: to, lotId, amount });
    if (from === 'available') this.available -= amount;
    if (from === 'held') this.held -= amount;
    if (to === 'available') this.available += amount;
    if (to === 'held') this.held += amount;
  }

  /** The lots this movement may draw: its own (as changed so far) and every other open lot. */
  async drawable(tx: Tx, customerId: string): Promise<LotRow[]> {
    const others = (await openLotsOf(tx, [customerId])).filter((l) => !this.lots.has(l.id));
    return [...this.lots.values(), ...others];
  }

  /** Pays the wallet's arrears (as they stand after this movement) from credits drawable at `at`. */
  async payArrears(tx: Tx, wallet: WalletRow, at: Date) {
    const owed = wallet.arrears + this.arrears;
    if (owed <= 0n) return;
    const pay = payArrears(await this.drawable(tx, wallet.customerId), owed, at);
    for (const l of pay.lots) this.lots.set(l.id, l);
    this.entries.push(...pay.entries);
    this.arrears -= pay.paid;
  }

  async write(tx: Tx, wallet: WalletRow, type: string, key: string, reference: string, now: Date) {
    ensureFits("the wallet's available credits", wallet.available + this.available);
    ensureFits("the wallet's held credits", wallet.held + this.held);
    ensureFits("the wallet's arrears", wallet.arrears + this.arrears);
    const transactionId = randomUUID();
    await appendTransaction(tx, {
      id: transactionId,
      customerId: wallet.customerId,
      type,
      idempotencyKey: key,
      reference,
      createdAt: now,
      entries: this.entries,
    });
    await updateLots(
      tx,
      [...this.lots.values()].map((l) => ({ id: l.id, remaining: l.remaining, held: l.held, status: lotStatus(l) })),
    );
    await applyWalletDeltas(tx, wallet.customerId, {
      available: this.available,
      held: this.held,
      arrears: this.arrears,
    });
    return transactionId;
  }
}

function lotStatus(l: LotRow): LotStatus {
  if (l.status === 'depleted' && l.remaining > 0n) return 'active';
  if (l.status === 'active' && l.remaining === 0n && l.held === 0n) return 'depleted';
  return l.status;
}

/**
 * held → consumed: the hold's lots in consumption order first, its overdraft part last. Captured
 * overdraft was never backed by a lot, so it becomes arrears (like usage no lot could pay).
 */
export function captureFromHold(hold: HoldRow, m: Movement, amount: bigint) {
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
  if (left > hold.overdraft) throw new Error(`capture of ${amount} exceeds hold ${hold.id}`);
  hold.overdraft -= left;
  m.move('held', 'consumed', null, left);
  m.arrears += left;
  hold.held -= amount;
  hold.captured += amount;
}

/**
 * held → available; for a lot past expiry → expired; for a voided lot → voided; the overdraft part
 * back to unassigned available. Returns the total released.
 */
export function releaseFromHold(hold: HoldRow, m: Movement, now: Date): bigint {
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
  m.move('held', 'available', null, hold.overdraft);
  total += hold.overdraft;
  hold.overdraft = 0n;
  hold.released += total;
  hold.held = 0n;
  return total;
}
