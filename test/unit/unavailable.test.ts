import { isUnavailable } from '../../lib/unavailable';

const withCode = (code: unknown, message = 'x') => Object.assign(new Error(message), { code });

describe('isUnavailable', () => {
  it.each([
    ['refused', withCode('ECONNREFUSED')],
    ['reset', withCode('ECONNRESET')],
    ['timed out', withCode('ETIMEDOUT')],
    ['host gone from DNS', withCode('ENOTFOUND')],
    ['pool connect timeout', new Error('timeout exceeded when trying to connect')],
    ['connection dropped', new Error('Connection terminated unexpectedly')],
    ['connect timeout', new Error('Connection terminated due to connection timeout')],
    ['admin shutdown', withCode('57P01')],
    ['crash shutdown', withCode('57P02')],
    ['starting up', withCode('57P03')],
    ['connection exception class', withCode('08006')],
    ['too many connections', withCode('53300')],
    ['gRPC UNAVAILABLE', withCode(14)],
    ['Temporal connect', new Error('Failed to connect before the deadline')],
    ['in a cause chain', new Error('outer', { cause: new Error('mid', { cause: withCode('ECONNREFUSED') }) })],
    ['in an AggregateError', new AggregateError([withCode('ECONNREFUSED'), withCode('ECONNREFUSED')], '')],
  ])('%s: unavailable', (_, err) => expect(isUnavailable(err)).toBe(true));

  it.each([
    ['a bug', new TypeError('cannot read properties of undefined')],
    ['a constraint violation', withCode('23505')],
    ['a serialization failure', withCode('40001')],
    ['a syntax error', withCode('42601')],
    ['a gRPC NOT_FOUND', withCode(5)],
    ['a numeric code that looks like a class', withCode(8006)],
    ['not an error', 'ECONNREFUSED'],
    ['nothing', undefined],
  ])('%s: not unavailable', (_, err) => expect(isUnavailable(err)).toBe(false));

  it('survives a cyclic cause chain', () => {
    const a = new Error('a') as Error & { cause?: unknown };
    a.cause = new Error('b', { cause: a });
    expect(isUnavailable(a)).toBe(false);
  });
});
