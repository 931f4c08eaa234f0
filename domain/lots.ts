/**
 * Lots and the consumption order: pure functions, no I/O.
 * Order (never changed): priority asc, expiresAt asc (never-expiring last), cost per credit asc
 * (free before paid), effectiveAt asc, id asc.
 */
export const LOT_KINDS = ['purchased', 'promotional', 'allowance', 'adjustment'] as const;
export type LotKind = (typeof LOT_KINDS)[number];
export const DEFAULT_PRIORITY: Record<LotKind, number> = {
  promotional: 10,
  allowance: 20,
  purchased: 30,
  adjustment: 40,
};
export type LotStatus = 'active' | 'depleted' | 'expired' | 'voided' | 'refunded';

export interface LotForAllocation {
  id: string;
  priority: number;
  remaining: bigint;
  effectiveAt: Date;
  expiresAt: Date | null;
  /** Cost basis in minor units (0 for free lots) and the lot's original credits, to compare cost per credit. */
  costMinor: bigint;
  original: bigint;
  status: LotStatus;
}

/** A lot is drawable only inside [effectiveAt, expiresAt), whether or not its expiry is booked yet. */
export function isDrawable(lot: Pick<LotForAllocation, 'status' | 'effectiveAt' | 'expiresAt'>, at: Date): boolean {
  if (lot.status !== 'active') return false;
  if (lot.effectiveAt.getTime() > at.getTime()) return false;
  return lot.expiresAt === null || at.getTime() < lot.expiresAt.getTime();
}

/** Compares cost per credit a/b without division: costA/origA vs costB/origB. */
function compareCostPerCredit(a: LotForAllocation, b: LotForAllocation): number {
  const left = a.costMinor * (b.original === 0n ? 1n : b.original);
  const right = b.costMinor * (a.original === 0n ? 1n : a.original);
  return left < right ? -1 : left > right ? 1 : 0;
}

export function compareConsumptionOrder(a: LotForAllocation, b: LotForAllocation): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  const eb = b.expiresAt?.getTime() ?? Number.POSITIVE_INFINITY;
  if (ea !== eb) return ea < eb ? -1 : 1;
  const c = compareCostPerCredit(a, b);
  if (c !== 0) return c;
  const fa = a.effectiveAt.getTime();
  const fb = b.effectiveAt.getTime();
  if (fa !== fb) return fa < fb ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export interface Draw {
  lotId: string;
  amount: bigint;
}

export interface Allocation {
  draws: Draw[];
  /** What the drawable lots could not cover. */
  shortfall: bigint;
}

/** Draws `amount` from the drawable lots at `at`, in consumption order. Never takes a lot below 0. */
export function allocate(lots: readonly LotForAllocation[], amount: bigint, at: Date): Allocation {
  if (amount < 0n) throw new RangeError('allocate: negative amount');
  const ordered = lots.filter((l) => isDrawable(l, at) && l.remaining > 0n).sort(compareConsumptionOrder);
  const draws: Draw[] = [];
  let left = amount;
  for (const lot of ordered) {
    if (left === 0n) break;
    const take = lot.remaining < left ? lot.remaining : left;
    draws.push({ lotId: lot.id, amount: take });
    left -= take;
  }
  return { draws, shortfall: left };
}

/** Sum of what could be drawn right now. */
export function drawableTotal(lots: readonly LotForAllocation[], at: Date): bigint {
  return lots.reduce((s, l) => (isDrawable(l, at) ? s + l.remaining : s), 0n);
}
