import { randomUUID } from 'node:crypto';
import { credits } from '../../domain/amount';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { Ledger } from '../../ledger/ledger';
import { call, makeKey, snapshotTables, startApi, type TestApi } from '../support/api';
import { freshDatabase } from '../support/db';

/**
 * Usage corrections through the API on real Postgres: where an event's credits go back (its lots,
 * the arrears, an adjustment lot), one correction per event under replays and concurrency, the
 * audit trail and the usage report, and refusals that write nothing.
 */
const DAY = 86_400_000;
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let api: TestApi;
/** The same database two days ahead: lots expiring tomorrow are past their window there. */
let later: TestApi;
const keys = { admin: '', support: '', service: '' };
let n = 0;
const uid = (p: string) => `${p}-${++n}-${Math.random().toString(36).slice(2, 7)}`;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  api = await startApi(pool);
  const ahead = () => new Date(Date.now() + 2 * DAY);
  later = await startApi(pool, { ledger: new Ledger(pool, ahead), clock: ahead });
  keys.admin = await makeKey(pool, 'admin');
  keys.support = await makeKey(pool, 'support');
  keys.service = await makeKey(pool, 'service');
  // 1 credit per unit: an event's quantity is its credits.
  const card = { effectiveFrom: '2020-01-01T00:00:00Z', rules: [{ meter: 'units', credits: '1' }] };
  expect((await call(api.url, 'PUT', '/v1/rate-cards/default', { key: keys.admin, json: card })).status).toBe(201);
});
afterAll(async () => {
  await api.close();
  await later.close();
  await db.drop();
});

async function customer(): Promise<string> {
  const id = uid('c');
  const r = await call(api.url, 'POST', '/v1/customers', { key: keys.admin, json: { id } });
  expect(r.status).toBe(201);
  return id;
}

async function grant(c: string, amount: string, kind: string, extra: Record<string, unknown> = {}): Promise<string> {
  const r = await call(api.url, 'POST', `/v1/customers/${c}/grants`, {
    key: keys.admin,
    json: { amount, kind, ...extra },
    headers: { 'idempotency-key': randomUUID() },
  });
  expect(r.status).toBe(201);
  return r.body.lot.id as string;
}

/** One request (one ledger transaction) with events `id: credits`. */
async function usage(c: string, events: Record<string, number>): Promise<string> {
  const r = await call(api.url, 'POST', '/v1/events', {
    key: keys.service,
    json: {
      events: Object.entries(events).map(([id, q]) => ({ id, customerId: c, meter: 'units', quantity: String(q) })),
    },
  });
  expect(r.body.results.map((x: { status: string }) => x.status)).toEqual(Object.keys(events).map(() => 'accepted'));
  return r.body.results[0].transactionId as string;
}

function correct(
  c: string,
  eventId: string,
  o: { key?: string; idem?: string; reason?: string; base?: string; json?: unknown } = {},
) {
  return call(o.base ?? api.url, 'POST', `/v1/customers/${c}/corrections`, {
    key: o.key ?? keys.support,
    json: o.json ?? { eventId, reason: o.reason ?? 'billed twice by a retry bug' },
    headers: { 'idempotency-key': o.idem ?? randomUUID() },
  });
}

/** lot id → remaining / original / status, from the database. */
async function lots(c: string) {
  const r = await pool.query<{ id: string; kind: string; original: string; remaining: string; status: string }>(
    `SELECT id, kind, original::text, remaining::text, status FROM credit_lots WHERE customer_id = $1`,
    [c],
  );
  return new Map(r.rows.map((l) => [l.id, l]));
}
const remaining = async (c: string, lot: string) => (await lots(c)).get(lot)!.remaining;

async function wallet(c: string) {
  const r = await pool.query<{ available: string; arrears: string }>(
    `SELECT available::text, arrears::text FROM wallets WHERE customer_id = $1`,
    [c],
  );
  return r.rows[0]!;
}
const µ = (s: string) => credits(s).toString();

