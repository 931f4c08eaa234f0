import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { runCli } from '../../cli/commands';
import type { Pool } from '../../db/pool';
import { call, makeKey, snapshotTables, type Call, type TestApi } from '../support/api';
import { startStack, type Stack } from '../support/stack';

let stack: Stack;
let db: Stack['db'];
let pool: Pool;
let api: TestApi;
/** Keys made through the API, so they have an id apart from their secret, and a name. */
type Key = { id: string; key: string; name: string };
let admin: Key;
let support: Key;
let service: Key;
let viewer: string;

const uid = (p: string) => `${p}-${randomUUID().slice(0, 8)}`;
const get = (path: string, key = admin.key) => call(api.url, 'GET', path, { key });
const put = (path: string, json: unknown, key = admin.key) => call(api.url, 'PUT', path, { key, json });
const post = (path: string, json: unknown, key: string, idem = randomUUID()) =>
  call(api.url, 'POST', path, { key, json, headers: { 'idempotency-key': idem } });

async function createKey(by: string, role: string, name: string, customerId?: string): Promise<Key> {
  const r = await call(api.url, 'POST', '/v1/api-keys', { key: by, json: { role, name, customerId } });
  expect(r.status).toBe(201);
  return { id: r.body.id, key: r.body.key, name };
}

async function customer(): Promise<string> {
  const id = uid('au');
  expect((await post('/v1/customers', { id }, admin.key)).status).toBe(201);
  return id;
}

/** Every audit row, oldest first, straight from the table. */
async function auditRows(action?: string) {
  const r = await pool.query<{ action: string; subject: string; customer_id: string | null; requested_by: string }>(
    `SELECT action, subject, customer_id, requested_by, detail FROM audit_events
      WHERE $1::text IS NULL OR action = $1 ORDER BY id`,
    [action ?? null],
  );
  return r.rows;
}

async function ledger(customerId: string) {
  const r = await get(`/v1/customers/${customerId}/ledger`);
  expect(r.status).toBe(200);
  return r.body.transactions as {
    id: string;
    type: string;
    requestedBy: { keyId: string; name: string | null } | null;
    reason: string | null;
    workflowId: string | null;
    entries: { lotId: string | null }[];
  }[];
}

const CARD = { effectiveFrom: '2020-01-01T00:00:00Z', rules: [{ meter: 'calls', credits: '1' }] };

beforeAll(async () => {
  stack = await startStack((t) => ({
    payments: () => Promise.resolve(t.payments),
    gateway: t.gateway,
    topUps: t.topUps,
  }));
  ({ db, pool, api } = stack);
  const root = await makeKey(pool, 'admin');
  admin = await createKey(root, 'admin', 'ops admin');
  support = await createKey(admin.key, 'support', 'support desk');
  service = await createKey(admin.key, 'service', 'ingest service');
  const c = await customer();
  viewer = (await createKey(admin.key, 'viewer', 'viewer', c)).key;
  expect((await put('/v1/rate-cards/default', CARD)).status).toBe(201);
});
afterAll(async () => {
  await stack.close();
});

