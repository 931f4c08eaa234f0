import fc from 'fast-check';
import type { LotRow } from '../../db/lots';
import { allocate, compareConsumptionOrder, isDrawable, type LotForAllocation } from '../../domain/lots';
import { payArrears } from '../../ledger/arrears';

const T0 = new Date('2026-01-01T00:00:00Z');
const at = (days: number) => new Date(T0.getTime() + days * 86_400_000);

function lot(p: Partial<LotForAllocation> & { id: string }): LotForAllocation {
  return {
    priority: 30,
    remaining: 100n,
    original: 100n,
    effectiveAt: at(0),
    expiresAt: null,
    costMinor: 0n,
    status: 'active',
    ...p,
  };
}

describe('consumption order', () => {
  it('orders by priority, then expiry (never last), then cost per credit, then effectiveAt, then id', () => {
    const lots = [
      lot({ id: 'g', priority: 40 }),
      lot({ id: 'f', priority: 10, expiresAt: null }),
      lot({ id: 'e', priority: 10, expiresAt: at(30), costMinor: 500n }),
      lot({ id: 'd', priority: 10, expiresAt: at(30), costMinor: 0n, effectiveAt: at(-1) }),
      lot({ id: 'c', priority: 10, expiresAt: at(30), costMinor: 0n, effectiveAt: at(-2) }),
      lot({ id: 'b', priority: 10, expiresAt: at(10) }),
      lot({ id: 'a', priority: 10, expiresAt: at(30), costMinor: 0n, effectiveAt: at(-2) }),
    ];
    expect([...lots].sort(compareConsumptionOrder).map((l) => l.id)).toEqual(['b', 'a', 'c', 'd', 'e', 'f', 'g']);
  });

  it('compares cost per credit, not total cost', () => {
    const cheap = lot({ id: 'x', costMinor: 1000n, original: 1000n }); // 1 per credit
    const dear = lot({ id: 'y', costMinor: 200n, original: 100n }); // 2 per credit
    expect([dear, cheap].sort(compareConsumptionOrder).map((l) => l.id)).toEqual(['x', 'y']);
  });
});

describe('drawable window', () => {
  it('is [effectiveAt, expiresAt): not before, not at or after expiry, only active', () => {
    const l = lot({ id: 'a', effectiveAt: at(1), expiresAt: at(2) });
    expect(isDrawable(l, at(0.5))).toBe(false);
    expect(isDrawable(l, at(1))).toBe(true);
    expect(isDrawable(l, new Date(at(2).getTime() - 1))).toBe(true);
    expect(isDrawable(l, at(2))).toBe(false);
    expect(isDrawable({ ...l, status: 'voided' }, at(1.5))).toBe(false);
  });

  it('never draws an expired lot even though its expiry is not booked yet', () => {
    const r = allocate([lot({ id: 'old', priority: 1, expiresAt: at(1) }), lot({ id: 'new' })], 150n, at(1));
    expect(r).toEqual({ draws: [{ lotId: 'new', amount: 100n }], shortfall: 50n });
  });
});

const arbLots = fc
  .uniqueArray(
    fc.record({
      id: fc.string({ minLength: 1, maxLength: 4 }),
      priority: fc.integer({ min: 0, max: 50 }),
      remaining: fc.bigInt({ min: 0n, max: 1000n }),
      effectiveDay: fc.integer({ min: -5, max: 5 }),
      expiresIn: fc.option(fc.integer({ min: 1, max: 20 })),
      costMinor: fc.bigInt({ min: 0n, max: 5000n }),
      status: fc.constantFrom('active', 'active', 'active', 'voided', 'expired' as const),
    }),
    { selector: (l) => l.id, maxLength: 12 },
  )
  .map((ls) =>
    ls.map((l) =>
      lot({
        id: l.id,
        priority: l.priority,
        remaining: l.remaining,
        original: 1000n,
        effectiveAt: at(l.effectiveDay),
        expiresAt: l.expiresIn === null ? null : at(l.effectiveDay + l.expiresIn),
        costMinor: l.costMinor,
        status: l.status,
      }),
    ),
  );

