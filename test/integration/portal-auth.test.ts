import { randomUUID } from 'node:crypto';
import { BalanceStreams } from '../../api/balance-streams';
import { PortalTokens } from '../../api/portal-tokens';
import { createPool, type Pool } from '../../db/pool';
import { openSse, type SseStream } from '../../bench/sse-client';
import { burstOnFullPool } from '../support/burst';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { eventually } from '../support/eventually';

/**
 * Portal tokens and the stream's access rules, hostile: a viewer key or portal token of customer
 * A never reads B (403), tampered, foreign or expired tokens are 401, API keys are never taken
 * from a URL, bad bytes are 400, and stream opens above the process limit are 503 + Retry-After.
 */
const SECRET = 'portal-test-secret-0123456789abcdef';
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let streams: BalanceStreams;
const keys = { admin: '', service: '', support: '', viewerA: '' };
let A: string;
let B: string;
let tokenA: string;
const open: SseStream[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  streams = new BalanceStreams(pool, { maxStreams: 1000, heartbeatMs: 100 });
  api = await startApi(pool, { balanceStreams: streams, portalTokens: new PortalTokens(SECRET) });
  for (const role of ['admin', 'service', 'support'] as const) keys[role] = await makeKey(pool, role);
  [A, B] = [`pa-${randomUUID().slice(0, 8)}`, `pb-${randomUUID().slice(0, 8)}`];
  for (const id of [A, B]) {
    expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id } })).status).toBe(201);
  }
  keys.viewerA = await makeKey(pool, 'viewer', A);
  tokenA = (await issue(A)).body.token;
});
afterEach(() => open.splice(0).forEach((s) => s.close()));
afterAll(async () => {
  streams.close();
  await api.close();
  await db.drop();
});

const issue = (id: string, json: unknown = {}, key = keys.admin) =>
  call(api.url, 'POST', `/v1/customers/${id}/portal-tokens`, { key, json });
async function stream(path: string, headers: Record<string, string> = {}, base = api.url) {
  const s = await openSse(`${base}${path}`, headers);
  open.push(s);
  if (s.status !== 200) await s.ended;
  return s;
}
const bearer = (k: string) => ({ authorization: `Bearer ${k}` });
const streamOf = (id: string) => `/v1/customers/${id}/balance/stream`;
/** The token with its signed payload swapped for another: the signature no longer matches. */
function forge(token: string, payload: string): string {
  const mac = token.slice(token.indexOf('.') + 1);
  return `cfpt_${Buffer.from(payload).toString('base64url')}.${mac}`;
}

describe('POST /v1/customers/:id/portal-tokens', () => {
  it('admin and service issue a token and the portal URL; it expires after ttlSeconds (default 1 h)', async () => {
    const before = Date.now();
    const r = await issue(A);
    expect(r.status).toBe(201);
    expect(r.body.token).toMatch(/^cfpt_[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{43}$/);
    expect(r.body.url).toBe(`${api.url}/portal?token=${r.body.token}`);
    const exp = Date.parse(r.body.expiresAt);
    expect(exp).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 3_600_000);
    expect(exp).toBeLessThanOrEqual(Date.now() + 3_600_000);
    const s = await issue(A, { ttlSeconds: 60 }, keys.service);
    expect(s.status).toBe(201);
    expect(Date.parse(s.body.expiresAt)).toBeLessThanOrEqual(Date.now() + 60_000);
  });

  it.each([
    ['a viewer key', () => keys.viewerA, 403],
    ['a support key', () => keys.support, 403],
    ['a portal token (read-only)', () => tokenA, 403],
  ])('%s may not issue one', async (_name, key, status) => {
    expect((await issue(A, {}, key())).status).toBe(status);
  });

  it.each([[{ ttlSeconds: 0 }], [{ ttlSeconds: 86_401 }], [{ ttlSeconds: '60' }], [{ ttlSeconds: 1.5 }], [{ x: 1 }]])(
    'refuses %j with 400',
    async (json) => {
      const r = await issue(A, json);
      expect(r.status).toBe(400);
      expect(r.headers.get('content-type')).toContain('application/problem+json');
    },
  );

  it('unknown customer → 404; bad bytes in the id → 400', async () => {
    expect((await issue('nobody')).status).toBe(404);
    for (const id of ['a%00b', '%FF', 'a%20b', 'x'.repeat(129)]) expect((await issue(id)).status).toBe(400);
  });
});