describe('who and why on ledger transactions', () => {
  it('a grant and a void by a support key show that key (id and name) and each reason', async () => {
    const c = await customer();
    const g = await post(
      `/v1/customers/${c}/grants`,
      { amount: '50', kind: 'promotional', reason: 'goodwill' },
      support.key,
    );
    expect(g.status).toBe(201);
    const v = await post(`/v1/customers/${c}/grants/${g.body.lot.id}/void`, { reason: 'entered twice' }, support.key);
    expect(v.status).toBe(200);
    const plain = await post(`/v1/customers/${c}/grants`, { amount: '1', kind: 'promotional' }, admin.key);
    expect(plain.status).toBe(201);
    const txs = await ledger(c);
    const by = (id: string) => (x: { id: string }) => x.id === id;
    const who = { keyId: support.id, name: 'support desk' };
    expect(txs.find(by(g.body.transactionId))).toMatchObject({
      requestedBy: who,
      reason: 'goodwill',
      workflowId: null,
    });
    expect(txs.find(by(v.body.transactionId))).toMatchObject({ requestedBy: who, reason: 'entered twice' });
    // No reason leaks from an earlier request: the context is per request.
    expect(txs.find(by(plain.body.transactionId))).toMatchObject({
      requestedBy: { keyId: admin.id, name: 'ops admin' },
      reason: null,
    });
    // The columns themselves, not only the listing.
    const rows = await pool.query(`SELECT requested_by, reason FROM ledger_transactions WHERE id = $1`, [
      v.body.transactionId,
    ]);
    expect(rows.rows).toEqual([{ requested_by: support.id, reason: 'entered twice' }]);
  });

  it("a purchase's lot transaction carries its workflow id purchase:<customer>:<purchaseId>", async () => {
    const c = await customer();
    expect(
      (await put(`/v1/customers/${c}/payment-method`, { paymentMethod: 'pm_card_visa' }, service.key)).status,
    ).toBe(200);
    const r = await post(
      `/v1/customers/${c}/purchases`,
      { credits: '10', price: { amountMinor: 100, currency: 'USD' } },
      service.key,
    );
    expect(r.status).toBe(201);
    const lotTx = (await ledger(c)).filter((x) => x.entries.some((e) => e.lotId === r.body.lot.id));
    expect(lotTx).toHaveLength(1);
    expect(lotTx[0]!.workflowId).toBe(`purchase:${c}:${r.body.purchaseId}`);
  });

  // Usage is not a support action: the group commit (metering/batcher.ts) books several requests,
  // possibly from several keys, in one transaction per customer, so it names no single requester.
  it('usage transactions name no requester (batched across keys), and never a wrong one', async () => {
    const c = await customer();
    expect((await post(`/v1/customers/${c}/grants`, { amount: '100', kind: 'purchased' }, admin.key)).status).toBe(201);
    const events = [{ id: uid('e'), customerId: c, meter: 'calls', quantity: '3' }];
    const r = await call(api.url, 'POST', '/v1/events', { key: service.key, json: { events } });
    expect(r.body.results[0].status).toBe('accepted');
    const usage = (await ledger(c)).filter((x) => x.type === 'usage');
    expect(usage).toHaveLength(1);
    expect(usage[0]).toMatchObject({ requestedBy: null, reason: null, workflowId: null });
  });

  it('a reason with NUL is refused (400) before anything is written', async () => {
    const c = await customer();
    const before = await snapshotTables(pool);
    const raw = '{"amount":"5","kind":"promotional","reason":"bad\\u0000reason"}';
    const r = await call(api.url, 'POST', `/v1/customers/${c}/grants`, {
      key: support.key,
      raw,
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(r.status).toBe(400);
    expect(r.body.errors[0]).toEqual({ path: 'body.reason', message: expect.stringMatching(/NUL/) });
    expect(await snapshotTables(pool)).toEqual(before);
  });
});

describe('audit events for actions that move no credits', () => {
  it('rate-card publish and customer assignment record the actor and what changed', async () => {
    const name = uid('card');
    const before = (await auditRows()).length;
    expect((await put(`/v1/rate-cards/${name}`, CARD)).status).toBe(201);
    expect((await put(`/v1/rate-cards/${name}`, CARD)).status).toBe(201);
    const c = await customer();
    expect((await put(`/v1/customers/${c}/rate-card`, { name })).status).toBe(200);
    expect((await put(`/v1/customers/${c}/rate-card`, { name: 'default' })).status).toBe(200);
    // Refused changes record nothing.
    expect((await put(`/v1/customers/${c}/rate-card`, { name: uid('none') })).status).toBe(422);
    expect((await put(`/v1/rate-cards/${name}`, CARD, support.key)).status).toBe(403);
    const rows = (await auditRows()).slice(before);
    const detail = (version: number) => ({ name, version, effectiveFrom: '2020-01-01T00:00:00.000Z', rules: 1 });
    expect(rows).toEqual([
      {
        action: 'rate_card.published',
        subject: `rate_card:${name}`,
        customer_id: null,
        requested_by: admin.id,
        detail: detail(1),
      },
      {
        action: 'rate_card.published',
        subject: `rate_card:${name}`,
        customer_id: null,
        requested_by: admin.id,
        detail: detail(2),
      },
      {
        action: 'customer.rate_card_assigned',
        subject: `customer:${c}`,
        customer_id: c,
        requested_by: admin.id,
        detail: { name, previous: null },
      },
      {
        action: 'customer.rate_card_assigned',
        subject: `customer:${c}`,
        customer_id: c,
        requested_by: admin.id,
        detail: { name: 'default', previous: name },
      },
    ]);
  });

  it('API key create and revoke record the actor; a second revoke or an unknown key records nothing', async () => {
    const before = (await auditRows()).length;
    const c = await customer();
    const k = await createKey(admin.key, 'viewer', 'dashboard', c);
    expect((await call(api.url, 'DELETE', `/v1/api-keys/${k.id}`, { key: admin.key })).status).toBe(200);
    expect((await call(api.url, 'DELETE', `/v1/api-keys/${k.id}`, { key: admin.key })).status).toBe(200);
    expect((await call(api.url, 'DELETE', `/v1/api-keys/${uid('key')}`, { key: admin.key })).status).toBe(404);
    const rows = (await auditRows()).slice(before);
    const detail = { role: 'viewer', name: 'dashboard' };
    expect(rows).toEqual([
      { action: 'api_key.created', subject: `api_key:${k.id}`, customer_id: c, requested_by: admin.id, detail },
      { action: 'api_key.revoked', subject: `api_key:${k.id}`, customer_id: c, requested_by: admin.id, detail },
    ]);
    // Never the secret, nor its hash.
    expect(JSON.stringify(rows)).not.toContain(k.key);
  });

  it("the CLI's key and rate-card changes are recorded as requested by `cli:<operator>`, with the reason and the OS user", async () => {
    const io = { out: [] as string[], err: [] as string[] };
    const who = ['--operator', 'dana', '--reason', 'rotation'];
    const cli = (...argv: string[]) =>
      runCli([...argv, ...who], pool, { out: (l) => io.out.push(l), err: (l) => io.err.push(l) });
    const before = (await auditRows()).length;
    expect(await cli('keys', 'create', '--role', 'support', '--name', 'night shift')).toBe(0);
    const { id } = JSON.parse(io.out[0]!) as { id: string };
    expect(await cli('keys', 'revoke', '--id', id)).toBe(0);
    expect(await cli('keys', 'revoke', '--id', id)).toBe(1); // already revoked: nothing to record
    const file = `${tmpdir()}/audit-card-${randomUUID()}.json`;
    writeFileSync(file, JSON.stringify(CARD));
    const name = uid('clicard');
    expect(await cli('rate-cards', 'load', '--name', name, '--file', file)).toBe(0);
    const rows = (await auditRows()).slice(before);
    expect(rows.map((r) => [r.action, r.subject, r.requested_by])).toEqual([
      ['api_key.created', `api_key:${id}`, 'cli:dana'],
      ['api_key.revoked', `api_key:${id}`, 'cli:dana'],
      ['rate_card.published', `rate_card:${name}`, 'cli:dana'],
    ]);
    for (const r of rows)
      expect((r as unknown as { detail: unknown }).detail).toMatchObject({
        osUser: expect.any(String),
        reason: 'rotation',
      });
  });

  it('a change and its audit event commit together: when the audit insert fails, the change is rolled back', async () => {
    const c = await customer();
    const k = await createKey(admin.key, 'service', 'doomed');
    const other = uid('other');
    expect((await put(`/v1/rate-cards/${other}`, CARD)).status).toBe(201);
    expect((await put(`/v1/customers/${c}/rate-card`, { name: 'default' })).status).toBe(200);
    const assignment = `SELECT card_name, updated_at FROM customer_rate_cards WHERE customer_id = $1`;
    const assigned = (await pool.query(assignment, [c])).rows;
    // Damage on purpose: only the owner may add a trigger.
    await db.owner.query(`CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                      BEGIN RAISE EXCEPTION 'audit refused'; END $$`);
    await db.owner.query(
      `CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_events FOR EACH ROW EXECUTE FUNCTION refuse_audit()`,
    );
    try {
      const before = await snapshotTables(pool);
      expect((await put(`/v1/rate-cards/${uid('atomic')}`, CARD)).status).toBe(500);
      expect((await put(`/v1/customers/${c}/rate-card`, { name: other })).status).toBe(500);
      const created = await call(api.url, 'POST', '/v1/api-keys', { key: admin.key, json: { role: 'service' } });
      expect(created.status).toBe(500);
      expect((await call(api.url, 'DELETE', `/v1/api-keys/${k.id}`, { key: admin.key })).status).toBe(500);
      expect(await snapshotTables(pool)).toEqual(before);
      expect((await pool.query(assignment, [c])).rows).toEqual(assigned);
      const keyRow = await pool.query(`SELECT revoked_at FROM api_keys WHERE id = $1`, [k.id]);
      expect(keyRow.rows).toEqual([{ revoked_at: null }]);
    } finally {
      await db.owner.query(`DROP TRIGGER refuse_audit ON audit_events; DROP FUNCTION refuse_audit()`);
    }
  });
});

describe('GET /v1/audit-events', () => {
  it('is for admin keys only', async () => {
    for (const key of [support.key, service.key, viewer]) {
      const r = await get('/v1/audit-events', key);
      expect(r.status).toBe(403);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    expect((await call(api.url, 'GET', '/v1/audit-events')).status).toBe(401);
  });

  it('shows each event with its actor (key id and name), filtered by customer and action', async () => {
    const c = await customer();
    const k = await createKey(admin.key, 'viewer', 'filtered', c);
    expect((await put(`/v1/customers/${c}/rate-card`, { name: 'default' })).status).toBe(200);
    const mine = await get(`/v1/audit-events?customerId=${c}`);
    expect(mine.status).toBe(200);
    expect(mine.body).toEqual({
      events: [
        {
          id: expect.stringMatching(/^[0-9]+$/),
          action: 'customer.rate_card_assigned',
          subject: `customer:${c}`,
          customerId: c,
          requestedBy: { keyId: admin.id, name: 'ops admin' },
          detail: { name: 'default', previous: null },
          createdAt: expect.any(String),
        },
        expect.objectContaining({ action: 'api_key.created', subject: `api_key:${k.id}`, customerId: c }),
      ],
      nextCursor: null,
    });
    const created = await get(`/v1/audit-events?customerId=${c}&action=api_key.created`);
    expect(created.body.events.map((e: { subject: string }) => e.subject)).toEqual([`api_key:${k.id}`]);
    const revoked = await get(`/v1/audit-events?action=api_key.revoked&customerId=${c}`);
    expect(revoked.body).toEqual({ events: [], nextCursor: null });
  });

  it('pages through every event newest first, each exactly once', async () => {
    const total = (await pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM audit_events`)).rows[0]!.n;
    expect(total).toBeGreaterThan(5);
    const ids: number[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r: Call = await get(`/v1/audit-events?limit=3${cursor ? `&cursor=${cursor}` : ''}`);
      expect(r.status).toBe(200);
      expect(r.body.events.length).toBeLessThanOrEqual(3);
      ids.push(...r.body.events.map((e: { id: string }) => Number(e.id)));
      cursor = r.body.nextCursor;
      pages++;
    } while (cursor && pages < 100);
    expect(ids).toHaveLength(total);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
    expect(new Set(ids).size).toBe(total);
  });

  it('refuses a bad query with 400 problem+json', async () => {
    const seqCursor = Buffer.from('seq:5').toString('base64url'); // the ledger's cursor, not this list's
    for (const q of [
      'limit=0',
      'limit=501',
      'limit=x',
      'cursor=garbage',
      `cursor=${seqCursor}`,
      `cursor=${Buffer.from('audit:99999999999999999999').toString('base64url')}`,
      'action=Bad!',
      'customerId=a%00b',
      'action=api_key.created%00',
      'other=1',
    ]) {
      const r = await get(`/v1/audit-events?${q}`);
      expect({ q, status: r.status }).toEqual({ q, status: 400 });
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
  });
});

describe('audit events for notification settings', () => {
  it('alerts set, webhook endpoint created / secret rotated / deleted: one row each with the actor, never the secret', async () => {
    const before = (await auditRows()).length;
    const c = await customer();
    expect((await put(`/v1/customers/${c}/alerts`, { lowBalanceThresholds: ['10', '5'] })).status).toBe(200);
    const saved = process.env.WEBHOOK_ALLOWED_HOSTS;
    process.env.WEBHOOK_ALLOWED_HOSTS = '127.0.0.1';
    try {
      const e = await call(api.url, 'POST', '/v1/webhook-endpoints', {
        key: admin.key,
        json: { url: 'http://127.0.0.1:9/hooks', types: ['balance.low'] },
      });
      expect(e.status).toBe(201);
      const id = e.body.id as string;
      const rotated = await call(api.url, 'POST', `/v1/webhook-endpoints/${id}/rotate-secret`, {
        key: admin.key,
        json: {},
      });
      expect(rotated.status).toBe(200);
      expect((await call(api.url, 'DELETE', `/v1/webhook-endpoints/${id}`, { key: admin.key })).status).toBe(200);
      expect((await call(api.url, 'DELETE', `/v1/webhook-endpoints/${id}`, { key: admin.key })).status).toBe(200);
      const rows = (await auditRows()).slice(before);
      expect(rows.map((r) => [r.action, r.requested_by])).toEqual([
        ['customer.alerts_set', admin.id],
        ['webhook_endpoint.created', admin.id],
        ['webhook_endpoint.secret_rotated', admin.id],
        ['webhook_endpoint.deleted', admin.id], // the repeated delete records nothing
      ]);
      const text = JSON.stringify(rows);
      expect(text).not.toContain(e.body.secret as string);
      expect(text).not.toContain(rotated.body.secret as string);
    } finally {
      process.env.WEBHOOK_ALLOWED_HOSTS = saved;
    }
  });
});
