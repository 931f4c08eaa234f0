import fc from 'fast-check';
import { credits } from '../../domain/amount';
import { DomainError } from '../../domain/errors';
import { findViolations } from '../../db/invariants';
import { getCustomer } from '../../db/customers';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { Ledger } from '../../ledger/ledger';
import { requestHash } from '../../lib/hash';
import { freshDatabase } from '../support/db';

let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let now = new Date('2026-03-01T00:00:00Z');
const clock = () => now;
let ledger: Ledger;
let seq = 0;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
  ledger = new Ledger(pool, clock);
});
afterAll(async () => db.drop());

const newCustomer = async () => {
  const id = `cust_${++seq}_${Math.random().toString(36).slice(2, 8)}`;
  await createCustomer(pool, { id }, requestHash({ id }));
  return id;
};
const cmd = (customerId: string, key: string, body: unknown = key) => ({
  customerId,
  key: `${customerId}:${key}`,
  requestHash: requestHash(body),
});
const counts = async () => {
  const r = await pool.query<{ t: string; e: string; l: string; k: string }>(
    `SELECT (SELECT count(*) FROM ledger_transactions) t, (SELECT count(*) FROM ledger_entries) e,
            (SELECT count(*) FROM credit_lots) l, (SELECT count(*) FROM idempotency_keys) k`,
  );
  return r.rows[0];
};
const wallet = async (id: string) => (await getCustomer(pool, id))!.wallet;
const expectNoViolations = async () => expect(await findViolations(pool)).toEqual([]);