describe('a portal token reads its one customer, nothing else, and writes nothing', () => {
  it.each(['balance', 'ledger', 'usage'])('GET %s: its customer 200, another 403', async (what) => {
    expect((await call(api.url, 'GET', `/v1/customers/${A}/${what}`, { key: tokenA })).status).toBe(200);
    expect((await call(api.url, 'GET', `/v1/customers/${B}/${what}`, { key: tokenA })).status).toBe(403);
  });

  it('writes are refused (403), whatever the customer', async () => {
    const grant = await call(api.url, 'POST', `/v1/customers/${A}/grants`, {
      key: tokenA,
      json: { amount: '1', kind: 'promotional' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(grant.status).toBe(403);
    const events = await call(api.url, 'POST', '/v1/events', {
      key: tokenA,
      json: { events: [{ id: 'e1', customerId: A, meter: 'tokens', quantity: '1' }] },
    });
    expect(events.status).toBe(403);
    expect((await call(api.url, 'GET', '/v1/api-keys', { key: tokenA })).status).toBe(403);
  });

  it('?token= is for the stream only: other routes refuse it (401), and take no API key from a URL', async () => {
    for (const what of ['balance', 'ledger']) {
      const r = await call(api.url, 'GET', `/v1/customers/${A}/${what}?token=${tokenA}`);
      expect(r.status).toBe(401);
    }
  });
});

describe('GET /v1/customers/:id/balance/stream access', () => {
  it.each([
    ['admin key', () => bearer(keys.admin)],
    ['service key', () => bearer(keys.service)],
    ['support key', () => bearer(keys.support)],
    ["A's viewer key", () => bearer(keys.viewerA)],
    ["A's portal token (header)", () => bearer(tokenA)],
  ])("%s opens A's stream", async (_name, headers) => {
    const s = await stream(streamOf(A), headers());
    expect(s.status).toBe(200);
    await s.next((e) => e.event === 'balance');
  });

  it("A's portal token as ?token= opens A's stream (EventSource cannot send headers)", async () => {
    const s = await stream(`${streamOf(A)}?token=${tokenA}`);
    expect(s.status).toBe(200);
    expect(JSON.parse((await s.next(() => true)).data).customerId).toBe(A);
  });

  it("A's viewer key or portal token never opens B's stream (403)", async () => {
    for (const s of [
      await stream(streamOf(B), bearer(keys.viewerA)),
      await stream(streamOf(B), bearer(tokenA)),
      await stream(`${streamOf(B)}?token=${tokenA}`),
    ]) {
      expect(s.status).toBe(403);
      expect(s.events).toHaveLength(0);
    }
  });

  it('tampered, foreign, expired or garbage tokens → 401 and no event', async () => {
    const exp = Math.floor(Date.now() / 1000) + 3600;
    const past = new PortalTokens(SECRET).issue(A, 60, new Date(Date.now() - 3_600_000)).token;
    const cases: [string, string][] = [
      [forge(tokenA, `${exp}:${B}`), 'invalid portal token'], // A's signature, B's id
      [forge(tokenA, `${exp + 86_400}:${A}`), 'invalid portal token'], // a later expiry
      [`${tokenA.slice(0, -2)}AA`, 'invalid portal token'],
      [new PortalTokens('another-secret-0123456789abcdefgh').issue(A, 60, new Date()).token, 'invalid portal token'],
      [past, 'portal token expired'],
      ['cfpt_' + 'A'.repeat(40), 'invalid portal token'],
      [`${tokenA}.x`, 'invalid portal token'],
    ];
    for (const [token, detail] of cases) {
      for (const s of [
        await stream(streamOf(A), bearer(token)),
        await stream(`${streamOf(A)}?token=${encodeURIComponent(token)}`),
      ]) {
        expect([token, s.status]).toEqual([token, 401]);
        expect(JSON.parse(s.body).detail).toBe(detail);
        expect(s.events).toHaveLength(0);
      }
    }
  });

  it('an API key is never taken from a URL (401), nor a missing credential', async () => {
    expect((await stream(`${streamOf(A)}?token=${keys.admin}`)).status).toBe(401);
    expect((await stream(streamOf(A))).status).toBe(401);
  });

  it('bad bytes in the id or the query → 400, never a 500', async () => {
    for (const id of ['a%00b', '%FF%FE', 'a%20b', 'x'.repeat(129)])
      expect((await stream(streamOf(id), bearer(keys.admin))).status).toBe(400);
    expect((await stream(`${streamOf(A)}?x=%00`, bearer(keys.admin))).status).toBe(400);
    const nul = await stream(`${streamOf(A)}?token=%00`);
    expect(nul.status).toBe(401);
  });

  it('a portal-token stream ends when the token expires; the reconnect is refused as expired', async () => {
    const short = (await issue(A, { ttlSeconds: 2 })).body.token;
    const s = await stream(`${streamOf(A)}?token=${short}`);
    expect(s.status).toBe(200);
    await s.next(() => true);
    await Promise.race([s.ended, new Promise((_, f) => setTimeout(() => f(new Error('still open')), 4000))]);
    const again = await stream(`${streamOf(A)}?token=${short}`);
    expect(again.status).toBe(401);
    expect(JSON.parse(again.body).detail).toBe('portal token expired');
  });
});

describe('limits and shutdown', () => {
  let small: TestApi;
  let smallPool: Pool;
  let limited: BalanceStreams;
  beforeAll(async () => {
    smallPool = createPool(db.url, 2);
    limited = new BalanceStreams(smallPool, { maxStreams: 5, heartbeatMs: 1000 });
    small = await startApi(smallPool, { balanceStreams: limited, portalTokens: new PortalTokens(SECRET) });
  });
  afterAll(async () => {
    limited.close();
    await small.close();
    await smallPool.end();
  });

  it('a burst of 20 opens above the limit of 5: 5 stream, 15 get 503 + Retry-After; a freed slot is reused', async () => {
    const all = await Promise.all(Array.from({ length: 20 }, () => stream(streamOf(A), bearer(keys.admin), small.url)));
    const ok = all.filter((s) => s.status === 200);
    const refused = all.filter((s) => s.status === 503);
    expect([ok.length, refused.length]).toEqual([5, 15]);
    for (const r of refused) {
      expect(r.headers['retry-after']).toBe('5');
      expect(JSON.parse(r.body).status).toBe(503);
    }
    ok[0]!.close();
    await eventually(
      () => Promise.resolve(limited.open),
      (n) => n < 5,
      5000,
    );
    expect((await stream(streamOf(A), bearer(keys.admin), small.url)).status).toBe(200);
  });

  it('opens queued behind a full pool (2 connections) all stream once it frees', async () => {
    await eventually(
      () => Promise.resolve(limited.open),
      (n) => n === 0,
      5000,
    );
    const { answers, queued } = await burstOnFullPool(smallPool, 2, () =>
      Array.from({ length: 4 }, () => stream(streamOf(B), bearer(keys.admin), small.url)),
    );
    expect(queued).toBeGreaterThan(0);
    for (const s of answers) expect(s.status).toBe(200);
    await Promise.all(answers.map((s) => s.next(() => true)));
  });

  it('close() ends every open stream and refuses new ones with 503', async () => {
    const live = await Promise.all([A, B].map((id) => stream(streamOf(id), bearer(keys.admin), small.url)));
    await Promise.all(live.map((s) => s.next(() => true)));
    limited.close();
    await Promise.all(live.map((s) => s.ended));
    const after = await stream(streamOf(A), bearer(keys.admin), small.url);
    expect(after.status).toBe(503);
  });
});
