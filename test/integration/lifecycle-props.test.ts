import fc from 'fast-check';
import { DomainError } from '../../domain/errors';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { LifecycleLedger } from '../../ledger/lifecycle';
import { requestHash } from '../../lib/hash';
import { freshDatabase } from '../support/db';

/**
 * Invariants 1–7 after random grants (future-dated, with expiries and renewals), debits, holds on
 * an overdraft limit (place, capture, extend, settle, release, TTL release) and time jumps.
 */
let db: Awaited<ReturnType<typeof freshDatabase>>;
let pool: Pool;
let now = new Date('2026-06-01T00:00:00Z');
const HOUR = 3_600_000;

beforeAll(async () => {
  db = await freshDatabase();
  pool = db.pool;
});
afterAll(async () => db.drop());

type Op =
  | {
      op: 'grant';
      amount: bigint;
      expiresInH: number | null;
      effectiveInH: number | null;
      recurring: boolean;
      cap: bigint;
    }
  | { op: 'debit'; amount: bigint }
  | { op: 'hold'; amount: bigint; ttlH: number }
  | { op: 'capture'; pick: number; amount: bigint }
  | { op: 'extend'; pick: number; amount: bigint; ttlH: number }
  | { op: 'endHold'; pick: number; settle: bigint | null }
  | { op: 'advance'; hours: number }
  | { op: 'tick' };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('grant' as const),
      amount: fc.bigInt({ min: 1n, max: 20_000_000n }),
      expiresInH: fc.option(fc.integer({ min: 1, max: 200 })),
      effectiveInH: fc.option(fc.integer({ min: 1, max: 48 }), { freq: 2 }),
      recurring: fc.boolean(),
      cap: fc.bigInt({ min: 0n, max: 10_000_000n }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({ op: fc.constant('debit' as const), amount: fc.bigInt({ min: 1n, max: 10_000_000n }) }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('hold' as const),
      amount: fc.bigInt({ min: 1n, max: 20_000_000n }),
      ttlH: fc.integer({ min: 1, max: 48 }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('capture' as const),
      pick: fc.nat(),
      amount: fc.bigInt({ min: 1n, max: 8_000_000n }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('extend' as const),
      pick: fc.nat(),
      amount: fc.bigInt({ min: 0n, max: 5_000_000n }),
      ttlH: fc.integer({ min: 1, max: 48 }),
    }),
  },
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constant('endHold' as const),
      pick: fc.nat(),
      settle: fc.option(fc.bigInt({ min: 0n, max: 15_000_000n })),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('advance' as const),
      hours: fc.oneof(fc.integer({ min: 1, max: 48 }), fc.integer({ min: 49, max: 24 * 40 })),
    }),
  },
  { weight: 2, arbitrary: fc.constant({ op: 'tick' as const }) },
);

/** Invariant 6's "available": drawable credits − arrears − what holds hold on overdraft. */
async function spendable(c: string) {
  const r = await pool.query<{ available: string; arrears: string; drawable_lots: number; limit: string }>(
    `SELECT (SELECT COALESCE(sum(remaining), 0) FROM credit_lots WHERE customer_id = $1 AND status = 'active'
               AND effective_at <= $2 AND (expires_at IS NULL OR expires_at > $2))
            - w.arrears
            - (SELECT COALESCE(sum(overdraft), 0) FROM holds WHERE customer_id = $1 AND status = 'active') AS available,
            w.arrears,
            (SELECT count(*)::int FROM credit_lots WHERE customer_id = $1 AND status = 'active' AND remaining > 0
               AND effective_at <= $2 AND (expires_at IS NULL OR expires_at > $2)) AS drawable_lots,
            w.overdraft_limit AS limit
       FROM wallets w WHERE w.customer_id = $1`,
    [c, now],
  );
  const row = r.rows[0]!;
  return {
    available: BigInt(row.available),
    arrears: BigInt(row.arrears),
    drawableLots: row.drawable_lots,
    limit: BigInt(row.limit),
  };
}

/** Invariant 6: arrears never sit beside credits that could pay them (checked after each payer). */
async function expectArrearsPaidFromDrawable(c: string) {
  const s = await spendable(c);
  if (s.arrears > 0n) expect(s.drawableLots).toBe(0);
}

const expectCode = async (p: Promise<unknown>, codes: string[]) => {
  try {
    await p;
    return true;
  } catch (e) {
    if (!(e instanceof DomainError)) throw e;
    expect(codes).toContain(e.code);
    return false;
  }
};

