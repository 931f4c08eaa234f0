import fc from 'fast-check';
import { CUSTOMER_ID, HOLD_ID } from '../../domain/hold-requests';
import { composeKey } from '../../lib/ids';
import { reservationWorkflowId } from '../../workflows/reservation';

/** Ids composed from parts are injective: two different inputs never share one id. */
const part = fc.string({ unit: fc.constantFrom('a', 'b', ':', '%', '3', 'A', '_'), maxLength: 8 });

describe('composeKey', () => {
  it('the known collision is gone: P + q:r ≠ P:q + r, and escapes cannot be forged', () => {
    expect(composeKey('api', 'P', 'q:r')).not.toBe(composeKey('api', 'P:q', 'r'));
    expect(composeKey('a%3Ab')).not.toBe(composeKey('a:b'));
    expect(composeKey('plain', 'parts')).toBe('plain:parts'); // keys written before stay the same
  });

  it('is injective over lists of parts (property)', () => {
    fc.assert(
      fc.property(fc.array(part, { maxLength: 5 }), fc.array(part, { maxLength: 5 }), (a, b) => {
        if (a.length === 0 || b.length === 0) return;
        if (composeKey(...a) === composeKey(...b)) expect(a).toEqual(b);
      }),
      { numRuns: 2000 },
    );
    // Decoding proves it outright: split on ':' and unescape gives back the parts.
    fc.assert(
      fc.property(fc.array(part, { minLength: 1, maxLength: 5 }), (a) => {
        const decoded = composeKey(...a)
          .split(':')
          .map((p) => p.replace(/%3A/g, ':').replace(/%25/g, '%'));
        expect(decoded).toEqual(a);
      }),
    );
  });
});

describe('reservation workflow ids', () => {
  const customer = fc.stringMatching(CUSTOMER_ID);
  const hold = fc.stringMatching(HOLD_ID);
  it('hold:<customer>:<hold> names exactly one (customer, hold) pair: hold ids have no colon', () => {
    // Decoding proves it: the hold id is everything after the last colon.
    fc.assert(
      fc.property(customer, hold, (c, h) => {
        const id = reservationWorkflowId(c, h);
        const last = id.lastIndexOf(':');
        expect([id.slice('hold:'.length, last), id.slice(last + 1)]).toEqual([c, h]);
      }),
      { numRuns: 2000 },
    );
    // With a colon allowed in hold ids (the old rule), two holds shared one workflow id.
    expect(reservationWorkflowId('P', 'q:r')).toBe(reservationWorkflowId('P:q', 'r'));
    expect(HOLD_ID.test('q:r')).toBe(false);
  });
});
