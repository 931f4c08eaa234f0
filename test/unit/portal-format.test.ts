import fc from 'fast-check';
import { formatCredits, parseCredits } from '../../domain/amount';
import { availableChange, decodeToken, drawnFrom, formatMicro, scale, toMicro } from '../../portal/src/format';
import { PortalTokens } from '../../api/portal-tokens';

/** The portal page's pure helpers: exact amounts (no float anywhere), token reading, chart scaling. */
describe('portal amounts', () => {
  it('toMicro/formatMicro round-trip every credits string the API writes, beyond 2^53', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: -(2n ** 80n), max: 2n ** 80n }), (v) => {
        const s = formatMicro(v);
        expect(toMicro(s)).toBe(v);
        if (v >= 0n && v < 2n ** 63n) {
          const r = parseCredits(s);
          expect(r.ok && r.value).toBe(v); // the same text the server's codec reads and writes
          expect(formatCredits(v)).toBe(s);
        }
      }),
    );
    expect(formatMicro(toMicro('9007199254740993.000001')!)).toBe('9007199254740993.000001');
    expect(toMicro('1e3')).toBeNull();
  });

  it('sums a transaction exactly and names the lots it drew from', () => {
    const entries = [
      { account: 'available', lotId: 'a'.repeat(36), lotKind: 'promotional', amount: '-9007199254740993.000001' },
      { account: 'consumed', lotId: 'a'.repeat(36), lotKind: 'promotional', amount: '9007199254740993.000001' },
      { account: 'available', lotId: 'b'.repeat(36), lotKind: 'purchased', amount: '-0.000002' },
    ];
    expect(availableChange(entries)).toBe('-9007199254740993.000003');
    expect(drawnFrom(entries)).toEqual([
      { lotId: 'a'.repeat(36), kind: 'promotional', amount: '9007199254740993.000001' },
      { lotId: 'b'.repeat(36), kind: 'purchased', amount: '0.000002' },
    ]);
  });

  it('scales bars in integers', () => {
    expect(scale(1n, 3n, 100)).toBe(33);
    expect(scale(2n ** 70n, 2n ** 71n, 100)).toBe(50);
    expect(scale(5n, 0n, 100)).toBe(0);
  });
});

describe('portal token reading (the page; the API verifies)', () => {
  it('reads customer and expiry from a real token; refuses anything else', () => {
    const { token, expiresAt } = new PortalTokens('x'.repeat(32)).issue('cust:1.a', 60, new Date());
    expect(decodeToken(token)).toEqual({ customerId: 'cust:1.a', expiresAt });
    for (const bad of ['', 'cfpt_', 'cfpt_abc', 'key_abc.def', `${token}.x`]) expect(decodeToken(bad)).toBeNull();
  });
});
