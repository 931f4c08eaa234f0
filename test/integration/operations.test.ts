import { randomUUID } from 'node:crypto';
import net from 'node:net';
import { createMetrics } from '../../api/metrics';
import type { Pool } from '../../db/pool';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { createLogger } from '../../lib/logger';
import { call, makeKey, startApi, putTokensRateCard, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/**
 * Operators' view of the API: every request has an id (echoed, in every log line of the request,
 * on the ledger lines it writes), and /metrics reports business figures read from the database.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
let admin: string;
let service: string;
const lines: Record<string, unknown>[] = [];
const logger = createLogger('test-api', 'info', {
  write: (s: string) => {
    lines.push(JSON.parse(s) as Record<string, unknown>);
  },
});
/** Retries an assertion until it holds (log lines written after the response arrive a moment later). */
async function eventually(assert: () => void, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      assert();
      return;
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool, {
    logger,
    metricsCacheMs: 0,
    // A lifecycle that fails: the grant route logs a warning from inside the request.
    lifecycle: () => Promise.reject(new Error('lifecycle down')),
  });
  admin = await makeKey(pool, 'admin');
  service = await makeKey(pool, 'service');
  await putTokensRateCard(api.url, admin);
});
afterAll(async () => {
  await api.close();
  await db.drop();
});

async function customer(): Promise<string> {
  const id = `op-${randomUUID().slice(0, 8)}`;
  expect((await call(api.url, 'POST', '/v1/customers', { key: admin, json: { id } })).status).toBe(201);
  return id;
}

const grant = (c: string, headers: Record<string, string> = {}, amount = '5', expiresAt?: string) =>
  call(api.url, 'POST', `/v1/customers/${c}/grants`, {
    key: admin,
    json: { amount, kind: 'promotional', expiresAt },
    headers: { 'idempotency-key': randomUUID(), ...headers },
  });

async function ledgerLines(c: string): Promise<{ id: string; type: string; requestId: string | null }[]> {
  const r = await call(api.url, 'GET', `/v1/customers/${c}/ledger`, { key: admin });
  expect(r.status).toBe(200);
  return r.body.transactions;
}

