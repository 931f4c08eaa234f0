import { randomUUID } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { insertRefund } from '../../db/refunds';
import { call, snapshotTables, type Call, type TestApi } from '../support/api';
import { burstOnFullPool } from '../support/burst';
import { API_POOL, expectProblem, show, startHostileApi, type HostileKeys } from '../support/hostile';

/**
 * Hostile input on the refund endpoints: every refusal is a 4xx problem naming the field, nothing
 * is written and no refund saga is started. Then a burst far above the API's pool.
 */
let stack: Awaited<ReturnType<typeof startHostileApi>>;
let pool: Pool;
let apiPool: Pool;
let api: TestApi;
let sagaStarts = 0;
let keys: HostileKeys;
type KeyName = keyof HostileKeys;
let lotA = ''; // cust-a's purchased lot: 100 credits, paid 1000 by hand
let promoA = '';
const EXISTING = 'ref_existing'; // a refund of cust-a's lot

beforeAll(async () => {
  stack = await startHostileApi({
    payments: () => {
      sagaStarts++;
      return Promise.reject(new Error('no refund saga may start here'));
    },
  });
  ({ pool, apiPool, api, keys } = stack);
  const admin = (path: string, json: unknown) =>
    call(api.url, 'POST', path, { key: keys.admin, json, headers: { 'idempotency-key': randomUUID() } });
  for (const id of ['cust-a', 'cust-b']) expect((await admin('/v1/customers', { id })).status).toBe(201);
  const lot = await admin('/v1/customers/cust-a/grants', {
    amount: '100',
    kind: 'purchased',
    cost: { amountMinor: 1000, currency: 'USD' },
    paymentReference: 'wire-1',
  });
  lotA = lot.body.lot.id;
  promoA = (await admin('/v1/customers/cust-a/grants', { amount: '5', kind: 'promotional' })).body.lot.id;
  await insertRefund(pool, {
    id: EXISTING,
    customerId: 'cust-a',
    lotId: lotA,
    creditsRequested: 1_000_000n,
    requestedBy: keys.support,
    reason: 'seeded',
    requestHash: 'x',
    workflowId: `refund:${EXISTING}`,
  });
});
afterAll(() => stack?.close());

interface Case {
  method: 'GET' | 'POST';
  path: string;
  key?: KeyName | null;
  json?: unknown;
  raw?: string;
  contentType?: string;
  /** POSTs get a fresh Idempotency-Key unless false. */
  idem?: boolean;
  status: number;
  /** The first validation error's path. */
  field?: string;
  code?: string;
}

function send(c: Case): Promise<Call> {
  const idem = c.idem ?? c.method === 'POST';
  return call(api.url, c.method, c.path, {
    key: c.key === null ? undefined : keys[c.key ?? 'support'],
    json: resolved(c.json),
    ...(c.raw !== undefined ? { raw: c.raw, contentType: c.contentType ?? 'application/json' } : {}),
    headers: idem ? { 'idempotency-key': randomUUID() } : {},
  });
}

/** Cases are built before the lots exist: LOT_A stands for cust-a's lot until sent. */
const LOT_A = '00000000-0000-4000-8000-00000000000a';
const base = () => ({ customerId: 'cust-a', lotId: LOT_A, credits: '10', reason: 'customer cancelled' });
const resolved = (json: unknown): unknown =>
  json === undefined ? undefined : JSON.parse(JSON.stringify(json).replaceAll(LOT_A, lotA));
const post = (json: unknown, extra: Partial<Case> = {}): Case => ({
  method: 'POST',
  path: '/v1/refunds',
  json,
  status: 400,
  ...extra,
});
/** One field of a valid refund made bad (undefined: removed): a 400 naming it. */
const bad = (field: string, value: unknown): Case => {
  const json: Record<string, unknown> = base();
  if (value === undefined) delete json[field];
  else json[field] = value;
  return post(json, { field: `body.${field}` });
};
const cursor = (text: string) => encodeURIComponent(Buffer.from(text).toString('base64url'));
const LIST = '/v1/customers/cust-a/refunds';