it('hold after any sequence, and no expired lot keeps unheld credits once its deadline is booked', async () => {
  const ledger = new Ledger(pool, () => now);
  const holds = new HoldLedger(ledger);
  const lifecycle = new LifecycleLedger(ledger, pool);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(0n, 5_000_000n, 20_000_000n),
      fc.constantFrom(0n, 5_000_000n, 15_000_000n),
      fc.array(arbOp, { minLength: 1, maxLength: 25 }),
      async (overdraftLimit, seed, ops) => {
        const c = `lp-${++n}-${Math.random().toString(36).slice(2, 6)}`;
        await createCustomer(
          pool,
          { id: c, overdraftLimit },
          requestHash({ id: c, overdraftLimit: `${overdraftLimit}` }),
        );
        // Some credits to start with, so most holds are placed and debits run into arrears only later.
        if (seed > 0n) {
          await ledger.grant(
            { customerId: c, key: `${c}:seed`, requestHash: 'seed' },
            { amount: seed, kind: 'purchased' },
          );
        }
        const active: { holdId: string; expiresAt: Date }[] = [];
        const pick = (i: number) => active[i % active.length]!;
        const start = now;
        try {
          for (const [i, op] of ops.entries()) {
            const cmd = { customerId: c, key: `${c}:${i}`, requestHash: String(i) };
            if (op.op === 'grant') {
              const effectiveAt = op.effectiveInH ? new Date(now.getTime() + op.effectiveInH * HOUR) : undefined;
              await ledger.grant(
                cmd,
                op.recurring
                  ? {
                      amount: op.amount,
                      kind: 'allowance',
                      effectiveAt,
                      recurrence: { every: 'week', count: 4 },
                      rolloverCap: op.cap,
                    }
                  : {
                      amount: op.amount,
                      kind: 'promotional',
                      effectiveAt,
                      expiresAt: op.expiresInH
                        ? new Date((effectiveAt ?? now).getTime() + op.expiresInH * HOUR)
                        : undefined,
                    },
              );
              await expectArrearsPaidFromDrawable(c);
            } else if (op.op === 'debit') {
              await ledger.debit(cmd, { amount: op.amount });
            } else if (op.op === 'hold') {
              const expiresAt = new Date(now.getTime() + op.ttlH * HOUR);
              const r = await holds.place(cmd, { holdId: `h${i}`, workflowId: 'prop', amount: op.amount, expiresAt });
              if (r.result.outcome === 'placed') {
                active.push({ holdId: `h${i}`, expiresAt });
                const s = await spendable(c);
                expect(s.available + s.limit).toBeGreaterThanOrEqual(0n); // invariant 6: a hold stays within it
              }
            } else if (op.op === 'capture' && active.length > 0) {
              const h = pick(op.pick);
              const ok = await expectCode(holds.capture(cmd, { holdId: h.holdId, amount: op.amount }), [
                'InvalidRequest',
                'HoldExpired',
              ]);
              if (!ok && h.expiresAt > now) {
                const held = await pool.query(`SELECT held FROM holds WHERE customer_id = $1 AND id = $2`, [
                  c,
                  h.holdId,
                ]);
                expect(BigInt(held.rows[0].held)).toBeLessThan(op.amount); // refused only for capturing too much
              }
              // A refused capture pays nothing; a lot that just became drawable waits for the tick.
              if (ok) await expectArrearsPaidFromDrawable(c);
            } else if (op.op === 'extend' && active.length > 0) {
              const h = pick(op.pick);
              const expiresAt = new Date(now.getTime() + op.ttlH * HOUR);
              const ok = await expectCode(
                holds.extend(cmd, { holdId: h.holdId, amount: op.amount || undefined, expiresAt }),
                ['InsufficientCredits', 'HoldExpired'],
              );
              if (ok && expiresAt > h.expiresAt) h.expiresAt = expiresAt;
              if (ok && op.amount > 0n) {
                const s = await spendable(c);
                expect(s.available + s.limit).toBeGreaterThanOrEqual(0n);
              }
            } else if (op.op === 'endHold' && active.length > 0) {
              const h = active.splice(op.pick % active.length, 1)[0]!;
              if (h.expiresAt <= now) {
                // Past its TTL only the timer's release applies: settle is refused, nothing written.
                if (op.settle !== null) {
                  await expect(holds.settle(cmd, { holdId: h.holdId, amount: op.settle })).rejects.toMatchObject({
                    code: 'HoldExpired',
                  });
                }
                const r = await holds.release(
                  { ...cmd, key: `${cmd.key}:ttl` },
                  { holdId: h.holdId, status: 'expired', ifActive: true, deadline: h.expiresAt },
                );
                expect(r.result).toMatchObject({ status: 'expired', held: '0', overdraft: '0' });
                expect(r.result.noop).toBeUndefined();
              } else if (op.settle === null) await holds.release(cmd, { holdId: h.holdId, status: 'released' });
              else {
                const captured = await pool.query(`SELECT captured FROM holds WHERE customer_id = $1 AND id = $2`, [
                  c,
                  h.holdId,
                ]);
                await holds.settle(cmd, { holdId: h.holdId, amount: BigInt(captured.rows[0].captured) + op.settle });
              }
              await expectArrearsPaidFromDrawable(c);
            } else if (op.op === 'advance') {
              now = new Date(now.getTime() + op.hours * HOUR);
            } else if (op.op === 'tick') {
              await lifecycle.tick(c, now);
              // Invariant 7: once booked, an expired lot's unheld remainder is 0.
              const stale = await pool.query(
                `SELECT id FROM credit_lots WHERE customer_id = $1 AND expires_at <= $2 AND remaining > 0`,
                [c, now],
              );
              expect(stale.rows).toEqual([]);
              await expectArrearsPaidFromDrawable(c);
            }
          }
          expect(await findViolations(pool)).toEqual([]);
        } finally {
          now = new Date(Math.max(now.getTime(), start.getTime()) + 1000 * HOUR); // next customer starts later
        }
      },
    ),
    { numRuns: 150, ...(process.env.PROPS_SEED ? { seed: Number(process.env.PROPS_SEED) } : {}) },
  );
});
