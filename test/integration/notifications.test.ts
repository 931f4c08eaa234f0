import { randomUUID } from 'node:crypto';
import { credits } from '../../domain/amount';
import { NOTIFICATION_TYPES } from '../../db/notifications';
import { enqueue } from '../../db/outbox';
import type { Pool } from '../../db/pool';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { encodeCursor } from '../../api/validate';
import { call, makeKey, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/** `GET /v1/notifications`: the outbox, newest first, filtered and paged, for admin and (one customer) support. */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
const keys = { admin: '', service: '', support: '', viewer: '' };
let a = '';
let b = '';

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool);
  for (const role of ['admin', 'service', 'support'] as const) keys[role] = await makeKey(pool, role);
  a = `nt-a-${randomUUID().slice(0, 6)}`;
  b = `nt-b-${randomUUID().slice(0, 6)}`;
  for (const id of [a, b])
    expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id } })).status).toBe(201);
  keys.viewer = await makeKey(pool, 'viewer', a); // viewers are always scoped
  // a: three balance.low at once (an empty wallet is below every threshold it is given).
  const set = await call(api.url, 'PUT', `/v1/customers/${a}/alerts`, {
    key: keys.admin,
    json: { lowBalanceThresholds: ['1', '10', '5'] },
  });
  expect(set.body.fired).toEqual(['10', '5', '1']);
  // b: a hold that expires.
  const ledger = new Ledger(pool);
  await ledger.grant(
    { customerId: b, key: `g:${b}`, requestHash: 'g' },
    { amount: credits('10'), kind: 'promotional' },
  );
  const holds = new HoldLedger(ledger);
  const expiresAt = new Date(Date.now() + 60_000);
  const cmd = (key: string) => ({ customerId: b, key: `${b}:${key}`, requestHash: key });
  await holds.place(cmd('p'), { holdId: 'h', workflowId: 't', amount: credits('4'), expiresAt });
  await holds.release(cmd('x'), { holdId: 'h', status: 'expired', ifActive: true, deadline: expiresAt });
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

const list = (qs: string, key = keys.admin) => call(api.url, 'GET', `/v1/notifications${qs}`, { key });
const ids = (r: { body: { notifications: { id: string }[] } }) => r.body.notifications.map((n) => n.id);

it('lists the outbox newest first in the public shape { id: evt_<n>, type, customerId, createdAt, data }', async () => {
  const r = await list(`?customerId=${a}`);
  expect(r.status).toBe(200);
  expect(r.body.nextCursor).toBeNull();
  expect(r.body.notifications.map((n: { data: unknown }) => n.data)).toEqual([
    { threshold: '1', available: '0' },
    { threshold: '5', available: '0' },
    { threshold: '10', available: '0' },
  ]);
  const outbox = await pool.query(
    `SELECT id::text, created_at FROM outbox_events WHERE customer_id = $1 ORDER BY id DESC`,
    [a],
  );
  expect(ids(r)).toEqual(outbox.rows.map((o) => `evt_${o.id}`));
  expect(r.body.notifications[0]).toEqual({
    id: `evt_${outbox.rows[0].id}`,
    type: 'balance.low',
    customerId: a,
    createdAt: (outbox.rows[0].created_at as Date).toISOString(),
    data: { threshold: '1', available: '0' },
  });

  const all = await list('');
  expect(ids(all)).toEqual(
    (await pool.query(`SELECT id::text FROM outbox_events ORDER BY id DESC`)).rows.map((o) => `evt_${o.id}`),
  );
  expect(new Set(all.body.notifications.map((n: { customerId: string }) => n.customerId))).toEqual(new Set([a, b]));
});

