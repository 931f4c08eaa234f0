import fc from 'fast-check';
import { findViolations } from '../../db/invariants';
import type { Pool } from '../../db/pool';
import { createCustomer } from '../../ledger/customers';
import { HoldLedger } from '../../ledger/holds';
import { Ledger } from '../../ledger/ledger';
import { LifecycleLedger } from '../../ledger/lifecycle';
import { requestHash } from '../../lib/hash';
import { freshDatabase } from '../support/db';

/** Invariants 1–5 and 7 after random grants (with expiries and renewals), debits, holds and time jumps. */
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
  | { op: 'grant'; amount: bigint; expiresInH: number | null; recurring: boolean; cap: bigint }
  | { op: 'debit'; amount: bigint }
  | { op: 'hold'; amount: bigint }
  | { op: 'endHold'; pick: number; settle: bigint | null }
  | { op: 'advance'; hours: number }
  | { op: 'tick' };

const arbOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    op: fc.constant('grant' as const),
    amount: fc.bigInt({ min: 1n, max: 20_000_000n }),
    expiresInH: fc.option(fc.integer({ min: 1, max: 200 })),
    recurring: fc.boolean(),
    cap: fc.bigInt({ min: 0n, max: 10_000_000n }),
  }),
  fc.record({ op: fc.constant('debit' as const), amount: fc.bigInt({ min: 1n, max: 10_000_000n }) }),
  fc.record({ op: fc.constant('hold' as const), amount: fc.bigInt({ min: 1n, max: 10_000_000n }) }),
  fc.record({
    op: fc.constant('endHold' as const),
    pick: fc.nat(),
    settle: fc.option(fc.bigInt({ min: 0n, max: 15_000_000n })),
  }),
  fc.record({ op: fc.constant('advance' as const), hours: fc.integer({ min: 1, max: 24 * 40 }) }),
  fc.constant({ op: 'tick' as const }),
);

it('hold after any sequence, and no expired lot keeps unheld credits once its deadline is booked', async () => {
  const ledger = new Ledger(pool, () => now);
  const holds = new HoldLedger(ledger);
  const lifecycle = new LifecycleLedger(ledger, pool);
  let n = 0;
  await fc.assert(
    fc.asyncProperty(fc.array(arbOp, { minLength: 1, maxLength: 20 }), async (ops) => {
      const c = `lp-${++n}-${Math.random().toString(36).slice(2, 6)}`;
      await createCustomer(pool, { id: c }, requestHash({ id: c }));
      const active: string[] = [];
      const start = now;
      try {
        for (const [i, op] of ops.entries()) {
          const cmd = { customerId: c, key: `${c}:${i}`, requestHash: String(i) };
          if (op.op === 'grant') {
            await ledger.grant(
              cmd,
              op.recurring
                ? { amount: op.amount, kind: 'allowance', recurrence: { every: 'week', count: 4 }, rolloverCap: op.cap }
                : {
                    amount: op.amount,
                    kind: 'promotional',
                    expiresAt: op.expiresInH ? new Date(now.getTime() + op.expiresInH * HOUR) : undefined,
                  },
            );
          } else if (op.op === 'debit') {
            await ledger.debit(cmd, { amount: op.amount });
          } else if (op.op === 'hold') {
            const r = await holds.place(cmd, {
              holdId: `h${i}`,
              workflowId: 'prop',
              amount: op.amount,
              expiresAt: new Date(now.getTime() + HOUR),
            });
            if (r.result.outcome === 'placed') active.push(`h${i}`);
          } else if (op.op === 'endHold' && active.length > 0) {
            const holdId = active.splice(op.pick % active.length, 1)[0]!;
            if (op.settle === null) await holds.release(cmd, { holdId, status: 'released' });
            else await holds.settle(cmd, { holdId, amount: op.settle });
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
          }
        }
        expect(await findViolations(pool)).toEqual([]);
      } finally {
        now = new Date(Math.max(now.getTime(), start.getTime()) + 1000 * HOUR); // next customer starts later
      }
    }),
    { numRuns: 80 },
  );
});
