import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { BalanceStreams } from '../../api/balance-streams';
import { PortalTokens } from '../../api/portal-tokens';
import { credits } from '../../domain/amount';
import { createPool, type Pool } from '../../db/pool';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { stats } from '../../bench/lib';
import { openSse, type SseStream } from '../../bench/sse-client';
import { call, makeKey, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';
import { eventually } from '../support/eventually';

/**
 * The live balance stream on real Postgres: the wallet trigger (migration 015) NOTIFYs every
 * committed balance change; one LISTEN connection per app fans it out to that customer's streams.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let streams: BalanceStreams;
let readPool: Pool;
const keys = { admin: '', service: '' };
const open: SseStream[] = [];

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  // The streams read through their own small pool here, so the test can count their reads.
  readPool = createPool(db.url, 4);
  streams = new BalanceStreams(readPool, { maxStreams: 400, heartbeatMs: 300 });
  api = await startApi(pool, { balanceStreams: streams, portalTokens: new PortalTokens('s'.repeat(32)) });
  keys.admin = await makeKey(pool, 'admin');
  keys.service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, keys.admin);
});
afterEach(() => {
  open.splice(0).forEach((s) => s.close());
});
afterAll(async () => {
  streams.close();
  await api.close();
  await readPool.end();
  await db.drop();
});

async function customer(grant?: string): Promise<string> {
  const id = `bs-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id } })).status).toBe(201);
  if (grant) await grantTo(id, grant);
  return id;
}
const grantTo = async (id: string, amount: string) =>
  expect(
    (
      await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
        key: keys.admin,
        json: { amount, kind: 'promotional' },
        headers: { 'idempotency-key': randomUUID() },
      })
    ).status,
  ).toBe(201);
async function use(id: string, thousands: number) {
  const e = { id: randomUUID(), customerId: id, meter: 'tokens', quantity: String(thousands * 1000) };
  const r = await call(api.url, 'POST', '/v1/events', { key: keys.service, json: { events: [e] } });
  expect(r.body.results[0].status).toBe('accepted');
}
async function stream(id: string, key = keys.admin): Promise<SseStream> {
  const s = await openSse(`${api.url}/v1/customers/${id}/balance/stream`, { authorization: `Bearer ${key}` });
  open.push(s);
  return s;
}
const body = (s: SseStream, i: number) => JSON.parse(s.events[i]!.data);
const version = async (id: string) =>
  (await pool.query<{ v: string }>('SELECT version::text AS v FROM wallets WHERE customer_id = $1', [id])).rows[0]!.v;

it('sends the balance at once, then each committed change of usage, a hold and a grant within 1 s', async () => {
  const c = await customer('100');
  const s = await stream(c);
  expect(s.status).toBe(200);
  expect(s.headers['content-type']).toMatch(/^text\/event-stream/);
  expect(s.headers['cache-control']).toContain('no-cache');
  const first = await s.next((e) => e.event === 'balance');
  expect(JSON.parse(first.data)).toMatchObject({ customerId: c, available: '100', held: '0', arrears: '0' });
  expect(first.id).toBe(await version(c)); // the id is the wallet version

  let t = performance.now();
  await use(c, 7); // usage
  const afterUsage = await s.next((e) => JSON.parse(e.data).available === '93', 1000);
  expect(afterUsage.at - t).toBeLessThan(1000);

  t = performance.now();
  const holds = new HoldLedger(new Ledger(pool));
  const cmd = { customerId: c, key: `${c}:place`, requestHash: 'place' };
  const expiresAt = new Date(Date.now() + 3_600_000);
  await holds.place(cmd, { holdId: 'h1', workflowId: 'test', amount: credits('20'), expiresAt }); // a hold
  const afterHold = await s.next((e) => JSON.parse(e.data).held === '20', 1000);
  expect(JSON.parse(afterHold.data).available).toBe('73');
  expect(afterHold.at - t).toBeLessThan(1000);

  t = performance.now();
  await grantTo(c, '0.000001'); // a grant
  const afterGrant = await s.next((e) => JSON.parse(e.data).available === '73.000001', 1000);
  expect(afterGrant.at - t).toBeLessThan(1000);
  expect(afterGrant.id).toBe(await version(c));

  // Ids only grow, so a client can drop a state it already has after a reconnect.
  const ids = s.events.map((e) => BigInt(e.id!));
  expect(ids).toEqual([...ids].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)));
  expect(new Set(ids).size).toBe(ids.length);
});

it('an update that moves no credits (alert thresholds) sends nothing; heartbeats keep the stream open', async () => {
  const c = await customer('10');
  const s = await stream(c);
  await s.next(() => true);
  const comments = s.comments;
  const put = await call(api.url, 'PUT', `/v1/customers/${c}/alerts`, {
    key: keys.admin,
    json: { lowBalanceThresholds: ['5'] },
  });
  expect(put.status).toBe(200);
  await new Promise((r) => setTimeout(r, 800));
  expect(s.events).toHaveLength(1);
  expect(s.comments).toBeGreaterThan(comments); // heartbeat comments (every 300 ms here)
});

it("another customer's streams receive nothing of a change", async () => {
  const [a, b] = [await customer('50'), await customer('50')];
  const sa = await stream(a);
  const sb = await stream(b);
  await Promise.all([sa.next(() => true), sb.next(() => true)]);
  await use(a, 1);
  await sa.next((e) => JSON.parse(e.data).available === '49', 1000);
  await new Promise((r) => setTimeout(r, 300));
  expect(sb.events).toHaveLength(1);
});

it('a burst of changes costs one read per customer per burst, not one per stream', async () => {
  const c = await customer('1000');
  const many = await Promise.all(Array.from({ length: 50 }, () => stream(c)));
  await Promise.all(many.map((s) => s.next(() => true)));
  await new Promise((r) => setTimeout(r, 300)); // the grant's own notification has been read
  let reads = 0;
  const count = () => reads++;
  readPool.on('acquire', count);
  try {
    await Promise.all(Array.from({ length: 5 }, () => use(c, 1)));
    await Promise.all(many.map((s) => s.next((e) => JSON.parse(e.data).available === '995', 2000)));
  } finally {
    readPool.off('acquire', count);
  }
  // readBalance is two queries; 5 changes at most 5 reads (fewer when coalesced), never 50.
  expect(reads).toBeLessThanOrEqual(5 * 2);
  // Every stream ends on the final state, never a step back.
  for (const s of many) {
    const versions = s.events.map((e) => BigInt(e.id!));
    expect(versions.every((v, i) => i === 0 || v > versions[i - 1]!)).toBe(true);
  }
});

it('holds no pool connection while streams are open', async () => {
  const c = await customer('5');
  const many = await Promise.all(Array.from({ length: 30 }, () => stream(c)));
  await Promise.all(many.map((s) => s.next(() => true)));
  await new Promise((r) => setTimeout(r, 100));
  expect(readPool.totalCount - readPool.idleCount).toBe(0);
  expect(pool.totalCount - pool.idleCount).toBe(0);
  expect(streams.open).toBeGreaterThanOrEqual(30);
});

it('a dropped LISTEN connection is reopened and the changes made meanwhile still arrive', async () => {
  const c = await customer('30');
  const s = await stream(c);
  await s.next(() => true);
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  try {
    // The first event is read before the shared listener has necessarily run its LISTEN: wait for it.
    // Other suites share the cluster, so only this database's listener counts.
    const listening = `FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN creditflow_balance'`;
    const n = await eventually(
      async () => (await admin.query<{ n: number }>(`SELECT count(*)::int AS n ${listening}`)).rows[0]!.n,
      (v) => v === 1,
      10_000,
    );
    expect(n).toBe(1);
    const killed = await admin.query(`SELECT pg_terminate_backend(pid) ${listening}`);
    expect(killed.rowCount).toBe(1);
  } finally {
    await admin.end();
  }
  await use(c, 4); // while no connection listens
  await s.next((e) => JSON.parse(e.data).available === '26', 15_000); // reconnect (backoff) + re-read: generous on a loaded machine
  await use(c, 1); // and after
  await s.next((e) => JSON.parse(e.data).available === '25', 2000);
});

it('unknown customer → 404 problem, nothing left open', async () => {
  const before = await eventually(
    () => Promise.resolve(streams.open),
    (n) => n === 0,
    5000,
  );
  const s = await stream('nobody-here');
  await s.ended;
  expect(s.status).toBe(404);
  expect(JSON.parse(s.body)).toMatchObject({ status: 404 });
  expect(streams.open).toBe(before);
});

it('200 streams: each of the debited customer sees every change within 1 s (p99); others get nothing', async () => {
  const hot = await customer('100000');
  const others = await Promise.all(Array.from({ length: 20 }, () => customer('10')));
  const hotStreams = await Promise.all(Array.from({ length: 100 }, () => stream(hot)));
  const coldStreams = await Promise.all(Array.from({ length: 100 }, (_, i) => stream(others[i % others.length]!)));
  await Promise.all([...hotStreams, ...coldStreams].map((s) => s.next(() => true, 10_000)));
  const latencies: number[] = [];
  for (let i = 1; i <= 10; i++) {
    const sent = performance.now();
    await use(hot, 1);
    const want = String(100000 - i);
    const got = await Promise.all(hotStreams.map((s) => s.next((e) => JSON.parse(e.data).available === want, 2000)));
    latencies.push(...got.map((e) => e.at - sent));
  }
  const st = stats(latencies);
  expect(st.n).toBe(1000);
  expect(st.p99).toBeLessThan(1000);
  for (const s of coldStreams) expect(s.events).toHaveLength(1);
  expect(body(hotStreams[0]!, 0).customerId).toBe(hot);
}, 60_000);