const VALIDATION: [string, Case][] = [
  ['unknown field', post({ ...base(), amount: '10' }, { field: 'body' })],
  ...['0', '-1', '1e3', '1.1234567', '9000000000001', '', 10, null].map((v): [string, Case] => [
    `credits ${show(v)}`,
    bad('credits', v),
  ]),
  ...['not-a-uuid', '', 42, undefined].map((v): [string, Case] => [`lotId ${show(v)}`, bad('lotId', v)]),
  ...['a b', '', 'x'.repeat(129), undefined].map((v): [string, Case] => [
    `customerId ${show(v).slice(0, 20)}`,
    bad('customerId', v),
  ]),
  ...['', 'x'.repeat(501), 5, undefined].map((v): [string, Case] => [
    `reason ${show(v).slice(0, 20)}`,
    bad('reason', v),
  ]),
  ['NUL in reason', bad('reason', 'cancelled\u0000')],
  ['a lone surrogate in reason', bad('reason', 'cancelled\ud800')],
  ['NUL in customerId', bad('customerId', 'cust-a\u0000')],
  ['without Idempotency-Key', post(base(), { idem: false, field: 'header' })],
  ['a JSON array body', post(undefined, { raw: '[]' })],
  ['a body that is not JSON', post(undefined, { raw: '{"customerId":' })],
  ['unknown customer', post({ ...base(), customerId: 'nobody' }, { status: 404, code: 'CustomerNotFound' })],
  ["GET a refund id with ':'", { method: 'GET', path: '/v1/refunds/a:b', status: 400, field: 'params.refundId' }],
  [
    'GET a refund id of 129 characters',
    { method: 'GET', path: `/v1/refunds/${'r'.repeat(129)}`, status: 400, field: 'params.refundId' },
  ],
  ['GET a refund id with NUL', { method: 'GET', path: '/v1/refunds/ref%00x', status: 400, field: 'params.refundId' }],
  ['GET an unknown refund', { method: 'GET', path: '/v1/refunds/ref_nope', status: 404, code: 'RefundNotFound' }],
  ...['0', '501', '-1', '1.5', 'abc'].map((v): [string, Case] => [
    `list limit ${v}`,
    { method: 'GET', path: `${LIST}?limit=${v}`, status: 400, field: 'query.limit' },
  ]),
  ...[
    ['garbage', encodeURIComponent('not a cursor')],
    ['of another list', cursor('seq:5')],
    ['with a bad id', cursor('refunds:2026-01-01T00:00:00.000Z|a:b')],
    // FAILS on 7099fd3 (500): api/routes/refunds.ts checks the cursor's shape, not that its date exists.
    ['with an impossible date', cursor('refunds:2026-13-45T99:99:99.999Z|ref_x')],
    ['with NUL', cursor('refunds:2026-01-01T00:00:00.000Z|x\u0000')],
  ].map(([what, c]): [string, Case] => [
    `list cursor ${what}`,
    { method: 'GET', path: `${LIST}?cursor=${c}`, status: 400, field: 'query.cursor' },
  ]),
  ['list with an unknown parameter', { method: 'GET', path: `${LIST}?status=failed`, status: 400, field: 'query' }],
  [
    'list of a bad customer id',
    { method: 'GET', path: '/v1/customers/a%20b/refunds', status: 400, field: 'params.id' },
  ],
  ['list of an unknown customer', { method: 'GET', path: '/v1/customers/nobody/refunds', status: 404 }],
];

