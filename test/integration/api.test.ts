import { credits } from '../../domain/amount';
import type { Pool } from '../../db/pool';
import { findViolations } from '../../db/invariants';
import { TemporalHandle } from '../../lib/temporal';
import { createLogger } from '../../lib/logger';
import { createPool } from '../../db/pool';
import { freshDatabase } from '../support/db';
import { call, makeKey, snapshotTables, startApi, type TestApi } from '../support/api';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let temporal: TemporalHandle;
const keys: Record<string, string> = {};

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  temporal = new TemporalHandle(process.env.TEST_TEMPORAL_ADDRESS!, 'default', createLogger('t', 'silent'));
  api = await startApi(pool, { temporalReady: () => temporal.ready(), bodyLimit: '64kb' });
  keys.admin = await makeKey(pool, 'admin');
  keys.service = await makeKey(pool, 'service');
  keys.support = await makeKey(pool, 'support');
  keys.viewerA = await makeKey(pool, 'viewer', 'cust-a');
  keys.viewerB = await makeKey(pool, 'viewer', 'cust-b');
  keys.serviceScopedB = await makeKey(pool, 'service', 'cust-b');
  for (const id of ['cust-a', 'cust-b']) {
    expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id } })).status).toBe(201);
  }
});
afterAll(async () => {
  await api.close();
  await temporal.close();
  await db.drop();
});

const get = (path: string, key = keys.admin) => call(api.url, 'GET', path, { key });
const post = (path: string, json: unknown, o: { key?: string; idem?: string } = {}) =>
  call(api.url, 'POST', path, {
    key: o.key ?? keys.admin,
    json,
    headers: o.idem ? { 'idempotency-key': o.idem } : {},
  });
let n = 0;
const fresh = () => `k${++n}-${Date.now()}`;

/** Row counts of every table (and Σ wallet versions). */
const snapshot = () => snapshotTables(pool);

function expectProblem(res: { status: number; headers: Headers; body: any; text: string }, status: number) {
  expect(res.status).toBe(status);
  expect(res.headers.get('content-type')).toMatch(/^application\/problem\+json/);
  expect(res.body).toMatchObject({ status, title: expect.any(String), type: expect.any(String) });
  expect(res.text).not.toMatch(/\n\s+at |node_modules|\.ts:\d+/); // never a stack trace
}

describe('health, readiness, docs', () => {
  it('healthz and readyz answer 200 with Postgres and Temporal reachable', async () => {
    expect((await get('/healthz')).status).toBe(200);
    const r = await get('/readyz');
    expect(r.status).toBe(200);
    expect(r.body).toEqual({ status: 'ready', checks: { postgres: 'up', temporal: 'up' } });
  });

  it('readyz is 503 with Retry-After when Postgres or Temporal is unreachable', async () => {
    const deadPool = createPool('postgres://postgres@127.0.0.1:1/none', 1);
    const deadTemporal = new TemporalHandle('127.0.0.1:1', 'default', createLogger('t', 'silent'));
    const other = await startApi(deadPool, { temporalReady: () => deadTemporal.ready() });
    try {
      const r = await call(other.url, 'GET', '/readyz');
      expect(r.status).toBe(503);
      expect(r.headers.get('retry-after')).toBe('5');
      expect(r.body.checks).toEqual({ postgres: 'down', temporal: 'down' });
    } finally {
      await other.close();
      await deadPool.end();
    }
  });

  it('readyz includes the worker when a worker check is given: down (rejecting or hanging) → 503', async () => {
    const cases: [string, () => Promise<void>, number, string][] = [
      ['up', () => Promise.resolve(), 200, 'up'],
      ['rejecting', () => Promise.reject(new Error('no pollers')), 503, 'down'],
      ['hanging', () => new Promise<void>(() => undefined), 503, 'down'],
    ];
    for (const [, workerReady, status, worker] of cases) {
      const other = await startApi(pool, { temporalReady: () => Promise.resolve(), workerReady });
      try {
        const started = Date.now();
        const r = await call(other.url, 'GET', '/readyz');
        expect(r.status).toBe(status);
        expect(r.body.checks).toEqual({ postgres: 'up', temporal: 'up', worker });
        expect(Date.now() - started).toBeLessThan(5000); // the 2 s timeout, not the hang
      } finally {
        await other.close();
      }
    }
  });

  it('serves an OpenAPI document with the customer and grant paths and the amount pattern from the schemas', async () => {
    const r = await get('/openapi.json');
    expect(r.status).toBe(200);
    expect(Object.keys(r.body.paths)).toEqual(
      expect.arrayContaining(['/v1/customers', '/v1/customers/{id}/grants', '/v1/customers/{id}/grants/{lotId}/void']),
    );
    expect(r.body.components.schemas.Grant.properties.amount.pattern).toBeDefined();
  });

  it('serves a docs page listing the operations', async () => {
    const r = await get('/docs');
    expect(r.status).toBe(200);
    expect(r.text).toContain('/v1/customers/{id}/grants');
  });

  it('serves Prometheus metrics', async () => {
    const r = await get('/metrics');
    expect(r.status).toBe(200);
    expect(r.text).toContain('creditflow_http_request_duration_seconds');
  });
});