/** One request with raw header bytes (fetch refuses to send the hostile ones). */
function rawRequest(path: string, headerLines: Buffer[], body: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const { port } = new URL(api.url);
    const s = net.connect(Number(port), '127.0.0.1');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')));
    s.on('error', reject);
    const head = Buffer.from(
      `POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer ${admin}\r\n` +
        `Content-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
        `Idempotency-Key: ${randomUUID()}\r\n`,
      'latin1',
    );
    // write, not end: the server drops a half-closed connection before answering.
    s.write(
      Buffer.concat([
        head,
        ...headerLines.map((h) => Buffer.concat([h, Buffer.from('\r\n')])),
        Buffer.from('\r\n' + body),
      ]),
    );
  });
}

describe('request ids', () => {
  it('a grant: the ledger line records the X-Request-Id the caller sent, echoed and in the log lines of the request', async () => {
    const c = await customer();
    const rid = `req_${randomUUID()}`;
    // An expiring lot: the route tells the lifecycle workflow, which fails here and is logged.
    const r = await grant(c, { 'x-request-id': rid }, '5', '2099-01-01T00:00:00Z');
    expect(r.status).toBe(201);
    expect(r.headers.get('x-request-id')).toBe(rid);
    const line = (await ledgerLines(c)).find((t) => t.id === r.body.transactionId);
    expect(line?.requestId).toBe(rid);
    // The access line, and a line the route itself wrote inside the request (the lifecycle warning).
    await eventually(() => {
      const mine = lines.filter((l) => l.requestId === rid);
      expect(mine.map((l) => l.msg)).toEqual(
        expect.arrayContaining(['request', 'could not notify the lifecycle workflow']),
      );
      expect(mine.find((l) => l.msg === 'request')).toMatchObject({
        method: 'POST',
        route: '/v1/customers/:id/grants',
        status: 201,
      });
    });
  });

  it('without an incoming id, one is made (a UUID), echoed and recorded', async () => {
    const c = await customer();
    const r = await grant(c);
    const rid = r.headers.get('x-request-id')!;
    expect(rid).toMatch(UUID);
    expect((await ledgerLines(c)).find((t) => t.id === r.body.transactionId)?.requestId).toBe(rid);
  });

  it.each([
    ['a tab', Buffer.from('X-Request-Id: ab\tcd', 'latin1')],
    ['a space', Buffer.from('X-Request-Id: two words', 'latin1')],
    ['a non-ASCII byte', Buffer.from('X-Request-Id: caf\xe9', 'latin1')],
    ['UTF-8', Buffer.from('X-Request-Id: café', 'utf8')],
    ['129 characters', Buffer.from(`X-Request-Id: ${'a'.repeat(129)}`, 'latin1')],
    ['an empty value', Buffer.from('X-Request-Id: ', 'latin1')],
  ])('an incoming id with %s is replaced by a new one', async (_what, header) => {
    const c = await customer();
    const raw = await rawRequest(`/v1/customers/${c}/grants`, [header], '{"amount":"1","kind":"promotional"}');
    expect(raw).toMatch(/^HTTP\/1\.1 201/);
    const rid = /\r\nx-request-id: ([^\r]*)\r\n/i.exec(raw)?.[1];
    expect(rid).toMatch(UUID);
    const [line] = await ledgerLines(c);
    expect(line?.requestId).toBe(rid);
  });

  it.each([
    ['\\x01', '\x01'],
    ['DEL', '\x7f'],
    ['NUL', '\x00'],
  ])('an id with %s never reaches the app: the HTTP parser answers 400 and nothing is written', async (_what, byte) => {
    const c = await customer();
    const raw = await rawRequest(
      `/v1/customers/${c}/grants`,
      [Buffer.from(`X-Request-Id: ab${byte}cd`, 'latin1')],
      '{"amount":"1","kind":"promotional"}',
    );
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
    expect(await ledgerLines(c)).toEqual([]);
  });

  it('128 visible ASCII characters are kept', async () => {
    const c = await customer();
    const rid = `${'x'.repeat(100)}:/+=;,.~!@#$%^&*()[]{}<>?`.slice(0, 128);
    const r = await grant(c, { 'x-request-id': rid });
    expect(r.headers.get('x-request-id')).toBe(rid);
    expect((await ledgerLines(c))[0]?.requestId).toBe(rid);
  });

  it('refused requests carry an id too (401 before any key is known), and their access line', async () => {
    const rid = `unauth-${randomUUID()}`;
    const r = await call(api.url, 'GET', '/v1/customers/x/balance', { headers: { 'x-request-id': rid } });
    expect(r.status).toBe(401);
    expect(r.headers.get('x-request-id')).toBe(rid);
    await eventually(() => expect(lines.find((l) => l.requestId === rid)).toMatchObject({ status: 401 }));
  });

  it('concurrent requests never mix their ids (30 grants at once, each line its own id)', async () => {
    const c = await customer();
    const rs = await Promise.all(
      Array.from({ length: 30 }, (_, i) => grant(c, { 'x-request-id': `burst-${i}` }, `${i + 1}`)),
    );
    expect(rs.map((r) => r.status)).toEqual(rs.map(() => 201));
    const byTx = new Map((await ledgerLines(c)).map((t) => [t.id, t.requestId]));
    rs.forEach((r, i) => expect(byTx.get(r.body.transactionId)).toBe(`burst-${i}`));
  });
});

/** The value of one sample of the exposition text (undefined when absent). */
async function metric(name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const text = (await call(api.url, 'GET', '/metrics')).text;
  const want = Object.entries(labels)
    .map(([k, v]) => `${k}="${v}"`)
    .join(',');
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(?:\{([^}]*)\})? (\S+)$/.exec(line);
    if (m && m[1] === name && (m[2] ?? '') === want) return Number(m[3]);
  }
  return undefined;
}

