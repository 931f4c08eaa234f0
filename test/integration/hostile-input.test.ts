import express from 'express';
import type { AddressInfo } from 'node:net';
import { DomainError } from '../../domain/errors';
import type { Pool } from '../../db/pool';
import { findViolations } from '../../db/invariants';
import { errorHandler } from '../../api/problem';
import { createLogger } from '../../lib/logger';
import { call, makeKey, snapshotTables, startApi, type Call, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/**
 * Input PostgreSQL cannot store, or that is malformed below the JSON level, on every endpoint:
 * always a 4xx problem naming the field, never a 500, and nothing written. Cases come from one
 * table of endpoints with a valid request each, poisoned one field at a time.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let holdsCalls = 0;
const keys: Record<'admin' | 'service' | 'support', string> = { admin: '', service: '', support: '' };
let lotId = '';

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool, {
    bodyLimit: '64kb',
    // Every hold request here is refused before the reservation client is reached.
    holds: () => {
      holdsCalls++;
      return Promise.reject(new Error('the holds client must not be called'));
    },
  });
  keys.admin = await makeKey(pool, 'admin');
  keys.service = await makeKey(pool, 'service');
  keys.support = await makeKey(pool, 'support');
  const c = await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id: 'cust-h' } });
  expect(c.status).toBe(201);
  const g = await call(api.url, 'POST', '/v1/customers/cust-h/grants', {
    key: keys.admin,
    json: { amount: '10', kind: 'promotional' },
    headers: { 'idempotency-key': 'seed' },
  });
  expect(g.status).toBe(201);
  lotId = g.body.lot.id;
  const card = { rules: [{ meter: 'api.calls', credits: '1' }] };
  expect((await call(api.url, 'PUT', '/v1/rate-cards/card-h', { key: keys.admin, json: card })).status).toBe(201);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

function expectProblem(r: Call, status: number) {
  expect({ status: r.status, body: r.body }).toMatchObject({ status, body: { status } });
  expect(typeof r.body.status).toBe('number');
  expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
}

/** A 400 problem whose first error names `path` and says why. */
function expectFieldError(r: Call, path: string, why: RegExp) {
  expectProblem(r, 400);
  expect(r.body.errors?.[0]).toEqual({ path, message: expect.stringMatching(why) });
}

const UNSTORABLE = /NUL|well-formed|UTF-8/;

type Method = 'GET' | 'POST' | 'PUT' | 'DELETE';
interface Endpoint {
  name: string;
  method: Method;
  /** `:name` segments are filled from params. */
  path: string;
  params?: Record<string, string>;
  key: keyof typeof keys;
  idem?: boolean;
  body?: Record<string, unknown>;
  query?: Record<string, string>;
}

const T = '2026-01-01T00:00:00Z';
const rule = { meter: 'api.calls', dimensions: { region: 'eu' }, credits: '1', per: '1' };
const cursor = (text: string) => Buffer.from(text).toString('base64url');

const ENDPOINTS: Endpoint[] = [
  {
    name: 'create customer',
    method: 'POST',
    path: '/v1/customers',
    key: 'admin',
    body: { id: 'new-cust', name: 'Acme', metadata: { plan: 'pro' }, overdraftLimit: '0' },
  },
  { name: 'get customer', method: 'GET', path: '/v1/customers/:id', params: { id: 'cust-h' }, key: 'admin' },
  { name: 'balance', method: 'GET', path: '/v1/customers/:id/balance', params: { id: 'cust-h' }, key: 'admin' },
  {
    name: 'ledger',
    method: 'GET',
    path: '/v1/customers/:id/ledger',
    params: { id: 'cust-h' },
    key: 'admin',
    query: { type: 'grant', from: T, to: '2030-01-01T00:00:00Z', limit: '10', cursor: cursor('seq:5') },
  },
  {
    name: 'grant',
    method: 'POST',
    path: '/v1/customers/:id/grants',
    params: { id: 'cust-h' },
    key: 'support',
    idem: true,
    body: {
      amount: '1',
      kind: 'purchased',
      expiresAt: '2030-01-01T00:00:00Z',
      cost: { amountMinor: 100, currency: 'USD' },
      paymentReference: 'pi_1',
      reason: 'bought',
    },
  },
  {
    name: 'void',
    method: 'POST',
    path: '/v1/customers/:id/grants/:lotId/void',
    params: { id: 'cust-h', lotId: '(seeded lot)' },
    key: 'support',
    idem: true,
    body: { reason: 'mistake' },
  },
  {
    name: 'events',
    method: 'POST',
    path: '/v1/events',
    key: 'service',
    body: {
      events: [
        {
          id: 'e1',
          customerId: 'cust-h',
          meter: 'api.calls',
          quantity: '1',
          timestamp: T,
          dimensions: rule.dimensions,
        },
      ],
    },
  },
  {
    name: 'authorize',
    method: 'POST',
    path: '/v1/customers/:id/authorize',
    params: { id: 'cust-h' },
    key: 'service',
    body: { amount: '1' },
  },
  {
    name: 'usage',
    method: 'GET',
    path: '/v1/customers/:id/usage',
    params: { id: 'cust-h' },
    key: 'admin',
    query: { from: T, to: '2026-02-01T00:00:00Z', groupBy: 'meter,region' },
  },
  {
    name: 'publish rate card',
    method: 'PUT',
    path: '/v1/rate-cards/:name',
    params: { name: 'card-x' },
    key: 'admin',
    body: { effectiveFrom: T, rules: [rule] },
  },
  {
    name: 'get rate card',
    method: 'GET',
    path: '/v1/rate-cards/:name',
    params: { name: 'card-h' },
    key: 'service',
    query: { version: '1' },
  },
  {
    name: 'customer rate card',
    method: 'PUT',
    path: '/v1/customers/:id/rate-card',
    params: { id: 'cust-h' },
    key: 'admin',
    body: { name: 'card-h' },
  },
  {
    name: 'preview',
    method: 'POST',
    path: '/v1/rate-cards/preview',
    key: 'service',
    body: {
      draft: { rules: [rule] },
      customerId: 'cust-h',
      from: T,
      to: '2026-02-01T00:00:00Z',
      events: [{ meter: 'api.calls', quantity: '2', timestamp: T, dimensions: { region: 'us' } }],
    },
  },
  {
    name: 'place hold',
    method: 'POST',
    path: '/v1/holds',
    key: 'service',
    idem: true,
    body: { customerId: 'cust-h', holdId: 'h1', amount: '1', ttlSeconds: 60, metadata: { job: 'j1' } },
  },
  {
    name: 'get hold',
    method: 'GET',
    path: '/v1/holds/:holdId',
    params: { holdId: 'h1' },
    key: 'service',
    query: { customerId: 'cust-h' },
  },
  ...(['capture', 'extend', 'settle', 'release'] as const).map((op): Endpoint => ({
    name: `${op} hold`,
    method: 'POST',
    path: `/v1/holds/:holdId/${op}`,
    params: { holdId: 'h1' },
    key: 'service',
    idem: true,
    body: {
      customerId: 'cust-h',
      ...(op === 'release' ? {} : { amount: '1' }),
      ...(op === 'extend' ? { ttlSeconds: 60 } : {}),
    },
  })),
  {
    name: 'create API key',
    method: 'POST',
    path: '/v1/api-keys',
    key: 'admin',
    body: { role: 'viewer', customerId: 'cust-h', name: 'app' },
  },
  { name: 'list API keys', method: 'GET', path: '/v1/api-keys', key: 'admin', query: { limit: '10' } },
  { name: 'revoke API key', method: 'DELETE', path: '/v1/api-keys/:id', params: { id: 'no-such-key' }, key: 'admin' },
];

interface Req {
  path?: string;
  params?: Record<string, string>;
  /** Raw query string (already encoded), replacing the endpoint's. */
  rawQuery?: string;
  raw?: string | Uint8Array;
  json?: unknown;
  contentType?: string;
  headers?: Record<string, string>;
}

const encodeQuery = (q: Record<string, string>) =>
  Object.entries(q)
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join('&');

function send(e: Endpoint, o: Req = {}): Promise<Call> {
  const values: Record<string, string> = { ...e.params, ...(e.params?.lotId ? { lotId } : {}), ...o.params };
  const path = e.path.replace(/:(\w+)/g, (_, name: string) => values[name]!);
  const q = o.rawQuery ?? (e.query ? encodeQuery(e.query) : '');
  const hasBody = o.raw !== undefined || o.json !== undefined;
  return call(api.url, e.method, `${path}${q ? `?${q}` : ''}`, {
    key: keys[e.key],
    raw: o.raw,
    json: hasBody ? o.json : e.body,
    contentType: o.contentType,
    headers: { ...(e.idem ? { 'idempotency-key': `idem-${Math.random()}` } : {}), ...o.headers },
  });
}

/** Sends, checks the answer, and that no table changed. */
async function refused(e: Endpoint, o: Req, check: (r: Call) => void) {
  const before = await snapshotTables(pool);
  const r = await send(e, o);
  check(r);
  expect(await snapshotTables(pool)).toEqual(before);
}

// ---- generating the cases ----
type Path = (string | number)[];

/** Every string value and every object key of a body, as paths. */
function fields(v: unknown, path: Path = [], out = { strings: [] as Path[], keys: [] as Path[] }) {
  if (typeof v === 'string') out.strings.push(path);
  else if (Array.isArray(v)) v.forEach((x, i) => fields(x, [...path, i], out));
  else if (v && typeof v === 'object')
    for (const [k, x] of Object.entries(v)) {
      out.keys.push([...path, k]);
      fields(x, [...path, k], out);
    }
  return out;
}

function setAt(v: unknown, path: Path, f: (old: unknown) => unknown): unknown {
  if (path.length === 0) return f(v);
  const [head, ...rest] = path;
  const copy = (Array.isArray(v) ? [...v] : { ...(v as object) }) as Record<string | number, unknown>;
  copy[head!] = setAt(copy[head!], rest, f);
  return copy;
}

/** The same object with one key renamed, in place (order kept). */
function renameAt(v: unknown, path: Path, name: string): unknown {
  const parent = path.slice(0, -1);
  const old = path[path.length - 1] as string;
  return setAt(v, parent, (o) =>
    Object.fromEntries(Object.entries(o as object).map(([k, x]) => [k === old ? name : k, x])),
  );
}

/** JSON text of `v` with the first key of the object at `path` written twice. */
function withDuplicate(v: unknown, path: Path): string {
  const write = (x: unknown, here: Path): string => {
    if (Array.isArray(x)) return `[${x.map((y, i) => write(y, [...here, i])).join(',')}]`;
    if (x && typeof x === 'object') {
      const entries = Object.entries(x).map(([k, y]) => `${JSON.stringify(k)}:${write(y, [...here, k])}`);
      if (JSON.stringify(here) === JSON.stringify(path)) entries.unshift(entries[0]!);
      return `{${entries.join(',')}}`;
    }
    return JSON.stringify(x);
  };
  return write(v, []);
}

const show = (path: Path) => ['body', ...path].join('.');
const POISONS = [
  { name: 'NUL', add: '\u0000', shown: '\\u0000' },
  { name: 'a lone surrogate', add: '\ud800', shown: '\\ud800' },
];
const withBody = ENDPOINTS.filter((e) => e.body);

const bodyCases = withBody.flatMap((e) => {
  const { strings, keys: keyPaths } = fields(e.body);
  return POISONS.flatMap((p) => [
    ...strings.map((path) => ({
      e,
      name: `${e.name}: ${p.name} in ${show(path)}`,
      json: setAt(e.body, path, (s) => `${s as string}${p.add}`),
      path: show(path),
    })),
    ...keyPaths.map((path) => ({
      e,
      name: `${e.name}: ${p.name} in the key ${show(path)}`,
      json: renameAt(e.body, path, `${path[path.length - 1]}${p.add}`),
      path: `${show(path)}${p.shown}`,
    })),
  ]);
});

describe('strings PostgreSQL cannot store, in any body field or key → 400 naming it', () => {
  it('there are cases for every endpoint with a body, and a bounded number of them', () => {
    expect(new Set(bodyCases.map((c) => c.e.name))).toEqual(new Set(withBody.map((e) => e.name)));
    expect(bodyCases.length).toBeLessThan(400);
  });

  it.each(bodyCases.map((c) => [c.name, c] as const))('%s', async (_n, c) => {
    await refused(c.e, { raw: JSON.stringify(c.json) }, (r) => expectFieldError(r, c.path, UNSTORABLE));
  });
});

describe('bodies that are malformed below the JSON level → 4xx', () => {
  const INVALID_UTF8: [string, number[]][] = [
    ['a stray continuation byte', [0xff]],
    ['an overlong NUL', [0xc0, 0x80]],
    ['an encoded surrogate', [0xed, 0xa0, 0x80]],
    ['a truncated sequence', [0xe0, 0xa4]],
  ];

  describe.each(withBody.map((e) => [e.name, e] as const))('%s', (_n, e) => {
    const first = fields(e.body).strings[0]!;
    const nested = fields(e.body).keys.find((k) => k.length > 1);

    it.each(INVALID_UTF8)('invalid UTF-8: %s → 400', async (_k, bytes) => {
      const [head, tail] = JSON.stringify(setAt(e.body, first, () => 'MARK')).split('MARK');
      const raw = Buffer.concat([Buffer.from(head!), Buffer.from(bytes), Buffer.from(tail!)]);
      await refused(e, { raw }, (r) => expectFieldError(r, 'body', /UTF-8/));
    });

    it.each([
      ['application/json; charset=utf-16', 415],
      ['application/json; charset=latin1', 415],
      ['application/json;charset="utf-16le"', 415],
      ['text/plain; charset=utf-8', 415],
    ])('Content-Type %s → %d', async (contentType, status) => {
      const raw = contentType.includes('16') ? Buffer.from(JSON.stringify(e.body), 'utf16le') : JSON.stringify(e.body);
      await refused(e, { raw, contentType }, (r) => expectProblem(r, status));
    });

    it('a compressed body → 415', async () => {
      await refused(e, { raw: JSON.stringify(e.body), headers: { 'content-encoding': 'gzip' } }, (r) =>
        expectProblem(r, 415),
      );
    });

    it('a duplicate key → 400 naming it', async () => {
      const k = Object.keys(e.body!)[0]!;
      await refused(e, { raw: withDuplicate(e.body, []) }, (r) => expectFieldError(r, `body.${k}`, /duplicate/));
      if (nested) {
        const parent = nested.slice(0, -1);
        const firstKey = fields(setAt(e.body, parent, (o) => o)).keys.find(
          (p) => p.length === nested.length && JSON.stringify(p.slice(0, -1)) === JSON.stringify(parent),
        )!;
        await refused(e, { raw: withDuplicate(e.body, parent) }, (r) =>
          expectFieldError(r, show(firstKey), /duplicate/),
        );
      }
    });
  });

  it('nesting beyond the bound → 400, before anything recursive sees it', async () => {
    const e = ENDPOINTS.find((x) => x.name === 'preview')!;
    const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`;
    await refused(e, { raw: `{"draft":${deep}}` }, (r) => {
      expectProblem(r, 400);
      expect(r.body.errors[0].message).toMatch(/nested/);
    });
  });

  it('an oversized body → 413, and the connection still serves the next request', async () => {
    const e = ENDPOINTS.find((x) => x.name === 'create customer')!;
    await refused(e, { json: { ...e.body, name: 'x'.repeat(2_000_000) } }, (r) => expectProblem(r, 413));
    expect((await send(ENDPOINTS.find((x) => x.name === 'get customer')!)).status).toBe(200);
  });

  it('Content-Type application/json; charset=UTF-8 is accepted (a request that writes nothing)', async () => {
    const e = ENDPOINTS.find((x) => x.name === 'authorize')!;
    const r = await send(e, { raw: JSON.stringify(e.body), contentType: 'application/json; charset=UTF-8' });
    expect(r.status).toBe(200);
  });
});

describe('query parameters and path parameters', () => {
  const withQuery = ENDPOINTS.filter((e) => e.query);
  const queryCases = withQuery.flatMap((e) =>
    Object.keys(e.query!).flatMap((name) =>
      [
        ['NUL', '%00'],
        ['an encoded surrogate', '%ED%A0%80'],
        ['a byte that is not UTF-8', '%FF'],
        ['malformed percent-encoding', '%E0%A4%A'],
      ].map(([what, bad]) => ({
        name: `${e.name}: ${what} in query.${name}`,
        e,
        rawQuery: encodeQuery(e.query!).replace(
          new RegExp(`(^|&)${name}=([^&]*)`),
          (_m, pre: string, v: string) => `${pre}${name}=${v}${bad}`,
        ),
        path: `query.${name}`,
      })),
    ),
  );
  const keyCases = withQuery.map((e) => ({
    name: `${e.name}: NUL in a query parameter name`,
    e,
    rawQuery: `${encodeQuery(e.query!)}&x%00=1`,
    path: 'query.x\\u0000',
  }));

  it.each([...queryCases, ...keyCases].map((c) => [c.name, c] as const))('%s → 400', async (_n, c) => {
    await refused(c.e, { rawQuery: c.rawQuery }, (r) => expectFieldError(r, c.path, /NUL|UTF-8/));
  });

  const withParams = ENDPOINTS.filter((e) => e.params);
  const paramCases = withParams.flatMap((e) =>
    Object.keys(e.params!).flatMap((param) => [
      { name: `${e.name}: NUL in :${param}`, e, param, value: 'a%00b', path: `params.${param}`, why: /NUL/ },
      { name: `${e.name}: encoded surrogate in :${param}`, e, param, value: '%ED%A0%80', path: 'params', why: /UTF-8/ },
      {
        name: `${e.name}: bad percent-encoding in :${param}`,
        e,
        param,
        value: '%E0%A4%A',
        path: 'params',
        why: /UTF-8/,
      },
    ]),
  );
  it.each(paramCases.map((c) => [c.name, c] as const))('%s → 400', async (_n, c) => {
    await refused(c.e, { params: { [c.param]: c.value } }, (r) => expectFieldError(r, c.path, c.why));
  });

  it('malformed percent-encoding anywhere in a path → 400 problem', async () => {
    for (const path of ['/v1/customers/%E0%A4%A', '/v1/customers/%E0%A4%A/ledger', '/v1/holds/%FF', '/v1/%ZZ']) {
      const r = await call(api.url, 'GET', path, { key: keys.admin });
      expect(r.status).toBeGreaterThanOrEqual(400);
      expect(r.status).toBeLessThan(500);
      expectProblem(r, r.status);
    }
  });

  it('an Idempotency-Key that is not visible ASCII → 400', async () => {
    const e = ENDPOINTS.find((x) => x.name === 'grant')!;
    await refused(e, { headers: { 'idempotency-key': 'caf\u00e9' } }, (r) => expectFieldError(r, 'header', /ASCII/));
  });
});

describe('tampered ledger and list cursors, out-of-range query values → 400', () => {
  const ledger = ENDPOINTS.find((e) => e.name === 'ledger')!;
  it.each([
    ['garbage', 'garbage'],
    ['beyond int8', cursor('seq:9999999999999999999')],
    ['20 digits', cursor('seq:99999999999999999999')],
    ['negative', cursor('seq:-1')],
    ['another list', cursor('key:k1')],
    ['with NUL', cursor('seq:1\u0000')],
  ])('ledger cursor: %s', async (_n, c) => {
    await refused(ledger, { rawQuery: `cursor=${encodeURIComponent(c)}` }, (r) =>
      expectFieldError(r, 'query.cursor', /./),
    );
  });

  it.each([
    ['from', '0000-01-01T00:00:00Z'],
    ['from', '0001-01-01T00:00:00+01:00'],
    ['to', '9999-12-31T23:59:59-01:00'],
    ['limit', '1e9'],
    ['limit', '-1'],
    ['limit', '1.5'],
    ['type', 'x'.repeat(65)],
  ])('ledger %s=%s', async (name, value) => {
    await refused(ledger, { rawQuery: `${name}=${encodeURIComponent(value)}` }, (r) =>
      expectFieldError(r, `query.${name}`, /./),
    );
  });

  it.each([
    ['from', '0000-01-01T00:00:00Z'],
    ['to', '9999-12-31T23:59:59-01:00'],
  ])('usage %s=%s', async (name, value) => {
    const usage = ENDPOINTS.find((e) => e.name === 'usage')!;
    await refused(usage, { rawQuery: `${name}=${encodeURIComponent(value)}` }, (r) =>
      expectFieldError(r, `query.${name}`, /./),
    );
  });

  it.each([
    ['garbage', 'garbage'],
    ['a ledger cursor', cursor('seq:1')],
    ['an id with NUL', cursor('key:a\u0000')],
  ])('API-key list cursor: %s', async (_n, c) => {
    const list = ENDPOINTS.find((e) => e.name === 'list API keys')!;
    await refused(list, { rawQuery: `cursor=${encodeURIComponent(c)}` }, (r) =>
      expectFieldError(r, 'query.cursor', /./),
    );
  });
});

describe('problem responses', () => {
  it.each([
    ['PATCH', '/v1/customers/cust-h', 'GET, HEAD'],
    ['DELETE', '/v1/customers', 'POST'],
    ['POST', '/v1/customers/cust-h/ledger', 'GET, HEAD'],
    ['PUT', '/v1/holds/h1', 'GET, HEAD'],
    ['GET', '/v1/holds/h1/release', 'POST'],
    ['DELETE', '/v1/rate-cards/card-h', 'GET, HEAD, PUT'],
    ['GET', '/v1/api-keys/k1', 'DELETE'],
    ['POST', '/healthz', 'GET, HEAD'],
  ])('%s %s → 405 with Allow: %s', async (method, path, allow) => {
    const before = await snapshotTables(pool);
    const r = await call(api.url, method, path, { key: keys.admin });
    expectProblem(r, 405);
    expect(r.headers.get('allow')).toBe(allow);
    expect(await snapshotTables(pool)).toEqual(before);
  });

  it('unknown paths stay 404, whatever the method', async () => {
    for (const [method, path] of [
      ['GET', '/v1/nothing'],
      ['PATCH', '/v1/nothing'],
      ['GET', '/v1/customers/cust-h/nothing'],
      ['POST', '/nothing'],
    ])
      expectProblem(await call(api.url, method!, path!, { key: keys.admin }), 404);
  });

  it('OPTIONS lists the methods of a known path', async () => {
    const r = await call(api.url, 'OPTIONS', '/v1/customers/cust-h', { key: keys.admin });
    expect(r.status).toBe(200);
    expect(r.headers.get('allow')).toMatch(/GET/);
  });

  it.each(['bearer', 'BEARER', 'BeArEr'])('the %s scheme is accepted (case-insensitive)', async (scheme) => {
    const r = await call(api.url, 'GET', '/v1/customers/cust-h', {
      headers: { authorization: `${scheme} ${keys.admin}` },
    });
    expect(r.status).toBe(200);
    expectProblem(
      await call(api.url, 'GET', '/v1/customers/cust-h', { headers: { authorization: `${scheme} not-a-key-000000` } }),
      401,
    );
  });

  it('status is the HTTP status even when a domain error carries its own `status` detail', async () => {
    const app = express();
    app.get('/x', () => {
      throw new DomainError('HoldNotActive', 'hold h is released', { status: 'released' });
    });
    app.use(errorHandler(createLogger('t', 'silent')));
    const server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const r = await call(`http://127.0.0.1:${(server.address() as AddressInfo).port}`, 'GET', '/x');
      expectProblem(r, 422);
    } finally {
      await new Promise((r) => server.close(r));
    }
  });
});

describe('afterwards', () => {
  it('the holds client was never called', () => {
    expect(holdsCalls).toBe(0);
  });

  it('every invariant still holds', async () => {
    expect(await findViolations(pool)).toEqual([]);
  });
});
