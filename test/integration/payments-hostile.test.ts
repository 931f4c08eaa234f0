import { randomUUID } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { call, snapshotTables, type Call, type TestApi } from '../support/api';
import { burstOnFullPool } from '../support/burst';
import { API_POOL, expectProblem, show, startHostileApi, type HostileKeys } from '../support/hostile';

/**
 * Hostile input on the payment and auto top-up endpoints (sandbox gateway): every refusal is a
 * 4xx problem naming the field, nothing is written, and no purchase workflow is ever started.
 * Then a burst far above the API's pool: every request answered, the pool given back.
 */
let stack: Awaited<ReturnType<typeof startHostileApi>>;
let pool: Pool;
let apiPool: Pool;
let api: TestApi;
let purchaseStarts = 0;
let keys: HostileKeys;
type KeyName = keyof HostileKeys;

const A = '/v1/customers/cust-a';
const B = '/v1/customers/cust-b'; // no payment method, no rule
const FULL = '/v1/customers/cust-full'; // 9,000,000,000,000 credits: no room for more
const NOBODY = '/v1/customers/nobody';
const PM = { paymentMethod: 'pm_card_visa' };
const BUY = { credits: '10', price: { amountMinor: 100, currency: 'USD' } };
const RULE = {
  enabled: true,
  threshold: '10',
  mode: 'fixed',
  credits: '50',
  unitPrice: { amountMinor: '1', currency: 'USD' },
  paymentMethod: 'pm_card_visa',
};

beforeAll(async () => {
  stack = await startHostileApi({
    // Every purchase here is refused before its workflow would start.
    payments: () => {
      purchaseStarts++;
      return Promise.reject(new Error('the payments client must not be called'));
    },
  });
  ({ pool, apiPool, api, keys } = stack);
  const admin = (method: string, path: string, json: unknown) =>
    call(api.url, method, path, { key: keys.admin, json, headers: { 'idempotency-key': randomUUID() } });
  for (const id of ['cust-a', 'cust-b', 'cust-full'])
    expect((await admin('POST', '/v1/customers', { id })).status).toBe(201);
  expect((await admin('POST', `${FULL}/grants`, { amount: '9000000000000', kind: 'promotional' })).status).toBe(201);
  expect((await admin('PUT', `${A}/payment-method`, PM)).status).toBe(200);
  expect((await admin('PUT', `${A}/auto-topup`, RULE)).status).toBe(200);
});
afterAll(() => stack?.close());

interface Case {
  method: 'GET' | 'PUT' | 'POST';
  path: string;
  key?: KeyName | null;
  json?: unknown;
  /** Purchases get a fresh Idempotency-Key unless false. */
  idem?: boolean;
  status: number;
  /** The first validation error's path. */
  field?: string;
  /** The problem's `code`, where it has one. */
  code?: string;
}

/** Row counts, plus the rows a refused PUT would overwrite in place (an upsert keeps the count). */
async function snapshot(): Promise<Record<string, unknown>> {
  const rows = async (table: string) =>
    (await pool.query(`SELECT * FROM ${table} ORDER BY customer_id`)).rows as unknown[];
  return {
    ...(await snapshotTables(pool)),
    methods: await rows('payment_methods'),
    rules: await rows('auto_topup_rules'),
  };
}

function send(c: Case): Promise<Call> {
  const idem = c.idem ?? (c.method === 'POST' && c.path.endsWith('/purchases'));
  return call(api.url, c.method, c.path, {
    key: c.key === null ? undefined : keys[c.key ?? 'admin'],
    json: c.json,
    headers: idem ? { 'idempotency-key': randomUUID() } : {},
  });
}

/** A copy of `base` with the value at `path` replaced (undefined: removed). */
function withValue(base: object, path: string, value: unknown): object {
  const [head, ...rest] = path.split('.');
  const copy: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  if (rest.length) copy[head!] = withValue(copy[head!] as object, rest.join('.'), value);
  else if (value === undefined) delete copy[head!];
  else copy[head!] = value;
  return copy;
}

const buy = (json: unknown, path = A): Case => ({
  method: 'POST',
  path: `${path}/purchases`,
  key: 'service',
  json,
  status: 400,
});
const rule = (json: unknown, path = A): Case => ({
  method: 'PUT',
  path: `${path}/auto-topup`,
  key: 'support',
  json,
  status: 400,
});
const setPm = (json: unknown, path = A): Case => ({
  method: 'PUT',
  path: `${path}/payment-method`,
  key: 'service',
  json,
  status: 400,
});
/** One field of a valid request made bad: a 400 naming it. */
const bad = (make: (json: unknown) => Case, base: object, field: string, value: unknown): Case => ({
  ...make(withValue(base, field, value)),
  field: `body.${field}`,
});

