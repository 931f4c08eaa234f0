import { credits, MAX_CREDITS_MICROS, parseCredits } from '../../domain/amount';
import { decimal } from '../../domain/decimal';
import { allocate, compareConsumptionOrder, drawableTotal, type LotForAllocation } from '../../domain/lots';
import { findRule, rateEvent, versionAt, type RateRule } from '../../domain/rating';
import { ensureFits } from '../../ledger/limits';

/**
 * Behaviour the other unit tests left open, found by mutation testing (`npm run mutation`): each
 * case fails on at least one mutant that survived them. Reasons and details are asserted exactly
 * because the API returns them to the caller.
 */

const T0 = new Date('2026-01-01T00:00:00Z');
const at = (days: number) => new Date(T0.getTime() + days * 86_400_000);
const lot = (p: Partial<LotForAllocation> & { id: string }): LotForAllocation => ({
  priority: 30,
  remaining: 100n,
  original: 100n,
  effectiveAt: at(0),
  expiresAt: null,
  costMinor: 0n,
  status: 'active',
  ...p,
});

describe('parseCredits says why it refuses', () => {
  const GENERIC = 'must be a decimal string like "12.5" (no exponent, sign or spaces)';
  it.each([
    [1, 'must be a decimal string'],
    ['0.0000001', 'at most 6 decimal places'],
    ['10.1234567', 'at most 6 decimal places'],
    ['-3.12345678', 'at most 6 decimal places'],
    ['1e3', GENERIC],
    ['x1.0000001', GENERIC],
    ['1.0000001x', GENERIC],
    ['-5', 'must not be negative'],
    ['9000000000000.000001', 'exceeds 9,000,000,000,000 credits'],
  ])('%j → %s', (input, reason) => {
    expect(parseCredits(input)).toEqual({ ok: false, reason });
  });

  it('names negative zero, and credits() throws with the input and the reason', () => {
    expect(parseCredits('-0.0', { allowNegative: true })).toEqual({
      ok: false,
      reason: 'negative zero is not a valid amount',
    });
    expect(() => credits('1.2.3')).toThrow(new RangeError(`invalid credit amount "1.2.3": ${GENERIC}`));
  });
});

describe('compareConsumptionOrder is a consistent comparator', () => {
  // Two lots equal in every key before the one named; each pair is compared both ways.
  const pairs: [string, LotForAllocation, LotForAllocation][] = [
    ['priority', lot({ id: 'b', priority: 10 }), lot({ id: 'a', priority: 20 })],
    ['expiry', lot({ id: 'b', expiresAt: at(5) }), lot({ id: 'a', expiresAt: at(6) })],
    ['cost per credit', lot({ id: 'b', costMinor: 1n }), lot({ id: 'a', costMinor: 2n })],
    ['effectiveAt', lot({ id: 'b', effectiveAt: at(-2) }), lot({ id: 'a', effectiveAt: at(-1) })],
    ['id', lot({ id: 'a' }), lot({ id: 'b' })],
  ];
  it.each(pairs)('%s: the first lot sorts before the second, and the second after the first', (_, first, second) => {
    expect(Math.sign(compareConsumptionOrder(first, second))).toBe(-1);
    expect(Math.sign(compareConsumptionOrder(second, first))).toBe(1);
  });

  it('a lot compares equal to itself', () => {
    const l = lot({ id: 'a', expiresAt: at(3), costMinor: 7n });
    expect(compareConsumptionOrder(l, { ...l })).toBe(0);
  });
});

describe('allocate and drawableTotal', () => {
  it('refuses a negative amount', () => {
    expect(() => allocate([lot({ id: 'a' })], -1n, at(1))).toThrow(new RangeError('allocate: negative amount'));
  });

  it('drawableTotal sums the remaining credits of the lots drawable at that moment only', () => {
    const lots = [
      lot({ id: 'a', remaining: 30n }),
      lot({ id: 'b', remaining: 12n }),
      lot({ id: 'future', remaining: 1000n, effectiveAt: at(2) }),
      lot({ id: 'gone', remaining: 1000n, expiresAt: at(1) }),
      lot({ id: 'void', remaining: 1000n, status: 'voided' }),
    ];
    expect(drawableTotal(lots, at(1))).toBe(42n);
    expect(drawableTotal([], at(1))).toBe(0n);
  });
});

const rule = (meter: string, credits: string, dimensions: Record<string, string> = {}): RateRule => ({
  meter,
  dimensions,
  credits: decimal(credits),
  per: decimal('1'),
});
const priceOf = (r: RateRule | null) => (r ? r.credits.m : null);

