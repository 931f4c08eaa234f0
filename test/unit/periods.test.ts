import fc from 'fast-check';
import { addPeriod, rolloverSplit } from '../../domain/periods';

describe('periods', () => {
  it.each([
    ['2026-01-31T00:00:00Z', 'month', '2026-02-28T00:00:00.000Z'],
    ['2028-01-31T10:00:00Z', 'month', '2028-02-29T10:00:00.000Z'],
    ['2026-12-15T00:00:00Z', 'month', '2027-01-15T00:00:00.000Z'],
    ['2026-03-01T00:00:00Z', 'week', '2026-03-08T00:00:00.000Z'],
    ['2026-03-01T00:00:00Z', 'day', '2026-03-02T00:00:00.000Z'],
  ] as const)('%s + 1 %s = %s', (from, every, to) => {
    expect(addPeriod(new Date(from), every).toISOString()).toBe(to);
  });

  it('adding months always moves forward by 28–31 days', () => {
    fc.assert(
      fc.property(fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }), (d) => {
        const days = (addPeriod(d, 'month').getTime() - d.getTime()) / 86_400_000;
        expect(days).toBeGreaterThanOrEqual(28);
        expect(days).toBeLessThanOrEqual(31);
      }),
    );
  });
});

describe('rollover', () => {
  it('rolls over up to the cap and expires the rest; no cap means nothing rolls', () => {
    expect(rolloverSplit(700n, 500n)).toEqual({ rolled: 500n, expired: 200n });
    expect(rolloverSplit(300n, 500n)).toEqual({ rolled: 300n, expired: 0n });
    expect(rolloverSplit(300n, null)).toEqual({ rolled: 0n, expired: 300n });
    expect(rolloverSplit(300n, 0n)).toEqual({ rolled: 0n, expired: 300n });
  });
  it('conserves credits (property)', () => {
    fc.assert(
      fc.property(
        fc.bigInt({ min: 0n, max: 10n ** 15n }),
        fc.option(fc.bigInt({ min: 0n, max: 10n ** 15n })),
        (u, cap) => {
          const { rolled, expired } = rolloverSplit(u, cap);
          expect(rolled + expired).toBe(u);
          expect(rolled >= 0n && expired >= 0n && rolled <= (cap ?? 0n)).toBe(true);
        },
      ),
    );
  });
});