const BAD_CREDITS: unknown[] = ['0', '-1', '1e3', '1.1234567', '9000000000001', 10, null];
const VALIDATION: [string, Case][] = [
  ...BAD_CREDITS.flatMap((v): [string, Case][] => [
    [`purchase credits ${show(v)}`, bad(buy, BUY, 'credits', v)],
    [`auto-topup credits ${show(v)}`, bad(rule, RULE, 'credits', v)],
    ...(v === '0' ? [] : [[`auto-topup threshold ${show(v)}`, bad(rule, RULE, 'threshold', v)] as [string, Case]]),
  ]),
  ...[0, -1, 1.5, 2 ** 53, '100', undefined].map((v): [string, Case] => [
    `purchase price.amountMinor ${show(v)}`,
    bad(buy, BUY, 'price.amountMinor', v),
  ]),
  ...['XYZ', 'usd', 'US'].flatMap((v): [string, Case][] => [
    [`purchase currency ${v}`, bad(buy, BUY, 'price.currency', v)],
    [`auto-topup currency ${v}`, bad(rule, RULE, 'unitPrice.currency', v)],
  ]),
  ...['pm_card_nope'].flatMap((v): [string, Case][] => [
    [`payment-method ${v}`, bad(setPm, PM, 'paymentMethod', v)],
    [`purchase paymentMethod ${v}`, bad(buy, BUY, 'paymentMethod', v)],
    [`auto-topup paymentMethod ${v}`, bad(rule, RULE, 'paymentMethod', v)],
  ]),
  ...['0', '-1', 'abc', '0.0000000000001', '1.1234567890123'].map((v): [string, Case] => [
    `auto-topup unitPrice ${v}`,
    bad(rule, RULE, 'unitPrice.amountMinor', v),
  ]),
  ...['50', '60'].map((threshold): [string, Case] => [
    `auto-topup target mode, credits 50, threshold ${threshold}`,
    { ...rule({ ...RULE, mode: 'target', credits: '50', threshold }), field: 'body.credits' },
  ]),
  ...[-1, 1.5, 10 ** 9].map((v): [string, Case] => [
    `auto-topup cooldownSeconds ${v}`,
    bad(rule, RULE, 'cooldownSeconds', v),
  ]),
  ['auto-topup maxPerDay 0', bad(rule, RULE, 'maxPerDay', 0)],
  ...[0, 21].map((v): [string, Case] => [`auto-topup maxAttempts ${v}`, bad(rule, RULE, 'maxAttempts', v)]),
  ['auto-topup enabled missing', bad(rule, RULE, 'enabled', undefined)],
  ['auto-topup enabled "true"', bad(rule, RULE, 'enabled', 'true')],
  ['auto-topup mode "both"', bad(rule, RULE, 'mode', 'both')],
  ['auto-topup unknown field', { ...rule({ ...RULE, extra: 1 }), field: 'body' }],
  [
    'auto-topup unknown field in unitPrice',
    { ...rule(withValue(RULE, 'unitPrice.extra', 1)), field: 'body.unitPrice' },
  ],
  ['purchase unknown field', { ...buy({ ...BUY, amount: '10' }), field: 'body' }],
  ['purchase unknown field in price', { ...buy(withValue(BUY, 'price.tax', 1)), field: 'body.price' }],
  ['payment-method unknown field', { ...setPm({ ...PM, card: '4242424242424242' }), field: 'body' }],
  ['purchase without Idempotency-Key', { ...buy(BUY), idem: false, field: 'header' }],
  [
    'GET purchase without customerId',
    { method: 'GET', path: '/v1/purchases/x', status: 400, field: 'query.customerId' },
  ],
  [
    "GET purchase with ':' in its id",
    { method: 'GET', path: '/v1/purchases/a:b?customerId=cust-a', status: 400, field: 'params.purchaseId' },
  ],
];

const POISONS = [
  ['NUL', '\u0000'],
  ['a lone surrogate', '\ud800'],
] as const;
const UNSTORABLE: [string, Case][] = POISONS.flatMap(([what, p]) => {
  const strings: Record<string, string> = { paymentMethod: 'pm_card_visa', reason: 'pack', paymentReference: 'ref_1' };
  const full = { ...BUY, ...strings };
  return [
    [`${what} in payment-method paymentMethod`, bad(setPm, PM, 'paymentMethod', `pm_card_visa${p}`)],
    ...Object.entries(strings).map(([f, v]): [string, Case] => [
      `${what} in purchase ${f}`,
      bad(buy, full, f, `${v}${p}`),
    ]),
    [`${what} in auto-topup paymentMethod`, bad(rule, RULE, 'paymentMethod', `pm_card_visa${p}`)],
  ];
});

const ENDPOINTS: Omit<Case, 'status'>[] = [
  { method: 'PUT', path: `${A}/payment-method`, json: PM },
  { method: 'GET', path: `${A}/payment-method` },
  { method: 'POST', path: `${A}/purchases`, json: BUY },
  { method: 'GET', path: '/v1/purchases/pur_x?customerId=cust-a' },
  { method: 'PUT', path: `${A}/auto-topup`, json: RULE },
  { method: 'GET', path: `${A}/auto-topup` },
];
const who = (e: Omit<Case, 'status'>) => `${e.method} ${e.path.replace(A, '…/cust-a')}`;

