import fc from 'fast-check';
import { formatCredits, MAX_CREDITS_MICROS, parseCredits } from '../../domain/amount';

describe('credit amount codec', () => {
  it.each([
    ['0', 0n],
    ['1500', 1_500_000_000n],
    ['0.000125', 125n],
    ['12.5', 12_500_000n],
    ['9000000000000', MAX_CREDITS_MICROS],
    ['1.000000', 1_000_000n],
  ])('parses %s', (input, micros) => {
    expect(parseCredits(input)).toEqual({ ok: true, value: micros });
  });

  it.each([
    '1e3',
    '-5',
    '0.0000001',
    '99999999999999999999',
    '9000000000000.000001',
    '',
    ' 1',
    '1 ',
    '+1',
    '.5',
    '1.',
    '01',
    '0x10',
    'NaN',
    'Infinity',
    '１',
    '1,5',
  ])('rejects %j', (input) => {
    expect(parseCredits(input).ok).toBe(false);
  });

  it('rejects non-strings, including numbers', () => {
    for (const v of [1, 1.5, null, undefined, {}, [], true, 10n]) expect(parseCredits(v).ok).toBe(false);
  });

  it('accepts a negative only when allowed, and never negative zero', () => {
    expect(parseCredits('-5', { allowNegative: true })).toEqual({ ok: true, value: -5_000_000n });
    expect(parseCredits('-0', { allowNegative: true }).ok).toBe(false);
  });

  it.each([
    [0n, '0'],
    [1n, '0.000001'],
    [1_500_000_000n, '1500'],
    [12_500_000n, '12.5'],
    [-125n, '-0.000125'],
  ])('formats %p as %s', (micros, text) => {
    expect(formatCredits(micros)).toBe(text);
  });

  it('round-trips every amount in range (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -MAX_CREDITS_MICROS, max: MAX_CREDITS_MICROS }), (m) => {
        expect(parseCredits(formatCredits(m), { allowNegative: true })).toEqual(
          m === 0n ? { ok: true, value: 0n } : { ok: true, value: m },
        );
      }),
      { numRuns: 2000 },
    );
  });

  it('parse is exact: the decimal string and the integer agree digit for digit (property)', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 8_999_999_999_999n }), fc.integer({ min: 0, max: 999_999 }), (w, f) => {
        const text = `${w}.${String(f).padStart(6, '0')}`;
        const r = parseCredits(text);
        expect(r).toEqual({ ok: true, value: w * 1_000_000n + BigInt(f) });
      }),
    );
  });
});
