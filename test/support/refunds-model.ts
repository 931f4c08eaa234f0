import { ModelError, MoneyModel, type MLot } from './money-model';

/**
 * The money model (test/support/money-model.ts) plus money out, for
 * test/integration/refunds-props.test.ts: refunds (claw-back, the gateway's refund, the outcome,
 * the compensation) and usage corrections, written from API.md and PRODUCT.md, importing nothing
 * from production. Refused operations throw ModelError before changing anything.
 */
export interface MRefund {
  id: string;
  lotId: string;
  requested: bigint | null;
  status: 'pending' | 'succeeded' | 'failed';
  /** What the claw-back took and the money it fixed (cumulative rule). */
  clawed: { credits: bigint; money: bigint } | null;
  /** Money the gateway gave back under this refund's key (it may have, even when the reply was lost). */
  paid: bigint | null;
}

/** A usage transaction's consumption per source in consumption order (arrears, lot null, last). */
interface Draw {
  lotId: string | null;
  drawn: bigint;
  reversed: bigint;
}

export interface MCharge {
  costMinor: bigint;
  /** Paid by hand (the `manual` gateway records any refund, to be paid out offline). */
  manual: boolean;
  refundFails: boolean;
  refunded: bigint;
}

export type GatewayAnswer = 'ok' | 'retryable' | 'permanent';

const min = (a: bigint, b: bigint) => (a < b ? a : b);

export class RefundsModel extends MoneyModel {
  readonly refunds = new Map<string, MRefund>();
  readonly events = new Map<string, { tx: string; credits: bigint; corrected: boolean }>();
  private readonly usageTxs = new Map<string, Draw[]>();
  /** Sandbox charges by the lot they paid for. */
  readonly charges = new Map<string, MCharge>();

  /** One usage transaction for a request's events: drawn in consumption order, the rest arrears. */
  usage(tx: string, events: { id: string; credits: bigint }[]) {
    const { draws, arrears } = this.debit(events.reduce((s, e) => s + e.credits, 0n));
    const d: Draw[] = draws.map((x) => ({ lotId: x.lot.id, drawn: x.amount, reversed: 0n }));
    if (arrears > 0n) d.push({ lotId: null, drawn: arrears, reversed: 0n });
    this.usageTxs.set(tx, d);
    for (const e of events) this.events.set(e.id, { tx, credits: e.credits, corrected: false });
  }

  /** API.md: the unspent, unheld remainder of a paid purchased lot still in use. */
  refundable(l: MLot): bigint {
    const usable = l.closed === null && (l.expiresAt === null || this.now < l.expiresAt);
    return l.kind === 'purchased' && l.costMinor > 0n && usable ? l.remaining : 0n;
  }

  request(id: string, lotId: string, credits: bigint | null) {
    const l = this.lot(lotId);
    if (!l) throw new ModelError('LotNotFound');
    const refundable = this.refundable(l);
    if (refundable === 0n || (credits !== null && credits > refundable)) throw new ModelError('NotRefundable');
    this.refunds.set(id, { id, lotId, requested: credits, status: 'pending', clawed: null, paid: null });
  }

  /** Once per refund: a re-run returns what the first run took. */
  clawBack(id: string): { credits: bigint; money: bigint } {
    const r = this.refunds.get(id)!;
    if (r.clawed) return r.clawed;
    if (r.status !== 'pending') throw new ModelError('InvalidRequest');
    const l = this.lot(r.lotId)!;
    const refundable = this.refundable(l);
    const credits = r.requested ?? refundable;
    if (credits <= 0n || credits > refundable) throw new ModelError('NotRefundable');
    // Cumulative over the lot's refunds that took credits and did not fail.
    let before = { credits: 0n, money: 0n };
    for (const o of this.refunds.values())
      if (o.lotId === l.id && o !== r && o.clawed && o.status !== 'failed')
        before = { credits: before.credits + o.clawed.credits, money: before.money + o.clawed.money };
    const money = (l.costMinor * (before.credits + credits)) / l.original - before.money;
    this.move(this.begin(), 'available', 'refunded', l, credits);
    l.remaining -= credits;
    if (l.remaining === 0n && l.held === 0n) l.closed = 'refunded';
    r.clawed = { credits, money };
    return r.clawed;
  }

  /** The sandbox's answer to a refund under the refund's key (`reached`: the request got there). */
  gateway(id: string, reached: boolean): GatewayAnswer {
    const r = this.refunds.get(id)!;
    if (!reached) return 'retryable';
    if (r.paid !== null) return 'ok'; // the same key: the first refund again
    const c = this.charges.get(r.lotId)!;
    const money = r.clawed!.money;
    if (!c.manual && (c.refundFails || money <= 0n || c.refunded + money > c.costMinor)) return 'permanent';
    c.refunded += money;
    r.paid = money;
    return 'ok';
  }

  succeed(id: string) {
    const r = this.refunds.get(id)!;
    if (r.status === 'pending') r.status = 'succeeded';
  }

  /** The saga's compensation: exactly the clawed-back credits back to the lot, arrears paid first. */
  compensate(id: string) {
    const r = this.refunds.get(id)!;
    if (r.status !== 'pending') return;
    r.status = 'failed';
    if (!r.clawed) return;
    const l = this.lot(r.lotId)!;
    const j = this.begin();
    this.move(j, 'refunded', 'available', l, r.clawed.credits);
    l.remaining += r.clawed.credits;
    if (l.closed === 'refunded') l.closed = null;
    this.payArrears(j);
  }

  /**
   * API.md: reverses one event's debit — the uncorrected tail of its transaction, in reverse
   * consumption order — back to its lots while they are in use (never above their original),
   * else to the arrears, else into one new adjustment lot (`adjustmentId`, the ledger's).
   */
  correct(eventId: string, adjustmentId: () => string | undefined) {
    const e = this.events.get(eventId);
    if (!e) throw new ModelError('EventNotFound');
    if (e.corrected) throw new ModelError('AlreadyCorrected');
    e.corrected = true;
    const j = this.begin();
    const unplaced: bigint[] = [];
    let need = e.credits;
    for (const d of [...this.usageTxs.get(e.tx)!].reverse()) {
      const take = min(d.drawn - d.reversed, need);
      if (take === 0n) continue;
      d.reversed += take;
      need -= take;
      const l = d.lotId === null ? undefined : this.lot(d.lotId)!;
      const inUse = l && l.closed === null && l.effectiveAt <= this.now && (l.expiresAt ?? Infinity) > this.now;
      const back = l && inUse ? min(take, l.original - l.remaining - l.held) : 0n;
      if (l && back > 0n) {
        l.remaining += back;
        this.move(j, 'consumed', 'available', l, back);
      }
      if (take > back) unplaced.push(take - back);
    }
    let adjust = 0n;
    for (const u of unplaced) {
      const pay = min(u, this.arrears);
      this.arrears -= pay;
      adjust += u - pay;
    }
    this.payArrears(j);
    if (adjust > 0n) {
      const id = adjustmentId();
      if (!id) throw new Error(`the ledger made no adjustment lot (model: ${adjust} µc)`);
      this.lots.push({
        id,
        name: `adj.${eventId}`,
        kind: 'adjustment',
        priority: 40,
        original: adjust,
        remaining: adjust,
        held: 0n,
        effectiveAt: this.now,
        expiresAt: null,
        costMinor: 0n,
        rolloverCap: null,
        every: null,
        count: null,
        period: 1,
        closed: null,
      });
    }
  }
}