it('filters by type and customer', async () => {
  const held = await list(`?type=hold.expired`);
  expect(held.body.notifications).toEqual([
    expect.objectContaining({ type: 'hold.expired', customerId: b, data: expect.objectContaining({ holdId: 'h' }) }),
  ]);
  expect((await list(`?type=hold.expired&customerId=${a}`)).body.notifications).toEqual([]);
  expect((await list(`?type=balance.low&customerId=${a}`)).body.notifications).toHaveLength(3);
  expect((await list(`?customerId=nobody`)).body.notifications).toEqual([]);
  // Every catalogued type is a valid filter.
  for (const type of NOTIFICATION_TYPES) expect((await list(`?type=${type}`)).status).toBe(200);
});

it('pages with an opaque cursor: every notification once, in order', async () => {
  const full = ids(await list(`?customerId=${a}`));
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const r = await list(`?customerId=${a}&limit=2${cursor ? `&cursor=${cursor}` : ''}`);
    expect(r.status).toBe(200);
    expect(r.body.notifications.length).toBeLessThanOrEqual(2);
    seen.push(...ids(r));
    cursor = r.body.nextCursor;
    pages++;
  } while (cursor);
  expect(pages).toBe(2);
  expect(seen).toEqual(full);
});

it('admin lists all; support one customer at a time (a scoped key only its own); viewer and service are refused', async () => {
  expect((await list(`?customerId=${a}`, keys.support)).status).toBe(200);
  expect((await list('', keys.support)).status).toBe(403);
  expect((await list(`?customerId=${a}`, keys.viewer)).status).toBe(403);
  expect((await list(`?customerId=${a}`, keys.service)).status).toBe(403);
  expect((await list('', keys.service)).status).toBe(403);
  const scoped = await makeKey(pool, 'support', b);
  expect((await list(`?customerId=${b}`, scoped)).status).toBe(200);
  expect((await list(`?customerId=${a}`, scoped)).status).toBe(403);
  expect((await list('', scoped)).status).toBe(403);
  expect((await call(api.url, 'GET', '/v1/notifications')).status).toBe(401);
});

it('bad input is a 400 problem', async () => {
  const bad = [
    '?limit=0',
    '?limit=501',
    '?limit=x',
    '?cursor=garbage',
    `?cursor=${encodeCursor('audit', '5')}`,
    `?cursor=${encodeCursor('evt', '99999999999999999999')}`,
    '?customerId=%00',
    '?customerId=a%00b',
    '?type=unknown.type',
    '?type=balance.low%00',
    '?other=1',
  ];
  for (const qs of bad) {
    const r = await list(qs);
    expect([qs, r.status, r.headers.get('content-type')]).toEqual([qs, 400, 'application/problem+json; charset=utf-8']);
  }
});

it('an event about no customer (reconciliation) lists for admin among the others by id, never under a customer filter', async () => {
  const runId = randomUUID();
  await enqueue(pool, [
    { dedupeKey: `t:${runId}`, type: 'reconciliation.discrepancy', customerId: null, payload: { runId } },
    { dedupeKey: `t:${runId}:a`, type: 'balance.low', customerId: a, payload: { runId } },
  ]);
  const all = await list('');
  const listed = all.body.notifications as { id: string; type: string; data: unknown }[];
  expect(
    listed
      .slice(0, 2)
      .map((n) => n.type)
      .sort(),
  ).toEqual(['balance.low', 'reconciliation.discrepancy']);
  const nums = listed.map((n) => BigInt(n.id.slice(4)));
  expect(nums.every((v, i) => i === 0 || v < nums[i - 1]!)).toBe(true); // one id sequence, newest first
  const operator = listed.find((n) => n.type === 'reconciliation.discrepancy')!;
  expect(operator).not.toHaveProperty('customerId');
  expect(operator.data).toEqual({ runId });
  const mine = await list(`?customerId=${a}`);
  expect(mine.body.notifications.map((n: { type: string }) => n.type)).not.toContain('reconciliation.discrepancy');
  const support = await list('', keys.support);
  expect(support.status).toBe(403); // support must name one customer: operator events are admin's
});
