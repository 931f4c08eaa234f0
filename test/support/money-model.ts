/**
 * An in-memory model of the money rules in PRODUCT.md, for the model-based property test
 * (test/integration/money-model.test.ts). Written from the spec, never from the ledger's code: it
 * imports nothing from production, so a bug there cannot leak into the expectation.
 * Amounts are bigint µc, times epoch ms. An operation that must be refused throws ModelError
 * before it changes anything; every transaction it writes is recorded in `journals` as the net
 * amount per (lot, account) that the ledger's entries must add up to.
 */
export type Kind = 'purchased' | 'promotional' | 'allowance' | 'adjustment';
export type Every = 'day' | 'week';

export const DEFAULT_PRIORITY: Record<Kind, number> = { promotional: 10, allowance: 20, purchased: 30, adjustment: 40 };
export const PERIOD_MS: Record<Every, number> = { day: 86_400_000, week: 7 * 86_400_000 };

export interface MLot {
  id: string;
  name: string;
  kind: Kind;
  priority: number;
  original: bigint;
  remaining: bigint;
  held: bigint;
  effectiveAt: number;
  expiresAt: number | null;
  costMinor: bigint;
  rolloverCap: bigint | null;
  every: Every | null;
  count: number | null;
  period: number;
  /** A booked end of life (or a lot fully refunded); otherwise the status follows from the balances. */
  closed: 'expired' | 'voided' | 'refunded' | null;
}

export type HoldStatus = 'active' | 'settled' | 'released' | 'expired';

export interface MHold {
  id: string;
  amount: bigint;
  held: bigint;
  /** The part of `held` on the overdraft limit, on no lot. */
  overdraft: bigint;
  captured: bigint;
  released: bigint;
  status: HoldStatus;
  expiresAt: number;
  /** The TTL the hold was placed with (a timer that slept until then is stale after an extend). */
  placedExpiresAt: number;
  lots: Map<string, bigint>;
}

export interface GrantSpec {
  name: string;
  kind: Kind;
  amount: bigint;
  priority?: number;
  effectiveAt?: number;
  expiresAt?: number;
  costMinor?: bigint;
  rolloverCap?: bigint;
  every?: Every;
  count?: number;
}

export type Journal = Map<string, bigint>;

export class ModelError extends Error {
  constructor(readonly code: string) {
    super(code);
  }
}

export const statusOf = (l: MLot) => l.closed ?? (l.remaining === 0n && l.held === 0n ? 'depleted' : 'active');

const min = (a: bigint, b: bigint) => (a < b ? a : b);

/**
 * PRODUCT.md's consumption order: lowest priority number, then earliest expiresAt (never-expiring
 * last), then lower cost per credit (cost / original, compared crosswise), then earliest
 * effectiveAt, then lot id.
 */