/** Correction transactions and rows of a customer (what the database holds, not what we were told). */
async function corrections(c: string) {
  const r = await pool.query<{ t: string; rows: string }>(
    `SELECT (SELECT count(*) FROM ledger_transactions WHERE customer_id = $1 AND type = 'correction')::text AS t,
            (SELECT count(*) FROM usage_corrections WHERE customer_id = $1)::text AS rows`,
    [c],
  );
  return { transactions: Number(r.rows[0]!.t), rows: Number(r.rows[0]!.rows) };
}

describe('where the credits go', () => {
  it('reversing an event gives its credits back to the lots it drew from, last drawn first, exactly', async () => {
    const c = await customer();
    const promo = await grant(c, '10', 'promotional'); // drawn first
    const paid = await grant(c, '100', 'purchased');
    await usage(c, { e1: 15 }); // promo 10, paid 5
    expect(await remaining(c, promo)).toBe('0');
    const r = await correct(c, 'e1');
    expect(r.status).toBe(201);
    expect(r.body).toEqual({
      correctionId: expect.any(String),
      eventId: 'e1',
      customerId: c,
      credits: '15',
      transactionId: expect.any(String),
      restored: [
        { lotId: paid, amount: '5' },
        { lotId: promo, amount: '10' },
      ],
      arrearsReduced: '0',
    });
    const after = await lots(c);
    expect(after.get(promo)).toMatchObject({ remaining: µ('10'), status: 'active' }); // depleted → active again
    expect(after.get(paid)).toMatchObject({ remaining: µ('100'), status: 'active' });
    expect(after.size).toBe(2); // no adjustment lot
    expect(await wallet(c)).toEqual({ available: µ('110'), arrears: '0' });
    // The event stays, marked corrected by its row; the correction is its own transaction.
    const ev = await pool.query(`SELECT credits::text FROM usage_events WHERE customer_id = $1 AND id = 'e1'`, [c]);
    expect(ev.rows).toEqual([{ credits: µ('15') }]);
    const row = await pool.query(
      `SELECT id, credits::text, transaction_id, requested_by, reason FROM usage_corrections WHERE customer_id = $1`,
      [c],
    );
    expect(row.rows).toEqual([
      {
        id: r.body.correctionId,
        credits: µ('15'),
        transaction_id: r.body.transactionId,
        requested_by: keys.support,
        reason: 'billed twice by a retry bug',
      },
    ]);
    expect(await findViolations(pool)).toEqual([]);
  });

  it('an event whose debit went to arrears reduces the arrears', async () => {
    const c = await customer();
    const lot = await grant(c, '5', 'purchased');
    await usage(c, { e1: 8 }); // lot 5, arrears 3
    expect(await wallet(c)).toEqual({ available: µ('-3'), arrears: µ('3') });
    const r = await correct(c, 'e1');
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ credits: '8', restored: [{ lotId: lot, amount: '5' }], arrearsReduced: '3' });
    expect(r.body.adjustmentLotId).toBeUndefined();
    expect(await wallet(c)).toEqual({ available: µ('5'), arrears: '0' });
    expect(await remaining(c, lot)).toBe(µ('5'));
    expect(await findViolations(pool)).toEqual([]);
  });

  it('while the wallet owes for later usage, credits given back to a lot pay those arrears first', async () => {
    const c = await customer();
    const lot = await grant(c, '5', 'purchased');
    await usage(c, { e1: 4 }); // lot 4
    await usage(c, { e2: 6 }); // lot 1, arrears 5
    const r = await correct(c, 'e1');
    expect(r.status).toBe(201);
    // 4 back to the lot, which pays 4 of the 5 owed at once (invariant 6).
    expect(r.body).toMatchObject({ restored: [{ lotId: lot, amount: '4' }], arrearsReduced: '4' });
    expect(await wallet(c)).toEqual({ available: µ('-1'), arrears: µ('1') });
    expect(await remaining(c, lot)).toBe('0');
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a wallet that spent the credits since: lots take back only while drawable, the rest pays arrears, then an adjustment lot', async () => {
    const c = await customer();
    const tomorrow = new Date(Date.now() + DAY).toISOString();
    const promo = await grant(c, '10', 'promotional', { expiresAt: tomorrow });
    const paid = await grant(c, '30', 'purchased');
    await usage(c, { e1: 12 }); // promo 10, paid 2
    await usage(c, { e2: 28 }); // paid 28: both lots depleted
    await usage(c, { e3: 5 }); // arrears 5
    // Two days on, the promotional lot is past its window: its 10 cannot go back to it.
    const r = await correct(c, 'e1', { base: later.url });
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({
      credits: '12',
      restored: [{ lotId: paid, amount: '2' }],
      arrearsReduced: '5',
      adjustmentLotId: expect.any(String),
    });
    const after = await lots(c);
    expect(after.get(promo)!.remaining).toBe('0');
    expect(after.get(paid)!.remaining).toBe(µ('2'));
    expect(after.get(r.body.adjustmentLotId)).toMatchObject({
      kind: 'adjustment',
      original: µ('5'),
      remaining: µ('5'),
      status: 'active',
    });
    const bounds = await pool.query(
      `SELECT id FROM credit_lots WHERE customer_id = $1 AND (remaining < 0 OR remaining + held > original)`,
      [c],
    );
    expect(bounds.rows).toEqual([]);
    expect(await wallet(c)).toEqual({ available: µ('7'), arrears: '0' }); // -5 + 12
    // The consumed side is reversed on the sources that paid for e1, wherever the credits went: what
    // stays consumed is e2 (the purchased lot) and e3 (unassigned, the arrears it ran up).
    const consumed = await pool.query<{ lot_id: string; s: string }>(
      `SELECT lot_id, sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'
        GROUP BY lot_id`,
      [c],
    );
    expect(Object.fromEntries(consumed.rows.map((x) => [x.lot_id ?? 'none', x.s]))).toEqual({
      [promo]: '0',
      [paid]: µ('28'),
      none: µ('5'),
    });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('a voided lot gets nothing back: with nothing owed the credits go to a new adjustment lot', async () => {
    const c = await customer();
    const lot = await grant(c, '10', 'promotional');
    await usage(c, { e1: 4 });
    const v = await call(api.url, 'POST', `/v1/customers/${c}/grants/${lot}/void`, {
      key: keys.admin,
      json: { reason: 'goodwill ended' },
      headers: { 'idempotency-key': randomUUID() },
    });
    expect(v.status).toBe(200);
    const r = await correct(c, 'e1');
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ restored: [], arrearsReduced: '0', adjustmentLotId: expect.any(String) });
    const after = await lots(c);
    expect(after.get(lot)).toMatchObject({ remaining: '0', status: 'voided' });
    expect(after.get(r.body.adjustmentLotId)).toMatchObject({ kind: 'adjustment', remaining: µ('4') });
    const reason = await pool.query(`SELECT reason FROM credit_lots WHERE id = $1`, [r.body.adjustmentLotId]);
    expect(reason.rows[0].reason).toContain('e1');
    expect(await wallet(c)).toEqual({ available: µ('4'), arrears: '0' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('two events of one request (one transaction), both corrected: the sum is the transaction, no lot over-restored', async () => {
    const c = await customer();
    const promo = await grant(c, '10', 'promotional');
    const paid = await grant(c, '100', 'purchased');
    const tx = await usage(c, { a: 6, b: 8 }); // one transaction: promo 10, paid 4
    const first = await correct(c, 'a');
    expect(first.body.restored).toEqual([
      { lotId: paid, amount: '4' },
      { lotId: promo, amount: '2' },
    ]);
    const second = await correct(c, 'b');
    expect(second.body.restored).toEqual([{ lotId: promo, amount: '8' }]); // paid already got its 4
    const after = await lots(c);
    expect(after.get(promo)!.remaining).toBe(µ('10'));
    expect(after.get(paid)!.remaining).toBe(µ('100'));
    // What the corrections gave back per lot is exactly what the transaction drew from it.
    const drawn = await pool.query<{ lot_id: string; s: string }>(
      `SELECT lot_id, sum(amount)::text s FROM ledger_entries WHERE transaction_id = $1 AND account = 'consumed'
        GROUP BY lot_id`,
      [tx],
    );
    const back = await pool.query<{ lot_id: string; s: string }>(
      `SELECT lot_id, (-sum(amount))::text s FROM ledger_entries WHERE transaction_id = ANY($1) AND account = 'consumed'
        GROUP BY lot_id`,
      [[first.body.transactionId, second.body.transactionId]],
    );
    const asMap = (rows: { lot_id: string; s: string }[]) => Object.fromEntries(rows.map((x) => [x.lot_id, x.s]));
    expect(asMap(back.rows)).toEqual(asMap(drawn.rows));
    expect(await wallet(c)).toEqual({ available: µ('110'), arrears: '0' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('an event of 0 credits: 201 with credits "0", an empty correction transaction, and it counts as corrected', async () => {
    const c = await customer();
    await grant(c, '10', 'purchased');
    await usage(c, { z: 0 });
    const before = await wallet(c);
    const r = await correct(c, 'z');
    expect(r.status).toBe(201);
    expect(r.body).toMatchObject({ credits: '0', restored: [], arrearsReduced: '0' });
    const entries = await pool.query(`SELECT count(*)::int n FROM ledger_entries WHERE transaction_id = $1`, [
      r.body.transactionId,
    ]);
    expect(entries.rows[0].n).toBe(0);
    expect(await wallet(c)).toEqual(before);
    expect((await correct(c, 'z')).status).toBe(409);
  });
});

describe('one correction per event', () => {
  it('replay with the same Idempotency-Key → the same response; another body → 409; a second correction → 409', async () => {
    const c = await customer();
    await grant(c, '50', 'purchased');
    await usage(c, { e1: 7, e2: 3 });
    const idem = randomUUID();
    const first = await correct(c, 'e1', { idem });
    expect(first.status).toBe(201);
    const replay = await correct(c, 'e1', { idem });
    expect(replay.status).toBe(201);
    expect(replay.headers.get('idempotent-replayed')).toBe('true');
    expect(replay.body).toEqual(first.body);
    const other = await correct(c, 'e2', { idem });
    expect(other.status).toBe(409);
    expect(other.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    const again = await correct(c, 'e1', { reason: 'asked twice' });
    expect(again.status).toBe(409);
    expect(again.body).toMatchObject({ code: 'AlreadyCorrected', correctionId: first.body.correctionId });
    expect(await corrections(c)).toEqual({ transactions: 1, rows: 1 });
    expect(await wallet(c)).toEqual({ available: µ('47'), arrears: '0' }); // 50 − 10 + 7, once
  });

  it('concurrent corrections of the same event (different keys): exactly one 201, the others 409 AlreadyCorrected', async () => {
    const c = await customer();
    await grant(c, '100', 'purchased');
    const ids = ['k0', 'k1', 'k2', 'k3', 'k4'];
    await usage(c, Object.fromEntries(ids.map((id) => [id, 2])));
    const replies = await Promise.all(ids.flatMap((id) => [correct(c, id), correct(c, id), correct(c, id)]));
    for (let i = 0; i < ids.length; i++) {
      const mine = replies.slice(3 * i, 3 * i + 3);
      expect(mine.map((r) => r.status).sort()).toEqual([201, 409, 409]);
      for (const r of mine.filter((x) => x.status === 409)) expect(r.body.code).toBe('AlreadyCorrected');
    }
    expect(await corrections(c)).toEqual({ transactions: 5, rows: 5 });
    expect(await wallet(c)).toEqual({ available: µ('100'), arrears: '0' });
    expect(await findViolations(pool)).toEqual([]);
  });

  it('an unknown event → 404 and nothing is moved; an unknown customer → 404', async () => {
    const c = await customer();
    await grant(c, '10', 'purchased');
    const r = await correct(c, 'never-sent');
    expect(r.status).toBe(404);
    expect(r.body).toMatchObject({ code: 'EventNotFound' });
    expect(await corrections(c)).toEqual({ transactions: 0, rows: 0 });
    expect((await correct('nobody-here', 'e1')).status).toBe(404);
  });
});

describe('audit and reporting', () => {
  it('the ledger listing shows the correction with the key that asked and the reason', async () => {
    const c = await customer();
    await grant(c, '10', 'purchased');
    await usage(c, { e1: 3 });
    const r = await correct(c, 'e1', { key: keys.support, reason: 'duplicate event from the SDK' });
    expect(r.status).toBe(201);
    const ledger = await call(api.url, 'GET', `/v1/customers/${c}/ledger?type=correction`, { key: keys.admin });
    expect(ledger.status).toBe(200);
    expect(ledger.body.transactions).toHaveLength(1);
    expect(ledger.body.transactions[0]).toMatchObject({
      id: r.body.transactionId,
      type: 'correction',
      reference: 'usage_event:e1',
      requestedBy: { keyId: keys.support },
      reason: 'duplicate event from the SDK',
    });
    expect(ledger.body.transactions[0].entries).toEqual(
      expect.arrayContaining([
        { account: 'consumed', lotId: expect.any(String), lotKind: 'purchased', amount: '-3' },
        { account: 'available', lotId: expect.any(String), lotKind: 'purchased', amount: '3' },
      ]),
    );
  });

  it('the usage report keeps credits as billed and shows corrected credits separately', async () => {
    const c = await customer();
    await grant(c, '100', 'purchased');
    await usage(c, { u1: 5, u2: 7, u3: 11 });
    expect((await correct(c, 'u2')).status).toBe(201);
    const r = await call(api.url, 'GET', `/v1/customers/${c}/usage?groupBy=meter`, { key: keys.admin });
    expect(r.status).toBe(200);
    expect(r.body.rows).toEqual([{ meter: 'units', quantity: '23', credits: '23', correctedCredits: '7', events: 3 }]);
    expect(r.body).toMatchObject({ total: '23', correctedTotal: '7' });
    // Billed − corrected = what the ledger kept: consumed net of the correction.
    const net = await pool.query(
      `SELECT sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'`,
      [c],
    );
    expect(net.rows[0].s).toBe(µ('16'));
  });
});

describe('refusals write nothing', () => {
  let c: string;
  beforeAll(async () => {
    c = await customer();
    await grant(c, '10', 'purchased');
    await usage(c, { e1: 2 });
  });

  const cases: [string, { json?: unknown; idem?: string | null; field?: string }][] = [
    ['an unknown field', { json: { eventId: 'e1', reason: 'x', extra: 1 }, field: 'body' }],
    ['NUL in the reason', { json: { eventId: 'e1', reason: 'a\u0000b' }, field: 'body.reason' }],
    ['an empty reason', { json: { eventId: 'e1', reason: '' }, field: 'body.reason' }],
    ['a reason over 500 characters', { json: { eventId: 'e1', reason: 'r'.repeat(501) }, field: 'body.reason' }],
    ['an eventId with bad characters', { json: { eventId: 'e1/../x', reason: 'x' }, field: 'body.eventId' }],
    ['an eventId that is not a string', { json: { eventId: 1, reason: 'x' }, field: 'body.eventId' }],
    ['no body fields', { json: {}, field: 'body.eventId' }],
    ['no Idempotency-Key', { json: { eventId: 'e1', reason: 'x' }, idem: null, field: 'header' }],
  ];
  it.each(cases)('%s → 400 problem+json naming the field, tables unchanged', async (_name, k) => {
    const before = await snapshotTables(pool);
    const headers: Record<string, string> = k.idem === null ? {} : { 'idempotency-key': randomUUID() };
    const r = await call(api.url, 'POST', `/v1/customers/${c}/corrections`, {
      key: keys.support,
      json: k.json,
      headers,
    });
    expect(r.status).toBe(400);
    expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    expect(r.body.errors[0].path).toBe(k.field);
    expect(await snapshotTables(pool)).toEqual(before);
  });

  it('viewer, service and other-customer keys → 403, tables unchanged', async () => {
    const viewer = await makeKey(pool, 'viewer', c);
    const elsewhere = await makeKey(pool, 'support', 'someone-else');
    const before = await snapshotTables(pool);
    for (const key of [viewer, keys.service, elsewhere]) {
      const r = await correct(c, 'e1', { key });
      expect(r.status).toBe(403);
      expect(r.headers.get('content-type')).toMatch(/^application\/problem\+json/);
    }
    expect(await snapshotTables(pool)).toEqual(before);
    expect(await corrections(c)).toEqual({ transactions: 0, rows: 0 });
  });
});