describe('/metrics business figures (read from the database)', () => {
  it('credits granted and consumed by lot kind, holds active, top-ups and failures, webhook lag, reconciliation', async () => {
    const granted = (await metric('creditflow_ledger_credits', { flow: 'granted', kind: 'promotional' })) ?? 0;
    const consumed = (await metric('creditflow_ledger_credits', { flow: 'consumed', kind: 'promotional' })) ?? 0;
    const holds = (await metric('creditflow_holds_active'))!;
    const failedTopUps = (await metric('creditflow_topups', { status: 'failed' }))!;
    expect(await metric('creditflow_business_metrics_up')).toBe(1);

    const c = await customer();
    expect((await grant(c, {}, '7.25')).status).toBe(201);
    expect(await metric('creditflow_ledger_credits', { flow: 'granted', kind: 'promotional' })).toBeCloseTo(
      granted + 7.25,
      6,
    );

    const ev = await call(api.url, 'POST', '/v1/events', {
      key: service,
      json: { events: [{ id: 'e1', customerId: c, meter: 'tokens', quantity: '1500' }] },
    });
    expect(ev.body.results[0].status).toBe('accepted');
    expect(await metric('creditflow_ledger_credits', { flow: 'consumed', kind: 'promotional' })).toBeCloseTo(
      consumed + 1.5,
      6,
    );

    await new HoldLedger(new Ledger(pool)).place(
      { customerId: c, key: `hold:${c}:h1:place`, requestHash: 'h' },
      { holdId: 'h1', workflowId: `hold:${c}:h1`, amount: 2_000_000n, expiresAt: new Date(Date.now() + 3600_000) },
    );
    expect(await metric('creditflow_holds_active')).toBe(holds + 1);
    expect(await metric('creditflow_holds_active_credits')).toBeGreaterThanOrEqual(2);

    // A failed top-up as the top-up workflow records it (the workflow tests run the real one).
    await pool.query(
      `INSERT INTO payments (customer_id, id, source, status, credits, amount_minor, currency, gateway, gateway_key,
                             workflow_id, request_hash, failure_code, created_at)
       VALUES ($1, 'topup_1', 'topup', 'failed', 1000000, 100, 'USD', 'sandbox', $2, $3, 'h', 'card_declined', now())`,
      [c, `topup:${c}:1`, `topup:${c}`],
    );
    expect(await metric('creditflow_topups', { status: 'failed' })).toBe(failedTopUps + 1);

    expect(await metric('creditflow_webhook_delivery_lag_seconds')).toBe(0);
    await pool.query(`INSERT INTO webhook_endpoints (id, url, secret) VALUES ('we_ops', 'https://example.com/h', 's')`);
    const ev2 = await pool.query<{ id: string }>(
      `INSERT INTO outbox_events (dedupe_key, type, customer_id, payload) VALUES ($1, 'balance.low', $2, '{}')
       RETURNING id`,
      [`t:${c}`, c],
    );
    await pool.query(
      `INSERT INTO webhook_deliveries (endpoint_id, event_id, status, created_at)
       VALUES ($1, $2, 'pending', now() - interval '90 seconds')`,
      ['we_ops', ev2.rows[0]!.id],
    );
    expect(await metric('creditflow_webhook_delivery_lag_seconds')).toBeGreaterThanOrEqual(90);

    expect(await metric('creditflow_reconciliation_discrepancies')).toBeUndefined();
    await pool.query(
      `INSERT INTO reconciliation_runs (id, date, workflow_id, status, finished_at, discrepancies, summary)
       VALUES ('r1', '2026-11-28', 'reconcile:2026-11-28:r1', 'discrepancies', now(), '[{}, {}, {}]',
               '{"pagesDone": [], "discrepancyCount": 3}')`,
    );
    expect(await metric('creditflow_reconciliation_discrepancies', { status: 'discrepancies' })).toBe(3);
    expect(await metric('creditflow_reconciliation_last_finished_timestamp_seconds')).toBeGreaterThan(
      Date.now() / 1000 - 60,
    );
  });

  it('figures are cached: 20 concurrent scrapes read the database once, and a failed read keeps /metrics up', async () => {
    let connects = 0;
    const counting = {
      connect: () => {
        connects++;
        return pool.connect();
      },
    } as unknown as Pool;
    const m = createMetrics({ pool: counting, cacheMs: 60_000 });
    await Promise.all(Array.from({ length: 20 }, () => m.registry.metrics()));
    expect(connects).toBe(1);
    await m.registry.metrics();
    expect(connects).toBe(1);

    const down = { connect: () => Promise.reject(new Error('connection refused')) } as unknown as Pool;
    const d = createMetrics({ pool: down, cacheMs: 0 });
    const text = await d.registry.metrics();
    expect(text).toMatch(/^creditflow_business_metrics_up 0$/m);
    expect(text).toMatch(/^# TYPE creditflow_http_request_duration_seconds histogram$/m);
  });
});