describe('customers', () => {
  it('create → 201; same body → 200; different body → 409 writing nothing', async () => {
    const id = `c-${fresh()}`;
    const a = await post('/v1/customers', { id, name: 'Acme', metadata: { plan: 'pro' } });
    expect(a.status).toBe(201);
    expect(a.body).toMatchObject({ id, name: 'Acme', wallet: { available: '0', held: '0', arrears: '0' } });
    expect((await post('/v1/customers', { metadata: { plan: 'pro' }, name: 'Acme', id })).status).toBe(200);
    const before = await snapshot();
    expectProblem(await post('/v1/customers', { id, name: 'Other' }), 409);
    expect(await snapshot()).toEqual(before);
  });

  it('unknown customer → 404 on GET customer, balance and ledger', async () => {
    for (const p of ['', '/balance', '/ledger']) expectProblem(await get(`/v1/customers/nobody${p}`), 404);
  });
});

describe('grants, voids, balance and ledger', () => {
  it('grant → 201 with lot and transaction; replay → same response, Idempotent-Replayed, nothing written', async () => {
    const idem = fresh();
    const body = {
      amount: '100.5',
      kind: 'purchased',
      cost: { amountMinor: 1000, currency: 'USD' },
      paymentReference: 'pi_1',
    };
    const first = await post('/v1/customers/cust-a/grants', body, { idem });
    expect(first.status).toBe(201);
    expect(first.body.lot).toMatchObject({ original: '100.5', remaining: '100.5', kind: 'purchased', priority: 30 });
    const before = await snapshot();
    const again = await post('/v1/customers/cust-a/grants', { ...body }, { idem });
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    expect(await snapshot()).toEqual(before);
    expectProblem(await post('/v1/customers/cust-a/grants', { ...body, amount: '100.6' }, { idem }), 409);
    expect(await snapshot()).toEqual(before);
  });

  it('balance lists the expiring promotional lot before the purchased one, with the next expiry; voiding an unused lot takes all of it; a second void → 422', async () => {
    const id = `c-${fresh()}`;
    await post('/v1/customers', { id });
    const soon = new Date(Date.now() + 86_400_000).toISOString();
    const promo = await post(
      `/v1/customers/${id}/grants`,
      { amount: '10', kind: 'promotional', expiresAt: soon },
      { idem: fresh() },
    );
    await post(`/v1/customers/${id}/grants`, { amount: '5', kind: 'purchased' }, { idem: fresh() });
    const bal = await get(`/v1/customers/${id}/balance`);
    expect(bal.body).toMatchObject({ available: '15', held: '0', arrears: '0' });
    expect(bal.body.lots.map((l: { kind: string }) => l.kind)).toEqual(['promotional', 'purchased']);
    expect(bal.body.nextExpiry).toEqual({ at: new Date(soon).toISOString(), amount: '10' });
    const lotId = promo.body.lot.id as string;
    const v = await post(
      `/v1/customers/${id}/grants/${lotId}/void`,
      { reason: 'goodwill reversed' },
      { idem: fresh() },
    );
    expect(v.status).toBe(200);
    expect(v.body).toMatchObject({ voided: '10', lot: { status: 'voided', remaining: '0' } });
    expect((await get(`/v1/customers/${id}/balance`)).body).toMatchObject({ available: '5', nextExpiry: null });
    expectProblem(await post(`/v1/customers/${id}/grants/${lotId}/void`, { reason: 'again' }, { idem: fresh() }), 422);
    expectProblem(
      await post(
        `/v1/customers/${id}/grants/00000000-0000-4000-8000-000000000000/void`,
        { reason: 'x' },
        { idem: fresh() },
      ),
      404,
    );
    // another customer's lot is not found through this customer
    expectProblem(await post(`/v1/customers/cust-b/grants/${lotId}/void`, { reason: 'x' }, { idem: fresh() }), 404);
  });

  it('ledger pages with an opaque cursor, newest first, each transaction balanced; a type filter that matches nothing returns nothing', async () => {
    const id = `c-${fresh()}`;
    await post('/v1/customers', { id });
    for (let i = 1; i <= 5; i++)
      await post(`/v1/customers/${id}/grants`, { amount: String(i), kind: 'adjustment' }, { idem: fresh() });
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const page: any = await get(`/v1/customers/${id}/ledger?limit=2${cursor ? `&cursor=${cursor}` : ''}`);
      expect(page.status).toBe(200);
      expect(page.body.transactions.length).toBeLessThanOrEqual(2);
      for (const t of page.body.transactions) {
        seen.push(t.entries.find((e: { account: string }) => e.account === 'available').amount);
        expect(t.entries.reduce((s: bigint, e: { amount: string }) => s + credits(e.amount), 0n)).toBe(0n);
      }
      cursor = page.body.nextCursor;
    } while (cursor);
    expect(seen).toEqual(['5', '4', '3', '2', '1']);
    expect((await get(`/v1/customers/${id}/ledger?type=void`)).body.transactions).toEqual([]);
  });
});