export function consumptionOrder(a: MLot, b: MLot): number {
  if (a.priority !== b.priority) return a.priority < b.priority ? -1 : 1;
  const ea = a.expiresAt ?? Infinity;
  const eb = b.expiresAt ?? Infinity;
  if (ea !== eb) return ea < eb ? -1 : 1;
  const ca = a.costMinor * b.original;
  const cb = b.costMinor * a.original;
  if (ca !== cb) return ca < cb ? -1 : 1;
  if (a.effectiveAt !== b.effectiveAt) return a.effectiveAt < b.effectiveAt ? -1 : 1;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

export class MoneyModel {
  readonly lots: MLot[] = [];
  readonly holds = new Map<string, MHold>();
  arrears = 0n;
  /** The transactions written by the current step. */
  journals: Journal[] = [];

  constructor(
    readonly overdraftLimit: bigint,
    public now: number,
  ) {}

  lot(idOrName: string): MLot | undefined {
    return this.lots.find((l) => l.id === idOrName || l.name === idOrName);
  }

  /** Cached balances, by invariant 3: available + held = Σ lots (remaining + held) − arrears. */
  wallet() {
    const remaining = this.lots.reduce((s, l) => s + l.remaining, 0n);
    const held = this.lots.reduce((s, l) => s + l.held, 0n);
    const overdraft = this.overdraftHeld();
    return { available: remaining - this.arrears - overdraft, held: held + overdraft, arrears: this.arrears };
  }

  /** What active holds hold beyond their lots, on the overdraft limit. */
  overdraftHeld(): bigint {
    return [...this.holds.values()].reduce((s, h) => (h.status === 'active' ? s + h.overdraft : s), 0n);
  }

  /** Drawable only inside [effectiveAt, expiresAt), booked or not. */
  drawable(l: MLot): boolean {
    return (
      l.closed === null &&
      l.remaining > 0n &&
      l.effectiveAt <= this.now &&
      (l.expiresAt === null || this.now < l.expiresAt)
    );
  }

  /** Invariant 6's available: drawable credits − arrears − what active holds hold on overdraft. */
  spendable(): bigint {
    const drawable = this.lots.reduce((s, l) => (this.drawable(l) ? s + l.remaining : s), 0n);
    return drawable - this.arrears - this.overdraftHeld();
  }

  grant(id: string, g: GrantSpec): MLot {
    const effectiveAt = g.effectiveAt ?? this.now;
    const expiresAt = g.expiresAt ?? (g.every ? effectiveAt + PERIOD_MS[g.every] : null);
    if (g.amount <= 0n || (expiresAt !== null && expiresAt <= Math.max(effectiveAt, this.now))) {
      throw new ModelError('InvalidRequest');
    }
    const lot: MLot = {
      id,
      name: g.name,
      kind: g.kind,
      priority: g.priority ?? DEFAULT_PRIORITY[g.kind],
      original: g.amount,
      remaining: g.amount,
      held: 0n,
      effectiveAt,
      expiresAt,
      costMinor: g.costMinor ?? 0n,
      rolloverCap: g.rolloverCap ?? null,
      every: g.every ?? null,
      count: g.count ?? null,
      period: 1,
      closed: null,
    };
    this.lots.push(lot);
    const j = this.begin();
    this.move(j, `issued:${g.kind}`, 'available', lot, g.amount);
    this.payArrears(j);
    return lot;
  }

  /**
   * Voids the unused, unheld part of an active lot; a held part stays with its hold. Past its
   * expiresAt the unheld part has expired already (expiry is the clock's, booked or not), so there
   * is nothing left to void.
   */
  voidLot(idOrName: string): bigint {
    const l = this.lot(idOrName);
    if (!l) throw new ModelError('LotNotFound');
    if (statusOf(l) !== 'active' || (l.expiresAt !== null && l.expiresAt <= this.now)) {
      throw new ModelError('LotNotActive');
    }
    const voided = l.remaining;
    this.move(this.begin(), 'available', 'voided', l, voided);
    l.remaining = 0n;
    l.closed = 'voided';
    return voided;
  }

  /** Usage is a fact: drawn in consumption order, the rest becomes arrears. */
  debit(amount: bigint) {
    return this.consumeUsage(this.begin(), amount);
  }

  place(id: string, amount: bigint, expiresAt: number) {
    const available = this.spendable();
    const room = available + this.overdraftLimit - amount;
    if (this.arrears > 0n || room < 0n) {
      return {
        outcome: 'rejected' as const,
        reason: this.arrears > 0n ? 'arrears' : 'insufficient_credits',
        available,
        shortfall: this.arrears > 0n ? amount : -room,
      };
    }
    const h: MHold = {
      id,
      amount,
      held: amount,
      overdraft: 0n,
      captured: 0n,
      released: 0n,
      status: 'active',
      expiresAt,
      placedExpiresAt: expiresAt,
      lots: new Map(),
    };
    this.holds.set(id, h);
    this.reserve(h, amount, this.begin());
    return { outcome: 'placed' as const };
  }

  capture(id: string, amount: bigint) {
    const h = this.activeHold(id);
    if (amount > h.held) throw new ModelError('InvalidRequest');
    const j = this.begin();
    this.captureHeld(h, amount, j);
    this.payArrears(j);
  }

  extend(id: string, amount: bigint, expiresAt: number) {
    const h = this.activeHold(id);
    if (amount > 0n && (this.arrears > 0n || this.spendable() + this.overdraftLimit - amount < 0n)) {
      throw new ModelError('InsufficientCredits');
    }
    const j = this.begin();
    if (amount > 0n) {
      this.reserve(h, amount, j);
      h.amount += amount;
      h.held += amount;
    }
    if (expiresAt > h.expiresAt) h.expiresAt = expiresAt;
  }

  /** Captures `amount` in all: from the hold first, beyond it like usage; releases the rest. */
  settle(id: string, amount: bigint) {
    const h = this.activeHold(id);
    if (amount < h.captured) throw new ModelError('InvalidRequest');
    const j = this.begin();
    const toCapture = amount - h.captured;
    const fromHold = min(toCapture, h.held);
    this.captureHeld(h, fromHold, j);
    const released = this.releaseHeld(h, j);
    const overage = toCapture - fromHold;
    this.consumeUsage(j, overage);
    h.captured += overage;
    this.payArrears(j);
    h.status = 'settled';
    return { captured: h.captured, released, overage };
  }

  /** With a deadline (the TTL timer's), a hold that finished or moved past it is left alone. */
  release(id: string, status: 'released' | 'expired', deadline?: number): { noop: boolean } {
    const h = this.holds.get(id);
    if (!h) throw new ModelError('HoldNotFound');
    if (deadline !== undefined && (h.status !== 'active' || h.expiresAt > deadline)) return { noop: true };
    if (h.status !== 'active') throw new ModelError('HoldNotActive');
    const j = this.begin();
    this.releaseHeld(h, j);
    this.payArrears(j);
    h.status = status;
    return { noop: false };
  }

  /** What the lifecycle owes now: a lot past its end not booked, or arrears beside drawable credits. */
  lifecycleDue(): boolean {
    const ended = this.lots.some((l) => l.closed === null && l.expiresAt !== null && l.expiresAt <= this.now);
    return ended || (this.arrears > 0n && this.lots.some((l) => this.drawable(l)));
  }

  /** The coming moments a lot starts or ends (the lifecycle's timers), soonest first. */
  deadlines(): number[] {
    const times = this.lots.filter((l) => l.closed === null).flatMap((l) => [l.effectiveAt, l.expiresAt ?? Infinity]);
    return [...new Set(times.filter((t) => t > this.now && t < Infinity))].sort((a, b) => a - b);
  }

  /**
   * Books everything due by now: a lot's unheld remainder expires; a recurring allowance rolls its
   * unused part over up to its cap (only into a next period), the rest expires, and the next
   * period is issued, paying arrears first. Then pays arrears from whatever is drawable. Deadlines
   * at the same moment go in lot id order. `newIds` gives the ids the ledger chose for a renewal.
   */
  tick(newIds: (lotId: string) => { renewal?: string; rollover?: string }) {
    for (;;) {
      const due = this.lots
        .filter((l) => l.closed === null && l.expiresAt !== null && l.expiresAt <= this.now)
        .sort((a, b) => a.expiresAt! - b.expiresAt! || (a.id < b.id ? -1 : 1));
      if (due.length === 0) break;
      for (const l of due) {
        if (l.every) this.renew(l, newIds(l.id));
        else {
          this.move(this.begin(), 'available', 'expired', l, l.remaining);
          l.remaining = 0n;
          l.closed = 'expired';
        }
      }
    }
    this.payArrears(this.begin());
  }

  private renew(l: MLot, ids: { renewal?: string; rollover?: string }) {
    const j = this.begin();
    const hasNext = l.count === null || l.period < l.count;
    const rolled = hasNext ? min(l.remaining, l.rolloverCap ?? 0n) : 0n;
    const boundary = l.expiresAt!;
    const next = (id: string | undefined, what: string, original: bigint, recurring: boolean): MLot => {
      if (!id) throw new Error(`the ledger created no ${what} lot for ${l.name} (model: ${original} µc)`);
      const lot: MLot = {
        ...l,
        id,
        name: `${l.name.split('.')[0]}.p${l.period + 1}${recurring ? '' : '.rollover'}`,
        original,
        remaining: original,
        held: 0n,
        effectiveAt: boundary,
        expiresAt: boundary + PERIOD_MS[l.every!],
        costMinor: 0n,
        rolloverCap: recurring ? l.rolloverCap : null,
        every: recurring ? l.every : null,
        count: recurring ? l.count : null,
        period: l.period + 1,
        closed: null,
      };
      this.lots.push(lot);
      return lot;
    };
    this.move(j, 'available', 'expired', l, l.remaining - rolled);
    if (rolled > 0n) this.moveBetween(j, l, next(ids.rollover, 'rollover', rolled, false), rolled);
    l.remaining = 0n;
    l.closed = 'expired';
    if (hasNext)
      this.move(j, `issued:${l.kind}`, 'available', next(ids.renewal, 'renewal', l.original, true), l.original);
    this.payArrears(j);
  }

  private activeHold(id: string): MHold {
    const h = this.holds.get(id);
    if (!h) throw new ModelError('HoldNotFound');
    if (h.status !== 'active') throw new ModelError('HoldNotActive');
    if (h.expiresAt <= this.now) throw new ModelError('HoldExpired');
    return h;
  }

  /** Takes up to `amount` of drawable credits in consumption order (remaining only). */
  private take(amount: bigint): { draws: { lot: MLot; amount: bigint }[]; left: bigint } {
    const draws: { lot: MLot; amount: bigint }[] = [];
    let left = amount;
    for (const lot of this.lots.filter((l) => this.drawable(l)).sort(consumptionOrder)) {
      if (left === 0n) break;
      const t = min(lot.remaining, left);
      lot.remaining -= t;
      left -= t;
      draws.push({ lot, amount: t });
    }
    return { draws, left };
  }

  private consumeUsage(j: Journal, amount: bigint) {
    const { draws, left } = this.take(amount);
    for (const d of draws) this.move(j, 'available', 'consumed', d.lot, d.amount);
    this.move(j, 'available', 'consumed', null, left);
    this.arrears += left;
    return { draws, arrears: left };
  }

  /** Arrears are paid first from drawable credits: each lot's part moves onto the unassigned account. */
  protected payArrears(j: Journal) {
    const { draws } = this.take(this.arrears);
    for (const d of draws) {
      this.moveBetween(j, d.lot, null, d.amount);
      this.arrears -= d.amount;
    }
  }

  private reserve(h: MHold, amount: bigint, j: Journal) {
    const { draws, left } = this.take(amount);
    for (const d of draws) {
      d.lot.held += d.amount;
      h.lots.set(d.lot.id, (h.lots.get(d.lot.id) ?? 0n) + d.amount);
      this.move(j, 'available', 'held', d.lot, d.amount);
    }
    this.move(j, 'available', 'held', null, left);
    h.overdraft += left;
  }

  /** The hold's lots in consumption order, then its overdraft part, which becomes arrears. */
  private captureHeld(h: MHold, amount: bigint, j: Journal) {
    let left = amount;
    const lots = [...h.lots.entries()].filter(([, v]) => v > 0n).map(([id]) => this.lot(id)!);
    for (const l of lots.sort(consumptionOrder)) {
      const t = min(h.lots.get(l.id)!, left);
      h.lots.set(l.id, h.lots.get(l.id)! - t);
      l.held -= t;
      left -= t;
      this.move(j, 'held', 'consumed', l, t);
    }
    h.overdraft -= left;
    this.move(j, 'held', 'consumed', null, left);
    this.arrears += left;
    h.held -= amount;
    h.captured += amount;
  }

  /** Back to available; a lot past expiry (booked or not) expires, a voided lot's part is voided. */
  private releaseHeld(h: MHold, j: Journal): bigint {
    let total = h.overdraft;
    for (const [id, amount] of h.lots) {
      const l = this.lot(id)!;
      l.held -= amount;
      const pastExpiry = l.closed === 'expired' || (l.expiresAt !== null && l.expiresAt <= this.now);
      const to = l.closed === 'voided' ? 'voided' : pastExpiry ? 'expired' : 'available';
      if (to === 'available') l.remaining += amount;
      this.move(j, 'held', to, l, amount);
      total += amount;
      h.lots.set(id, 0n);
    }
    this.move(j, 'held', 'available', null, h.overdraft);
    h.overdraft = 0n;
    h.released += total;
    h.held = 0n;
    return total;
  }

  protected begin(): Journal {
    const j: Journal = new Map();
    this.journals.push(j);
    return j;
  }

  private post(j: Journal, account: string, lot: MLot | null, amount: bigint) {
    const key = `${lot?.id ?? '-'} ${account}`;
    j.set(key, (j.get(key) ?? 0n) + amount);
  }

  protected move(j: Journal, from: string, to: string, lot: MLot | null, amount: bigint) {
    this.post(j, from, lot, -amount);
    this.post(j, to, lot, amount);
  }

  /** available credits from one lot to another (null: the unassigned account arrears sit on). */
  private moveBetween(j: Journal, from: MLot, to: MLot | null, amount: bigint) {
    this.post(j, 'available', from, -amount);
    this.post(j, 'available', to, amount);
  }
}