describe('allocate (properties)', () => {
  it('draws exactly the amount or all that is drawable, never more than a lot holds, only drawable lots', () => {
    fc.assert(
      fc.property(
        arbLots,
        fc.bigInt({ min: 0n, max: 15_000n }),
        fc.integer({ min: -6, max: 26 }),
        (lots, amount, day) => {
          const now = at(day);
          const { draws, shortfall } = allocate(lots, amount, now);
          const byId = new Map(lots.map((l) => [l.id, l]));
          const drawn = draws.reduce((s, d) => s + d.amount, 0n);
          expect(drawn + shortfall).toBe(amount);
          expect(shortfall >= 0n).toBe(true);
          const drawable = lots.filter((l) => isDrawable(l, now)).reduce((s, l) => s + l.remaining, 0n);
          expect(shortfall).toBe(amount > drawable ? amount - drawable : 0n);
          for (const d of draws) {
            const l = byId.get(d.lotId)!;
            expect(isDrawable(l, now)).toBe(true);
            expect(d.amount > 0n && d.amount <= l.remaining).toBe(true);
          }
          // Order: every lot drawn before the last one is fully drained.
          for (let i = 0; i < draws.length - 1; i++)
            expect(draws[i]!.amount).toBe(byId.get(draws[i]!.lotId)!.remaining);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('is independent of the input order of lots', () => {
    fc.assert(
      fc.property(arbLots, fc.bigInt({ min: 0n, max: 5000n }), (lots, amount) => {
        const a = allocate(lots, amount, at(3));
        const b = allocate([...lots].reverse(), amount, at(3));
        expect(b).toEqual(a);
      }),
    );
  });
});

describe('payArrears (the one arrears payer)', () => {
  const row = (l: LotForAllocation, held = 0n): LotRow => ({
    ...l,
    customerId: 'c',
    kind: 'promotional',
    held,
    rolloverCap: null,
    recurrence: null,
    costCurrency: null,
    paymentReference: null,
    reason: null,
    createdAt: T0,
  });

  it('draws drawable lots in consumption order, up to the arrears, and balances every draw', () => {
    const lots = [
      row(lot({ id: 'paid', priority: 30, remaining: 50n })),
      row(lot({ id: 'promo', priority: 10, remaining: 30n }), 5n),
      row(lot({ id: 'future', priority: 1, remaining: 100n, effectiveAt: at(2) })),
    ];
    const p = payArrears(lots, 40n, at(1));
    expect(p.paid).toBe(40n);
    expect(p.draws).toEqual([
      { lotId: 'promo', amount: 30n },
      { lotId: 'paid', amount: 10n },
    ]);
    expect(p.entries).toEqual([
      { account: 'available', lotId: 'promo', amount: -30n },
      { account: 'available', lotId: null, amount: 30n },
      { account: 'available', lotId: 'paid', amount: -10n },
      { account: 'available', lotId: null, amount: 10n },
    ]);
    // Mutated in place; a lot still holding credits for a hold is not depleted.
    expect(lots.map((l) => [l.id, l.remaining, l.status])).toEqual([
      ['paid', 40n, 'active'],
      ['promo', 0n, 'active'],
      ['future', 100n, 'active'],
    ]);
    expect(p.lots.map((l) => l.id)).toEqual(['promo', 'paid']);
  });

  it('pays what it can when lots fall short, marks a drained lot depleted, and does nothing without arrears', () => {
    const lots = [row(lot({ id: 'a', remaining: 7n }))];
    const p = payArrears(lots, 10n, at(1));
    expect(p.paid).toBe(7n);
    expect(lots[0]).toMatchObject({ remaining: 0n, status: 'depleted' });
    expect(payArrears([row(lot({ id: 'b' }))], 0n, at(1))).toEqual({ paid: 0n, entries: [], lots: [], draws: [] });
  });
});