describe('findRule: most dimensions, then most exact, then card order', () => {
  it('only rules for the event’s meter match', () => {
    const rules = [rule('a', '1'), rule('b', '2')];
    expect(priceOf(findRule(rules, 'b', {}))).toBe(2n);
    expect(findRule(rules, 'c', {})).toBeNull();
  });

  it('a more specific rule wins wherever it is on the card', () => {
    const dims = { model: 'x', region: 'eu' };
    expect(priceOf(findRule([rule('m', '5', { model: 'x' }), rule('m', '1')], 'm', dims))).toBe(5n);
    expect(priceOf(findRule([rule('m', '1'), rule('m', '5', { model: 'x' })], 'm', dims))).toBe(5n);
  });

  it('more dimensions beat more exact matches', () => {
    const rules = [rule('m', '9', { model: '*', region: '*' }), rule('m', '5', { model: 'x' })];
    expect(priceOf(findRule(rules, 'm', { model: 'x', region: 'eu' }))).toBe(9n);
  });

  it('at an equal count and exactness, the first rule on the card wins', () => {
    const rules = [rule('m', '2', { model: '*' }), rule('m', '3', { region: '*' })];
    expect(priceOf(findRule(rules, 'm', { model: 'x', region: 'eu' }))).toBe(2n);
    const exact = [rule('m', '4', { model: 'x' }), rule('m', '6', { region: 'eu' })];
    expect(priceOf(findRule(exact, 'm', { model: 'x', region: 'eu' }))).toBe(4n);
  });
});

describe('rateEvent', () => {
  const ev = (meter: string, dimensions: Record<string, string> = {}) => ({
    meter,
    quantity: decimal('2'),
    dimensions,
  });

  it('prices a meter of a card that also prices other meters', () => {
    expect(rateEvent([rule('a', '1'), rule('b', '3')], ev('b'))).toMatchObject({ ok: true, micros: 6_000_000n });
  });

  it('says which meter or rule it could not price', () => {
    expect(rateEvent([rule('a', '1')], ev('z'))).toEqual({
      ok: false,
      reason: 'unknown_meter',
      detail: 'no rate card rule prices meter z',
    });
    expect(rateEvent([rule('a', '1', { size: '1' })], ev('a', { size: '2' }))).toEqual({
      ok: false,
      reason: 'no_rate',
      detail: 'no rule for meter a matches these dimensions',
    });
    expect(rateEvent([{ ...rule('a', '1'), per: { m: 0n, scale: 0 } }], ev('a'))).toEqual({
      ok: false,
      reason: 'no_rate',
      detail: 'the rule for meter a has per 0',
    });
    expect(rateEvent([rule('a', '5000000000000')], ev('a'))).toEqual({
      ok: false,
      reason: 'too_large',
      detail: 'rated amount exceeds the maximum',
    });
  });
});

describe('versionAt: the latest effectiveFrom ≤ at, then the highest version, whatever the input order', () => {
  const v = (version: number, day: number) => ({ version, effectiveFrom: at(day) });
  it('a later effectiveFrom wins over an earlier one listed after it', () => {
    expect(versionAt([v(3, 10), v(1, 0)], at(20))!.version).toBe(3);
  });
  it('a higher version does not win with an earlier effectiveFrom', () => {
    expect(versionAt([v(1, 10), v(2, 0)], at(20))!.version).toBe(1);
  });
  it('at the same effectiveFrom the highest version wins, listed first or last', () => {
    expect(versionAt([v(3, 10), v(2, 10)], at(20))!.version).toBe(3);
    expect(versionAt([v(2, 10), v(3, 10)], at(20))!.version).toBe(3);
  });
});

describe('ensureFits: ±9,000,000,000,000 credits, both ends included', () => {
  const MAX = MAX_CREDITS_MICROS;
  it('accepts the bounds and refuses one µc beyond either, naming what and the limit', () => {
    expect(() => ensureFits('x', MAX)).not.toThrow();
    expect(() => ensureFits('x', -MAX)).not.toThrow();
    for (const v of [MAX + 1n, -MAX - 1n]) {
      expect(() => ensureFits('the thing', v)).toThrow(
        expect.objectContaining({
          code: 'AmountTooLarge',
          message: 'the thing would exceed 9,000,000,000,000 credits',
          details: { limit: '9000000000000' },
        }),
      );
    }
  });
});
