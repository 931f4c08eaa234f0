import { randomUUID } from 'node:crypto';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { call, makeKey, type TestApi } from '../support/api';
import { startStack, type Stack } from '../support/stack';

let stack: Stack;
let pool: Pool;
let t: Stack['t'];
let api: TestApi;
let admin: string;
let service: string;

beforeAll(async () => {
  stack = await startStack((t) => ({ holds: () => Promise.resolve(t.holds) }));
  ({ pool, t, api } = stack);
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
});
afterAll(async () => {
  await stack.close();
});

async function customer(grant: string) {
  const id = `ha-${randomUUID().slice(0, 8)}`;
  await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } });
  await call(api.url, 'POST', `/v1/customers/${id}/grants`, {
    key: admin,
    json: { amount: grant, kind: 'purchased' },
    headers: { 'idempotency-key': randomUUID() },
  });
  return id;
}
const post = (path: string, json: unknown, idem: string | null = randomUUID(), key = service) =>
  call(api.url, 'POST', path, { key, json, headers: idem ? { 'idempotency-key': idem } : {} });
const balance = async (id: string) => (await call(api.url, 'GET', `/v1/customers/${id}/balance`, { key: admin })).body;

describe('holds API', () => {
  it('POST /v1/holds answers after the hold is on the ledger; capture, settle; replays and conflicts', async () => {
    const c = await customer('100');
    const idem = randomUUID();
    const r = await post('/v1/holds', { customerId: c, amount: '30', ttlSeconds: 600 }, idem);
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      customerId: c,
      status: 'active',
      amount: '30',
      captured: '0',
      workflowId: expect.stringMatching(/^hold:/),
    });
    expect(await balance(c)).toMatchObject({ available: '70', held: '30' }); // already on the ledger
    const again = await post('/v1/holds', { customerId: c, amount: '30', ttlSeconds: 600 }, idem);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body.holdId).toBe(r.body.holdId);
    expect((await post('/v1/holds', { customerId: c, amount: '31', ttlSeconds: 600 }, idem)).status).toBe(409);
    expect(await balance(c)).toMatchObject({ available: '70', held: '30' });

    const h = r.body.holdId as string;
    const cap = await post(`/v1/holds/${h}/capture`, { customerId: c, amount: '5' });
    expect(cap.status).toBe(200);
    expect(cap.body.captured).toBe('5');
    const got = await call(api.url, 'GET', `/v1/holds/${h}?customerId=${c}`, { key: service });
    expect(got.body).toMatchObject({ status: 'active', captured: '5', held: '25' });

    const settleKey = randomUUID();
    const s = await post(`/v1/holds/${h}/settle`, { customerId: c, amount: '12' }, settleKey);
    expect(s.status).toBe(200);
    expect(s.body).toMatchObject({ status: 'settled', captured: '12', released: '18' });
    const replay = await post(`/v1/holds/${h}/settle`, { customerId: c, amount: '12' }, settleKey);
    expect(replay.status).toBe(200);
    expect(replay.body).toEqual(s.body);
    expect((await post(`/v1/holds/${h}/settle`, { customerId: c, amount: '12' })).status).toBe(422);
    expect((await post(`/v1/holds/${h}/release`, { customerId: c })).status).toBe(422);
    expect(await balance(c)).toMatchObject({ available: '88', held: '0' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('402 with the shortfall and nothing held; 402 on an extend that cannot be held', async () => {
    const c = await customer('10');
    const r = await post('/v1/holds', { customerId: c, amount: '12' });
    expect(r.status).toBe(402);
    expect(r.headers.get('content-type')).toMatch(/problem\+json/);
    expect(r.body).toMatchObject({ available: '10', shortfall: '2' });
    expect(await balance(c)).toMatchObject({ available: '10', held: '0' });
    const ok = await post('/v1/holds', { customerId: c, amount: '8' });
    const e = await post(`/v1/holds/${ok.body.holdId}/extend`, { customerId: c, amount: '5' });
    expect(e.status).toBe(402);
    expect(e.body.shortfall).toBe('3');
    const e2 = await post(`/v1/holds/${ok.body.holdId}/extend`, { customerId: c, amount: '2', ttlSeconds: 900 });
    expect(e2.status).toBe(200);
    expect(e2.body).toMatchObject({ amount: '10', held: '10' });
    const rel = await post(`/v1/holds/${ok.body.holdId}/release`, { customerId: c });
    expect(rel.body.status).toBe('released');
    expect(await balance(c)).toMatchObject({ available: '10', held: '0' });
  });

  it('unknown hold → 404; bad input → 400; wrong customer or role → 403; nothing written', async () => {
    const c = await customer('10');
    const other = await customer('10');
    const before = await pool.query(
      `SELECT (SELECT count(*) FROM holds) h, (SELECT count(*) FROM ledger_transactions) t`,
    );
    expect((await call(api.url, 'GET', `/v1/holds/nope?customerId=${c}`, { key: service })).status).toBe(404);
    expect((await post('/v1/holds/nope/settle', { customerId: c, amount: '1' })).status).toBe(404);
    for (const b of [
      { customerId: c, amount: '-1' },
      { customerId: c, amount: '1e3' },
      { customerId: c, amount: '0.0000001' },
      { customerId: c, amount: '1', ttlSeconds: 0 },
      { customerId: c, amount: '1', extra: true },
      { customerId: c },
      { amount: '1' },
      { customerId: c, amount: '1', holdId: 'bad id' },
    ]) {
      const r = await post('/v1/holds', b);
      expect(r.status).toBe(400);
      expect(r.headers.get('content-type')).toMatch(/problem\+json/);
    }
    expect((await post('/v1/holds', { customerId: c, amount: '1' }, null)).status).toBe(400); // no Idempotency-Key
    expect(
      (
        await call(api.url, 'POST', '/v1/holds', {
          key: service,
          raw: '{',
          contentType: 'application/json',
          headers: { 'idempotency-key': 'x' },
        })
      ).status,
    ).toBe(400);
    const scoped = await makeKey(pool, 'service', c);
    expect((await post('/v1/holds', { customerId: other, amount: '1' }, randomUUID(), scoped)).status).toBe(403);
    const viewer = await makeKey(pool, 'viewer', c);
    expect((await post('/v1/holds', { customerId: c, amount: '1' }, randomUUID(), viewer)).status).toBe(403);
    expect((await call(api.url, 'GET', `/v1/holds/x?customerId=${other}`, { key: viewer })).status).toBe(403);
    expect((await call(api.url, 'POST', '/v1/holds', { json: { customerId: c, amount: '1' } })).status).toBe(401);
    const after = await pool.query(
      `SELECT (SELECT count(*) FROM holds) h, (SELECT count(*) FROM ledger_transactions) t`,
    );
    expect(after.rows).toEqual(before.rows);
  });

  it('a hold id is never reused once its reservation finished', async () => {
    const c = await customer('10');
    const holdId = `job-${randomUUID().slice(0, 6)}`;
    const r = await post('/v1/holds', { customerId: c, holdId, amount: '2' });
    expect(r.status).toBe(201);
    await post(`/v1/holds/${holdId}/release`, { customerId: c });
    await t.client.workflow.getHandle(r.body.workflowId).result();
    expect((await post('/v1/holds', { customerId: c, holdId, amount: '2' })).status).toBe(409);
  });
});
