import fc from 'fast-check';
import { MAX_CREDITS_MICROS } from '../../domain/amount';
import { addDecimal, decimal, formatDecimal, parseDecimal, type Decimal } from '../../domain/decimal';
import { findRule, priceMicros, rateEvent, versionAt, type RateRule } from '../../domain/rating';

const rule = (meter: string, credits: string, per = '1', dimensions: Record<string, string> = {}): RateRule => ({
  meter,
  dimensions,
  credits: decimal(credits),
  per: decimal(per),
});

describe('decimal', () => {
  it.each(['0', '1', '0.5', '123.000000000001', '999999999999999999'])('round-trips %s', (s) => {
    expect(formatDecimal(decimal(s))).toBe(s);
  });
  it.each(['-1', '1e3', '.5', '01', '0.0000000000001', '1000000000000000000', '', ' 1', 'NaN'])('rejects %j', (s) => {
    expect(parseDecimal(s).ok).toBe(false);
  });
  it('adds exactly across scales', () => {
    expect(formatDecimal(addDecimal(decimal('0.1'), decimal('0.2')))).toBe('0.3');
  });
});

describe('pricing', () => {
  it('2 credits per 1000 output tokens: 1500 tokens = 3 credits exactly', () => {
    expect(priceMicros(decimal('1500'), rule('t', '2', '1000'))).toBe(3_000_000n);
  });
  it('rounds each event up to the next micro-credit', () => {
    expect(priceMicros(decimal('1'), rule('t', '1', '3'))).toBe(333_334n); // 0.333333… → 0.333334
    expect(priceMicros(decimal('1'), rule('t', '0.0000001'))).toBe(1n); // a tenth of a µc → 1 µc
    expect(priceMicros(decimal('0'), rule('t', '5'))).toBe(0n);
  });
  it('uses fractional prices and units exactly', () => {
    expect(priceMicros(decimal('2.5'), rule('gpu', '0.12', '0.5'))).toBe(600_000n); // 2.5/0.5 × 0.12 = 0.6
  });
});

describe('rule matching', () => {
  const rules = [
    rule('llm.output_tokens', '1', '1000'),
    rule('llm.output_tokens', '2', '1000', { model: '*' }),
    rule('llm.output_tokens', '5', '1000', { model: 'gpt-x' }),
    rule('llm.output_tokens', '9', '1000', { model: 'gpt-x', region: '*' }),
  ];
  it('the most specific rule wins; exact beats wildcard at equal count', () => {
    expect(findRule(rules, 'llm.output_tokens', {})!.credits).toEqual(decimal('1'));
    expect(findRule(rules, 'llm.output_tokens', { model: 'other' })!.credits).toEqual(decimal('2'));
    expect(findRule(rules, 'llm.output_tokens', { model: 'gpt-x' })!.credits).toEqual(decimal('5'));
    expect(findRule(rules, 'llm.output_tokens', { model: 'gpt-x', region: 'eu' })!.credits).toEqual(decimal('9'));
  });
  it('an unpriced event is rejected with its reason, never priced at 0', () => {
    expect(rateEvent(rules, { meter: 'images', quantity: decimal('1'), dimensions: {} })).toMatchObject({
      ok: false,
      reason: 'unknown_meter',
    });
    const only = [rule('img', '10', '1', { size: '1024' })];
    expect(rateEvent(only, { meter: 'img', quantity: decimal('1'), dimensions: { size: '512' } })).toMatchObject({
      ok: false,
      reason: 'no_rate',
    });
  });
});

describe('amounts beyond the maximum', () => {
  const ev = (quantity: string) => ({ meter: 'm', quantity: decimal(quantity), dimensions: {} });
  it('a quantity × price beyond int8 is a too_large outcome, not an exception or a wrapped number', () => {
    const priciest = [rule('m', '999999999999999999.999999999999')];
    expect(rateEvent(priciest, ev('999999999999999999.999999999999'))).toMatchObject({
      ok: false,
      reason: 'too_large',
    });
  });
  it('exactly 9,000,000,000,000 credits is accepted; one µc more is too_large', () => {
    const r = [rule('m', '1')];
    expect(rateEvent(r, ev('9000000000000'))).toMatchObject({ ok: true, micros: MAX_CREDITS_MICROS });
    expect(rateEvent(r, ev('9000000000000.000001'))).toMatchObject({ ok: false, reason: 'too_large' });
    expect(rateEvent(r, ev('9000000000000.0000001'))).toMatchObject({ ok: false, reason: 'too_large' }); // rounds up
  });
  it('a stored rule with per 0 prices nothing instead of dividing by zero', () => {
    expect(rateEvent([{ ...rule('m', '1'), per: { m: 0n, scale: 0 } }], ev('1'))).toMatchObject({
      ok: false,
      reason: 'no_rate',
    });
  });
});

describe('version in force', () => {
  const v = (version: number, iso: string) => ({ version, effectiveFrom: new Date(iso) });
  const versions = [v(1, '2026-01-01T00:00:00Z'), v(2, '2026-02-01T00:00:00Z'), v(3, '2026-02-01T00:00:00Z')];
  it('is the latest effective at the timestamp', () => {
    expect(versionAt(versions, new Date('2025-12-31T23:59:59Z'))).toBeNull();
    expect(versionAt(versions, new Date('2026-01-31T23:59:59Z'))!.version).toBe(1);
    expect(versionAt(versions, new Date('2026-02-01T00:00:00Z'))!.version).toBe(3);
  });
});

const arbDecimal = (maxInt: bigint, maxScale: number): fc.Arbitrary<Decimal> =>
  fc.record({ m: fc.bigInt({ min: 0n, max: maxInt }), scale: fc.integer({ min: 0, max: maxScale }) });
const arbRule = fc.record({
  credits: arbDecimal(10_000_000n, 6),
  per: arbDecimal(1_000_000n, 3).filter((d) => d.m > 0n),
});

describe('pricing properties', () => {
  it('splitting a quantity across events never costs less than one event of the sum', () => {
    fc.assert(
      fc.property(arbRule, fc.array(arbDecimal(10n ** 12n, 6), { minLength: 1, maxLength: 10 }), (r, parts) => {
        const whole = parts.reduce(addDecimal, { m: 0n, scale: 0 });
        const split = parts.reduce((s, p) => s + priceMicros(p, r), 0n);
        expect(split >= priceMicros(whole, r)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
  it('is monotonic in quantity', () => {
    fc.assert(
      fc.property(arbRule, arbDecimal(10n ** 12n, 6), arbDecimal(10n ** 12n, 6), (r, a, extra) => {
        expect(priceMicros(addDecimal(a, extra), r) >= priceMicros(a, r)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
  it('never undercharges: price ≥ exact value and < exact value + 1 µc', () => {
    fc.assert(
      fc.property(arbRule, arbDecimal(10n ** 12n, 6), (r, q) => {
        const p = priceMicros(q, r);
        // exact = q × c × 1e6 / per  →  compare p × den against num
        const num = q.m * r.credits.m * 1_000_000n * 10n ** BigInt(r.per.scale);
        const den = 10n ** BigInt(q.scale + r.credits.scale) * r.per.m;
        expect(p * den >= num).toBe(true);
        expect((p - 1n) * den < num).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });
});