describe('ledger core on real Postgres', () => {
  it('grants credits: lot, balanced entries, cached balance', async () => {
    const c = await newCustomer();
    const { result, replayed } = await ledger.grant(cmd(c, 'g1'), { amount: credits('1500'), kind: 'purchased' });
    expect(replayed).toBe(false);
    expect(result.lot).toMatchObject({ original: '1500', remaining: '1500', priority: 30, status: 'active' });
    expect((await wallet(c)).available).toBe(credits('1500'));
    const entries = await pool.query(
      `SELECT account, amount FROM ledger_entries WHERE transaction_id = $1 ORDER BY id`,
      [result.transactionId],
    );
    expect(entries.rows).toEqual([
      { account: 'issued:purchased', amount: '-1500000000' },
      { account: 'available', amount: '1500000000' },
    ]);
    await expectNoViolations();
  });

  it('replaying a write with its key returns the first result and writes nothing', async () => {
    const c = await newCustomer();
    const g = await ledger.grant(cmd(c, 'g', 'body'), { amount: credits('10'), kind: 'promotional' });
    const d = await ledger.debit(cmd(c, 'd', 'body'), { amount: credits('3') });
    const v = await ledger.voidLot(cmd(c, 'v', 'body'), { lotId: g.result.lot.id, reason: 'x' });
    const before = await counts();
    const g2 = await ledger.grant(cmd(c, 'g', 'body'), { amount: credits('10'), kind: 'promotional' });
    const d2 = await ledger.debit(cmd(c, 'd', 'body'), { amount: credits('3') });
    const v2 = await ledger.voidLot(cmd(c, 'v', 'body'), { lotId: g.result.lot.id, reason: 'x' });
    expect([g2.replayed, d2.replayed, v2.replayed]).toEqual([true, true, true]);
    expect(g2.result).toEqual(g.result);
    expect(d2.result).toEqual(d.result);
    expect(v2.result).toEqual(v.result);
    expect(await counts()).toEqual(before);
    await expectNoViolations();
  });

  it('the same key with a different request is a conflict and writes nothing', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'k', 'first'), { amount: credits('10'), kind: 'purchased' });
    const before = await counts();
    await expect(
      ledger.grant(cmd(c, 'k', 'second'), { amount: credits('11'), kind: 'purchased' }),
    ).rejects.toMatchObject({ code: 'IdempotencyConflict' });
    expect(await counts()).toEqual(before);
  });

  it("one customer's key never replays (or conflicts with) another customer's command", async () => {
    const [a, b] = [await newCustomer(), await newCustomer()];
    // The same raw key and body for two customers: two commands, each recorded with its customer.
    const same = { customerId: a, key: 'shared:key', requestHash: requestHash('body') };
    const ga = await ledger.grant(same, { amount: credits('7'), kind: 'promotional' });
    const gb = await ledger.grant({ ...same, customerId: b }, { amount: credits('7'), kind: 'promotional' });
    expect([ga.replayed, gb.replayed]).toEqual([false, false]);
    expect(gb.result.lot.id).not.toBe(ga.result.lot.id);
    expect([(await wallet(a)).available, (await wallet(b)).available]).toEqual([credits('7'), credits('7')]);
    const recs = await pool.query(`SELECT customer_id FROM idempotency_keys WHERE key = 'shared:key' ORDER BY 1`);
    expect(recs.rows.map((r) => r.customer_id)).toEqual([a, b].sort());
    // And another body under b's key is b's conflict, not a replay of a's grant.
    await expect(
      ledger.grant(
        { ...same, customerId: b, requestHash: requestHash('other') },
        { amount: credits('1'), kind: 'promotional' },
      ),
    ).rejects.toMatchObject({ code: 'IdempotencyConflict' });
    await expectNoViolations();
  });
  it('the same key in flight twice at once moves credits once', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'seed'), { amount: credits('100'), kind: 'purchased' });
    const results = await Promise.allSettled(
      Array.from({ length: 10 }, () => ledger.debit(cmd(c, 'same', 'same'), { amount: credits('7') })),
    );
    for (const r of results) {
      if (r.status === 'rejected') expect((r.reason as DomainError).code).toBe('IdempotencyInFlight');
    }
    expect((await wallet(c)).available).toBe(credits('93'));
    await expectNoViolations();
  });

  it('50 concurrent debits on one wallet: no lost update, no negative lot, no deadlock', async () => {
    const c = await newCustomer();
    for (let i = 0; i < 5; i++) {
      await ledger.grant(cmd(c, `g${i}`), { amount: credits('10'), kind: i % 2 ? 'purchased' : 'promotional' });
    }
    const debits = await Promise.all(
      Array.from({ length: 50 }, (_, i) => ledger.debit(cmd(c, `d${i}`), { amount: credits('1.1') })),
    );
    expect(debits.every((d) => !d.replayed)).toBe(true);
    const w = await wallet(c);
    expect(w.available).toBe(credits('50') - credits('55'));
    expect(w.arrears).toBe(credits('5'));
    const lots = await pool.query(`SELECT remaining FROM credit_lots WHERE customer_id = $1`, [c]);
    expect(lots.rows.every((r: { remaining: string }) => r.remaining === '0')).toBe(true);
    const consumed = await pool.query(
      `SELECT sum(amount)::text s FROM ledger_entries WHERE customer_id = $1 AND account = 'consumed'`,
      [c],
    );
    expect(consumed.rows[0].s).toBe(credits('55').toString());
    await expectNoViolations();
  });

  it('draws in consumption order and never from a lot outside its window', async () => {
    const c = await newCustomer();
    const day = 86_400_000;
    const expiring = await ledger.grant(cmd(c, 'a'), {
      amount: credits('5'),
      kind: 'promotional',
      expiresAt: new Date(now.getTime() + day),
    });
    const future = await ledger.grant(cmd(c, 'b'), {
      amount: credits('5'),
      kind: 'promotional',
      effectiveAt: new Date(now.getTime() + 10 * day),
    });
    const paid = await ledger.grant(cmd(c, 'c'), { amount: credits('100'), kind: 'purchased' });
    const saved = now;
    now = new Date(saved.getTime() + 2 * day); // the promo lot has expired, its expiry not booked
    try {
      const d = await ledger.debit(cmd(c, 'd'), { amount: credits('7') });
      expect(d.result.draws).toEqual([{ lotId: paid.result.lot.id, amount: '7' }]);
      expect(d.result.draws.map((x) => x.lotId)).not.toContain(expiring.result.lot.id);
      expect(d.result.draws.map((x) => x.lotId)).not.toContain(future.result.lot.id);
    } finally {
      now = saved;
    }
  });

  it('usage beyond the credits becomes arrears, paid first from the next grant', async () => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'g'), { amount: credits('2'), kind: 'purchased' });
    const d = await ledger.debit(cmd(c, 'd'), { amount: credits('5') });
    expect(d.result.arrears).toBe('3');
    expect(await wallet(c)).toMatchObject({ available: credits('-3'), arrears: credits('3') });
    const g = await ledger.grant(cmd(c, 'g2'), { amount: credits('10'), kind: 'purchased' });
    expect(g.result.lot.remaining).toBe('7');
    expect(await wallet(c)).toMatchObject({ available: credits('7'), arrears: 0n });
    await expectNoViolations();
  });

  it('voids only the unused part; a second void is refused', async () => {
    const c = await newCustomer();
    const g = await ledger.grant(cmd(c, 'g'), { amount: credits('10'), kind: 'promotional' });
    await ledger.debit(cmd(c, 'd'), { amount: credits('4') });
    const v = await ledger.voidLot(cmd(c, 'v'), { lotId: g.result.lot.id, reason: 'abuse' });
    expect(v.result.voided).toBe('6');
    expect(v.result.lot.status).toBe('voided');
    await expect(ledger.voidLot(cmd(c, 'v2'), { lotId: g.result.lot.id, reason: 'again' })).rejects.toMatchObject({
      code: 'LotNotActive',
    });
    await expect(
      ledger.voidLot(cmd(c, 'v3'), { lotId: '00000000-0000-4000-8000-000000000000', reason: 'x' }),
    ).rejects.toMatchObject({ code: 'LotNotFound' });
    await expectNoViolations();
  });

  it('a lot past its expiresAt cannot be voided, even before its expiry is booked', async () => {
    const c = await newCustomer();
    const start = now;
    const g = await ledger.grant(cmd(c, 'g'), {
      amount: credits('5'),
      kind: 'promotional',
      expiresAt: new Date(start.getTime() + 3_600_000),
    });
    now = new Date(start.getTime() + 7_200_000);
    try {
      const before = await counts();
      await expect(ledger.voidLot(cmd(c, 'v'), { lotId: g.result.lot.id, reason: 'late' })).rejects.toMatchObject({
        code: 'LotNotActive',
      });
      expect(await counts()).toEqual(before);
    } finally {
      now = start;
    }
  });

  it('refuses an unknown customer without writing', async () => {
    const before = await counts();
    await expect(ledger.grant(cmd('nobody', 'g'), { amount: 1n, kind: 'purchased' })).rejects.toMatchObject({
      code: 'CustomerNotFound',
    });
    expect(await counts()).toEqual(before);
  });

  it.each([
    ['UPDATE ledger_entries SET amount = amount + 1'],
    ['DELETE FROM ledger_entries'],
    ['TRUNCATE ledger_entries CASCADE'],
    [`UPDATE ledger_transactions SET type = 'x'`],
    ['DELETE FROM ledger_transactions'],
    ['TRUNCATE ledger_transactions CASCADE'],
  ])('the database refuses %s, even to the owner', async (sql) => {
    const c = await newCustomer();
    await ledger.grant(cmd(c, 'g'), { amount: credits('1'), kind: 'purchased' });
    // The service role lacks the privilege (least-privilege.test.ts); the owner meets the trigger.
    await expect(db.owner.query(sql)).rejects.toThrow(/append-only/);
  });

  it('the database refuses an unbalanced transaction', async () => {
    const c = await newCustomer();
    const client = await pool.connect();
    try {
      await client.query('BEGIN');
      await client.query(
        `INSERT INTO ledger_transactions (id, customer_id, type, idempotency_key)
         VALUES ('00000000-0000-4000-8000-00000000000a', $1, 'x', 'unbalanced')`,
        [c],
      );
      await expect(
        client.query(
          `INSERT INTO ledger_entries (transaction_id, customer_id, account, amount)
           VALUES ('00000000-0000-4000-8000-00000000000a', $1, 'available', 5), ('00000000-0000-4000-8000-00000000000a', $1, 'consumed', -4)`,
          [c],
        ),
      ).rejects.toThrow(/unbalanced/);
    } finally {
      await client.query('ROLLBACK');
      client.release();
    }
  });
});