const ACCESS: [string, Case][] = [
  ['viewer PUT auto-topup', { ...rule(RULE), key: 'viewer', status: 403 }],
  ['service PUT auto-topup', { ...rule(RULE), key: 'service', status: 403 }],
  ['viewer POST purchases', { ...buy(BUY), key: 'viewer', status: 403 }],
  ['viewer PUT payment-method', { ...setPm(PM), key: 'viewer', status: 403 }],
  // A support key may do all of these, but only for its own customer.
  ...ENDPOINTS.map((e): [string, Case] => [
    `a key scoped to cust-b: ${who(e)}`,
    { ...e, key: 'otherCustomer', status: 403 },
  ]),
  ...ENDPOINTS.map((e): [string, Case] => [`no key: ${who(e)}`, { ...e, key: null, status: 401 }]),
];

const NOT_FOUND: [string, Case][] = [
  ...ENDPOINTS.map((e): [string, Case] => [
    `unknown customer: ${who(e)}`,
    { ...e, path: e.path.replace(A, NOBODY).replace('cust-a', 'nobody'), status: 404 },
  ]),
  ['GET payment-method of a customer without one', { method: 'GET', path: `${B}/payment-method`, status: 404 }],
  ['GET auto-topup of a customer without a rule', { method: 'GET', path: `${B}/auto-topup`, status: 404 }],
];

describe('refused at the boundary: 4xx problem, nothing written', () => {
  it.each([...VALIDATION, ...UNSTORABLE, ...ACCESS, ...NOT_FOUND])('%s', async (_name, c) => {
    const before = await snapshot();
    expectProblem(await send(c), c);
    expect(await snapshot()).toEqual(before);
  });
});

describe('purchases refused before any charge → 422, stored for replay and nothing else written', () => {
  it.each<[string, Case]>([
    ['no payment method on file (and none given)', { ...buy(BUY, B), status: 422, field: 'body.paymentMethod' }],
    [
      'expiresAt in the past',
      { ...buy({ ...BUY, expiresAt: '2000-01-01T00:00:00Z' }), status: 422, field: 'body.expiresAt' },
    ],
    [
      'a wallet that cannot hold more credits',
      { ...buy({ ...BUY, paymentMethod: 'pm_card_visa' }, FULL), status: 422, code: 'AmountTooLarge' },
    ],
  ])('%s', async (_name, c) => {
    const before = await snapshot();
    const idem = randomUUID();
    const first = await call(api.url, 'POST', c.path, {
      key: keys.service,
      json: c.json,
      headers: { 'idempotency-key': idem },
    });
    expectProblem(first, c);
    // The reply is kept under its Idempotency-Key (a retry gets the same answer); nothing else.
    const after = await snapshot();
    expect(after).toEqual({ ...before, http_idempotency: String(Number(before.http_idempotency) + 1) });
    const replay = await call(api.url, 'POST', c.path, {
      key: keys.service,
      json: c.json,
      headers: { 'idempotency-key': idem },
    });
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(first.body);
    expect(await snapshot()).toEqual(after);
  });
});

it(`a burst of ${4 * 3 * API_POOL} requests (3 × the pool of each of 4 kinds) is all answered, and the pool is given back`, async () => {
  const n = 3 * API_POOL;
  const cases: Case[] = Array.from({ length: n }, (): Case[] => [
    { ...setPm(PM), status: 200 },
    { method: 'GET', path: `${A}/auto-topup`, key: 'viewer', status: 200 },
    { ...bad(buy, BUY, 'credits', '-1') },
    { ...buy(BUY, B), status: 422 },
  ]).flat();
  const started = Date.now();
  const { answers, queued } = await burstOnFullPool(apiPool, API_POOL, () => cases.map((c) => send(c)));
  expect(Date.now() - started).toBeLessThan(30_000);
  expect(queued).toBeGreaterThan(0); // requests waited for a connection: the burst really exceeded the pool
  expect(answers.map((r) => r.status)).toEqual(cases.map((c) => c.status));
  expect((await call(api.url, 'GET', '/readyz')).status).toBe(200);
  expect(apiPool.idleCount).toBe(apiPool.totalCount);
  expect(apiPool.waitingCount).toBe(0);
}, 60_000);

describe('afterwards', () => {
  it('no purchase workflow was started, nothing was charged, no payment row written', async () => {
    expect(purchaseStarts).toBe(0);
    const r = await pool.query<{ payments: string; charges: string }>(
      `SELECT (SELECT count(*) FROM payments)::text AS payments, (SELECT count(*) FROM sandbox_charges)::text AS charges`,
    );
    expect(r.rows[0]).toEqual({ payments: '0', charges: '0' });
  });

  it('every invariant still holds', async () => {
    expect(await findViolations(pool)).toEqual([]);
  });
});