const ENDPOINTS: Omit<Case, 'status'>[] = [
  { method: 'POST', path: '/v1/refunds', json: base() },
  { method: 'GET', path: `/v1/refunds/${EXISTING}` },
  { method: 'GET', path: LIST },
];
const ACCESS: [string, Case][] = [
  ['viewer POST refund', { ...post(base()), key: 'viewer', status: 403 }],
  ['service POST refund', { ...post(base()), key: 'service', status: 403 }],
  ...ENDPOINTS.map((e): [string, Case] => [
    `a key scoped to cust-b: ${e.method} ${e.path}`,
    { ...e, key: 'otherCustomer', status: 403 },
  ]),
  ...ENDPOINTS.map((e): [string, Case] => [`no key: ${e.method} ${e.path}`, { ...e, key: null, status: 401 }]),
];

describe('refused at the boundary: 4xx problem, nothing written', () => {
  it.each([...VALIDATION, ...ACCESS])('%s', async (_name, c) => {
    const before = await snapshotTables(pool);
    expectProblem(await send(c), c);
    expect(await snapshotTables(pool)).toEqual(before);
  });
});

describe('refused after a look at the lot → stored for replay, nothing else written', () => {
  it.each<[string, () => Case]>([
    [
      'more credits than the lot has',
      () => post({ ...base(), credits: '101' }, { status: 422, code: 'NotRefundable' }),
    ],
    ['a promotional lot', () => post({ ...base(), lotId: promoA }, { status: 422, code: 'NotRefundable' })],
    ["another customer's lot", () => post({ ...base(), customerId: 'cust-b' }, { status: 404, code: 'LotNotFound' })],
    ['a lot that does not exist', () => post({ ...base(), lotId: randomUUID() }, { status: 404, code: 'LotNotFound' })],
  ])('%s', async (_name, make) => {
    const made = make();
    const c = { ...made, json: resolved(made.json) };
    const before = await snapshotTables(pool);
    const idem = randomUUID();
    const once = () =>
      call(api.url, 'POST', c.path, { key: keys.support, json: c.json, headers: { 'idempotency-key': idem } });
    const first = await once();
    expectProblem(first, c);
    const after = await snapshotTables(pool);
    expect(after).toEqual({ ...before, http_idempotency: String(Number(before.http_idempotency) + 1) });
    const replay = await once();
    expect([replay.headers.get('idempotent-replayed'), replay.body]).toEqual(['true', first.body]);
    // Another body under the same key is a conflict, not a second try.
    const other = await call(api.url, 'POST', c.path, {
      key: keys.support,
      json: { ...(c.json as object), reason: 'another' },
      headers: { 'idempotency-key': idem },
    });
    expect(other.status).toBe(409);
    expect(await snapshotTables(pool)).toEqual(after);
  });
});

it(`a burst of ${5 * 3 * API_POOL} refund requests (3 × the pool of each of 5 kinds): all answered, pool given back`, async () => {
  const n = 3 * API_POOL;
  const cases: Case[] = Array.from({ length: n }, (): Case[] => [
    bad('credits', '-1'),
    post({ ...base(), credits: '101' }, { status: 422 }),
    { method: 'GET', path: `/v1/refunds/${EXISTING}`, key: 'viewer', status: 200 },
    { method: 'GET', path: `${LIST}?limit=1`, key: 'viewer', status: 200 },
    { method: 'GET', path: '/v1/refunds/a:b', status: 400 },
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
  it('no saga was started, no refund written but the seeded one, no credits moved, invariants hold', async () => {
    expect(sagaStarts).toBe(0);
    const r = await pool.query<{ refunds: string; moves: string; remaining: string }>(
      `SELECT (SELECT count(*) FROM refunds)::text AS refunds,
              (SELECT count(*) FROM ledger_transactions WHERE type LIKE 'refund%')::text AS moves,
              (SELECT remaining::text FROM credit_lots WHERE id = $1) AS remaining`,
      [lotA],
    );
    expect(r.rows[0]).toEqual({ refunds: '1', moves: '0', remaining: '100000000' });
    expect(await findViolations(pool)).toEqual([]);
  });
});