describe('auth and roles', () => {
  it('missing, malformed and unknown keys → 401', async () => {
    expectProblem(await call(api.url, 'GET', '/v1/customers/cust-a'), 401);
    expectProblem(await call(api.url, 'GET', '/v1/customers/cust-a', { headers: { authorization: 'Basic abc' } }), 401);
    expectProblem(await call(api.url, 'GET', '/v1/customers/cust-a', { key: 'not-a-real-key-0000000' }), 401);
    expectProblem(await call(api.url, 'GET', '/v1/customers/cust-a', { key: 'short' }), 401);
  });

  it('viewer reads only its customer; cannot write', async () => {
    expect((await get('/v1/customers/cust-a/balance', keys.viewerA)).status).toBe(200);
    expectProblem(await get('/v1/customers/cust-b/balance', keys.viewerA), 403);
    expectProblem(await get('/v1/customers/cust-b/ledger', keys.viewerA), 403);
    const before = await snapshot();
    expectProblem(
      await post(
        '/v1/customers/cust-a/grants',
        { amount: '1', kind: 'promotional' },
        { key: keys.viewerA, idem: fresh() },
      ),
      403,
    );
    expectProblem(await post('/v1/customers', { id: 'x-new' }, { key: keys.viewerA }), 403);
    expect(await snapshot()).toEqual(before);
  });

  it('service may create customers but not grant; support may grant; a service key scoped to one customer cannot read another', async () => {
    const before = await snapshot();
    expectProblem(
      await post(
        '/v1/customers/cust-a/grants',
        { amount: '1', kind: 'promotional' },
        { key: keys.service, idem: fresh() },
      ),
      403,
    );
    expectProblem(await get('/v1/customers/cust-a', keys.serviceScopedB), 403);
    expect(await snapshot()).toEqual(before);
    expect((await post('/v1/customers', { id: `svc-${fresh()}` }, { key: keys.service })).status).toBe(201);
    expect(
      (
        await post(
          '/v1/customers/cust-b/grants',
          { amount: '1', kind: 'promotional' },
          { key: keys.support, idem: fresh() },
        )
      ).status,
    ).toBe(201);
  });
});