describe('invariants after a randomized sequence (property-based, real Postgres)', () => {
  type Op =
    | { op: 'grant'; amount: bigint; kind: 'purchased' | 'promotional' | 'allowance'; expiresInH: number | null }
    | { op: 'debit'; amount: bigint }
    | { op: 'void'; pick: number }
    | { op: 'advance'; hours: number }
    | { op: 'replay'; pick: number };

  const arbOp: fc.Arbitrary<Op> = fc.oneof(
    fc.record({
      op: fc.constant('grant' as const),
      amount: fc.bigInt({ min: 1n, max: 50_000_000n }),
      kind: fc.constantFrom('purchased' as const, 'promotional' as const, 'allowance' as const),
      expiresInH: fc.option(fc.integer({ min: 1, max: 72 })),
    }),
    fc.record({ op: fc.constant('debit' as const), amount: fc.bigInt({ min: 1n, max: 30_000_000n }) }),
    fc.record({ op: fc.constant('void' as const), pick: fc.nat() }),
    fc.record({ op: fc.constant('advance' as const), hours: fc.integer({ min: 1, max: 48 }) }),
    fc.record({ op: fc.constant('replay' as const), pick: fc.nat() }),
  );

  it('invariants 1–5 hold and the balance matches a model', async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(arbOp, { minLength: 1, maxLength: 25 }), async (ops) => {
        const c = await newCustomer();
        const lotIds: string[] = [];
        const done: { key: string; run: () => Promise<{ replayed: boolean }> }[] = [];
        let modelAvailable = 0n;
        const start = now;
        try {
          for (const [i, op] of ops.entries()) {
            const key = `op${i}`;
            if (op.op === 'grant') {
              const input = {
                amount: op.amount,
                kind: op.kind,
                expiresAt: op.expiresInH ? new Date(now.getTime() + op.expiresInH * 3_600_000) : undefined,
              };
              const run = () => ledger.grant(cmd(c, key, input), input);
              const r = await run();
              lotIds.push(r.result.lot.id);
              modelAvailable += op.amount;
              done.push({ key, run });
            } else if (op.op === 'debit') {
              const run = () => ledger.debit(cmd(c, key, op), { amount: op.amount });
              await run();
              modelAvailable -= op.amount;
              done.push({ key, run });
            } else if (op.op === 'void' && lotIds.length > 0) {
              const lotId = lotIds[op.pick % lotIds.length]!;
              try {
                const r = await ledger.voidLot(cmd(c, key, lotId), { lotId, reason: 'prop' });
                modelAvailable -= credits(r.result.voided);
              } catch (e) {
                expect((e as DomainError).code).toBe('LotNotActive');
              }
            } else if (op.op === 'advance') {
              now = new Date(now.getTime() + op.hours * 3_600_000);
            } else if (op.op === 'replay' && done.length > 0) {
              const before = await counts();
              const r = await done[op.pick % done.length]!.run();
              expect(r.replayed).toBe(true);
              expect(await counts()).toEqual(before);
            }
          }
          const w = await wallet(c);
          expect(w.available + w.held).toBe(modelAvailable);
          await expectNoViolations();
        } finally {
          now = start;
        }
      }),
      { numRuns: 40 },
    );
  });
});