describe('bad input to create customer, grant and void gets a 4xx problem and writes nothing', () => {
  const lotPath = '/v1/customers/cust-a/grants/00000000-0000-4000-8000-000000000000/void';
  const writes: { name: string; path: string; valid: Record<string, unknown> }[] = [
    { name: 'create customer', path: '/v1/customers', valid: { id: 'bad-input-target' } },
    { name: 'grant', path: '/v1/customers/cust-a/grants', valid: { amount: '1', kind: 'promotional' } },
    { name: 'void', path: lotPath, valid: { reason: 'x' } },
  ];
  const amounts = ['1e3', '-5', '0.0000001', '99999999999999999999', '', ' 1', '0x1', 'NaN', '1,0', '١'];

  for (const w of writes) {
    describe(w.name, () => {
      const send = (o: {
        raw?: string;
        json?: unknown;
        contentType?: string;
        key?: string | null;
        idem?: string | null;
      }) =>
        call(api.url, 'POST', w.path, {
          key: o.key === null ? undefined : (o.key ?? keys.admin),
          raw: o.raw,
          json: o.json,
          contentType: o.contentType,
          headers: o.idem === null ? {} : { 'idempotency-key': o.idem ?? fresh() },
        });

      it.each([
        ['malformed JSON', { raw: '{"amount": "1",' }, 400],
        ['JSON that is not an object', { raw: '"just a string"' }, 400],
        ['an array', { raw: '[1,2]' }, 400],
        ['null', { raw: 'null' }, 400],
        ['an unknown field', { json: { ...w.valid, surprise: true } }, 400],
        ['a __proto__ field', { raw: JSON.stringify(w.valid).replace(/^\{/, '{"__proto__":{"admin":true},') }, 400],
        ['wrong content type', { raw: JSON.stringify(w.valid), contentType: 'text/plain' }, 415],
        ['form encoding', { raw: 'amount=1', contentType: 'application/x-www-form-urlencoded' }, 415],
        ['an oversized body', { json: { ...w.valid, reason: 'x'.repeat(70_000) } }, 413],
        ['no key', { json: w.valid, key: null }, 401],
        ['an invalid key', { json: w.valid, key: 'invalid-key-invalid-key' }, 401],
      ])('%s', async (_name, o, status) => {
        const before = await snapshot();
        expectProblem(await send(o), status);
        expect(await snapshot()).toEqual(before);
      });

      it('wrong types on each field of a minimal valid body → 400 naming the field', async () => {
        const before = await snapshot();
        for (const field of Object.keys(w.valid)) {
          for (const bad of [42, true, null, [], {}, 1.5]) {
            const r = await send({ json: { ...w.valid, [field]: bad } });
            expectProblem(r, 400);
            expect(r.body.errors[0].path).toBe(`body.${field}`);
          }
        }
        expect(await snapshot()).toEqual(before);
      });
    });
  }

  it.each(amounts)('grant amount %j → 400', async (amount) => {
    const before = await snapshot();
    const r = await post('/v1/customers/cust-a/grants', { amount, kind: 'purchased' }, { idem: fresh() });
    expectProblem(r, 400);
    expect(r.body.errors).toEqual([expect.objectContaining({ path: 'body.amount' })]);
    expect(await snapshot()).toEqual(before);
  });

  it.each([
    ['zero amount', { amount: '0', kind: 'purchased' }],
    ['unknown kind', { amount: '1', kind: 'gift' }],
    ['negative priority', { amount: '1', kind: 'purchased', priority: -1 }],
    ['fractional priority', { amount: '1', kind: 'purchased', priority: 1.5 }],
    ['non-RFC3339 expiry', { amount: '1', kind: 'purchased', expiresAt: 'tomorrow' }],
    [
      'expiry before effective',
      { amount: '1', kind: 'purchased', effectiveAt: '2030-01-02T00:00:00Z', expiresAt: '2030-01-01T00:00:00Z' },
    ],
    ['bad currency', { amount: '1', kind: 'purchased', cost: { amountMinor: 5, currency: 'EUR' } }],
    ['float money', { amount: '1', kind: 'purchased', cost: { amountMinor: 5.5, currency: 'USD' } }],
    ['bad recurrence', { amount: '1', kind: 'allowance', recurrence: { every: 'year' } }],
    ['negative rollover cap', { amount: '1', kind: 'allowance', rolloverCap: '-1' }],
  ])('grant with %s → 400', async (_n, b) => {
    const before = await snapshot();
    expectProblem(await post('/v1/customers/cust-a/grants', b, { idem: fresh() }), 400);
    expect(await snapshot()).toEqual(before);
  });

  it('a grant that has already expired → 422, nothing written but its idempotency record', async () => {
    const before = await snapshot();
    const r = await post(
      '/v1/customers/cust-a/grants',
      { amount: '1', kind: 'purchased', expiresAt: '2020-01-01T00:00:00Z' },
      { idem: fresh() },
    );
    expectProblem(r, 422);
    // A final outcome is stored under its Idempotency-Key (a replay gets the same 422); nothing else.
    expect(await snapshot()).toEqual({ ...before, http_idempotency: String(Number(before.http_idempotency) + 1) });
  });

  it('missing or malformed Idempotency-Key → 400', async () => {
    const before = await snapshot();
    const none = await call(api.url, 'POST', '/v1/customers/cust-a/grants', {
      key: keys.admin,
      json: { amount: '1', kind: 'purchased' },
    });
    expectProblem(none, 400);
    expect(none.body.errors[0].path).toBe('header');
    expectProblem(
      await post('/v1/customers/cust-a/grants', { amount: '1', kind: 'purchased' }, { idem: 'x'.repeat(300) }),
      400,
    );
    expect(await snapshot()).toEqual(before);
  });

  it.each([
    ['/v1/customers/bad%20id', 400],
    [`/v1/customers/${'x'.repeat(129)}`, 400],
    ['/v1/customers/cust-a/grants/not-a-uuid/void', 400],
  ])('bad path parameter %s → %d', async (path, status) => {
    const before = await snapshot();
    const r = path.endsWith('/void') ? await post(path, { reason: 'x' }, { idem: fresh() }) : await get(path);
    expectProblem(r, status);
    expect(await snapshot()).toEqual(before);
  });

  it.each(['limit=0', 'limit=501', 'limit=abc', 'cursor=garbage', 'from=yesterday', 'type=DROP%20TABLE', 'unknown=1'])(
    'ledger query %s → 400',
    async (q) => {
      expectProblem(await get(`/v1/customers/cust-a/ledger?${q}`), 400);
    },
  );

  it('customer ids and metadata are bounded', async () => {
    const before = await snapshot();
    for (const b of [
      { id: '' },
      { id: 'has space' },
      { id: 'x'.repeat(129) },
      { id: 'ok', metadata: { 'bad key!': 'v' } },
      { id: 'ok', metadata: { k: 'x'.repeat(501) } },
      { id: 'ok', metadata: Object.fromEntries(Array.from({ length: 51 }, (_, i) => [`k${i}`, 'v'])) },
      { id: 'ok', overdraftLimit: '-1' },
    ]) {
      expectProblem(await post('/v1/customers', b), 400);
    }
    expect(await snapshot()).toEqual(before);
  });

  it('unknown routes → 404 problem', async () => {
    expectProblem(await get('/v1/nothing-here'), 404);
    expectProblem(await get('/nothing'), 404);
  });

  it('after all of the above, every invariant still holds', async () => {
    expect(await findViolations(pool)).toEqual([]);
  });
});
